//go:build integration

package integration

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/ponix-go/ponix/ponixnats"
	"github.com/ponix-go/ponix/ponixnats/natstest"
)

// The consumer's pull connection (ponixnats' pullConn) against real servers, in every way a
// deployment connects. What the server shows of it comes from its monitoring, read in-process
// with (*server.Server).Connz: embedded.Server.NATSServer for natstest servers, the server
// itself for those started here with options embedded.Config does not offer (TLS handshake
// first, user permissions, operator mode with JWTs, websocket).

// pullsSuffix is what the pull connection's name adds to the nats.Conn's.
const pullsSuffix = " (pulls)"

// pullTarget is a server to drain a stream from and how the consumer connects to it.
type pullTarget struct {
	url  string
	srv  *server.Server
	opts []ponixnats.ConnectOption // of the consumer's nats.Conn
	// pubOpts are those of the connection that creates the stream and publishes to it (nil:
	// opts); it is named after the test with " publisher".
	pubOpts []ponixnats.ConnectOption
	want    pullWant
	// after, if set, checks more once the stream was drained.
	after func(t *testing.T)
}

// pullWant is what the server must show of the pull connection (zero values: not checked),
// besides what it must share with the consumer's nats.Conn (see checkPullConn).
type pullWant struct {
	user, account string // Connz AuthorizedUser and Account
	tls, tlsFirst bool
	peerCert      string // the subject of the client certificate it presented
	inbox         string // every subscription of it starts with inbox + "."; default "_INBOX"
}

// startNATS starts a nats-server with JetStream on a free loopback port with options o (for
// what embedded.Config does not offer), stopped when the test ends.
func startNATS(t *testing.T, o *server.Options) *server.Server {
	t.Helper()
	o.Host, o.Port = "127.0.0.1", server.RANDOM_PORT
	o.JetStream, o.StoreDir = true, t.TempDir()
	o.NoLog, o.NoSigs = true, true
	s, err := server.NewServer(o)
	if err != nil {
		t.Fatalf("nats-server: %v", err)
	}
	s.Start()
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	if !s.ReadyForConnections(time.Minute) {
		t.Fatal("nats-server not ready within a minute")
	}
	return s
}

// natstestTarget starts a natstest server with opts.
func natstestTarget(t *testing.T, opts ...natstest.Option) pullTarget {
	s := natstest.New(t, opts...)
	return pullTarget{url: s.URL(), srv: s.NATSServer()}
}

// withUserInfo puts user and password in a URL's user information.
func withUserInfo(raw string, u *url.Userinfo) string {
	p, err := url.Parse(raw)
	if err != nil {
		panic(err)
	}
	p.User = u
	return p.String()
}

// countingDialer is a nats.CustomDialer that counts its dials.
type countingDialer struct {
	n atomic.Int64
	d net.Dialer
}

func (c *countingDialer) Dial(network, address string) (net.Conn, error) {
	c.n.Add(1)
	return c.d.Dial(network, address)
}

