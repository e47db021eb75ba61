package main

import (
	"bufio"
	"strings"
	"testing"
)

// rawFrom returns a rawConn that reads the server's side from s and writes to w.
func rawFrom(s string, w *strings.Builder) *rawConn {
	return &rawConn{r: bufio.NewReader(strings.NewReader(s)), w: bufio.NewWriter(w)}
}

func TestRawBatchReadsMessagesAndStatus(t *testing.T) {
	const hdr = "NATS/1.0\r\nNats-Msg-Id: a\r\n\r\n" // 28 bytes
	in := "INFO {}\r\n" +
		"HMSG _RAW.1 1 $JS.ACK.s.c.1.1.1.0.2 28 33\r\n" + hdr + "hello\r\n" +
		"PING\r\n" +
		"MSG _RAW.1 1 $JS.ACK.s.c.1.2.2.0.1 3\r\nabc\r\n" +
		"HMSG _RAW.1 1 16 16\r\nNATS/1.0 408\r\n\r\n\r\n" // the request expired: a status, no reply
	var out strings.Builder
	c := rawFrom(in, &out)
	got, err := c.batch(10)
	if err != nil {
		t.Fatal(err)
	}
	if got != 2 {
		t.Errorf("batch read %d messages, want 2 (the status ends it and is not one)", got)
	}
	if string(c.reply) != "$JS.ACK.s.c.1.2.2.0.1" {
		t.Errorf("ack subject %q, want the last message's", c.reply)
	}
	// The arena holds each message (header and payload, without the CRLF that ends it) as
	// sent, then the status's header.
	if want := hdr + "hello" + "abc" + "NATS/1.0 408\r\n\r\n"; string(c.arena) != want {
		t.Errorf("arena %q, want %q", c.arena, want)
	}
	if err := c.w.Flush(); err != nil {
		t.Fatal(err)
	}
	if out.String() != "PONG\r\n" {
		t.Errorf("wrote %q, want the PONG to the server's PING", out.String())
	}
}

func TestRawBatchStopsAtBatchSize(t *testing.T) {
	in := "MSG i 1 r1 1\r\na\r\nMSG i 1 r2 1\r\nb\r\nMSG i 1 r3 1\r\nc\r\n"
	c := rawFrom(in, &strings.Builder{})
	if got, err := c.batch(2); err != nil || got != 2 || string(c.reply) != "r2" {
		t.Errorf("batch(2) = %d, %v, reply %q; want 2, nil, r2", got, err, c.reply)
	}
	if got, err := c.batch(1); err != nil || got != 1 || string(c.reply) != "r3" || string(c.arena) != "c" {
		t.Errorf("next batch(1) = %d, %v, reply %q, arena %q; want 1, nil, r3, the third message alone", got, err, c.reply, c.arena)
	}
}

func TestRawMessageErrors(t *testing.T) {
	for _, in := range []string{
		"MSG i 1\r\n",            // no size
		"MSG i 1 r x2\r\nab\r\n", // not a number
		"-ERR 'Authorization Violation'\r\n",
		"MSG i 1 r 5\r\nab", // cut short
	} {
		c := rawFrom(in, &strings.Builder{})
		if _, err := c.batch(1); err == nil {
			t.Errorf("batch of %q: no error", in)
		}
	}
}

func TestNATSHostPort(t *testing.T) {
	if got, err := natsHostPort("nats://127.0.0.1:4222"); err != nil || got != "127.0.0.1:4222" {
		t.Errorf("natsHostPort = %q, %v", got, err)
	}
	for _, bad := range []string{"tls://127.0.0.1:4222", "nats://u:p@127.0.0.1:4222"} {
		if _, err := natsHostPort(bad); err == nil {
			t.Errorf("natsHostPort(%q): no error; the reader speaks neither TLS nor authentication", bad)
		}
	}
}
