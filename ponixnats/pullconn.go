package ponixnats

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// pullConn is the connection of a consumer's own on which its pull requests are sent and the
// messages they bring are read, in the NATS client protocol directly: each request's messages
// are copied into a few large buffers, with no goroutine hand-off, no nats.Msg, no strings and
// no header map per message (nats.go's reader does all of that for every message, which
// ponix-bench measured at about a third of the consumer's CPU). Acknowledgements still go over
// the nats.Conn: the server takes them from any connection of the account.
//
// It connects to the server the nats.Conn is connected to, as that connection did (TLS,
// handshake first, user and password, token, NKey, JWT, a custom or in-process dialer, the
// inbox prefix), and follows it: after any failure the next request dials again, to where the
// nats.Conn is connected then. It is dialled at the first request, not before.
type pullConn struct {
	nc *nats.Conn

	mu     sync.Mutex // one request at a time
	conn   net.Conn
	r      *bufio.Reader
	w      *bufio.Writer
	inbox  string    // the reply subjects of its requests are inbox.<sid>
	sid    uint64    // the subscription of the last request
	subbed bool      // the last request's subscription is still open
	used   time.Time // when the connection last read something
	hint   int       // bytes per message of the last request: sizes the next one's buffer
	line   []byte    // a protocol line longer than the read buffer, put together
	scr    []byte    // a status message's header
	// graceLeft: the request's read deadline may still be moved once (see grace).
	graceLeft bool
}

const (
	pullReadBuffer = 64 << 10
	// pullChunk bounds the buffers a request's messages are copied into.
	pullChunk = 1 << 20
	// pullMaxMessage bounds the size of one message the connection accepts (the largest
	// max_payload a server allows is 64 MiB): a larger one is a protocol error.
	pullMaxMessage = 64 << 20
	// pullStale is how long the connection may go without reading before a request that
	// fails on it at once is tried again on a new one: the server closes a connection that did
	// not answer its pings (after two of them, two minutes apart by default).
	pullStale = time.Second
	// pullGrace is how long a request reads on once its deadline passed (see grace).
	pullGrace = time.Second
)

// newPullConn returns the pull connection that follows nc, or nil when nc's options are ones
// it does not reproduce (a websocket URL or proxy path): the consumer then pulls over nc.
func newPullConn(nc *nats.Conn) *pullConn {
	if nc == nil || nc.Opts.ProxyPath != "" {
		return nil
	}
	for _, s := range append([]string{nc.Opts.Url, nc.ConnectedUrl()}, nc.Opts.Servers...) {
		if u, err := url.Parse(s); err == nil && strings.HasPrefix(strings.ToLower(u.Scheme), "ws") {
			return nil
		}
	}
	return &pullConn{nc: nc, hint: 1024}
}

// close closes the connection; the next request would dial again.
func (c *pullConn) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.drop()
}

func (c *pullConn) drop() {
	if c.conn != nil {
		_ = c.conn.Close()
	}
	c.conn, c.r, c.w, c.subbed = nil, nil, nil, false
}

// pull sends pull request req for up to n messages (and maxBytes, 0: no bound) that expires
// after expiry to subject, and appends the messages it brings to buf as [pulledMsg]s of p.
// It ends as [puller.fetch] says. A request that fails before anything came on a connection
// that had been quiet (one the server may have closed meanwhile) is sent once more on a new
// connection.
func (c *pullConn) pull(p *puller, buf []jetstream.Msg, subject string, req []byte, n, maxBytes int, expiry time.Duration) ([]jetstream.Msg, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	stale := c.conn != nil && time.Since(c.used) > pullStale
	had := len(buf)
	buf, got, err := c.request(p, buf, subject, req, n, maxBytes, expiry)
	if err != nil && got == 0 && stale {
		buf, _, err = c.request(p, buf[:had], subject, req, n, maxBytes, expiry)
	}
	return buf, err
}