// operatorTarget starts a server in operator mode (a memory account resolver holding an
// account with JetStream and the system account) and writes a creds file of a user of that
// account.
func operatorTarget(t *testing.T) pullTarget {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	okp, err := nkeys.CreateOperator()
	must(err)
	opub, err := okp.PublicKey()
	must(err)
	account := func(name string, js bool) (nkeys.KeyPair, string, string) {
		kp, err := nkeys.CreateAccount()
		must(err)
		pub, err := kp.PublicKey()
		must(err)
		ac := jwt.NewAccountClaims(pub)
		ac.Name = name
		if js {
			ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: jwt.NoLimit, DiskStorage: jwt.NoLimit, Streams: jwt.NoLimit, Consumer: jwt.NoLimit}
		}
		tok, err := ac.Encode(okp)
		must(err)
		return kp, pub, tok
	}
	_, sysPub, sysJWT := account("SYS", false)
	akp, accPub, accJWT := account("APP", true)
	oc := jwt.NewOperatorClaims(opub)
	oc.Name = "ponix-test"
	oc.SystemAccount = sysPub
	ojwt, err := oc.Encode(okp)
	must(err)
	oc, err = jwt.DecodeOperatorClaims(ojwt)
	must(err)
	resolver := &server.MemAccResolver{}
	must(resolver.Store(sysPub, sysJWT))
	must(resolver.Store(accPub, accJWT))
	s := startNATS(t, &server.Options{TrustedOperators: []*jwt.OperatorClaims{oc}, AccountResolver: resolver, SystemAccount: sysPub})

	ukp, err := nkeys.CreateUser()
	must(err)
	upub, err := ukp.PublicKey()
	must(err)
	uc := jwt.NewUserClaims(upub)
	uc.Name = "consumer"
	ujwt, err := uc.Encode(akp)
	must(err)
	seed, err := ukp.Seed()
	must(err)
	creds, err := jwt.FormatUserConfig(ujwt, seed)
	must(err)
	file := filepath.Join(t.TempDir(), "user.creds")
	must(os.WriteFile(file, creds, 0o600))
	return pullTarget{url: s.ClientURL(), srv: s, opts: []ponixnats.ConnectOption{ponixnats.WithCredsFile(file)},
		want: pullWant{user: upub, account: accPub}}
}

