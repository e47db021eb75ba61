// Package httpserver holds the operations HTTP listener of ponix-all-in-one:
// /metrics (Prometheus), /healthz (liveness: the process serves requests) and
// /readyz (readiness: every check passes within a deadline).
package httpserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// DefaultCheckTimeout bounds each readiness check.
const DefaultCheckTimeout = time.Second

// DefaultShutdownTimeout bounds the graceful shutdown of the listener.
const DefaultShutdownTimeout = 5 * time.Second

// Check is one readiness condition. Func returns nil when the condition holds;
// its error text is shown in the /readyz body.
type Check struct {
	Name string
	Func func(ctx context.Context) error
}

// Config configures the listener.
type Config struct {
	// Addr is the listen address, host:port; port 0 picks a free port.
	Addr string
	// Metrics serves /metrics; nil answers 404 there.
	Metrics http.Handler
	// Checks are the readiness conditions of /readyz, run concurrently.
	Checks []Check
	// CheckTimeout bounds each check (default DefaultCheckTimeout).
	CheckTimeout time.Duration
	// ShutdownTimeout bounds Run's graceful shutdown (default DefaultShutdownTimeout).
	ShutdownTimeout time.Duration
	// Logger, default a discarding logger.
	Logger *slog.Logger
}

// Readiness is the JSON body of /readyz.
type Readiness struct {
	Status string            `json:"status"` // "ready" or "not ready"
	Checks map[string]string `json:"checks"` // check name → "ok" or the error
}

// Handler returns the mux serving /metrics, /healthz and /readyz.
func Handler(cfg Config) http.Handler {
	cfg = withDefaults(cfg)
	mux := http.NewServeMux()
	if cfg.Metrics != nil {
		mux.Handle("GET /metrics", cfg.Metrics)
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		rd := Ready(r.Context(), cfg.Checks, cfg.CheckTimeout)
		w.Header().Set("Content-Type", "application/json")
		if rd.Status != StatusReady {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(rd)
	})
	return mux
}

// Readiness statuses.
const (
	StatusReady    = "ready"
	StatusNotReady = "not ready"
)

// Ready runs checks concurrently, each bounded by timeout, and reports the
// outcome of each.
func Ready(ctx context.Context, checks []Check, timeout time.Duration) Readiness {
	out := Readiness{Status: StatusReady, Checks: make(map[string]string, len(checks))}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, c := range checks {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			err := runCheck(cctx, c)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				out.Status = StatusNotReady
				out.Checks[c.Name] = err.Error()
				return
			}
			out.Checks[c.Name] = "ok"
		})
	}
	wg.Wait()
	return out
}

// runCheck runs c and gives up when ctx ends, even if c ignores ctx.
func runCheck(ctx context.Context, c Check) error {
	done := make(chan error, 1)
	go func() { done <- c.Func(ctx) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("no answer within the deadline: %w", ctx.Err())
	}
}

// Server is a started listener.
type Server struct {
	cfg   Config
	ln    net.Listener
	srv   *http.Server
	errCh chan error
}

// Start binds cfg.Addr and serves in the background until Run's context ends
// or Shutdown is called.
func Start(cfg Config) (*Server, error) {
	cfg = withDefaults(cfg)
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	s := &Server{
		cfg: cfg,
		ln:  ln,
		srv: &http.Server{
			Handler:           Handler(cfg),
			ReadHeaderTimeout: 5 * time.Second,
			ErrorLog:          slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
		},
		errCh: make(chan error, 1),
	}
	go func() {
		err := s.srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.errCh <- err
	}()
	return s, nil
}

// Addr returns the bound address (with the chosen port when Addr had port 0).
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Run blocks until ctx ends, then shuts the listener down gracefully within
// the shutdown timeout. It returns early with the error if serving fails.
func (s *Server) Run(ctx context.Context) error {
	select {
	case err := <-s.errCh:
		if err != nil {
			return fmt.Errorf("HTTP listener on %s: %w", s.Addr(), err)
		}
		return nil
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	return s.Shutdown(sctx)
}

// Shutdown stops accepting connections and waits for the requests in flight
// until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	if err := s.srv.Shutdown(ctx); err != nil {
		_ = s.srv.Close()
		return fmt.Errorf("shut down HTTP listener on %s: %w", s.Addr(), err)
	}
	return nil
}

func withDefaults(cfg Config) Config {
	if cfg.CheckTimeout <= 0 {
		cfg.CheckTimeout = DefaultCheckTimeout
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = DefaultShutdownTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return cfg
}
