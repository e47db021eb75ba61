// Package app composes the ponix-all-in-one service from the Ponix modules:
// migrations, the ClickHouse writer, the NATS producer and consumer, under the
// runner.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ponix-go/ponix/pipeline"
	"github.com/ponix-go/ponix/ponix-all-in-one/internal/config"
	"github.com/ponix-go/ponix/ponix-all-in-one/internal/httpserver"
	"github.com/ponix-go/ponix/ponix-all-in-one/internal/localserver"
	"github.com/ponix-go/ponix/ponix-all-in-one/internal/metrics"
	"github.com/ponix-go/ponix/ponix-all-in-one/internal/sample"
	"github.com/ponix-go/ponix/ponix-all-in-one/internal/startup"
	"github.com/ponix-go/ponix/ponixclickhouse"
	"github.com/ponix-go/ponix/ponixclickhouse/chserver"
	"github.com/ponix-go/ponix/ponixnats"
	"github.com/ponix-go/ponix/ponixnats/embedded"
	"github.com/ponix-go/ponix/runner"
)

// Startup phases, in order. A failure is reported as a *PhaseError naming one.
const (
	PhaseHTTP            = "http"             // the listener of PONIX_HTTP_ADDR, unless off
	PhaseLocalClickHouse = "local-clickhouse" // only with PONIX_CLICKHOUSE_MANAGED=true
	PhaseMigrations      = "migrations"
	PhaseClickHouse      = "clickhouse"
	PhaseNATS            = "nats"
	PhaseProcesses       = "processes"
)

// PhaseError is a startup failure naming its phase (one of the above).
type PhaseError = startup.PhaseError

// Options are the parts of the service that do not come from the environment.
type Options struct {
	Logger  *slog.Logger
	Version string
}

// service holds what startup opened, so that both a failed startup and the
// runner's closers release it.
type service struct {
	cfg    config.Config
	logger *slog.Logger

	chServer *chserver.Server
	chConn   driver.Conn
	natsSrv  *embedded.Server
	nc       *nats.Conn
	js       jetstream.JetStream

	metrics *metrics.Metrics
	http    *httpserver.Server
	// What /readyz looks at, written by startup and read by HTTP handlers.
	migrated atomic.Bool
	readyNC  atomic.Pointer[nats.Conn]
	readyCH  atomic.Pointer[driver.Conn]
	pipeline atomic.Pointer[Pipeline]
}

// Run starts the service and blocks until it stops: after SIGINT/SIGTERM or
// ctx's end (nil), or after a startup phase or a process failed (the error).
func Run(ctx context.Context, cfg config.Config, opts Options) error {
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	s := &service{cfg: cfg, logger: logger, metrics: metrics.New(opts.Version)}
	if err := s.startHTTP(); err != nil {
		return &PhaseError{Phase: PhaseHTTP, Err: err}
	}

	// A signal at any time stops the service cleanly: this handler lives until Run returns, so
	// none can find no handler (and kill the process) between startup and the runner.
	sigCtx, stopSignals := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stopSignals()
	// stopEarly closes what startup opened; a startup a signal cut short is no failure.
	stopEarly := func(err error) error {
		closeCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout())
		defer cancel()
		closeErr := errors.Join(s.closeHTTP(closeCtx), s.closeNATS(closeCtx), s.closeClickHouse(closeCtx))
		if sigCtx.Err() != nil && ctx.Err() == nil && errors.Is(err, context.Canceled) {
			logger.Info("startup interrupted by a signal")
			return closeErr
		}
		return errors.Join(err, closeErr)
	}
	if err := s.start(sigCtx); err != nil {
		return stopEarly(err)
	}

	// A stop takes at most PONIX_SHUTDOWN_TIMEOUT_SECS: two thirds for the batches in hand
	// (see drainTimeout), the rest for the closers, which run concurrently.
	r := runner.New(runner.WithLogger(logger), runner.WithCloserTimeout(max(time.Second, cfg.ShutdownTimeout()-drainTimeout(cfg))))
	if err := s.addProcesses(sigCtx, r); err != nil {
		return stopEarly(&PhaseError{Phase: PhaseProcesses, Err: err})
	}
	if s.http != nil {
		r.AddProcess("http", s.http.Run)
	}
	r.AddCloser("nats", s.closeNATS)
	r.AddCloser("clickhouse", s.closeClickHouse)
	// After a signal that came after the last phase, the runner stops at once, cleanly.
	return r.Run(sigCtx)
}

// phase runs one startup phase bounded by PONIX_STARTUP_TIMEOUT_SECS.
func (s *service) phase(ctx context.Context, name string, fn func(ctx context.Context) error) error {
	return startup.Phases{Timeout: s.cfg.StartupTimeout(), Explain: s.cfg.VarsToCheck, Logger: s.logger,
		TimeoutSetting: fmt.Sprintf("PONIX_STARTUP_TIMEOUT_SECS=%d", s.cfg.StartupTimeoutSecs)}.Run(ctx, name, fn)
}

func (s *service) start(ctx context.Context) error {
	if s.cfg.ClickHouseManaged {
		if err := s.phase(ctx, PhaseLocalClickHouse, s.startLocalClickHouse); err != nil {
			return err
		}
	}
	for _, p := range []struct {
		name string
		fn   func(context.Context) error
	}{
		{PhaseMigrations, s.migrate},
		{PhaseClickHouse, s.connectClickHouse},
		{PhaseNATS, s.connectNATS},
	} {
		if err := s.phase(ctx, p.name, p.fn); err != nil {
			return err
		}
	}
	return nil
}