// pullTargets are the ways of connecting the pull connection must reproduce.
func pullTargets() []struct {
	name  string
	setup func(t *testing.T) pullTarget
} {
	return []struct {
		name  string
		setup func(t *testing.T) pullTarget
	}{
		{"plain", func(t *testing.T) pullTarget { return natstestTarget(t) }},
		{"TLS", func(t *testing.T) pullTarget {
			certs, cfg := testCerts(t, false)
			tg := natstestTarget(t, natstest.WithTLS(cfg))
			tg.opts = []ponixnats.ConnectOption{ponixnats.WithTLS(certs.CAFile, "", "")}
			tg.want = pullWant{tls: true}
			return tg
		}},
		{"TLS with a nats URL", func(t *testing.T) pullTarget {
			certs, cfg := testCerts(t, false)
			tg := natstestTarget(t, natstest.WithTLS(cfg))
			tg.url = strings.Replace(tg.url, "tls://", "nats://", 1)
			tg.opts = []ponixnats.ConnectOption{ponixnats.WithTLS(certs.CAFile, "", "")}
			tg.want = pullWant{tls: true}
			return tg
		}},
		{"TLS handshake first", func(t *testing.T) pullTarget {
			certs, cfg := testCerts(t, false)
			// embedded.Config has no handshake_first: a server of our own.
			s := startNATS(t, &server.Options{TLS: true, TLSConfig: cfg, TLSTimeout: 2, TLSHandshakeFirst: true})
			return pullTarget{url: s.ClientURL(), srv: s,
				opts: []ponixnats.ConnectOption{ponixnats.WithTLS(certs.CAFile, "", ""), ponixnats.WithNATSOptions(nats.TLSHandshakeFirst())},
				want: pullWant{tls: true, tlsFirst: true}}
		}},
		{"mutual TLS", func(t *testing.T) pullTarget {
			certs, cfg := testCerts(t, true)
			tg := natstestTarget(t, natstest.WithTLS(cfg))
			tg.opts = []ponixnats.ConnectOption{ponixnats.WithTLS(certs.CAFile, certs.ClientCertFile, certs.ClientKeyFile)}
			tg.want = pullWant{tls: true, peerCert: "CN=ponix test client"}
			return tg
		}},
		{"user and password", func(t *testing.T) pullTarget {
			tg := natstestTarget(t, natstest.WithUserPassword("ponix", "s3cret"), natstest.WithUserPassword("other", "0ther"))
			tg.opts = []ponixnats.ConnectOption{ponixnats.WithUserPassword("ponix", "s3cret")}
			tg.want = pullWant{user: "ponix"}
			return tg
		}},
		{"user and password callback", func(t *testing.T) pullTarget {
			tg := natstestTarget(t, natstest.WithUserPassword("ponix", "s3cret"), natstest.WithUserPassword("other", "0ther"))
			tg.opts = []ponixnats.ConnectOption{ponixnats.WithNATSOptions(nats.UserInfoHandler(func() (string, string) { return "ponix", "s3cret" }))}
			tg.want = pullWant{user: "ponix"}
			return tg
		}},
		{"user and password in the URL", func(t *testing.T) pullTarget {
			tg := natstestTarget(t, natstest.WithUserPassword("ponix", "s3cret"), natstest.WithUserPassword("other", "0ther"))
			tg.url = withUserInfo(tg.url, url.UserPassword("ponix", "s3cret"))
			tg.want = pullWant{user: "ponix"}
			return tg
		}},
		{"token", func(t *testing.T) pullTarget {
			tg := natstestTarget(t, natstest.WithToken("t0ken"))
			tg.opts = []ponixnats.ConnectOption{ponixnats.WithToken("t0ken")}
			tg.want = pullWant{user: "[REDACTED]"} // what Connz shows of a token
			return tg
		}},
		{"token handler", func(t *testing.T) pullTarget {
			tg := natstestTarget(t, natstest.WithToken("t0ken"))
			tg.opts = []ponixnats.ConnectOption{ponixnats.WithNATSOptions(nats.TokenHandler(func() string { return "t0ken" }))}
			tg.want = pullWant{user: "[REDACTED]"}
			return tg
		}},
		{"token in the URL", func(t *testing.T) pullTarget {
			tg := natstestTarget(t, natstest.WithToken("t0ken"))
			tg.url = withUserInfo(tg.url, url.User("t0ken"))
			tg.want = pullWant{user: "[REDACTED]"}
			return tg
		}},
		{"NKey", func(t *testing.T) pullTarget {
			kp, err := nkeys.CreateUser()
			if err != nil {
				t.Fatal(err)
			}
			pub, _ := kp.PublicKey()
			seed, _ := kp.Seed()
			tg := natstestTarget(t, natstest.WithNKey(pub), natstest.WithUserPassword("other", "0ther"))
			tg.opts = []ponixnats.ConnectOption{ponixnats.WithNKeySeed(string(seed))}
			tg.want = pullWant{user: pub}
			return tg
		}},
		{"JWT creds file", operatorTarget},
		{"custom inbox prefix", func(t *testing.T) pullTarget {
			// A user that may subscribe to nothing but _PRIV.>: a subscription to an _INBOX
			// reply subject is refused. embedded.Config has no permissions: a server of our own.
			s := startNATS(t, &server.Options{Users: []*server.User{{Username: "priv", Password: "s3cret",
				Permissions: &server.Permissions{
					Publish:   &server.SubjectPermission{Allow: []string{">"}},
					Subscribe: &server.SubjectPermission{Allow: []string{"_PRIV.>"}},
				}}}})
			return pullTarget{url: s.ClientURL(), srv: s,
				opts: []ponixnats.ConnectOption{ponixnats.WithUserPassword("priv", "s3cret"), ponixnats.WithNATSOptions(nats.CustomInboxPrefix("_PRIV"))},
				want: pullWant{user: "priv", inbox: "_PRIV"}}
		}},
		{"custom dialer", func(t *testing.T) pullTarget {
			tg := natstestTarget(t)
			d := &countingDialer{}
			tg.opts = []ponixnats.ConnectOption{ponixnats.WithNATSOptions(nats.SetCustomDialer(d))}
			tg.pubOpts = []ponixnats.ConnectOption{}
			tg.after = func(t *testing.T) {
				// Each ack mode's consumer: its nats.Conn and its pull connection.
				if n, want := d.n.Load(), int64(2*len(ackModes)); n != want {
					t.Errorf("the custom dialer dialled %d times; want %d (a nats.Conn and its pull connection per consumer)", n, want)
				}
			}
			return tg
		}},
		{"in-process", func(t *testing.T) pullTarget {
			// A server that does not listen at all (embedded.Config cannot say so: a server of
			// our own), and a URL where nothing listens either: only in-process connections work.
			s := startNATS(t, &server.Options{DontListen: true})
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			nowhere := "nats://" + l.Addr().String()
			_ = l.Close()
			return pullTarget{url: nowhere, srv: s, opts: []ponixnats.ConnectOption{ponixnats.WithNATSOptions(nats.InProcessServer(s))}}
		}},
	}
}

