package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ponix-go/ponix/ponix-all-in-one/internal/config"
	"github.com/ponix-go/ponix/ponixclickhouse"
	"github.com/ponix-go/ponix/ponixnats"
)

// PipelineOptions adapt the consumer path to where it runs: the service adds its metrics and
// its schema repair, the benchmark (cmd/ponix-bench) its measurements.
type PipelineOptions struct {
	// Logger, default slog.Default().
	Logger *slog.Logger
	// WrapStore, if set, wraps the function that stores a batch in ClickHouse (one call per
	// insert attempt), e.g. to observe stored batches.
	WrapStore func(ponixnats.MsgStore) ponixnats.MsgStore
	// Repair, if set, is called when the table is missing although nothing else in the
	// database looks like it (it was dropped, not renamed): the service applies the
	// migrations again. Nil: a missing table is reported and waited for.
	Repair func(ctx context.Context) error
	// Cluster, if set, writes to the shards of a ClickHouse cluster (see ClusterOptions)
	// instead of into the one server of conn, which then serves reads only.
	Cluster *ClusterOptions
}

// Pipeline is the consumer path of the service: a durable JetStream pull consumer on the
// configured stream whose batches are validated and written to ClickHouse in one native
// INSERT each, then acked.
//
//   - Envelopes go from the messages' wire bytes straight into the insert's columns
//     (ponixnats.NewEnvelopeWireProcessor, EnvelopeRow.Wire): no protobuf message is built
//     on the way.
//   - Records that can never be stored are dead-lettered alone: undecodable or invalid
//     envelopes, rows the encoder rejects (a ponixclickhouse.RowError), rows the server
//     refuses alone (found by bisecting a batch the server refused as data).
//   - A failure of the sink (ClickHouse down, disk full, credentials, missing table or
//     column, quotas, read-only replica, or anything unknown) holds the batch in place
//     (ponixnats.Hold) until ClickHouse takes it: nothing new is fetched, nothing is
//     redelivered or dead-lettered. PONIX_CLICKHOUSE_RETRY_SECS can bound the hold, after
//     which the batch is nak'd with a growing delay.
type Pipeline struct {
	// Consumer is the JetStream consumer.
	Consumer *ponixnats.Consumer
	// Hold says whether a batch is held because ClickHouse fails, and why.
	Hold *ponixnats.Hold
	// Schema says whether the table fits the writer.
	Schema *Schema

	writer atomic.Pointer[writerRef]
	log    *slog.Logger
}

// NewPipeline builds the consumer path. It creates or binds the durable consumer now; the
// ClickHouse writer is built when Run starts, once the table fits it.
func NewPipeline(ctx context.Context, cfg config.Config, js jetstream.JetStream, conn driver.Conn, opts PipelineOptions) (*Pipeline, error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	p := &Pipeline{log: logger}
	p.Schema = newSchema(conn, ponixclickhouse.Table{Name: ponixclickhouse.DefaultEnvelopeTable}, opts.Repair, logger)
	p.Schema.cluster = opts.Cluster
	p.Schema.insertTimeout = cfg.ClickHouseInsertTimeout()
	p.Hold = ponixnats.NewHold(ponixnats.HoldConfig{
		MaxDuration: cfg.ClickHouseRetry(),
		Classify:    func(err error) string { return string(ponixclickhouse.Classify(err)) },
		Logger:      logger.With("stream", cfg.NATSStream, "consumer", cfg.NATSConsumer),
	})
	store := p.store(logger.With("stream", cfg.NATSStream, "consumer", cfg.NATSConsumer))
	if opts.WrapStore != nil {
		store = opts.WrapStore(store)
	}
	processor := ponixnats.NewEnvelopeWireProcessor(store, ponixnats.WithHold(p.Hold))
	stream := ponixnats.StreamConfig{Name: cfg.NATSStream, Subjects: []string{cfg.NATSSubject}, Replicas: cfg.NATSReplicas}
	consumer, err := ponixnats.NewConsumer(ctx, js, ponixnats.ConsumerConfig{
		Stream:    cfg.NATSStream,
		Durable:   cfg.NATSConsumer,
		BatchSize: cfg.NATSBatchSize,
		MaxWait:   cfg.BatchWait(),
		// Fault tolerance knobs (PONIX_NATS_ACK_WAIT_SECS, _MAX_ACK_PENDING, _REPLICAS). The
		// store processor never naks a message for itself (a record it cannot store is
		// dead-lettered at once), so MaxDeliver has nothing to count: unlimited.
		AckWait:       cfg.AckWait(),
		MaxDeliver:    -1,
		MaxAckPending: cfg.NATSMaxAckPending,
		DrainTimeout:  drainTimeout(cfg),
		DeadLetter:    ponixnats.DeadLetterConfig{Replicas: cfg.NATSReplicas},
		EnsureStream:  &stream,
		ResumeAt:      p.resumeAt,
		Logger:        logger,
	}, processor)
	if err != nil {
		return nil, fmt.Errorf("consumer %s on stream %s: %w", cfg.NATSConsumer, cfg.NATSStream, err)
	}
	p.Consumer = consumer
	return p, nil
}

