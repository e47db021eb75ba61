// Package app composes the ponix-all-in-one service from the Ponix modules:
// migrations, the ClickHouse writer, the NATS producer and consumer, under the
// runner.
package app

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ponix-go/ponix/migrations"
	"github.com/ponix-go/ponix/ponix-all-in-one/internal/config"
	"github.com/ponix-go/ponix/ponix-all-in-one/internal/httpserver"
	"github.com/ponix-go/ponix/ponix-all-in-one/internal/metrics"
	"github.com/ponix-go/ponix/ponix-all-in-one/internal/sample"
	"github.com/ponix-go/ponix/ponixclickhouse"
	"github.com/ponix-go/ponix/ponixclickhouse/chserver"
	"github.com/ponix-go/ponix/ponixclickhouse/migrate"
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

// PhaseError is a startup failure, naming the phase it happened in and, when
// a setting explains it, the environment variables to check.
type PhaseError struct {
	Phase string
	// Check lists the environment variables that explain the failure, if known.
	Check []string
	Err   error
}

func (e *PhaseError) Error() string {
	if len(e.Check) > 0 {
		return "startup phase " + e.Phase + " failed (check " + strings.Join(e.Check, ", ") + "): " + e.Err.Error()
	}
	return "startup phase " + e.Phase + " failed: " + e.Err.Error()
}
func (e *PhaseError) Unwrap() error { return e.Err }

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
	readyCH  atomic.Pointer[chConnRef]
	pipeline atomic.Pointer[Pipeline]
}

type chConnRef struct{ conn driver.Conn }

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

	// A signal at any time stops the service cleanly: the handler is installed
	// before the first phase and stays until Run returns, so no signal can
	// arrive while none is installed (and kill the process by default) between
	// startup and the runner, which installs its own for a second signal.
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
	// A signal that came after the last phase ended sigCtx: the runner sees
	// its parent done and stops at once, cleanly.
	return r.Run(sigCtx)
}

// phase runs one startup phase bounded by the startup timeout.
func (s *service) phase(ctx context.Context, name string, fn func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.StartupTimeout())
	defer cancel()
	start := time.Now()
	s.logger.Info("startup phase", "phase", name)
	if err := fn(ctx); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("not done within PONIX_STARTUP_TIMEOUT_SECS=%d: %w", s.cfg.StartupTimeoutSecs, err)
		}
		return &PhaseError{Phase: name, Check: s.varsToCheck(err), Err: err}
	}
	s.logger.Info("startup phase done", "phase", name, "duration", time.Since(start))
	return nil
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

func (s *service) clickHouseConfig() ponixclickhouse.Config {
	addrs, _ := s.cfg.ClickHouseAddrs() // validated by config.Load: one or more
	if s.chServer != nil {
		addrs = []string{s.chServer.Addr()}
	}
	tlsCfg, _ := s.cfg.ClickHouseTLSConfig() // validated by config.Load
	return ponixclickhouse.Config{
		Addr:     addrs[0],
		Addrs:    addrs,                    // several: fail over between them
		Database: s.cfg.ClickHouseDatabase, // resolved by config.Load (the URL's database, if any)
		Username: s.cfg.ClickHouseUser(),
		Password: s.cfg.ClickHouseSecret(),
		TLS:      tlsCfg,
	}
}

// startLocalClickHouse starts (or restarts, keeping its data) the managed
// clickhouse-server under the data dir and creates the database.
func (s *service) startLocalClickHouse(ctx context.Context) error {
	addr, _ := s.cfg.ClickHouseAddr()
	_, portStr, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(portStr)
	srv, err := chserver.Start(ctx, chserver.Config{
		Dir:      filepath.Join(s.cfg.DataDir, "clickhouse"),
		TCPPort:  port,
		User:     s.cfg.ClickHouseUsername,
		Password: s.cfg.ClickHousePassword,
		Logger:   s.logger,
	})
	if err != nil {
		return err
	}
	s.chServer = srv
	cfg := s.clickHouseConfig()
	cfg.Database = "default"
	conn, err := ponixclickhouse.Open(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	quoted, err := ponixclickhouse.QuoteIdentifier(s.cfg.ClickHouseDatabase)
	if err != nil {
		return err
	}
	if err := conn.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+quoted); err != nil {
		return fmt.Errorf("create database %s: %w", s.cfg.ClickHouseDatabase, err)
	}
	s.logger.Info("local ClickHouse ready", "addr", srv.Addr(), "dir", srv.Dir(),
		"query", fmt.Sprintf("clickhouse-client --port %d --user %s --password '***' -q \"SELECT * FROM %s.processed_envelopes ORDER BY occurred_at DESC LIMIT 10\"",
			port, s.cfg.ClickHouseUsername, s.cfg.ClickHouseDatabase))
	return nil
}

// migrationsFS is the embedded migrations, or PONIX_CLICKHOUSE_MIGRATIONS_DIR.
func (s *service) migrationsFS() fs.FS {
	if dir := s.cfg.ClickHouseMigrationsDir; dir != "" {
		return os.DirFS(dir)
	}
	return migrations.FS()
}