// request is one try of pull. got counts the frames read for the request (messages and
// statuses).
func (c *pullConn) request(p *puller, buf []jetstream.Msg, subject string, req []byte, n, maxBytes int, expiry time.Duration) (_ []jetstream.Msg, got int, err error) {
	if c.conn == nil {
		if err := c.dial(); err != nil {
			return buf, 0, err
		}
	}
	said := false // err is what a status message of the server said: the connection is fine
	defer func() {
		if err != nil && !said {
			c.drop() // a connection in an unknown state is not used again
		}
	}()
	// The last request's subscription ends, this one's starts, and the request goes: one write.
	w := c.w
	var num [20]byte
	if c.subbed {
		w.WriteString("UNSUB ")
		w.Write(strconv.AppendUint(num[:0], c.sid, 10))
		w.WriteString("\r\n")
	}
	c.sid++
	var sidBuf [20]byte
	sid := strconv.AppendUint(sidBuf[:0], c.sid, 10)
	w.WriteString("SUB ")
	w.WriteString(c.inbox)
	w.WriteByte('.')
	w.Write(sid)
	w.WriteByte(' ')
	w.Write(sid)
	w.WriteString("\r\nPUB ")
	w.WriteString(subject)
	w.WriteByte(' ')
	w.WriteString(c.inbox)
	w.WriteByte('.')
	w.Write(sid)
	w.WriteByte(' ')
	w.Write(strconv.AppendInt(num[:0], int64(len(req)), 10))
	w.WriteString("\r\n")
	w.Write(req)
	w.WriteString("\r\n")
	c.subbed = true
	if err := c.flush(); err != nil {
		return buf, 0, err
	}
	// Past expiry and a second more without the word that ends the request, it ends (what it
	// brings later is not taken: the connection is closed).
	deadline := time.Now().Add(expiry + time.Second)
	if err := c.conn.SetReadDeadline(deadline); err != nil {
		return buf, 0, c.fail("read", err)
	}
	c.graceLeft = true
	defer func() { c.graceLeft = false }()
	var (
		msgs  []pulledMsg // of the whole request, allocated once the first message came
		arena []byte      // the messages' bytes
		size  int         // bytes of messages read
	)
	defer func() {
		c.used = time.Now() // the connection works (or was closed)
		if len(msgs) > 0 {
			c.hint = max(64, size/len(msgs))
		}
	}()
	for len(msgs) < n {
		line, err := c.readLine()
		if err != nil {
			if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() {
				c.drop()
				return buf, got, nil
			}
			return buf, got, err
		}
		switch op := opOf(line); op {
		case opMsg:
			f, err := msgFields(line)
			if err != nil {
				return buf, got, err
			}
			if !bytes.Equal(f.sid, sid) { // an earlier request's, come late: not taken
				if err := c.discard(f.total + 2); err != nil {
					return buf, got, err
				}
				continue
			}
			got++
			if len(f.reply) == 0 && f.hdr > 0 && f.hdr == f.total {
				end, err := c.status(f.hdr)
				if err != nil || end {
					said = err != nil && !errors.Is(err, errPullRead)
					return buf, got, err
				}
				continue // a heartbeat: ends nothing
			}
			need := len(f.subject) + len(f.reply) + f.total
			if need > cap(arena)-len(arena) {
				// The rest of the request at the last one's average, in chunks of at most
				// pullChunk: a request that brings little allocates little.
				want := min((n-len(msgs))*c.hint, pullChunk)
				arena = make([]byte, 0, max(want, need, 4096))
			}
			if msgs == nil {
				msgs = make([]pulledMsg, 0, n)
			}
			msgs = msgs[:len(msgs)+1]
			pm := &msgs[len(msgs)-1]
			pm.p = p
			// The line is in the reader's buffer, which the reads below overwrite: subject and
			// reply are copied first.
			at := len(arena)
			arena = append(arena, f.subject...)
			pm.subject = arena[at:len(arena):len(arena)]
			at = len(arena)
			arena = append(arena, f.reply...)
			pm.reply = arena[at:len(arena):len(arena)]
			at = len(arena)
			arena = arena[:at+f.total]
			if err := c.readFull(arena[at:]); err != nil {
				return buf, got, err
			}
			if err := c.discard(2); err != nil {
				return buf, got, err
			}
			if f.hdr > 0 {
				pm.header = arena[at : at+f.hdr : at+f.hdr]
			}
			pm.data = arena[at+f.hdr : at+f.total : at+f.total]
			pm.seqs, _ = parseAckSeqs(pm.reply) // on an error zero: ackSeqsOf reads it again
			buf = append(buf, pm)
			size += need
			if maxBytes > 0 && size >= maxBytes { // the server counts subjects and headers too
				said = true
				return buf, got, errByteBound
			}
		case opPing:
			c.w.WriteString("PONG\r\n")
			if err := c.flush(); err != nil {
				return buf, got, err
			}
		case opErr:
			return buf, got, serverError(line)
		case opPong, opOK, opInfo:
		default:
			return buf, got, fmt.Errorf("nats: pull connection: unknown protocol line %.40q", line)
		}
	}
	return buf, got, nil
}

