package ponixnats

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
)

// fakeNATS is the server end of a pullConn's connection: what the client sends arrives on
// lines; what the test sends goes out as written.
type fakeNATS struct {
	conn  net.Conn
	lines chan string
}

// newTestPullConn returns a pullConn connected (without the handshake: dial is what the
// integration tests check) to a fakeNATS over loopback TCP.
func newTestPullConn(t *testing.T) (*pullConn, *fakeNATS) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	cc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	sc := <-accepted
	if sc == nil {
		t.Fatal("accept failed")
	}
	srv := &fakeNATS{conn: sc, lines: make(chan string, 100)}
	go func() {
		r := bufio.NewReader(sc)
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				close(srv.lines)
				return
			}
			srv.lines <- strings.TrimRight(l, "\r\n")
		}
	}()
	t.Cleanup(func() { cc.Close(); sc.Close() })
	c := &pullConn{conn: cc, r: bufio.NewReaderSize(cc, pullReadBuffer), w: bufio.NewWriter(cc), inbox: "_INBOX.t", hint: 1024, used: time.Now()}
	return c, srv
}

// expect waits for the client's next line and checks it.
func (s *fakeNATS) expect(t *testing.T, want string) {
	t.Helper()
	select {
	case got, ok := <-s.lines:
		if !ok {
			t.Fatalf("connection closed, want %q", want)
		}
		if got != want {
			t.Fatalf("client sent %q, want %q", got, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("client sent nothing, want %q", want)
	}
}

func (s *fakeNATS) send(t *testing.T, frames ...string) {
	t.Helper()
	if _, err := s.conn.Write([]byte(strings.Join(frames, ""))); err != nil {
		t.Fatal(err)
	}
}

// hmsg is an HMSG frame with header h (without the final blank line) and body data.
func hmsg(subject, sid, reply, h, data string) string {
	hdr := "NATS/1.0\r\n" + h + "\r\n\r\n"
	if strings.HasPrefix(h, "NATS/1.0") {
		hdr = h + "\r\n\r\n"
	}
	if reply != "" {
		reply += " "
	}
	return fmt.Sprintf("HMSG %s %s %s%d %d\r\n%s%s\r\n", subject, sid, reply, len(hdr), len(hdr)+len(data), hdr, data)
}

func msg(subject, sid, reply, data string) string {
	if reply != "" {
		reply += " "
	}
	return fmt.Sprintf("MSG %s %s %s%d\r\n%s\r\n", subject, sid, reply, len(data), data)
}

// pulled is what a pull returned.
type pulled struct {
	msgs []jetstream.Msg
	err  error
}

// pullAsync starts a pull on c of up to n messages and maxBytes, expiring after expiry.
func pullAsync(c *pullConn, n, maxBytes int, expiry time.Duration) <-chan pulled {
	done := make(chan pulled, 1)
	go func() {
		msgs, err := c.pull(&puller{}, nil, "next", []byte("{}"), n, maxBytes, expiry)
		done <- pulled{msgs, err}
	}()
	return done
}

func ackSubject(delivered, sseq, cseq int) string {
	return fmt.Sprintf("$JS.ACK.s.d.%d.%d.%d.1700000000000000000.0", delivered, sseq, cseq)
}

// The messages of a request are read whole: body, subject, ack subject and its numbers, the
// header decoded when asked; a message of an earlier request's subscription is not taken; a
// server PING is answered; the status that ends the request ends it without an error and
// leaves the connection open; the next request ends the last one's subscription.
func TestPullConnReadsARequestsMessages(t *testing.T) {
	c, srv := newTestPullConn(t)
	p := &puller{}
	type result struct {
		msgs []jetstream.Msg
		err  error
	}
	done := make(chan result, 1)
	go func() {
		msgs, err := c.pull(p, nil, "$JS.API.CONSUMER.MSG.NEXT.s.d", []byte(`{"batch":10}`), 10, 0, time.Minute)
		done <- result{msgs, err}
	}()
	srv.expect(t, "SUB _INBOX.t.1 1")
	srv.expect(t, "PUB $JS.API.CONSUMER.MSG.NEXT.s.d _INBOX.t.1 12")
	srv.expect(t, `{"batch":10}`)
	srv.send(t,
		"PING\r\n",
		hmsg("dev.a", "1", ackSubject(1, 5, 3), "Nats-Msg-Id: id-5\r\nX-Two: 2", "hello"),
		msg("dev.late", "0", ackSubject(1, 4, 2), "from an earlier request"),
		msg("dev.b", "1", ackSubject(2, 6, 4), ""),
		"+OK\r\nINFO {\"server_id\":\"x\"}\r\n",
		hmsg("_INBOX.t.1", "1", "", "NATS/1.0 408 Request Timeout\r\nNats-Pending-Messages: 8", ""),
	)
	srv.expect(t, "PONG")
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if len(r.msgs) != 2 {
		t.Fatalf("%d messages, want 2", len(r.msgs))
	}
	m := r.msgs[0]
	if string(m.Data()) != "hello" || m.Subject() != "dev.a" || m.Reply() != ackSubject(1, 5, 3) {
		t.Errorf("first message: %q on %q reply %q", m.Data(), m.Subject(), m.Reply())
	}
	if h := m.Headers(); h.Get("Nats-Msg-Id") != "id-5" || h.Get("X-Two") != "2" {
		t.Errorf("headers %v", h)
	}
	if d, err := DeliveryOf(m); err != nil || d.StreamSeq != 5 || d.Delivered != 1 {
		t.Errorf("DeliveryOf: %+v %v", d, err)
	}
	if cs, _ := consumerSequence(r.msgs[1]); cs != 4 {
		t.Errorf("consumer sequence %d, want 4", cs)
	}
	if md, err := m.Metadata(); err != nil || md.Sequence.Stream != 5 || md.Stream != "s" {
		t.Errorf("Metadata: %+v %v", md, err)
	}
	if len(r.msgs[1].Data()) != 0 || r.msgs[1].Headers() != nil {
		t.Errorf("second message: %q %v", r.msgs[1].Data(), r.msgs[1].Headers())
	}
	// A processor that appends to a body does not write into the next message.
	_ = append(m.Data(), "XXXXXXXX"...)
	if r.msgs[1].Subject() != "dev.b" {
		t.Errorf("second message's subject %q after an append to the first's body", r.msgs[1].Subject())
	}
	if c.conn == nil {
		t.Fatal("the connection was closed after a request that ended normally")
	}

	// The next request, for 1 message: it ends when that one came (no status needed).
	go func() {
		msgs, err := c.pull(p, nil, "next", []byte("{}"), 1, 0, time.Minute)
		done <- result{msgs, err}
	}()
	srv.expect(t, "UNSUB 1")
	srv.expect(t, "SUB _INBOX.t.2 2")
	srv.expect(t, "PUB next _INBOX.t.2 2")
	srv.expect(t, "{}")
	srv.send(t, msg("dev.c", "2", ackSubject(1, 7, 5), "x"))
	if r := <-done; r.err != nil || len(r.msgs) != 1 || string(r.msgs[0].Data()) != "x" {
		t.Fatalf("second request: %d messages, %v", len(r.msgs), r.err)
	}
}

// A request's messages across buffers: more bytes than the first buffer (1 MiB at most) and
// more messages than the last request's average foresaw.
func TestPullConnManyMessagesAcrossBuffers(t *testing.T) {
	c, srv := newTestPullConn(t)
	c.hint = 10 // the last request's messages were small
	const n = 3000
	body := strings.Repeat("b", 700)
	done := make(chan error, 1)
	var msgs []jetstream.Msg
	go func() {
		var err error
		msgs, err = c.pull(&puller{}, nil, "next", []byte("{}"), n, 0, time.Minute)
		done <- err
	}()
	var frames strings.Builder
	for i := range n {
		frames.WriteString(msg("dev", "1", ackSubject(1, i+1, i+1), fmt.Sprintf("%05d%s", i, body)))
	}
	srv.send(t, frames.String())
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(msgs) != n {
		t.Fatalf("%d messages, want %d", len(msgs), n)
	}
	for i, m := range msgs {
		if want := fmt.Sprintf("%05d%s", i, body); string(m.Data()) != want {
			t.Fatalf("message %d: body %.10q…, want %.10q…", i, m.Data(), want)
		}
		if s, _ := StreamSequence(m); s != uint64(i+1) {
			t.Fatalf("message %d: stream sequence %d", i, s)
		}
	}
	if c.hint < 700 {
		t.Errorf("hint %d after messages of ~760 bytes", c.hint)
	}
}

// How a request ends: the byte bound, a status that means a failure, a -ERR, the deadline.
func TestPullConnRequestEndings(t *testing.T) {
	for _, tc := range []struct {
		name      string
		maxBytes  int
		expiry    time.Duration
		frames    []string
		msgs      int
		err       error  // errors.Is
		text      string // in the error
		keepsConn bool
	}{
		{name: "byte bound", maxBytes: 100, expiry: time.Minute,
			frames: []string{msg("dev", "1", ackSubject(1, 1, 1), strings.Repeat("a", 30)), msg("dev", "1", ackSubject(1, 2, 2), strings.Repeat("a", 30))},
			msgs:   2, err: errByteBound, keepsConn: true},
		{name: "consumer deleted", expiry: time.Minute,
			frames: []string{hmsg("_INBOX.t.1", "1", "", "NATS/1.0 409 Consumer Deleted", "")},
			err:    jetstream.ErrConsumerDeleted, keepsConn: true},
		{name: "no responders", expiry: time.Minute,
			frames: []string{hmsg("_INBOX.t.1", "1", "", "NATS/1.0 503", "")},
			err:    nats.ErrNoResponders, keepsConn: true},
		{name: "-ERR", expiry: time.Minute,
			frames: []string{"-ERR 'Permissions Violation for Publish to \"next\"'\r\n"},
			err:    nats.ErrPermissionViolation, text: `Publish to "next"`},
		{name: "deadline", expiry: 10 * time.Millisecond, // a message and no status
			frames: []string{msg("dev", "1", ackSubject(1, 1, 1), "a")}, msgs: 1},
		{name: "a protocol error", expiry: time.Minute,
			frames: []string{"MSG dev 1 x12\r\n"}, text: `"MSG dev 1 x12"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, srv := newTestPullConn(t)
			done := pullAsync(c, 10, tc.maxBytes, tc.expiry)
			srv.send(t, tc.frames...)
			r := <-done
			if len(r.msgs) != tc.msgs {
				t.Errorf("%d messages, want %d", len(r.msgs), tc.msgs)
			}
			switch {
			case tc.err == nil && tc.text == "" && r.err != nil:
				t.Errorf("error %v, want none", r.err)
			case tc.err != nil && !errors.Is(r.err, tc.err):
				t.Errorf("error %v, want %v", r.err, tc.err)
			case tc.text != "" && (r.err == nil || !strings.Contains(r.err.Error(), tc.text)):
				t.Errorf("error %v, want one that says %s", r.err, tc.text)
			}
			if kept := c.conn != nil; kept != tc.keepsConn {
				t.Errorf("connection kept: %v, want %v", kept, tc.keepsConn)
			}
		})
	}
}

// A connection the server closed while it was quiet fails at once: the request is sent again
// on a new connection (here the dial fails, as the nats.Conn is not connected: that error is
// what the request returns).
func TestPullConnQuietConnectionClosedIsDialledAgain(t *testing.T) {
	c, srv := newTestPullConn(t)
	nc := &nats.Conn{}
	c.nc = nc
	c.used = time.Now().Add(-2 * pullStale)
	srv.send(t, "-ERR 'Stale Connection'\r\n")
	_, err := c.pull(&puller{}, nil, "next", []byte("{}"), 10, 0, time.Minute)
	if !errors.Is(err, nats.ErrConnectionClosed) && !errors.Is(err, nats.ErrConnectionReconnecting) {
		t.Fatalf("%v, want the dial's error", err)
	}
}

func TestMsgFields(t *testing.T) {
	for _, tc := range []struct {
		line                string
		subject, sid, reply string
		hdr, total          int
		err                 bool
	}{
		{line: "MSG a.b 1 5", subject: "a.b", sid: "1", total: 5},
		{line: "MSG a.b 12 $JS.ACK.x 0", subject: "a.b", sid: "12", reply: "$JS.ACK.x"},
		{line: "HMSG a 1 r 10 15", subject: "a", sid: "1", reply: "r", hdr: 10, total: 15},
		{line: "HMSG a 1 10 10", subject: "a", sid: "1", hdr: 10, total: 10},
		{line: "MSG  a\t1   3", subject: "a", sid: "1", total: 3},
		{line: "HMSG a 1 r 16 15", err: true},
		{line: "MSG a 1 -1", err: true},
		{line: "MSG a", err: true},
		{line: "MSG a 1 r x y 3", err: true},
		{line: "MSG a 1 999999999", err: true},
	} {
		f, err := msgFields([]byte(tc.line))
		if tc.err {
			if err == nil {
				t.Errorf("%q: no error", tc.line)
			}
			continue
		}
		if err != nil || string(f.subject) != tc.subject || string(f.sid) != tc.sid || string(f.reply) != tc.reply || f.hdr != tc.hdr || f.total != tc.total {
			t.Errorf("%q: %+v %v", tc.line, f, err)
		}
	}
}

func TestStatusLineAndServerError(t *testing.T) {
	if c, d := statusLine([]byte("NATS/1.0 409 Consumer Deleted\r\nX: y\r\n\r\n")); c != "409" || d != "Consumer Deleted" {
		t.Errorf("statusLine: %q %q", c, d)
	}
	if c, d := statusLine([]byte("NATS/1.0 503\r\n\r\n")); c != "503" || d != "" {
		t.Errorf("statusLine: %q %q", c, d)
	}
	for line, want := range map[string]error{ // nats-server's own texts
		"-ERR 'Authorization Violation'":                     nats.ErrAuthorization,
		"-ERR 'Stale Connection'":                            nats.ErrStaleConnection,
		"-ERR 'maximum connections exceeded'":                nats.ErrMaxConnectionsExceeded,
		"-ERR 'maximum account active connections exceeded'": nats.ErrMaxAccountConnectionsExceeded,
		"-ERR 'User Authentication Expired'":                 nats.ErrAuthExpired,
		"-ERR 'Account Authentication Expired'":              nats.ErrAccountAuthExpired,
		"-ERR 'Permissions Violation for Subscription to x'": nats.ErrPermissionViolation,
		"-ERR 'Unknown Protocol Operation'":                  nil,
	} {
		err := serverError([]byte(line))
		if want == nil && errors.Unwrap(err) != nil {
			t.Errorf("%s: %v wraps an error nats.go does not name", line, err)
		}
		if want != nil && !errors.Is(err, want) {
			t.Errorf("%s: %v, want %v", line, err, want)
		}
		if !strings.Contains(err.Error(), strings.Trim(strings.TrimPrefix(line, "-ERR "), "'")) {
			t.Errorf("%s: %v does not quote the server", line, err)
		}
	}
}

// The CONNECT carries the nats.Conn's credentials as nats.go sends them: those of the URL
// first, then the options'; an NKey or a JWT signs the server's nonce.
func TestConnectJSON(t *testing.T) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	info := serverInfo{Nonce: "nonce-1", Headers: true}
	u := func(s string) *url.URL {
		v, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, tc := range []struct {
		name string
		o    nats.Options
		url  string
		want map[string]any
	}{
		{"url user", nats.Options{User: "ignored"}, "nats://u:p@h:4222", map[string]any{"user": "u", "pass": "p"}},
		{"url token", nats.Options{}, "nats://tok@h:4222", map[string]any{"auth_token": "tok"}},
		{"options", nats.Options{User: "u", Password: "p", Name: "svc"}, "nats://h:4222", map[string]any{"user": "u", "pass": "p", "name": "svc (pulls)"}},
		{"user info callback", nats.Options{UserInfo: func() (string, string) { return "cu", "cp" }}, "nats://h:4222", map[string]any{"user": "cu", "pass": "cp"}},
		{"token", nats.Options{Token: "t"}, "nats://h:4222", map[string]any{"auth_token": "t"}},
		{"token handler", nats.Options{TokenHandler: func() string { return "th" }}, "nats://h:4222", map[string]any{"auth_token": "th"}},
		{"nkey", nats.Options{Nkey: pub, SignatureCB: kp.Sign}, "nats://h:4222", map[string]any{"nkey": pub}},
		{"jwt", nats.Options{UserJWT: func() (string, error) { return "the.jwt", nil }, SignatureCB: kp.Sign}, "nats://h:4222", map[string]any{"jwt": "the.jwt"}},
		{"no echo", nats.Options{NoEcho: true}, "nats://h:4222", map[string]any{"echo": false, "headers": true, "no_responders": true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := connectJSON(&tc.o, u(tc.url), info, false)
			if err != nil {
				t.Fatal(err)
			}
			var got map[string]any
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			for k, v := range tc.want {
				if got[k] != v {
					t.Errorf("%s = %v, want %v (%s)", k, got[k], v, b)
				}
			}
			if sig, ok := got["sig"].(string); ok {
				raw, err := base64.RawURLEncoding.DecodeString(sig)
				if err != nil || kp.Verify([]byte(info.Nonce), raw) != nil {
					t.Errorf("sig %q does not sign the nonce", sig)
				}
			} else if tc.o.SignatureCB != nil {
				t.Errorf("no sig in %s", b)
			}
		})
	}
	if _, err := connectJSON(&nats.Options{Nkey: pub, SignatureCB: kp.Sign}, u("nats://h:1"), serverInfo{Headers: true}, false); !errors.Is(err, nats.ErrNkeysNotSupported) {
		t.Errorf("nkey without a nonce: %v", err)
	}
}

// memConn is a net.Conn that reads frames from memory and discards what is written.
type memConn struct {
	net.Conn
	r *strings.Reader
}

func (c *memConn) Read(b []byte) (int, error)       { return c.r.Read(b) }
func (c *memConn) Write(b []byte) (int, error)      { return len(b), nil }
func (c *memConn) SetReadDeadline(time.Time) error  { return nil }
func (c *memConn) SetWriteDeadline(time.Time) error { return nil }
func (c *memConn) Close() error                     { return nil }

// requestFrames is what the server sends for request number sid: n messages of 600 bytes
// with a Nats-Msg-Id header, as ponixnats' producer publishes them.
func requestFrames(sid, n int) string {
	var b strings.Builder
	body := strings.Repeat("e", 600)
	for i := range n {
		b.WriteString(hmsg("processed_envelopes.dev-1", fmt.Sprint(sid), ackSubject(1, i+1, i+1), fmt.Sprintf("Nats-Msg-Id: %016d", i), body))
	}
	return b.String()
}

// Reading a request's messages allocates per request, not per message: the messages, a few
// buffers for their bytes, and the protocol's own.
func TestPullConnAllocatesPerRequestNotPerMessage(t *testing.T) {
	const n = 1000
	frames := requestFrames(1, n)
	c := &pullConn{hint: 1024, inbox: "_INBOX.t"}
	p := &puller{}
	buf := make([]jetstream.Msg, 0, n)
	allocs := testing.AllocsPerRun(20, func() {
		c.sid, c.subbed = 0, false
		c.conn = &memConn{r: strings.NewReader(frames)}
		c.r = bufio.NewReaderSize(c.conn, pullReadBuffer)
		c.w = bufio.NewWriter(c.conn)
		msgs, err := c.pull(p, buf[:0], "next", []byte("{}"), n, 0, time.Minute)
		if err != nil || len(msgs) != n {
			t.Fatalf("%d messages, %v", len(msgs), err)
		}
	})
	// The reader, the writer and memConn of each run (3 + their buffers), the messages and
	// two or three buffers of bytes.
	if allocs > 12 {
		t.Errorf("%.0f allocations for a request of %d messages, want at most 12", allocs, n)
	}
}

// BenchmarkPullConnRead reads requests of 10,000 messages of ~680 bytes (ns/op per message).
func BenchmarkPullConnRead(b *testing.B) {
	const n = 10000
	frames := requestFrames(1, n)
	c := &pullConn{hint: 1024, inbox: "_INBOX.t"}
	p := &puller{}
	buf := make([]jetstream.Msg, 0, n)
	c.r, c.w = bufio.NewReaderSize(nil, pullReadBuffer), bufio.NewWriter(io.Discard)
	b.SetBytes(int64(len(frames) / n))
	b.ReportAllocs()
	for i := 0; i < b.N; i += n {
		c.sid, c.subbed = 0, false
		c.conn = &memConn{r: strings.NewReader(frames)}
		c.r.Reset(c.conn)
		if _, err := c.pull(p, buf[:0], "next", []byte("{}"), n, 0, time.Minute); err != nil {
			b.Fatal(err)
		}
	}
}

// The certificate of a server the nats.Conn discovered by IP is checked against the name of a
// URL it was given, as nats.go does; a server given by name or by IP is checked as given.
func TestTLSServerName(t *testing.T) {
	for _, tc := range []struct {
		o         nats.Options
		connected string
		want      string
	}{
		{nats.Options{Url: "tls://nats.example:4222"}, "tls://nats.example:4222", "nats.example"},
		{nats.Options{Url: "tls://nats.example:4222"}, "tls://10.0.0.7:4222", "nats.example"},
		{nats.Options{Servers: []string{"tls://10.0.0.7:4222", "tls://b.example:4222"}}, "tls://10.0.0.7:4222", "10.0.0.7"},
		{nats.Options{Url: "tls://10.0.0.1:4222,tls://a.example:4222"}, "tls://10.0.0.9:4222", "a.example"},
		{nats.Options{Url: "tls://10.0.0.1:4222"}, "tls://10.0.0.9:4222", "10.0.0.9"},
	} {
		u, err := url.Parse(tc.connected)
		if err != nil {
			t.Fatal(err)
		}
		if got := tlsServerName(&tc.o, u); got != tc.want {
			t.Errorf("%+v connected to %s: %q, want %q", tc.o.Servers, tc.connected, got, tc.want)
		}
	}
}

// stallConn is a connection whose reads stall, once armed, until past the read deadline set
// last — as a process paused (or starved) after it sent a request does.
type stallConn struct {
	net.Conn
	mu       sync.Mutex
	armed    bool
	deadline time.Time
}

func (c *stallConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.deadline = t
	c.mu.Unlock()
	return c.Conn.SetReadDeadline(t)
}

func (c *stallConn) Read(b []byte) (int, error) {
	c.mu.Lock()
	stall, until := c.armed, c.deadline
	c.armed = false
	c.mu.Unlock()
	if stall {
		time.Sleep(time.Until(until) + 50*time.Millisecond)
	}
	return c.Conn.Read(b)
}

// A process stalled past its request's deadline finds, when it goes on, the deadline passed
// and what the server sent meanwhile unread: it reads it on (the messages the durable counts
// as delivered, and the status that ends the request) instead of closing the connection and
// losing them.
func TestPullConnStalledPastTheDeadlineKeepsWhatCame(t *testing.T) {
	c, srv := newTestPullConn(t)
	sc := &stallConn{Conn: c.conn, armed: true}
	c.conn = sc
	c.r = bufio.NewReaderSize(sc, pullReadBuffer)
	done := pullAsync(c, 10, 0, 10*time.Millisecond)
	srv.expect(t, "SUB _INBOX.t.1 1")
	srv.expect(t, "PUB next _INBOX.t.1 2")
	srv.expect(t, "{}")
	srv.send(t, msg("dev", "1", ackSubject(1, 1, 1), "a"), msg("dev", "1", ackSubject(1, 2, 2), "b"),
		hmsg("_INBOX.t.1", "1", "", "NATS/1.0 408 Request Timeout", ""))
	r := <-done
	if r.err != nil || len(r.msgs) != 2 {
		t.Fatalf("%d messages, error %v; want the 2 that came while the process was stalled", len(r.msgs), r.err)
	}
	if c.conn == nil {
		t.Error("the connection was closed: the request ended with the server's status")
	}
}