func (s *service) migrate(ctx context.Context) error {
	fsys := s.migrationsFS()
	// A stock ClickHouse has no database "ponix": create it (logged once) rather than stop.
	if _, err := migrate.EnsureDatabase(ctx, s.clickHouseConfig(), s.migrateOptions()...); err != nil {
		return err
	}
	db := ponixclickhouse.OpenDB(s.clickHouseConfig())
	defer db.Close()
	if err := ponixclickhouse.PingDB(ctx, db, s.clickHouseConfig()); err != nil {
		return err
	}
	results, err := migrate.Up(ctx, db, fsys, s.migrateOptions()...)
	if err != nil {
		return err
	}
	s.logger.Info("migrations applied", "count", len(results))
	s.migrated.Store(true)
	return nil
}

func (s *service) connectClickHouse(ctx context.Context) error {
	conn, err := ponixclickhouse.Open(ctx, s.clickHouseConfig())
	if err != nil {
		return err
	}
	s.chConn = conn
	s.readyCH.Store(&chConnRef{conn})
	version, err := ponixclickhouse.ServerVersion(ctx, conn)
	if err != nil {
		return err
	}
	s.logger.Info("connected to ClickHouse", "addr", s.clickHouseConfig().Addr, "database", s.cfg.ClickHouseDatabase, "server_version", version)
	return s.checkCluster(ctx)
}

func (s *service) connectNATS(ctx context.Context) error {
	url := s.cfg.NATSURL
	if url == "" {
		host, portStr, _ := net.SplitHostPort(s.cfg.NATSEmbeddedAddr)
		port, _ := strconv.Atoi(portStr)
		srv, err := embedded.Start(ctx, embedded.Config{
			Host:       host,
			Port:       port,
			StoreDir:   filepath.Join(s.cfg.DataDir, "nats"),
			ServerName: "ponix-embedded",
			Users:      s.embeddedUsers(),
			Token:      s.cfg.NATSToken,
		})
		if err != nil {
			return fmt.Errorf("start embedded NATS server on %s: %w", s.cfg.NATSEmbeddedAddr, err)
		}
		s.natsSrv = srv
		url = srv.URL()
		s.logger.Info("embedded NATS JetStream server started", "url", url, "store", srv.StoreDir())
	}
	nc, err := ponixnats.Connect(ctx, url, s.natsOptions()...)
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

// addProcesses registers the consumer and, when enabled, the producer.
func (s *service) addProcesses(ctx context.Context, r *runner.Runner) error {
	opts := PipelineOptions{Logger: s.logger, WrapStore: s.instrumentStore, Repair: s.reapplyMigrations}
	s.clusterPipeline(&opts)
	p, err := NewPipeline(ctx, s.cfg, s.js, s.chConn, opts)
	if err != nil {
		return err
	}
	s.pipeline.Store(p)
	if err := s.metrics.WatchConsumer(p.Consumer, s.cfg.NATSStream, s.cfg.NATSConsumer, 0, s.logger); err != nil {
		return fmt.Errorf("consumer metrics: %w", err)
	}
	if err := s.metrics.WatchSink(p.Hold, ponixclickhouse.SinkClasses()); err != nil {
		return fmt.Errorf("sink metrics: %w", err)
	}
	r.AddProcess("consumer", p.Run)

	if s.cfg.ProducerEnabled {
		producer := ponixnats.NewEnvelopeProducer(s.js, s.cfg.NATSBaseSubject())
		r.AddProcess("producer", func(ctx context.Context) error { return s.produce(ctx, producer) })
	} else {
		s.logger.Info("producer disabled (PONIX_PRODUCER_ENABLED=false): consuming only")
	}
	return nil
}

// reapplyMigrations applies every migration again (the repair of a dropped table whose
// migrations goose still records as applied).
func (s *service) reapplyMigrations(ctx context.Context) error {
	db := ponixclickhouse.OpenDB(s.clickHouseConfig())
	defer db.Close()
	m, err := migrate.New(db, s.migrationsFS(), migrate.WithLogger(s.logger))
	if err != nil {
		return err
	}
	results, err := m.Reapply(ctx)
	if err != nil {
		return err
	}
	s.logger.Info("migrations applied again", "count", len(results))
	return nil
}

// produce publishes a sample envelope every interval until ctx ends. A failed
// publish is logged and the next tick tries again: a NATS outage must not stop
// the service.
func (s *service) produce(ctx context.Context, p *ponixnats.EnvelopeProducer) error {
	rnd := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0))
	ticker := time.NewTicker(s.cfg.Interval())
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-ticker.C:
			env := sample.Envelope(now, rnd)
			err := p.Publish(ctx, env)
			if err != nil && ctx.Err() != nil {
				return nil
			}
			s.metrics.Published(err)
			if err != nil {
				s.logger.Error("publish sample envelope", "end_device_id", env.GetEndDeviceId(), "error", err)
				continue
			}
			s.logger.Debug("published sample envelope", "end_device_id", env.GetEndDeviceId())
		}
	}
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

// instrumentStore records each insert attempt in the metrics: batch size,
// duration and, on success, the envelopes stored and their lag in time.
func (s *service) instrumentStore(store ponixnats.MsgStore) ponixnats.MsgStore {
	return func(ctx context.Context, batch ponixnats.Batch[jetstream.Msg]) error {
		start := time.Now()
		err := store(ctx, batch)
		s.metrics.ObserveInsert(batch.Len(), time.Since(start), err)
		if err == nil { // lag in time (issue 22): one envelope per batch is parsed
			s.metrics.ObserveStored(batch.Items, time.Now())
		}
		return err
	}
}