// status reads the header of a status message (hdr bytes and the CRLF after them) and says
// whether it ends the request, and the error it means (see pullStatus).
func (c *pullConn) status(hdr int) (bool, error) {
	if hdr > 4096 {
		return true, fmt.Errorf("%w: a status message with a header of %d bytes", errPullRead, hdr)
	}
	if cap(c.scr) < hdr+2 {
		c.scr = make([]byte, 4096+2)
	}
	c.scr = c.scr[:hdr+2]
	if err := c.readFull(c.scr); err != nil {
		return true, err
	}
	code, descr := statusLine(c.scr[:hdr])
	return pullStatus(code, descr)
}

// statusLine reads the code and description of a status header: "NATS/1.0 404 No Messages".
func statusLine(h []byte) (code, descr string) {
	first, _, _ := bytes.Cut(h, []byte("\r\n"))
	rest, ok := bytes.CutPrefix(first, []byte("NATS/1.0"))
	if !ok {
		return "", ""
	}
	rest = bytes.TrimSpace(rest)
	c, d, _ := bytes.Cut(rest, []byte(" "))
	return string(c), string(bytes.TrimSpace(d))
}

// flush writes what is buffered, within the connection's timeout.
func (c *pullConn) flush() error {
	if err := c.conn.SetWriteDeadline(time.Now().Add(c.timeout())); err != nil {
		return c.fail("write", err)
	}
	if err := c.w.Flush(); err != nil {
		return c.fail("write", err)
	}
	return nil
}

func (c *pullConn) timeout() time.Duration {
	if c.nc == nil {
		return nats.DefaultTimeout
	}
	if t := c.nc.Opts.Timeout; t > 0 {
		return t
	}
	return nats.DefaultTimeout
}

// errPullRead marks a failure to read the pull connection: it is closed.
var errPullRead = errors.New("nats: pull connection")

// fail says what failed on the connection.
func (c *pullConn) fail(what string, err error) error {
	return fmt.Errorf("%w: %s: %w", errPullRead, what, err)
}

// readLine reads one protocol line without its CRLF. The slice is valid until the next read.
func (c *pullConn) readLine() ([]byte, error) {
	l, err := c.r.ReadSlice('\n')
	if err == nil {
		return bytes.TrimRight(l, "\r\n"), nil
	}
	// Longer than the buffer (an INFO of a large cluster) or cut by the deadline: put together.
	c.line = append(c.line[:0], l...)
	for err != nil {
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			if len(c.line) > pullMaxMessage {
				return nil, errors.New("nats: pull connection: a protocol line over 64 MiB")
			}
		case c.grace(err):
		default:
			return nil, c.fail("read", err)
		}
		l, err = c.r.ReadSlice('\n')
		c.line = append(c.line, l...)
	}
	return bytes.TrimRight(c.line, "\r\n"), nil
}

// readFull fills b from the connection, reading on past the request's deadline once (grace).
func (c *pullConn) readFull(b []byte) error {
	for {
		n, err := io.ReadFull(c.r, b)
		if err == nil {
			return nil
		}
		if !c.grace(err) {
			return c.fail("read", err)
		}
		b = b[n:]
	}
}

// discard skips n bytes of the connection, reading on past the request's deadline once (grace).
func (c *pullConn) discard(n int) error {
	for {
		d, err := c.r.Discard(n)
		if err == nil {
			return nil
		}
		if !c.grace(err) {
			return c.fail("read", err)
		}
		n -= d
	}
}

// grace says whether a read that failed with err may go on: err is the request's read
// deadline passing, for the first time, and the deadline moves pullGrace on. A process stalled
// (a pause, a starved machine) past a request's deadline finds the deadline passed when it goes
// on, before it read what the server sent meanwhile — the messages the durable counts as
// delivered, and the status that ends the request. Reading them on keeps them; closing the
// connection would lose them (the durable's deliveries would skip them: a gap that an owner
// acknowledging per batch repairs only by resetting the durable, and that per message waits
// for AckWait).
func (c *pullConn) grace(err error) bool {
	var ne net.Error
	if !c.graceLeft || !errors.As(err, &ne) || !ne.Timeout() {
		return false
	}
	c.graceLeft = false
	return c.conn.SetReadDeadline(time.Now().Add(pullGrace)) == nil
}