// testCerts makes a CA, a server and a client certificate, and the server's TLS settings
// (requiring a verified client certificate or not).
func testCerts(t *testing.T, requireClientCert bool) (natstest.Certs, *tls.Config) {
	t.Helper()
	certs := natstest.MustCerts(t)
	cfg, err := certs.ServerTLS(requireClientCert)
	if err != nil {
		t.Fatal(err)
	}
	return certs, cfg
}

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// connz returns the server's client connections with their users and subscriptions.
func connz(t *testing.T, s *server.Server) []*server.ConnInfo {
	t.Helper()
	cz, err := s.Connz(&server.ConnzOptions{Username: true, Subscriptions: true, Limit: 1 << 12})
	if err != nil {
		t.Fatalf("Connz: %v", err)
	}
	return cz.Conns
}

// named returns the connections named name.
func named(conns []*server.ConnInfo, name string) []*server.ConnInfo {
	var out []*server.ConnInfo
	for _, c := range conns {
		if c.Name == name {
			out = append(out, c)
		}
	}
	return out
}

// describeConns lists connections for a failure message.
func describeConns(conns []*server.ConnInfo) string {
	var b strings.Builder
	for _, c := range conns {
		fmt.Fprintf(&b, "\n  cid %d %q user %q account %q tls %q first %v in %d out %d subs %v", c.Cid, c.Name, c.AuthorizedUser, c.Account, c.TLSVersion, c.TLSFirst, c.InMsgs, c.OutMsgs, c.Subs)
	}
	return b.String()
}

// publishAsyncN publishes payloads "0".."n-1" to subject and waits until the stream has them.
func publishAsyncN(t *testing.T, js jetstream.JetStream, stream, subject string, n int) {
	t.Helper()
	for i := range n {
		if _, err := js.PublishAsync(subject, []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
		if (i+1)%1000 == 0 || i == n-1 { // within nats.go's bound on pending publishes
			select {
			case <-js.PublishAsyncComplete():
			case <-time.After(30 * time.Second):
				t.Fatalf("%d asynchronous publishes still pending after 30 s", js.PublishAsyncPending())
			}
		}
	}
	st, err := js.Stream(context.Background(), stream)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.CachedInfo().State.Msgs; got != uint64(n) {
		t.Fatalf("the stream holds %d messages after publishing %d", got, n)
	}
}

// pullDrain is a consumer draining a stream of n messages: what it processed, and where.
type pullDrain struct {
	n    int
	srv  *server.Server
	name string // the consumer's nats.Conn's
	js   jetstream.JetStream
	c    *ponixnats.Consumer
	d    *deliveries
	stop func()
}

// startDrain publishes n messages to a new stream on tg and starts a consumer with ack mode
// ack (and cfg edited by edit) that processes them with proc (nil: record and ack all).
func startDrain(t *testing.T, tg pullTarget, n int, ack ponixnats.AckMode, edit func(*ponixnats.ConsumerConfig), proc func(*deliveries) ponixnats.Processor) *pullDrain {
	t.Helper()
	pubOpts := tg.pubOpts
	if pubOpts == nil {
		pubOpts = tg.opts
	}
	_, pub := connectJS(t, tg.url, append(append([]ponixnats.ConnectOption(nil), pubOpts...), ponixnats.WithName(t.Name()+" publisher"))...)
	stream := testStream(t, pub)
	publishAsyncN(t, pub, stream, stream+".a", n)

	_, js := connectJS(t, tg.url, tg.opts...)
	logs := &syncBuffer{}
	cfg := baseConfig(stream)
	cfg.Ack = ack
	cfg.BatchSize = 100
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if edit != nil {
		edit(&cfg)
	}
	d := &deliveries{}
	if proc == nil {
		proc = ackAll
	}
	c, err := ponixnats.NewConsumer(context.Background(), js, cfg, proc(d))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("consumer stats %+v, health %+v, %d distinct of %d processed; its warnings:\n%s", c.Stats(), c.Health(), d.distinct(), n, logs)
			if s := tg.srv; s != nil && s.Running() {
				t.Logf("connections:%s", describeConns(connz(t, s)))
			}
		}
	})
	return &pullDrain{n: n, srv: tg.srv, name: t.Name(), js: js, c: c, d: d, stop: runConsumer(t, c)}
}

