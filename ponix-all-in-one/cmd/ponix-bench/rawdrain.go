package main

// The drain-raw phase: the one-ack-per-batch drain of drain-ackall, read through a minimal
// NATS client protocol reader of the benchmark's own instead of nats.go. It copies each
// batch's messages into one buffer reused from batch to batch and allocates nothing per
// message (no Msg, no subject or reply string, no header map). It speaks only what the
// benchmark's own server needs (no TLS, no authentication, no reconnect), so it is a
// measurement, not a client: beside drain-ackall it shows what nats.go's per-message work
// costs a client — the most that a reader of Ponix's own could save. It is not one of the
// ceilings of ponix / min(ceilings).

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// drainRaw runs the drain-raw phase on a fresh AckAll durable.
func (e *env) drainRaw(ctx context.Context) (result, error) {
	const consumer = "bench-drain-raw"
	cons, err := e.consumer(ctx, consumer, jetstream.AckAllPolicy)
	if err != nil {
		return result{}, err
	}
	addr, err := natsHostPort(e.nc.ConnectedUrl())
	if err != nil {
		return result{}, err
	}
	r, err := e.measure("drain-raw (no nats.go)", e.o.refBatch, func() error {
		c, err := dialRaw(ctx, addr)
		if err != nil {
			return err
		}
		defer c.conn.Close()
		return c.drain(benchStream, consumer, e.o.n, e.o.refBatch)
	})
	if err != nil {
		return r, err
	}
	// Every message delivered once and acknowledged: the reader read what the server sent.
	info, err := cons.Info(ctx)
	if err != nil {
		return r, err
	}
	if info.NumPending != 0 || info.NumAckPending != 0 || info.NumRedelivered != 0 || info.AckFloor.Consumer != uint64(e.o.n) {
		return r, fmt.Errorf("drain-raw: consumer after the drain: %d pending, %d unacknowledged, %d redelivered, ack floor %d; want 0, 0, 0, %d",
			info.NumPending, info.NumAckPending, info.NumRedelivered, info.AckFloor.Consumer, e.o.n)
	}
	return r, nil
}

// natsHostPort returns the host:port of a nats:// URL.
func natsHostPort(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("drain-raw: NATS URL %q: %w", raw, err)
	}
	if u.Scheme != "nats" || u.User != nil {
		return "", fmt.Errorf("drain-raw: NATS URL %q: only a plain nats:// URL without credentials (the benchmark's own server)", raw)
	}
	return u.Host, nil
}

// rawConn is a connection to the NATS server spoken to in the client protocol directly.
type rawConn struct {
	conn  net.Conn
	r     *bufio.Reader
	w     *bufio.Writer
	inbox string
	arena []byte // the current batch's messages (headers and payloads), reused
	reply []byte // the ack subject of the batch's last message
}

// dialRaw connects, sends CONNECT, waits for the PONG of a PING (the connection accepted) and
// subscribes to the inbox of the fetch requests.
func dialRaw(ctx context.Context, addr string) (*rawConn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("drain-raw: %w", err)
	}
	c := &rawConn{conn: conn, r: bufio.NewReaderSize(conn, 256<<10), w: bufio.NewWriterSize(conn, 32<<10),
		inbox: fmt.Sprintf("_RAW.%d", time.Now().UnixNano())}
	fmt.Fprintf(c.w, "CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true,\"no_responders\":true,\"protocol\":1}\r\nPING\r\nSUB %s 1\r\n", c.inbox)
	if err := c.w.Flush(); err != nil {
		conn.Close()
		return nil, fmt.Errorf("drain-raw: %w", err)
	}
	for {
		line, err := c.line()
		if err != nil {
			conn.Close()
			return nil, err
		}
		switch {
		case bytes.HasPrefix(line, []byte("PONG")):
			return c, nil
		case bytes.HasPrefix(line, []byte("-ERR")):
			conn.Close()
			return nil, fmt.Errorf("drain-raw: server refused the connection: %s", line)
		}
	}
}

// line reads one protocol line without its CRLF; the slice is valid until the next read.
func (c *rawConn) line() ([]byte, error) {
	l, err := c.r.ReadSlice('\n')
	if err != nil {
		return nil, fmt.Errorf("drain-raw: read: %w", err)
	}
	return bytes.TrimRight(l, "\r\n"), nil
}