// drainTimeout is the part of PONIX_SHUTDOWN_TIMEOUT_SECS the batches in hand may take to be
// stored and acked at shutdown; closing the connections gets the rest.
func drainTimeout(cfg config.Config) time.Duration {
	return max(time.Second, cfg.ShutdownTimeout()*2/3)
}

// Run waits until the table fits the writer (reporting what is wrong meanwhile, see Schema),
// then consumes until ctx ends.
func (p *Pipeline) Run(ctx context.Context) error {
	w, err := p.Schema.wait(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while waiting for the schema: nothing was fetched
		}
		return err
	}
	p.writer.Store(&writerRef{w})
	p.log.Info("the ClickHouse table fits the writer: consuming", "table", p.Schema.table.String())
	if c, ok := w.(io.Closer); ok {
		defer c.Close() // a cluster writer's connections to the nodes
	}
	return p.Consumer.Run(ctx)
}

// store writes a batch of envelope messages as EnvelopeRows from their wire bytes, keyed by
// their stream's creation time and their stream sequence (the de-duplication key), and logs one
// line per stored batch. A
// schema error makes it compare the table with the writer (and repair a dropped table) and
// report the difference instead.
func (p *Pipeline) store(logger *slog.Logger) ponixnats.MsgStore {
	var rows []ponixclickhouse.EnvelopeRow // reused: the consumer stores one batch at a time
	return func(ctx context.Context, batch ponixnats.Batch[jetstream.Msg]) error {
		ref := p.writer.Load()
		if ref == nil {
			return errors.New("the ClickHouse writer is not ready")
		}
		w := ref.w
		msgs := batch.Items
		rows = rows[:0]
		for _, m := range msgs {
			seq, err := ponixnats.StreamSequence(m)
			if err != nil {
				return err
			}
			// The stream's creation time tells its incarnations apart (see migration 4).
			rows = append(rows, ponixclickhouse.EnvelopeRow{Wire: m.Data(), StreamSeq: seq, StreamCreated: batch.Stream.Created})
		}
		start := time.Now()
		if err := w.Write(ctx, rows); err != nil {
			if ponixclickhouse.Classify(err) == ponixclickhouse.ClassSchema {
				return p.Schema.diagnose(ctx, w, err)
			}
			return err
		}
		p.Schema.fits()
		logger.Info("stored batch", "batch_size", len(rows), "duration", time.Since(start))
		if logger.Enabled(ctx, slog.LevelDebug) {
			for _, m := range msgs {
				logger.Debug("stored envelope", "subject", m.Subject())
			}
		}
		return nil
	}
}

// maxResumeScan bounds the stored sequences read to find where a consumer created anew resumes.
const maxResumeScan = 5_000_000

// resumeAt says where a durable consumer created anew (it was deleted, or its stream was)
// starts: after the stored messages of this stream incarnation that follow each other from
// the last known ack floor on, i.e. at the first message after the floor that has no row. A
// dead-lettered message has no row either, so delivery may start a little early; the copies
// stored again collapse under FINAL.
func (p *Pipeline) resumeAt(ctx context.Context, ri ponixnats.ResumeInfo) (uint64, error) {
	next := max(ri.AckFloor+1, ri.FirstSeq, 1)
	if ri.StreamCreated.IsZero() {
		return next, nil
	}
	rows, err := p.Schema.conn.Query(ctx, fmt.Sprintf(
		"SELECT DISTINCT stream_seq FROM %s WHERE stream_created_ns = %d AND stream_seq >= %d ORDER BY stream_seq LIMIT %d",
		ponixclickhouse.DefaultEnvelopeTable, ri.StreamCreated.UnixNano(), next, maxResumeScan))
	if err != nil {
		if ponixclickhouse.Classify(err) == ponixclickhouse.ClassSchema {
			// No table yet (it is checked, and repaired, before consuming starts): nothing of
			// this stream is stored after the floor.
			p.log.Warn("no stored sequences to resume after: the table cannot be read", "error", err, "start_sequence", next)
			return next, nil
		}
		return 0, fmt.Errorf("reading the stored stream sequences: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var seq uint64
		if err := rows.Scan(&seq); err != nil {
			return 0, err
		}
		if seq != next {
			break
		}
		next++
	}
	if err := rows.Err(); err != nil {
		return 0, err
	}
	p.log.Info("resuming after the stored messages", "stream", ri.Stream, "ack_floor", ri.AckFloor, "start_sequence", next)
	return next, nil
}