type op int

const (
	opUnknown op = iota
	opMsg
	opPing
	opPong
	opOK
	opErr
	opInfo
)

// opOf names the operation of a protocol line from the server.
func opOf(line []byte) op {
	switch {
	case bytes.HasPrefix(line, []byte("MSG ")), bytes.HasPrefix(line, []byte("HMSG ")):
		return opMsg
	case bytes.Equal(line, []byte("PING")):
		return opPing
	case bytes.Equal(line, []byte("PONG")):
		return opPong
	case bytes.Equal(line, []byte("+OK")):
		return opOK
	case bytes.HasPrefix(line, []byte("-ERR")):
		return opErr
	case bytes.HasPrefix(line, []byte("INFO ")):
		return opInfo
	}
	return opUnknown
}

// frame is what a MSG or HMSG line says of the message after it.
type frame struct {
	subject, sid, reply []byte
	hdr, total          int // header bytes (HMSG) and header and payload bytes
}

// msgFields reads a MSG or HMSG line:
//
//	MSG <subject> <sid> [reply] <size>
//	HMSG <subject> <sid> [reply] <header size> <total size>
func msgFields(line []byte) (frame, error) {
	var f [6][]byte
	nf := 0
	for rest := line; len(rest) > 0; {
		i := 0
		for i < len(rest) && rest[i] != ' ' && rest[i] != '\t' {
			i++
		}
		if i > 0 {
			if nf == len(f) {
				return frame{}, fmt.Errorf("nats: pull connection: %.80q: too many fields", line)
			}
			f[nf] = rest[:i]
			nf++
		}
		rest = rest[min(i+1, len(rest)):]
	}
	sizes := 1
	if string(f[0]) == "HMSG" {
		sizes = 2
	}
	if nf != 3+sizes && nf != 4+sizes {
		return frame{}, fmt.Errorf("nats: pull connection: %.80q: wrong number of fields", line)
	}
	fr := frame{subject: f[1], sid: f[2]}
	if nf == 4+sizes {
		fr.reply = f[3]
	}
	var err error
	if fr.total, err = parseSize(f[nf-1]); err != nil {
		return frame{}, fmt.Errorf("nats: pull connection: %.80q: %w", line, err)
	}
	if sizes == 2 {
		if fr.hdr, err = parseSize(f[nf-2]); err != nil || fr.hdr > fr.total {
			return frame{}, fmt.Errorf("nats: pull connection: %.80q: header size", line)
		}
	}
	return fr, nil
}

// parseSize reads a message size of a MSG line.
func parseSize(b []byte) (int, error) {
	if len(b) == 0 || len(b) > 9 {
		return 0, fmt.Errorf("size %q", b)
	}
	v := 0
	for _, d := range b {
		if d < '0' || d > '9' {
			return 0, fmt.Errorf("size %q", b)
		}
		v = v*10 + int(d-'0')
	}
	if v > pullMaxMessage {
		return 0, fmt.Errorf("size %d over 64 MiB", v)
	}
	return v, nil
}

// serverErrors are the -ERR texts of nats-server (lower case, at the start of the line) that
// nats.go has an error for, as nats.go matches them.
var serverErrors = []struct {
	text string
	err  error
}{
	{"authorization violation", nats.ErrAuthorization},
	{"user authentication expired", nats.ErrAuthExpired},
	{"account authentication expired", nats.ErrAccountAuthExpired},
	{"permissions violation", nats.ErrPermissionViolation},
	{"stale connection", nats.ErrStaleConnection},
	{"maximum connections exceeded", nats.ErrMaxConnectionsExceeded},
	{"maximum account active connections exceeded", nats.ErrMaxAccountConnectionsExceeded},
}

// serverError is the error of a -ERR line, matching nats.go's errors where there is one.
func serverError(line []byte) error {
	descr := strings.Trim(strings.TrimSpace(strings.TrimPrefix(string(line), "-ERR")), "'")
	lower := strings.ToLower(descr)
	for _, known := range serverErrors {
		if strings.HasPrefix(lower, known.text) {
			return fmt.Errorf("nats: pull connection: the server said '%s': %w", descr, known.err)
		}
	}
	return fmt.Errorf("nats: pull connection: the server said '%s'", descr)
}

