// Package embedded runs a NATS server with JetStream inside the current
// process: for tests (see package natstest) and as the default of a local
// run that has no external NATS server.
package embedded

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// DefaultReadyTimeout bounds how long Start waits for the server to accept
// connections.
const DefaultReadyTimeout = 10 * time.Second

// Config describes an embedded server.
type Config struct {
	// Host to listen on. Default "127.0.0.1".
	Host string
	// Port to listen on; 0 picks a free port (kept across Restart).
	Port int
	// StoreDir is the JetStream store directory; it is created if missing.
	// Empty means a temporary directory, removed by Shutdown.
	StoreDir string
	// ServerName, optional.
	ServerName string
	// Users with passwords; if Users or NKeys is set, clients must
	// authenticate.
	Users map[string]string
	// NKeys are public user NKeys ("U...") allowed to connect.
	NKeys []string
	// Token, if set, is required from clients (exclusive with Users/NKeys).
	Token string
	// MaxMemory and MaxStore bound JetStream (0: server defaults).
	MaxMemory, MaxStore int64
	// ReadyTimeout bounds the wait for the server to accept connections.
	// Default DefaultReadyTimeout.
	ReadyTimeout time.Duration
	// Logger receives the server's log lines; nil disables server logging.
	Logger *slog.Logger
	// Debug enables the server's debug log lines (needs Logger).
	Debug bool
	// Cluster, if set, makes the server a node of a JetStream cluster
	// (ServerName must then be set and unique). See also [StartCluster].
	Cluster *ClusterConfig
	// TLS, if set, makes clients connect with TLS using this server
	// configuration (it needs Certificates). With ClientAuth set to
	// tls.RequireAndVerifyClientCert clients must also present a certificate
	// that ClientCAs verify.
	TLS *tls.Config
}

// ClusterConfig makes an embedded server a node of a NATS cluster.
type ClusterConfig struct {
	// Name of the cluster, the same on every node. Required.
	Name string
	// Host the route listener binds; default: Config.Host.
	Host string
	// Port of the route listener. Required (routes of the other nodes name
	// it); kept across Restart.
	Port int
	// Routes are the route URLs of the other nodes, e.g.
	// "nats-route://127.0.0.1:6222".
	Routes []string
}

// Server is a running embedded NATS server.
type Server struct {
	mu      sync.Mutex
	cfg     Config
	srv     *server.Server
	tempDir bool
}

// Start starts a server described by cfg and waits until it accepts
// connections (bounded by ctx and cfg.ReadyTimeout).
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = DefaultReadyTimeout
	}
	if cfg.Token != "" && (len(cfg.Users) > 0 || len(cfg.NKeys) > 0) {
		return nil, errors.New("embedded: Token cannot be combined with Users or NKeys")
	}
	if cfg.TLS != nil && len(cfg.TLS.Certificates) == 0 && cfg.TLS.GetCertificate == nil {
		return nil, errors.New("embedded: Config.TLS has no server certificate")
	}
	if c := cfg.Cluster; c != nil {
		if c.Name == "" || c.Port <= 0 || cfg.ServerName == "" {
			return nil, fmt.Errorf("embedded: a cluster node needs Cluster.Name, Cluster.Port and a unique ServerName (got %q, %d, %q)", c.Name, c.Port, cfg.ServerName)
		}
	}
	s := &Server{cfg: cfg}
	if s.cfg.StoreDir == "" {
		dir, err := os.MkdirTemp("", "ponix-nats-*")
		if err != nil {
			return nil, fmt.Errorf("embedded: creating temporary store dir: %w", err)
		}
		s.cfg.StoreDir, s.tempDir = dir, true
	} else if err := os.MkdirAll(s.cfg.StoreDir, 0o750); err != nil {
		return nil, fmt.Errorf("embedded: creating store dir %s: %w", s.cfg.StoreDir, err)
	}
	if err := s.start(ctx); err != nil {
		if s.tempDir {
			_ = os.RemoveAll(s.cfg.StoreDir)
		}
		return nil, err
	}
	return s, nil
}

