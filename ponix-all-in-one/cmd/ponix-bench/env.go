package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"time"

	envelopev1 "buf.build/gen/go/ponix/ponix/protocolbuffers/go/envelope/v1"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ponix-go/ponix/migrations"
	"github.com/ponix-go/ponix/ponixclickhouse"
	"github.com/ponix-go/ponix/ponixclickhouse/chcluster"
	"github.com/ponix-go/ponix/ponixclickhouse/chserver"
	"github.com/ponix-go/ponix/ponixclickhouse/migrate"
	"github.com/ponix-go/ponix/ponixnats"
)

// benchStream is the stream the benchmark fills; it is deleted and made anew.
const benchStream = "ponix_bench"

// env holds the servers and connections of one benchmark run.
type env struct {
	o      *options
	logger *slog.Logger
	nats   *natsProcess
	ch     *chserver.Server
	nc     *nats.Conn
	js     jetstream.JetStream
	chCfg  ponixclickhouse.Config
	// With -cluster: the cluster, and the pids of its servers (CPU figures).
	cluster    *chcluster.Cluster
	serverPIDs []int
}

// setup starts (or connects to) the servers and makes the benchmark stream anew.
func setup(ctx context.Context, o *options, logger *slog.Logger) (*env, error) {
	e := &env{o: o, logger: logger}
	dir, err := os.MkdirTemp("", "ponix-bench-*")
	if err != nil {
		return nil, err
	}
	o.dir = dir
	url := o.natsURL
	if url == "" {
		if e.nats, err = startNATS(ctx, dir); err != nil {
			e.close()
			return nil, err
		}
		url = e.nats.url
		o.natsPID = e.nats.pid()
	}
	e.chCfg = ponixclickhouse.Config{Addr: o.chAddr, Username: o.chUser, Password: o.chPassword}
	if o.cluster {
		if err := e.startCluster(ctx); err != nil {
			e.close()
			return nil, err
		}
	} else if o.chAddr == "" {
		if e.ch, err = startClickHouse(ctx, dir); err != nil {
			e.close()
			return nil, err
		}
		e.chCfg = ponixclickhouse.Config{Addr: e.ch.Addr()}
		o.chPID = chPID(dir)
	}
	if e.nc, err = ponixnats.Connect(ctx, url, ponixnats.WithName("ponix-bench"), ponixnats.WithLogger(logger)); err != nil {
		e.close()
		return nil, err
	}
	if e.js, err = jetstream.New(e.nc); err != nil {
		e.close()
		return nil, err
	}
	if err := e.freshStream(ctx); err != nil {
		e.close()
		return nil, err
	}
	return e, nil
}

func (e *env) close() {
	if e.nc != nil {
		e.nc.Close()
	}
	if e.nats != nil {
		e.nats.stop()
	}
	if e.ch != nil {
		_ = e.ch.Stop(context.Background())
	}
	if e.cluster != nil {
		_ = e.cluster.Close()
	}
	if e.o.dir != "" {
		_ = os.RemoveAll(e.o.dir)
	}
}

// freshStream deletes and creates the benchmark stream.
func (e *env) freshStream(ctx context.Context) error {
	if err := e.js.DeleteStream(ctx, benchStream); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("delete stream %s: %w", benchStream, err)
	}
	_, err := ponixnats.EnsureStream(ctx, e.js, ponixnats.StreamConfig{Name: benchStream})
	return err
}

// preload publishes n benchmark envelopes and returns how long it took.
func (e *env) preload(ctx context.Context, n int) (time.Duration, error) {
	p := ponixnats.NewEnvelopeProducer(e.js, benchStream)
	rnd := rand.New(rand.NewPCG(1, 2))
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	const chunk = 10_000
	buf := make([]*envelopev1.ProcessedEnvelope, 0, chunk)
	start := time.Now()
	for i := 0; i < n; i += chunk {
		buf = buf[:0]
		for j := i; j < min(i+chunk, n); j++ {
			buf = append(buf, envelope(j, base, rnd))
		}
		if err := p.PublishBatch(ctx, buf); err != nil {
			return 0, err
		}
	}
	return time.Since(start), nil
}

// freshDatabase drops and creates database name, runs the migrations in it and
// returns a connection to it.
func (e *env) freshDatabase(ctx context.Context, name string) (driver.Conn, error) {
	if e.cluster != nil {
		return e.freshClusterDatabase(ctx, name)
	}
	admin, err := ponixclickhouse.Open(ctx, e.chCfg)
	if err != nil {
		return nil, err
	}
	defer admin.Close()
	q, err := ponixclickhouse.QuoteIdentifier(name)
	if err != nil {
		return nil, err
	}
	for _, stmt := range []string{"DROP DATABASE IF EXISTS " + q, "CREATE DATABASE " + q} {
		if err := admin.Exec(ctx, stmt); err != nil {
			return nil, fmt.Errorf("%s: %w", stmt, err)
		}
	}
	cfg := e.chCfg
	cfg.Database = name
	db := ponixclickhouse.OpenDB(cfg)
	defer db.Close()
	if _, err := migrate.Up(ctx, db, migrations.FS(), migrate.WithLogger(e.logger)); err != nil {
		return nil, err
	}
	return ponixclickhouse.Open(ctx, cfg)
}

// countRows returns the raw and the FINAL row counts and the distinct stream
// sequences of processed_envelopes.
func countRows(ctx context.Context, conn driver.Conn) (raw, final, distinct uint64, err error) {
	if err = conn.QueryRow(ctx, "SELECT count(), uniqExact(stream_seq) FROM processed_envelopes").Scan(&raw, &distinct); err != nil {
		return
	}
	err = conn.QueryRow(ctx, "SELECT count() FROM processed_envelopes FINAL").Scan(&final)
	return
}