// serverInfo is what the connection reads of the server's INFO.
type serverInfo struct {
	TLSRequired  bool   `json:"tls_required"`
	TLSAvailable bool   `json:"tls_available"`
	Nonce        string `json:"nonce"`
	Headers      bool   `json:"headers"`
}

// connectInfo is the CONNECT the connection sends (nats.go's, as its connection sent it).
type connectInfo struct {
	Verbose      bool   `json:"verbose"`
	Pedantic     bool   `json:"pedantic"`
	JWT          string `json:"jwt,omitempty"`
	Nkey         string `json:"nkey,omitempty"`
	Signature    string `json:"sig,omitempty"`
	User         string `json:"user,omitempty"`
	Pass         string `json:"pass,omitempty"`
	Token        string `json:"auth_token,omitempty"`
	TLS          bool   `json:"tls_required"`
	Name         string `json:"name"`
	Lang         string `json:"lang"`
	Version      string `json:"version"`
	Protocol     int    `json:"protocol"`
	Echo         bool   `json:"echo"`
	Headers      bool   `json:"headers"`
	NoResponders bool   `json:"no_responders"`
}

// dial connects to the server the nats.Conn is connected to, as it did, and subscribes to
// nothing yet.
func (c *pullConn) dial() (err error) {
	raw := c.nc.ConnectedUrl()
	if raw == "" {
		if c.nc.IsClosed() {
			return fmt.Errorf("nats: pull connection: %w", nats.ErrConnectionClosed)
		}
		return fmt.Errorf("nats: pull connection: %w", nats.ErrConnectionReconnecting)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("nats: pull connection: server URL: %w", err)
	}
	where := redactURL(raw)
	defer func() {
		if err != nil {
			c.drop()
			err = fmt.Errorf("nats: pull connection to %s: %w", where, err)
			if errors.Is(err, nats.ErrMaxConnectionsExceeded) || errors.Is(err, nats.ErrMaxAccountConnectionsExceeded) {
				err = fmt.Errorf("%w (raise the limit by one connection per consumer, or pull on the one connection: ConsumerConfig.PullOnSharedConnection)", err)
			}
		}
	}()
	o := &c.nc.Opts
	timeout := c.timeout()
	switch {
	case o.InProcessServer != nil:
		c.conn, err = o.InProcessServer.InProcessConn()
	case o.CustomDialer != nil:
		c.conn, err = o.CustomDialer.Dial("tcp", u.Host)
	default:
		d := net.Dialer{Timeout: timeout}
		if o.Dialer != nil {
			d = *o.Dialer
		}
		c.conn, err = d.Dial("tcp", u.Host)
	}
	if err != nil {
		return err
	}
	if err := c.conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	secure := o.Secure || strings.EqualFold(u.Scheme, "tls")
	if secure && o.TLSHandshakeFirst {
		if err := c.startTLS(u); err != nil {
			return err
		}
	}
	c.r = bufio.NewReaderSize(c.conn, pullReadBuffer)
	line, err := c.readLine()
	if err != nil {
		return err
	}
	js, ok := bytes.CutPrefix(line, []byte("INFO "))
	if !ok {
		return fmt.Errorf("%w: got %.40q", nats.ErrNoInfoReceived, line)
	}
	var info serverInfo
	if err := json.Unmarshal(js, &info); err != nil {
		return fmt.Errorf("server INFO: %w", err)
	}
	if secure && !info.TLSRequired && !info.TLSAvailable {
		return nats.ErrSecureConnWanted
	}
	if !secure && info.TLSRequired {
		secure = true
	}
	if secure && !o.TLSHandshakeFirst {
		if err := c.startTLS(u); err != nil {
			return err
		}
		c.r = bufio.NewReaderSize(c.conn, pullReadBuffer)
	}
	if !info.Headers {
		return errors.New("the server does not support headers (JetStream needs them)")
	}
	connect, err := connectJSON(o, u, info, secure)
	if err != nil {
		return err
	}
	c.w = bufio.NewWriterSize(c.conn, 4096)
	c.w.WriteString("CONNECT ")
	c.w.Write(connect)
	c.w.WriteString("\r\nPING\r\n")
	if err := c.w.Flush(); err != nil {
		return err
	}
	for { // the PONG of the PING: the server took the CONNECT
		line, err := c.readLine()
		if err != nil {
			return err
		}
		switch opOf(line) {
		case opPong:
			c.inbox = c.nc.NewInbox()
			c.subbed, c.used = false, time.Now()
			return c.conn.SetDeadline(time.Time{})
		case opErr:
			return serverError(line)
		case opPing:
			c.w.WriteString("PONG\r\n")
			if err := c.w.Flush(); err != nil {
				return err
			}
		}
	}
}