// drain fetches batches of batch messages from the durable until n are read, and acks the
// last message of each batch (AckAll), as drain-ackall does.
func (c *rawConn) drain(stream, consumer string, n, batch int) error {
	next := "$JS.API.CONSUMER.MSG.NEXT." + stream + "." + consumer
	req := fmt.Sprintf(`{"batch":%d,"expires":%d}`, batch, (5 * time.Second).Nanoseconds())
	for done := 0; done < n; {
		fmt.Fprintf(c.w, "PUB %s %s %d\r\n%s\r\n", next, c.inbox, len(req), req)
		if err := c.w.Flush(); err != nil {
			return fmt.Errorf("drain-raw: %w", err)
		}
		got, err := c.batch(batch)
		if err != nil {
			return err
		}
		done += got
		if got > 0 { // ack the batch: an empty PUB to the last message's ack subject
			c.w.WriteString("PUB ")
			c.w.Write(c.reply)
			c.w.WriteString(" 0\r\n\r\n")
		}
	}
	c.w.WriteString("PING\r\n")
	if err := c.w.Flush(); err != nil {
		return fmt.Errorf("drain-raw: %w", err)
	}
	for { // the acks are processed once the PONG comes
		line, err := c.line()
		if err != nil {
			return err
		}
		if bytes.HasPrefix(line, []byte("PONG")) {
			return nil
		}
	}
}

// batch reads the messages of one fetch request: batch messages, or fewer and a status
// message (404 no messages, 408 request expired).
func (c *rawConn) batch(batch int) (int, error) {
	c.arena = c.arena[:0]
	got := 0
	for got < batch {
		line, err := c.line()
		if err != nil {
			return got, err
		}
		switch {
		case bytes.HasPrefix(line, []byte("HMSG ")), bytes.HasPrefix(line, []byte("MSG ")):
			status, err := c.message(line)
			if err != nil {
				return got, err
			}
			if status {
				return got, nil
			}
			got++
		case bytes.HasPrefix(line, []byte("PING")):
			c.w.WriteString("PONG\r\n")
			if err := c.w.Flush(); err != nil {
				return got, fmt.Errorf("drain-raw: %w", err)
			}
		case bytes.HasPrefix(line, []byte("-ERR")):
			return got, fmt.Errorf("drain-raw: server error: %s", line)
		}
	}
	return got, nil
}

// message reads the message whose MSG or HMSG line is line into the arena. A message without
// a reply subject is a status of the fetch request (status true).
//
//	MSG <subject> <sid> [reply] <size>
//	HMSG <subject> <sid> [reply] <header size> <total size>
func (c *rawConn) message(line []byte) (status bool, err error) {
	var f [6][]byte
	nf := 0
	for len(line) > 0 && nf < len(f) {
		i := bytes.IndexByte(line, ' ')
		if i < 0 {
			i = len(line)
		}
		if i > 0 {
			f[nf] = line[:i]
			nf++
		}
		line = line[min(i+1, len(line)):]
	}
	headers := string(f[0]) == "HMSG"
	sizes := 1
	if headers {
		sizes = 2
	}
	hasReply := nf == 4+sizes
	if nf != 3+sizes && nf != 4+sizes {
		return false, errors.New("drain-raw: a MSG line with a wrong number of fields")
	}
	total := 0
	for _, d := range f[nf-1] {
		if d < '0' || d > '9' {
			return false, fmt.Errorf("drain-raw: message size %q", f[nf-1])
		}
		total = total*10 + int(d-'0')
	}
	if hasReply {
		c.reply = append(c.reply[:0], f[3]...)
	}
	// The message and its CRLF into the arena (the reply, read above, is in the reader's buffer
	// that this read may overwrite: it was copied).
	start := len(c.arena)
	if need := start + total + 2; need > cap(c.arena) {
		grown := make([]byte, start, max(need, 2*cap(c.arena)))
		copy(grown, c.arena)
		c.arena = grown
	}
	c.arena = c.arena[:start+total+2]
	if _, err := io.ReadFull(c.r, c.arena[start:]); err != nil {
		return false, fmt.Errorf("drain-raw: read a message: %w", err)
	}
	c.arena = c.arena[:start+total]
	return !hasReply, nil
}
