package main

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	metricsv1 "github.com/ponix-go/ponix/examples/readings/proto/metrics/v1"
	"github.com/ponix-go/ponix/pipeline"
	"github.com/ponix-go/ponix/ponixclickhouse"
	"github.com/ponix-go/ponix/ponixclickhouse/migrate"
	"github.com/ponix-go/ponix/ponixnats"
	"github.com/ponix-go/ponix/runner"
)

// The names this service owns, none of them Ponix's: the two can share NATS and a database.
const (
	streamName  = "readings"            // the stream; a reading is published on readings.<sensor_id>
	durableName = "readings-clickhouse" // the durable consumer, shared by the service's instances
	tableName   = "readings"            // the ClickHouse table
	application = "readings"            // the migration set: its own version and lock tables
)

// run runs the pipeline (and /readyz, when cfg.HTTPAddr is set) until ctx ends or
// SIGINT/SIGTERM arrives, then stores and acks the batch in hand and closes the connections.
func run(ctx context.Context, cfg config, logger *slog.Logger) error {
	nc, err := ponixnats.Connect(ctx, cfg.NATSURL, ponixnats.WithName("readings"), ponixnats.WithLogger(logger))
	if err != nil {
		return err // says whether the server was unreachable, refused us, or TLS failed
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return err
	}
	p, err := pipeline.New(pipeline.Config[*metricsv1.Reading, row]{
		JetStream: js,
		Stream:    ponixnats.StreamConfig{Name: streamName, Subjects: []string{streamName + ".>"}},
		Consumer:  ponixnats.ConsumerConfig{Durable: durableName, BatchSize: cfg.BatchSize, MaxWait: cfg.BatchWait},
		ClickHouse: ponixclickhouse.Config{Addr: cfg.ClickHouseAddr, Database: cfg.ClickHouseDatabase,
			Username: cfg.ClickHouseUser, Password: cfg.ClickHousePassword, Logger: logger},
		Table:   ponixclickhouse.Table{Name: tableName},
		Encoder: rowColumns().Encoder,
		Decode:  pipeline.Proto(func() *metricsv1.Reading { return new(metricsv1.Reading) }, validate),
		Row: func(r pipeline.Record[*metricsv1.Reading]) row {
			return row{Reading: r.Value, StreamCreated: r.StreamCreatedNanos(), StreamSeq: r.Seq}
		},
		Key:        pipeline.Key{StreamCreated: "stream_created_ns", StreamSeq: "stream_seq"},
		Migrations: pipeline.Migrations{FS: schema(), Options: []migrate.Option{migrate.WithApplication(application)}},
		Logger:     logger,
	})
	if err != nil {
		nc.Close()
		return err
	}
	r := runner.New(runner.WithLogger(logger))
	r.AddProcess("pipeline", p.Run)
	if cfg.HTTPAddr != "" {
		// The pipeline answers readiness probes: 503 with the reason while a batch is held.
		r.AddProcess("http", runner.HTTPServer(&http.Server{Addr: cfg.HTTPAddr, Handler: p}, 5*time.Second))
	}
	r.AddCloser("nats", func(ctx context.Context) error {
		defer nc.Close()
		return nc.FlushWithContext(ctx) // the last acks may still be buffered
	})
	r.AddCloser("clickhouse", func(context.Context) error { return p.Close() })
	return r.Run(ctx)
}