// waitDrained waits until every message was processed and the consumer's state on the server
// is fully acknowledged.
func (p *pullDrain) waitDrained(t *testing.T) {
	t.Helper()
	eventually(t, 30*time.Second, fmt.Sprintf("all %d messages processed", p.n), func() bool { return p.d.distinct() == p.n })
	waitSettled(t, p.js, p.c)
	info := consumerInfo(t, p.c)
	if info.NumAckPending != 0 || info.NumPending != 0 || info.AckFloor.Stream != uint64(p.n) {
		t.Fatalf("consumer state: ack pending %d, pending %d, ack floor %d; want 0, 0, %d", info.NumAckPending, info.NumPending, info.AckFloor.Stream, p.n)
	}
	for i := range p.n {
		if p.d.get(strconv.Itoa(i)) == 0 {
			t.Fatalf("message %d never processed", i)
		}
	}
	if p.d.distinct() != p.n {
		t.Fatalf("%d distinct payloads processed; want %d", p.d.distinct(), p.n)
	}
}

// conns returns the consumer's nats.Conn and its pull connections as the server shows them.
func (p *pullDrain) conns(t *testing.T) (shared, pulls []*server.ConnInfo, all []*server.ConnInfo) {
	all = connz(t, p.srv)
	return named(all, p.name), named(all, p.name+pullsSuffix), all
}

// pullConn waits for the server to show exactly one connection named after the consumer's
// nats.Conn with " (pulls)", and one named as the nats.Conn, and returns them.
func (p *pullDrain) pullConn(t *testing.T) (shared, pulls *server.ConnInfo) {
	t.Helper()
	// On a failure, startDrain's cleanup lists the connections.
	eventually(t, 10*time.Second, fmt.Sprintf("one connection %q and one %q", p.name, p.name+pullsSuffix), func() bool {
		s, pc, _ := p.conns(t)
		if len(s) != 1 || len(pc) != 1 {
			return false
		}
		shared, pulls = s[0], pc[0]
		return true
	})
	return shared, pulls
}

// checkPullConn checks that pulls, the pull connection, brought the n messages and connected
// as shared, the consumer's nats.Conn, did, and as want says.
func checkPullConn(t *testing.T, n int, shared, pulls *server.ConnInfo, want pullWant) {
	t.Helper()
	if pulls.OutMsgs < int64(n) {
		t.Errorf("the server sent %d messages on the pull connection; want at least the %d of the stream", pulls.OutMsgs, n)
	}
	if shared.OutMsgs >= int64(n/2) {
		t.Errorf("the server sent %d messages on the consumer's nats.Conn; the %d of the stream should have gone on the pull connection", shared.OutMsgs, n)
	}
	if pulls.AuthorizedUser != shared.AuthorizedUser || pulls.Account != shared.Account {
		t.Errorf("pull connection: user %q account %q; the nats.Conn: user %q account %q", pulls.AuthorizedUser, pulls.Account, shared.AuthorizedUser, shared.Account)
	}
	if (pulls.TLSVersion != "") != (shared.TLSVersion != "") || pulls.TLSFirst != shared.TLSFirst {
		t.Errorf("pull connection: TLS %q (first %v); the nats.Conn: TLS %q (first %v)", pulls.TLSVersion, pulls.TLSFirst, shared.TLSVersion, shared.TLSFirst)
	}
	if certSubjects(pulls) != certSubjects(shared) {
		t.Errorf("pull connection presented certificates %q; the nats.Conn %q", certSubjects(pulls), certSubjects(shared))
	}
	if pulls.Lang != shared.Lang || pulls.Version != shared.Version {
		t.Errorf("pull connection: lang %q version %q; the nats.Conn: %q %q", pulls.Lang, pulls.Version, shared.Lang, shared.Version)
	}
	if want.user != "" && pulls.AuthorizedUser != want.user {
		t.Errorf("pull connection authorized as %q; want %q", pulls.AuthorizedUser, want.user)
	}
	if want.account != "" && pulls.Account != want.account {
		t.Errorf("pull connection in account %q; want %q", pulls.Account, want.account)
	}
	if want.tls && pulls.TLSVersion == "" {
		t.Error("pull connection is not TLS")
	}
	if !want.tls && pulls.TLSVersion != "" {
		t.Errorf("pull connection is TLS (%s) on a plain server", pulls.TLSVersion)
	}
	if pulls.TLSFirst != want.tlsFirst {
		t.Errorf("pull connection TLS handshake first: %v; want %v", pulls.TLSFirst, want.tlsFirst)
	}
	if want.peerCert != "" && certSubjects(pulls) != want.peerCert {
		t.Errorf("pull connection presented %q; want %q", certSubjects(pulls), want.peerCert)
	}
	inbox := want.inbox
	if inbox == "" {
		inbox = nats.InboxPrefix[:len(nats.InboxPrefix)-1]
	}
	if len(pulls.Subs) > 1 {
		t.Errorf("pull connection has %d subscriptions %v; want at most one (the last request's)", len(pulls.Subs), pulls.Subs)
	}
	for _, s := range pulls.Subs {
		if !strings.HasPrefix(s, inbox+".") {
			t.Errorf("pull connection subscribed to %q; want under %s.", s, inbox)
		}
	}
}

