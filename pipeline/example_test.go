package pipeline_test

import (
	"context"
	"embed"
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"time"

	envelopev1 "buf.build/gen/go/ponix/ponix/protocolbuffers/go/envelope/v1"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ponix-go/ponix/pipeline"
	"github.com/ponix-go/ponix/ponixclickhouse"
	"github.com/ponix-go/ponix/ponixclickhouse/migrate"
	"github.com/ponix-go/ponix/ponixnats"
	"github.com/ponix-go/ponix/runner"
)

//go:embed testdata/migrations/*.sql
var migrationFiles embed.FS

// event is a row of the events table: a decoded message and its place in the stream.
type event struct {
	Env     *envelopev1.ProcessedEnvelope
	Created uint64 // pipeline.Record.StreamCreatedNanos
	Seq     uint64 // pipeline.Record.Seq
}

// eventColumns declares each column of the events table once, with its value.
func eventColumns() *ponixclickhouse.ColumnSet[event] {
	return ponixclickhouse.Columns(
		ponixclickhouse.Column("end_device_id", func(e event) string { return e.Env.GetEndDeviceId() }),
		// An error refuses this row alone: its message is dead-lettered, the others stored.
		ponixclickhouse.ColumnFunc("occurred_at", func(e event) (time.Time, error) {
			if e.Env.GetOccurredAt() == nil {
				return time.Time{}, errors.New("no occurred_at")
			}
			return e.Env.GetOccurredAt().AsTime().UTC(), nil
		}),
		ponixclickhouse.Column("stream_created_ns", func(e event) uint64 { return e.Created }),
		ponixclickhouse.Column("stream_seq", func(e event) uint64 { return e.Seq }),
	)
}

// A service that stores the envelopes of a stream in its own table: the pipeline, its
// readiness on an HTTP mux, and a runner that stops both on SIGINT/SIGTERM. It needs a NATS
// server and a ClickHouse, so it is compiled, not run.
func Example() {
	logger := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	ctx := context.Background()
	nc, err := ponixnats.Connect(ctx, "nats://127.0.0.1:4222", ponixnats.WithName("events-sink"), ponixnats.WithLogger(logger))
	if err != nil {
		logger.Error("nats", "error", err)
		return
	}
	js, err := jetstream.New(nc)
	if err != nil {
		logger.Error("jetstream", "error", err)
		return
	}
	migrations, err := fs.Sub(migrationFiles, "testdata/migrations")
	if err != nil {
		logger.Error("migrations", "error", err)
		return
	}

	p, err := pipeline.New(pipeline.Config[*envelopev1.ProcessedEnvelope, event]{
		JetStream: js,
		Stream:    ponixnats.StreamConfig{Name: "events"}, // subjects events.>
		Consumer:  ponixnats.ConsumerConfig{Durable: "events-clickhouse", BatchSize: 5000, MaxWait: time.Second},
		ClickHouse: ponixclickhouse.Config{
			Addr: "127.0.0.1:9000", Database: "iot", Username: "iot", Password: os.Getenv("CLICKHOUSE_PASSWORD"), Logger: logger,
		},
		Table:   ponixclickhouse.Table{Name: "events"},
		Encoder: eventColumns().Encoder,
		Decode: pipeline.Proto(func() *envelopev1.ProcessedEnvelope { return new(envelopev1.ProcessedEnvelope) },
			func(e *envelopev1.ProcessedEnvelope) error {
				if e.GetEndDeviceId() == "" {
					return errors.New("no end_device_id") // dead-lettered, reason "invalid"
				}
				return nil
			}),
		Row: func(r pipeline.Record[*envelopev1.ProcessedEnvelope]) event {
			return event{Env: r.Value, Created: r.StreamCreatedNanos(), Seq: r.Seq}
		},
		Key:        pipeline.Key{StreamCreated: "stream_created_ns", StreamSeq: "stream_seq"},
		Migrations: pipeline.Migrations{FS: migrations, Options: []migrate.Option{migrate.WithApplication("events")}},
		Logger:     logger,
	})
	if err != nil {
		logger.Error("configuration", "error", err) // names each field it refuses
		return
	}

	mux := http.NewServeMux()
	mux.Handle("GET /readyz", p) // 200, or 503 with what is wrong: schema, sink, consumer
	srv := &http.Server{Addr: ":8080", Handler: mux, ReadHeaderTimeout: 5 * time.Second}

	r := runner.New(runner.WithLogger(logger))
	r.AddProcess("pipeline", p.Run) // migrates, starts, consumes until stopped
	r.AddProcess("http", func(context.Context) error {
		if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	r.AddCloser("http", srv.Shutdown)
	r.AddCloser("clickhouse", func(context.Context) error { return p.Close() })
	r.AddCloser("nats", func(ctx context.Context) error {
		err := nc.FlushWithContext(ctx) // the last acks
		nc.Close()
		return err
	})
	if err := r.Run(ctx); err != nil {
		logger.Error("stopped", "error", err)
	}
}