func (s *Server) options() *server.Options {
	c := s.cfg
	port := c.Port
	if port == 0 {
		port = server.RANDOM_PORT
	}
	o := &server.Options{
		ServerName:         c.ServerName,
		Host:               c.Host,
		Port:               port,
		JetStream:          true,
		StoreDir:           c.StoreDir,
		JetStreamMaxMemory: c.MaxMemory,
		JetStreamMaxStore:  c.MaxStore,
		NoSigs:             true,
		NoLog:              c.Logger == nil,
		Debug:              c.Debug,
		Authorization:      c.Token,
	}
	if cl := c.Cluster; cl != nil {
		host := cl.Host
		if host == "" {
			host = c.Host
		}
		o.Cluster = server.ClusterOpts{Name: cl.Name, Host: host, Port: cl.Port}
		o.Routes = server.RoutesFromStr(strings.Join(cl.Routes, ","))
	}
	if c.TLS != nil {
		o.TLS = true
		o.TLSConfig = c.TLS
		o.TLSVerify = c.TLS.ClientAuth == tls.RequireAndVerifyClientCert
		o.TLSTimeout = 2
	}
	for u, p := range c.Users {
		o.Users = append(o.Users, &server.User{Username: u, Password: p})
	}
	for _, k := range c.NKeys {
		o.Nkeys = append(o.Nkeys, &server.NkeyUser{Nkey: k})
	}
	return o
}

func (s *Server) start(ctx context.Context) error {
	srv, err := server.NewServer(s.options())
	if err != nil {
		return fmt.Errorf("embedded: configuring NATS server: %w", err)
	}
	if s.cfg.Logger != nil {
		srv.SetLoggerV2(slogAdapter{s.cfg.Logger}, s.cfg.Debug, false, false)
	}
	srv.Start()
	wait := s.cfg.ReadyTimeout
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
		wait = time.Until(dl)
	}
	if !srv.ReadyForConnections(wait) {
		srv.Shutdown()
		srv.WaitForShutdown()
		return fmt.Errorf("embedded: NATS server on %s:%d not ready within %s (store %s)", s.cfg.Host, s.cfg.Port, wait, s.cfg.StoreDir)
	}
	if addr, ok := srv.Addr().(*net.TCPAddr); ok {
		s.cfg.Port = addr.Port // keep the port across Restart
	}
	s.srv = srv
	return nil
}

// URL returns the client URL, e.g. "nats://127.0.0.1:4222" ("tls://..." when
// Config.TLS is set).
func (s *Server) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	scheme := "nats://"
	if s.cfg.TLS != nil {
		scheme = "tls://"
	}
	return scheme + net.JoinHostPort(s.cfg.Host, strconv.Itoa(s.cfg.Port))
}

// Port returns the port the server listens on.
func (s *Server) Port() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg.Port
}

// Name returns the server name (Config.ServerName).
func (s *Server) Name() string { return s.cfg.ServerName }

// StoreDir returns the JetStream store directory.
func (s *Server) StoreDir() string { return s.cfg.StoreDir }

// NATSServer returns the underlying server (nil while stopped).
func (s *Server) NATSServer() *server.Server {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.srv
}

// Stop stops the server but keeps its store, so Restart can bring it back.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		s.srv.Shutdown()
		s.srv.WaitForShutdown()
		s.srv = nil
	}
}

// Restart stops the server (if running) and starts it again on the same
// port with the same store, as after a crash or a deploy.
func (s *Server) Restart(ctx context.Context) error {
	s.Stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.start(ctx)
}

// Shutdown stops the server and removes the store if it was a temporary one.
func (s *Server) Shutdown() {
	s.Stop()
	if s.tempDir {
		_ = os.RemoveAll(s.cfg.StoreDir)
	}
}

type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) Noticef(format string, v ...any) { a.l.Info(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Warnf(format string, v ...any)   { a.l.Warn(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Fatalf(format string, v ...any)  { a.l.Error(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Errorf(format string, v ...any)  { a.l.Error(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Debugf(format string, v ...any)  { a.l.Debug(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Tracef(format string, v ...any)  { a.l.Debug(fmt.Sprintf(format, v...)) }