func certSubjects(c *server.ConnInfo) string {
	var s []string
	for _, pc := range c.TLSPeerCerts {
		s = append(s, pc.Subject)
	}
	return strings.Join(s, ", ")
}

var ackModes = []struct {
	name string
	mode ponixnats.AckMode
}{{"per batch", ponixnats.AckPerBatch}, {"per message", ponixnats.AckPerMessage}}

// Every way of connecting: the consumer's pull requests go on a second connection that the
// server shows named "<name> (pulls)", authenticated as the nats.Conn (same user, account, TLS,
// handshake first, client certificate, inbox prefix); every message of the stream comes on it,
// none on the nats.Conn; every message is processed and acknowledged, and fetching never
// failed; when Run returns, the pull connection is closed.
func TestIntegrationPullConnEveryWayOfConnecting(t *testing.T) {
	const n = 3000
	for _, tc := range pullTargets() {
		t.Run(tc.name, func(t *testing.T) {
			tg := tc.setup(t)
			for _, am := range ackModes {
				t.Run(am.name, func(t *testing.T) {
					p := startDrain(t, tg, n, am.mode, nil, nil)
					p.waitDrained(t)
					shared, pulls := p.pullConn(t)
					checkPullConn(t, n, shared, pulls, tg.want)
					if st := p.c.Stats(); st.FetchErrors != 0 {
						t.Errorf("%d fetches failed; want none", st.FetchErrors)
					}
					p.stop()
					eventually(t, 10*time.Second, "the pull connection closed after Run returned", func() bool {
						_, pc, _ := p.conns(t)
						return len(pc) == 0
					})
				})
			}
			if tg.after != nil {
				tg.after(t)
			}
		})
	}
}

