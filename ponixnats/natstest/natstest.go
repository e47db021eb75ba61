// Package natstest starts an embedded NATS server with JetStream for tests:
// on a free port, with a temporary store, stopped when the test ends.
//
//	func TestX(t *testing.T) {
//		srv := natstest.New(t)
//		nc, err := nats.Connect(srv.URL())
//		...
//	}
//
// For one server per package, call [Start] in TestMain and Shutdown after
// m.Run.
package natstest

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/ponix-go/ponix/ponixnats/embedded"
)

// Server is a running test server; see [embedded.Server] for its methods
// (URL, Restart, Stop, Shutdown, ...).
type Server = embedded.Server

// Option configures the test server.
type Option func(*embedded.Config)

// WithUserPassword requires clients to log in with user and password (can
// be given several times).
func WithUserPassword(user, password string) Option {
	return func(c *embedded.Config) {
		if c.Users == nil {
			c.Users = map[string]string{}
		}
		c.Users[user] = password
	}
}

// WithNKey allows the user with public NKey pub ("U...") and requires
// authentication.
func WithNKey(pub string) Option {
	return func(c *embedded.Config) { c.NKeys = append(c.NKeys, pub) }
}

// WithToken requires clients to present token.
func WithToken(token string) Option {
	return func(c *embedded.Config) { c.Token = token }
}

// WithStoreDir uses dir as the JetStream store (kept after Shutdown).
func WithStoreDir(dir string) Option {
	return func(c *embedded.Config) { c.StoreDir = dir }
}

// WithPort listens on port instead of a free one.
func WithPort(port int) Option {
	return func(c *embedded.Config) { c.Port = port }
}

// WithConfig edits the embedded configuration directly.
func WithConfig(f func(*embedded.Config)) Option { return Option(f) }

// readyTimeout is how long a test server may take to accept connections (unless an option sets
// ReadyTimeout): longer than embedded's default, for a machine busy with parallel suites (a
// clustered server waits for its routes and a JetStream leader).
const readyTimeout = time.Minute

// config applies opts to a test server's configuration.
func config(opts []Option) embedded.Config {
	cfg := embedded.Config{ReadyTimeout: readyTimeout}
	for _, o := range opts {
		o(&cfg)
	}
	return cfg
}

// Start starts a server; the caller must Shutdown it. Use it from TestMain.
func Start(opts ...Option) (*Server, error) {
	return embedded.Start(context.Background(), config(opts))
}

// New starts a server for the test tb and shuts it down (removing its
// temporary store) when the test ends. It fails the test if the server
// cannot start.
func New(tb testing.TB, opts ...Option) *Server {
	tb.Helper()
	opts = append([]Option{WithStoreDir(tb.TempDir())}, opts...)
	s, err := Start(opts...)
	if err != nil {
		tb.Fatalf("natstest: %v", err)
	}
	tb.Cleanup(s.Shutdown)
	return s
}

// NewWithoutJetStream starts a plain NATS server, without JetStream, on a free
// loopback port for the test tb, shuts it down when the test ends, and returns its
// host:port: for testing what a client does against a server that cannot serve
// streams.
func NewWithoutJetStream(tb testing.TB) string {
	tb.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true})
	if err != nil {
		tb.Fatalf("natstest: %v", err)
	}
	s.Start()
	tb.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	if !s.ReadyForConnections(10 * time.Second) {
		tb.Fatal("natstest: NATS server without JetStream not ready within 10 s")
	}
	return s.Addr().(*net.TCPAddr).AddrPort().String()
}

// Cluster is a running JetStream cluster of embedded servers; see
// [embedded.Cluster].
type Cluster = embedded.Cluster

// NewCluster starts an n-node JetStream cluster for the test tb (stores under
// a test temporary directory; opts apply to every node) and shuts it down when
// the test ends. It fails the test if the cluster cannot start.
func NewCluster(tb testing.TB, n int, opts ...Option) *Cluster {
	tb.Helper()
	c, err := embedded.StartCluster(context.Background(), n, tb.TempDir(), config(opts))
	if err != nil {
		tb.Fatalf("natstest: %v", err)
	}
	tb.Cleanup(c.Shutdown)
	return c
}