// clickHouseConfig is how to connect to ClickHouse: the configured server, or the managed one.
func (s *service) clickHouseConfig() ponixclickhouse.Config {
	if s.chServer != nil {
		return s.cfg.ClickHouse(s.chServer.Addr())
	}
	return s.cfg.ClickHouse("")
}

// startLocalClickHouse starts the managed clickhouse-server.
func (s *service) startLocalClickHouse(ctx context.Context) (err error) {
	s.chServer, err = localserver.StartClickHouse(ctx, s.cfg, s.logger)
	return err
}

// migrate creates the database when missing (a stock ClickHouse has no database "ponix") and
// applies the migrations, before NATS is connected to.
func (s *service) migrate(ctx context.Context) error {
	m := pipeline.Migrations{FS: s.cfg.Migrations(), Options: migrateOptions(s.cfg)}
	if err := pipeline.Migrate(ctx, s.clickHouseConfig(), m, s.logger); err != nil {
		return err
	}
	s.migrated.Store(true)
	return nil
}

func (s *service) connectClickHouse(ctx context.Context) error {
	conn, err := ponixclickhouse.Open(ctx, s.clickHouseConfig())
	if err != nil {
		return err
	}
	s.chConn = conn
	s.readyCH.Store(&conn)
	if version, err := ponixclickhouse.ServerVersion(ctx, conn); err == nil {
		s.logger.Info("connected to ClickHouse", "addr", s.clickHouseConfig().Addr, "database", s.cfg.ClickHouseDatabase, "server_version", version)
	} else {
		return err
	}
	return nil
}

func (s *service) connectNATS(ctx context.Context) error {
	url := s.cfg.NATSURL
	if url == "" {
		srv, err := localserver.StartNATS(ctx, s.cfg, s.logger)
		if err != nil {
			return err
		}
		s.natsSrv, url = srv, srv.URL()
	}
	nc, err := ponixnats.Connect(ctx, url, s.cfg.NATSOptions("ponix-all-in-one", s.logger)...)
	if err != nil {
		return err
	}
	s.nc = nc
	s.readyNC.Store(nc)
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	s.js = js
	if _, err := ponixnats.EnsureStream(ctx, js, ponixnats.StreamConfig{
		Name:     s.cfg.NATSStream,
		Subjects: []string{s.cfg.NATSSubject},
		Replicas: s.cfg.NATSReplicas,
	}); err != nil {
		return err
	}
	s.logger.Info("connected to NATS", "url", nc.ConnectedUrlRedacted(), "stream", s.cfg.NATSStream)
	return nil
}

// addProcesses creates the consumer and registers it and, when enabled, the producer.
func (s *service) addProcesses(ctx context.Context, r *runner.Runner) error {
	p, err := NewPipeline(s.cfg, s.js, PipelineOptions{
		Logger:     s.logger,
		ClickHouse: s.clickHouseConfig(),
		Conn:       s.chConn,
		Migrations: s.cfg.Migrations(),
		Observe: func(ins pipeline.Insert[[]byte]) {
			s.metrics.ObserveInsert(len(ins.Records), ins.Stored, ins.Took, ins.Err)
			if n := len(ins.Records); ins.Err == nil && n > 0 { // lag in time: one envelope a batch
				s.metrics.ObserveStored(ins.Records[n-1].Value, time.Now())
			}
		},
	})
	if err != nil {
		return err
	}
	if err := p.Start(ctx); err != nil {
		if errors.Is(err, ponixnats.ErrServerTooOld) {
			return fmt.Errorf("%w (PONIX_NATS_ACK=batch, the default, needs nats-server 2.14 or later: upgrade it, or set PONIX_NATS_ACK=message)", err)
		}
		return err
	}
	s.pipeline.Store(p)
	if err := s.metrics.WatchConsumer(p.Consumer(), s.cfg.NATSStream, s.cfg.NATSConsumer, 0, s.logger); err != nil {
		return fmt.Errorf("consumer metrics: %w", err)
	}
	if err := s.metrics.WatchSink(p.Hold(), ponixclickhouse.SinkClasses()); err != nil {
		return fmt.Errorf("sink metrics: %w", err)
	}
	r.AddProcess("consumer", p.Run)

	if s.cfg.ProducerEnabled {
		producer := ponixnats.NewEnvelopeProducer(s.js, s.cfg.NATSBaseSubject())
		r.AddProcess("producer", sample.Producer{Publish: producer.Publish, Interval: s.cfg.Interval(),
			Published: s.metrics.Published, Logger: s.logger}.Run)
	} else {
		s.logger.Info("producer disabled (PONIX_PRODUCER_ENABLED=false): consuming only")
	}
	return nil
}

// closeNATS closes the connection (the consumer has sent its acks by now) and
// then the embedded server, if any.
func (s *service) closeNATS(ctx context.Context) error {
	var err error
	if s.nc != nil {
		if ferr := s.nc.FlushWithContext(ctx); ferr != nil && !errors.Is(ferr, nats.ErrConnectionClosed) {
			err = fmt.Errorf("flush NATS connection: %w", ferr)
		}
		s.nc.Close()
		s.nc = nil
	}
	if s.natsSrv != nil {
		s.natsSrv.Shutdown()
		s.natsSrv = nil
	}
	return err
}

// closeClickHouse closes the connection, then stops the managed server, if any.
func (s *service) closeClickHouse(ctx context.Context) error {
	var errs []error
	if s.chConn != nil {
		if err := s.chConn.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close ClickHouse connection: %w", err))
		}
		s.chConn = nil
	}
	if s.chServer != nil {
		if err := s.chServer.Stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stop local ClickHouse: %w", err))
		}
		s.chServer = nil
	}
	return errors.Join(errs...)
}