// PullOnSharedConnection, and a websocket URL whatever it says: the consumer pulls on its
// nats.Conn, every message comes there, no "(pulls)" connection ever appears, and the stream is
// drained and acknowledged.
func TestIntegrationPullOnSharedConnection(t *testing.T) {
	const n = 3000
	cases := []struct {
		name   string
		setup  func(t *testing.T) pullTarget
		shared bool
	}{
		{"PullOnSharedConnection", func(t *testing.T) pullTarget { return natstestTarget(t) }, true},
		{"PullOnSharedConnection with TLS", func(t *testing.T) pullTarget {
			certs, cfg := testCerts(t, true)
			tg := natstestTarget(t, natstest.WithTLS(cfg))
			tg.opts = []ponixnats.ConnectOption{ponixnats.WithTLS(certs.CAFile, certs.ClientCertFile, certs.ClientKeyFile)}
			return tg
		}, true},
		{"websocket URL", func(t *testing.T) pullTarget {
			// embedded.Config has no websocket listener: a server of our own.
			s := startNATS(t, &server.Options{Websocket: server.WebsocketOpts{Host: "127.0.0.1", Port: -1, NoTLS: true}})
			return pullTarget{url: s.WebsocketURL(), srv: s}
		}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tg := tc.setup(t)
			for _, am := range ackModes {
				t.Run(am.name, func(t *testing.T) {
					p := startDrain(t, tg, n, am.mode, func(cfg *ponixnats.ConsumerConfig) { cfg.PullOnSharedConnection = tc.shared }, nil)
					// A pulls connection would be there from the first pull on: look while
					// the stream drains, and after.
					var pullsSeen []*server.ConnInfo
					eventually(t, 30*time.Second, fmt.Sprintf("all %d messages processed", n), func() bool {
						_, pc, _ := p.conns(t)
						pullsSeen = append(pullsSeen, pc...)
						return p.d.distinct() == n
					})
					p.waitDrained(t)
					shared, pc, all := p.conns(t)
					pullsSeen = append(pullsSeen, pc...)
					if len(pullsSeen) != 0 {
						t.Fatalf("a pull connection appeared:%s", describeConns(pullsSeen))
					}
					if len(shared) != 1 {
						t.Fatalf("the server does not show one connection %q:%s", p.name, describeConns(all))
					}
					// The n publish acks went to the publisher: these are the n messages.
					if shared[0].OutMsgs < n {
						t.Errorf("the server sent %d messages on the consumer's nats.Conn; want at least the %d of the stream", shared[0].OutMsgs, n)
					}
					if st := p.c.Stats(); st.FetchErrors != 0 {
						t.Errorf("%d fetches failed; want none", st.FetchErrors)
					}
					p.stop()
				})
			}
		})
	}
}

// A nats.Conn without a name: its pull connection has none either (no " (pulls)" alone), and
// the server shows both.
func TestIntegrationPullConnWithoutName(t *testing.T) {
	const n = 500
	tg := natstestTarget(t)
	// Named by the test's own connections only: the consumer's nats.Conn goes unnamed.
	tg.opts = []ponixnats.ConnectOption{ponixnats.WithName("")}
	tg.pubOpts = []ponixnats.ConnectOption{}
	p := startDrain(t, tg, n, ponixnats.AckPerBatch, nil, nil)
	p.waitDrained(t)
	p.name = ""
	shared, pulls := func() (*server.ConnInfo, *server.ConnInfo) {
		var nameless []*server.ConnInfo
		eventually(t, 10*time.Second, "two nameless connections: the nats.Conn and its pull connection", func() bool {
			all := connz(t, p.srv)
			if len(named(all, pullsSuffix)) != 0 || len(named(all, strings.TrimSpace(pullsSuffix))) != 0 {
				t.Fatalf("a connection is named %q:%s", pullsSuffix, describeConns(all))
			}
			nameless = named(all, "")
			return len(nameless) == 2
		})
		// The one the messages came on is the pull connection.
		if nameless[0].OutMsgs > nameless[1].OutMsgs {
			return nameless[1], nameless[0]
		}
		return nameless[0], nameless[1]
	}()
	checkPullConn(t, n, shared, pulls, pullWant{})
	p.stop()
}