// startTLS makes the connection a TLS client with the nats.Conn's TLS settings.
func (c *pullConn) startTLS(u *url.URL) error {
	o := &c.nc.Opts
	if sd, ok := o.CustomDialer.(interface{ SkipTLSHandshake() bool }); ok && sd.SkipTLSHandshake() {
		return nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.TLSConfig != nil {
		cfg = o.TLSConfig.Clone()
	}
	if o.TLSCertCB != nil {
		cert, err := o.TLSCertCB()
		if err != nil {
			return err
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	if o.RootCAsCB != nil {
		pool, err := o.RootCAsCB()
		if err != nil {
			return err
		}
		cfg.RootCAs = pool
	}
	if cfg.ServerName == "" {
		cfg.ServerName = tlsServerName(o, u)
	}
	tc := tls.Client(c.conn, cfg)
	if err := tc.Handshake(); err != nil {
		return fmt.Errorf("%w: %w", nats.ErrTLS, err)
	}
	c.conn = tc
	return nil
}

// tlsServerName is the name the certificate of the server at u is checked against: its host,
// except for a server the nats.Conn discovered (not one of its URLs) that is known by an IP
// only, whose certificate nats.go checks against the name of the server it discovered it from;
// here that of the first URL given with a name.
func tlsServerName(o *nats.Options, u *url.URL) string {
	host := u.Hostname()
	if net.ParseIP(host) == nil {
		return host
	}
	var named string
	for _, s := range append([]string{o.Url}, o.Servers...) {
		for _, one := range strings.Split(s, ",") {
			su, err := url.Parse(strings.TrimSpace(one))
			if err != nil || su.Host == "" {
				continue
			}
			if su.Hostname() == host {
				return host // given as an IP: checked as one
			}
			if named == "" && net.ParseIP(su.Hostname()) == nil {
				named = su.Hostname()
			}
		}
	}
	if named != "" {
		return named
	}
	return host
}

// connectJSON is the CONNECT JSON for a connection to u with the credentials of options o
// (those of the URL first), as nats.go makes it for the server that sent info.
func connectJSON(o *nats.Options, u *url.URL, info serverInfo, secure bool) ([]byte, error) {
	ci := connectInfo{TLS: secure, Name: o.Name, Lang: nats.LangString, Version: nats.Version, Protocol: 1,
		Echo: !o.NoEcho, Headers: true, NoResponders: true}
	if ci.Name != "" {
		ci.Name += " (pulls)"
	}
	if u.User != nil {
		if pass, ok := u.User.Password(); ok {
			ci.User, ci.Pass = u.User.Username(), pass
		} else {
			ci.Token = u.User.Username()
		}
	} else {
		ci.User, ci.Pass, ci.Token, ci.Nkey = o.User, o.Password, o.Token, o.Nkey
		if o.UserInfo != nil {
			ci.User, ci.Pass = o.UserInfo()
		}
	}
	if o.UserJWT != nil {
		jwt, err := o.UserJWT()
		if err != nil {
			return nil, err
		}
		ci.JWT = jwt
	}
	if ci.JWT != "" || ci.Nkey != "" {
		if info.Nonce == "" {
			return nil, nats.ErrNkeysNotSupported
		}
		if o.SignatureCB == nil {
			return nil, nats.ErrNkeyButNoSigCB
		}
		sig, err := o.SignatureCB([]byte(info.Nonce))
		if err != nil {
			return nil, fmt.Errorf("signing the server's nonce: %w", err)
		}
		ci.Signature = base64.RawURLEncoding.EncodeToString(sig)
	}
	if o.TokenHandler != nil {
		ci.Token = o.TokenHandler()
	}
	return json.Marshal(ci)
}
