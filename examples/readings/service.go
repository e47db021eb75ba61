package main

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"log/slog"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	metricsv1 "github.com/ponix-go/ponix/examples/readings/proto/metrics/v1"
	"github.com/ponix-go/ponix/ponixclickhouse"
	"github.com/ponix-go/ponix/ponixclickhouse/migrate"
	"github.com/ponix-go/ponix/ponixnats"
	"github.com/ponix-go/ponix/runner"
)

// The names this service owns. None of them is one of Ponix's (processed_envelopes,
// ponix-all-in-one, goose_db_version, goose_lock), so the two can share a NATS server and a
// ClickHouse database.
const (
	// streamName is the JetStream stream of readings; a reading is published on
	// readings.<sensor_id>.
	streamName = "readings"
	// durableName is the durable consumer's name. Instances of this service share it and
	// split the stream's messages between them.
	durableName = "readings-clickhouse"
	// tableName is the ClickHouse table of readings.
	tableName = "readings"
	// application names this service's migration set: migrate.WithApplication gives it its own
	// version table (readings_goose_db_version) and lock, apart from Ponix's own or any other
	// application's in the same database.
	application = "readings"
)

// startupTimeout bounds connecting, migrating and creating the consumer.
const startupTimeout = time.Minute

//go:embed schema/*.sql
var schemaFiles embed.FS

// schema returns the service's goose migrations, at the root of the file system.
func schema() fs.FS {
	sub, err := fs.Sub(schemaFiles, "schema")
	if err != nil {
		panic(err) // "schema" is a valid path: fs.Sub cannot fail
	}
	return sub
}

// migrateSchema applies the service's migrations to the database db connects to, recording
// them in the service's own version table under its own lock.
func migrateSchema(ctx context.Context, db *sql.DB, logger *slog.Logger) error {
	_, err := migrate.Up(ctx, db, schema(),
		migrate.WithApplication(application),
		migrate.WithLogger(logger))
	return err
}

// service is the running pipeline: a consumer of the stream and what it holds open.
type service struct {
	nc       *nats.Conn
	conn     driver.Conn
	consumer *ponixnats.Consumer
}

// run starts the service and runs it until ctx ends or SIGINT/SIGTERM arrives, then stops
// fetching, stores and acks the batch in hand, and closes the connections.
func run(ctx context.Context, cfg config, logger *slog.Logger) error {
	svc, err := start(ctx, cfg, logger)
	if err != nil {
		return err
	}
	r := runner.New(runner.WithLogger(logger))
	r.AddProcess("consumer", svc.consumer.Run)
	r.AddCloser("nats", func(ctx context.Context) error {
		// The last acks may still be buffered: send them, then close.
		err := svc.nc.FlushWithContext(ctx)
		svc.nc.Close()
		return err
	})
	r.AddCloser("clickhouse", func(context.Context) error { return svc.conn.Close() })
	return r.Run(ctx)
}

// start connects to NATS and ClickHouse, applies the migrations and creates the consumer. On
// failure it closes what it opened.
func start(ctx context.Context, cfg config, logger *slog.Logger) (svc *service, err error) {
	ctx, cancel := context.WithTimeout(ctx, startupTimeout)
	defer cancel()
	svc = &service{}
	defer func() {
		if err != nil {
			if svc.nc != nil {
				svc.nc.Close()
			}
			if svc.conn != nil {
				_ = svc.conn.Close()
			}
		}
	}()

	chcfg := ponixclickhouse.Config{
		Addr:     cfg.ClickHouseAddr,
		Database: cfg.ClickHouseDatabase,
		Username: cfg.ClickHouseUser,
		Password: cfg.ClickHousePassword,
		Logger:   logger,
	}
	db := ponixclickhouse.OpenDB(chcfg)
	err = migrateSchema(ctx, db, logger)
	_ = db.Close()
	if err != nil {
		return nil, fmt.Errorf("clickhouse migrations: %w", err)
	}
	if svc.conn, err = ponixclickhouse.Open(ctx, chcfg); err != nil {
		return nil, err // a *ponixclickhouse.ConfigError names the setting to check
	}
	// NewBatchWriter checks the table against the encoder's columns now, not at the first batch.
	w, err := ponixclickhouse.NewBatchWriter(ctx, svc.conn, ponixclickhouse.Table{Name: tableName},
		rowColumns().Encoder, ponixclickhouse.WithLogger(logger))
	if err != nil {
		return nil, err
	}

	if svc.nc, err = ponixnats.Connect(ctx, cfg.NATSURL, ponixnats.WithName("readings"), ponixnats.WithLogger(logger)); err != nil {
		return nil, err // says whether the server was unreachable, refused us, or TLS failed
	}
	js, err := jetstream.New(svc.nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	stream := ponixnats.StreamConfig{Name: streamName, Subjects: []string{streamName + ".>"}}
	if _, err := ponixnats.EnsureStream(ctx, js, stream); err != nil {
		return nil, err
	}

	// A failing ClickHouse holds the batch in place: nothing is fetched, redelivered or
	// dead-lettered until an INSERT succeeds again. Hold.State() says why, for a readiness probe.
	hold := ponixnats.NewHold(ponixnats.HoldConfig{
		Classify: func(err error) string { return string(ponixclickhouse.Classify(err)) },
		Logger:   logger,
	})
	processor := ponixnats.NewProtoStoreProcessor(
		func() *metricsv1.Reading { return new(metricsv1.Reading) },
		store(w), validate, ponixnats.WithHold(hold))
	svc.consumer, err = ponixnats.NewConsumer(ctx, js, ponixnats.ConsumerConfig{
		Stream:       streamName,
		Durable:      durableName,
		BatchSize:    cfg.BatchSize,
		MaxWait:      cfg.BatchWait,
		EnsureStream: &stream, // created again if someone deletes it while we run
		Logger:       logger,
	}, processor)
	if err != nil {
		return nil, err
	}
	logger.Info("readings started", "stream", streamName, "consumer", durableName, "table", tableName,
		"clickhouse", cfg.ClickHouseAddr, "database", cfg.ClickHouseDatabase)
	return svc, nil
}

// store returns the store function of the processor: one INSERT per batch, all or nothing.
// A row the encoder refuses comes back as a *ponixclickhouse.RowError, which the processor
// dead-letters alone; any other error holds the batch.
func store(w *ponixclickhouse.BatchWriter[row]) func(context.Context, ponixnats.Batch[ponixnats.Decoded[*metricsv1.Reading]]) error {
	return func(ctx context.Context, batch ponixnats.Batch[ponixnats.Decoded[*metricsv1.Reading]]) error {
		rows := make([]row, batch.Len())
		for i, d := range batch.Items {
			seq, err := ponixnats.StreamSequence(d.Msg)
			if err != nil {
				return err
			}
			// The stream incarnation and the sequence: the row's de-duplication key.
			rows[i] = row{Reading: d.Value, StreamCreated: batch.Stream.Created, StreamSeq: seq}
		}
		return w.Write(ctx, rows)
	}
}