// The server kicks the pull connection while the consumer drains a stream, three times: twice
// while the processor holds a batch (the next pull request has gone or is going), once while
// it runs free. Each time a new "(pulls)" connection appears, and in the end every message was
// processed and the consumer's state is fully acknowledged: nothing a kicked request had
// brought is lost.
func TestIntegrationPullConnKickedMidRun(t *testing.T) {
	const n = 5000
	for _, am := range ackModes {
		t.Run(am.name, func(t *testing.T) {
			tg := natstestTarget(t)
			type hold struct {
				at       int
				reached  chan struct{}
				released chan struct{}
				once     sync.Once
			}
			holds := []*hold{
				{at: n / 5, reached: make(chan struct{}), released: make(chan struct{})},
				{at: 2 * n / 5, reached: make(chan struct{}), released: make(chan struct{})},
			}
			proc := func(d *deliveries) ponixnats.Processor {
				return func(_ context.Context, b ponixnats.Batch[jetstream.Msg]) (ponixnats.Result, error) {
					d.add(b.Items)
					for _, h := range holds {
						if d.distinct() >= h.at {
							h.once.Do(func() {
								close(h.reached)
								select {
								case <-h.released:
								case <-time.After(30 * time.Second):
								}
							})
						}
					}
					return ponixnats.AckAll(b.Len()), nil
				}
			}
			p := startDrain(t, tg, n, am.mode, nil, proc)
			kicked := map[uint64]bool{}
			kick := func(when string) {
				t.Helper()
				var pulls *server.ConnInfo
				eventually(t, 10*time.Second, "a pull connection not kicked yet", func() bool {
					_, pc, _ := p.conns(t)
					for _, c := range pc {
						if !kicked[c.Cid] {
							pulls = c
							return true
						}
					}
					return false
				})
				if err := p.srv.DisconnectClientByID(pulls.Cid); err != nil {
					t.Fatalf("kicking the pull connection (cid %d): %v", pulls.Cid, err)
				}
				kicked[pulls.Cid] = true
				t.Logf("kicked pull connection cid %d %s, %d of %d processed", pulls.Cid, when, p.d.distinct(), n)
				eventually(t, 10*time.Second, "the kicked connection gone", func() bool {
					cz, err := p.srv.Connz(&server.ConnzOptions{CID: pulls.Cid})
					return err == nil && len(cz.Conns) == 0
				})
			}
			for _, h := range holds {
				select {
				case <-h.reached:
				case <-time.After(30 * time.Second):
					t.Fatalf("the processor never got to %d messages", h.at)
				}
				kick("while the processor holds a batch")
				close(h.released)
			}
			eventually(t, 30*time.Second, fmt.Sprintf("%d messages processed", 3*n/5), func() bool { return p.d.distinct() >= 3*n/5 })
			kick("while the consumer runs")
			p.waitDrained(t)
			shared, pulls := p.pullConn(t)
			if kicked[pulls.Cid] {
				t.Fatalf("the pull connection after the kicks is a kicked one (cid %d)", pulls.Cid)
			}
			if pulls.AuthorizedUser != shared.AuthorizedUser {
				t.Errorf("new pull connection authorized as %q, the nats.Conn as %q", pulls.AuthorizedUser, shared.AuthorizedUser)
			}
			t.Logf("stats %+v; %d deliveries of %d messages; pull connection now cid %d", p.c.Stats(), p.d.total(), n, pulls.Cid)
			p.stop()
		})
	}
}

// A server restart while the consumer runs is TestIntegrationReconnectAfterServerRestart: it
// runs with the default configuration, so its consumer pulls on its own connection, which
// must dial again after the restart for the 20 messages published after it to be consumed.

// A server whose connection limit has no room for the pull connection: fetching fails with
// nats.go's error for it and says what to change; nothing is delivered, so nothing is lost.
func TestIntegrationPullConnRefusedByConnectionLimit(t *testing.T) {
	s := startNATS(t, &server.Options{MaxConn: 2}) // the publisher and the consumer's nats.Conn
	p := startDrain(t, pullTarget{url: s.ClientURL(), srv: s}, 10, ponixnats.AckPerBatch, nil, nil)
	eventually(t, 30*time.Second, "fetching fails", func() bool { return p.c.Health().Err != nil })
	err := p.c.Health().Err
	if !errors.Is(err, nats.ErrMaxConnectionsExceeded) || !strings.Contains(err.Error(), "PullOnSharedConnection") {
		t.Fatalf("health %v: want nats.ErrMaxConnectionsExceeded, naming PullOnSharedConnection", err)
	}
	if got := p.d.total(); got != 0 {
		t.Errorf("%d messages processed without a pull connection", got)
	}
	if info := consumerInfo(t, p.c); info.NumPending != 10 || info.NumAckPending != 0 {
		t.Errorf("consumer: %d pending, %d unacknowledged; want 10, 0", info.NumPending, info.NumAckPending)
	}
}
