package app

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"

	"github.com/ponix-go/ponix/pipeline"
	"github.com/ponix-go/ponix/ponix-all-in-one/internal/config"
	"github.com/ponix-go/ponix/ponix-all-in-one/internal/httpserver"
	"github.com/ponix-go/ponix/ponixclickhouse"
)

// errNotConnected is what /readyz reports for a server not connected to yet.
var errNotConnected = errors.New("not connected yet")

// startHTTP binds PONIX_HTTP_ADDR (unless off) and serves /metrics, /healthz
// and /readyz from now on, so that probes answer during startup too.
func (s *service) startHTTP() error {
	if s.cfg.HTTPAddr == config.HTTPAddrOff {
		s.logger.Info("HTTP listener disabled (PONIX_HTTP_ADDR=off)")
		return nil
	}
	srv, err := httpserver.Start(httpserver.Config{
		Addr:            s.cfg.HTTPAddr,
		Metrics:         s.metrics.Handler(),
		Checks:          s.readinessChecks(),
		ShutdownTimeout: s.cfg.ShutdownTimeout(),
		Logger:          s.logger,
	})
	if err != nil {
		return err
	}
	s.http = srv
	s.logger.Info("HTTP listener started", "addr", srv.Addr().String(), "paths", "/metrics /healthz /readyz")
	return nil
}

func (s *service) closeHTTP(ctx context.Context) error {
	if s.http == nil {
		return nil
	}
	err := s.http.Shutdown(ctx)
	s.http = nil
	return err
}

// readinessChecks: NATS connected, ClickHouse answers a ping, migrations done, the table fits,
// no batch is held, fetching works. Each failing check names the cause.
func (s *service) readinessChecks() []httpserver.Check {
	// The pipeline's own: the table fits, no batch is held, fetching works.
	var checks []httpserver.Check
	for _, name := range []string{pipeline.CheckSchema, pipeline.CheckSink, pipeline.CheckConsumer} {
		checks = append(checks, httpserver.Check{Name: name, Func: func(ctx context.Context) error {
			if p := s.pipeline.Load(); p != nil {
				for _, c := range p.Checks() {
					if c.Name == name {
						return c.Func(ctx)
					}
				}
			}
			return nil
		}})
	}
	return append(checks, []httpserver.Check{
		{Name: "nats", Func: func(context.Context) error {
			nc := s.readyNC.Load()
			if nc == nil {
				return errNotConnected
			}
			if st := nc.Status(); st != nats.CONNECTED {
				return errors.New("connection " + st.String())
			}
			return nil
		}},
		{Name: "clickhouse", Func: func(ctx context.Context) error {
			conn := s.readyCH.Load()
			if conn == nil {
				return errNotConnected
			}
			err := (*conn).Ping(ctx)
			if err != nil && errors.Is(err, context.DeadlineExceeded) {
				return fmt.Errorf("%w: the ping got no answer: %w", ponixclickhouse.ErrUnresponsive, err)
			}
			return err
		}},
		{Name: "migrations", Func: func(context.Context) error {
			if !s.migrated.Load() {
				return errors.New("migrations not applied yet")
			}
			return nil
		}},
	}...)
}
