package app

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	envelopev1 "buf.build/gen/go/ponix/ponix/protocolbuffers/go/envelope/v1"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ponix-go/ponix/ponix-all-in-one/internal/config"
	"github.com/ponix-go/ponix/ponixclickhouse"
	"github.com/ponix-go/ponix/ponixnats"
)

// ConsumerOptions adapt the consumer path to where it runs: the service adds
// its metrics, the benchmark (cmd/ponix-bench) its measurements.
type ConsumerOptions struct {
	// Logger, default slog.Default().
	Logger *slog.Logger
	// WrapStore, if set, wraps the function that stores a batch in ClickHouse,
	// e.g. to observe stored batches.
	WrapStore func(ponixnats.EnvelopeStore) ponixnats.EnvelopeStore
}

// NewConsumer builds the consumer path of the service: a durable JetStream pull
// consumer on cfg's stream whose batches are decoded, validated and written to
// ClickHouse through conn in one native INSERT each, then acked. A row
// ClickHouse can never hold is dead-lettered alone (ponixclickhouse.RowError
// is a ponixnats.Rejection); a sink error no retry can fix dead-letters the
// batch; any other error naks it for a later retry.
func NewConsumer(ctx context.Context, cfg config.Config, js jetstream.JetStream, conn driver.Conn, opts ConsumerOptions) (*ponixnats.Consumer, error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	logger = logger.With("stream", cfg.NATSStream, "consumer", cfg.NATSConsumer)
	writer, err := ponixclickhouse.NewEnvelopeWriter(conn, ponixclickhouse.WithLogger(logger))
	if err != nil {
		return nil, err
	}
	store := storeFunc(writer, logger)
	if opts.WrapStore != nil {
		store = opts.WrapStore(store)
	}
	processor := ponixnats.NewEnvelopeProcessor(store, ponixnats.WithPermanentError(ponixclickhouse.IsPermanent))
	consumer, err := ponixnats.NewConsumer(ctx, js, ponixnats.ConsumerConfig{
		Stream:    cfg.NATSStream,
		Durable:   cfg.NATSConsumer,
		BatchSize: cfg.NATSBatchSize,
		MaxWait:   cfg.BatchWait(),
		// Delivery knobs: PONIX_NATS_ACK_WAIT_SECS, _MAX_DELIVER,
		// _MAX_ACK_PENDING, _REPLICAS.
		AckWait:       cfg.AckWait(),
		MaxDeliver:    cfg.NATSMaxDeliver,
		MaxAckPending: cfg.NATSMaxAckPending,
		DeadLetter:    ponixnats.DeadLetterConfig{Replicas: cfg.NATSReplicas},
		Logger:        logger,
	}, processor)
	if err != nil {
		return nil, fmt.Errorf("consumer %s on stream %s: %w", cfg.NATSConsumer, cfg.NATSStream, err)
	}
	return consumer, nil
}

// storeFunc writes a batch as EnvelopeRows keyed by their stream sequence (the
// de-duplication key) and logs one line per stored batch.
func storeFunc(writer *ponixclickhouse.BatchWriter[ponixclickhouse.EnvelopeRow], logger *slog.Logger) ponixnats.EnvelopeStore {
	var rows []ponixclickhouse.EnvelopeRow // reused: the consumer stores one batch at a time
	return func(ctx context.Context, batch []ponixnats.Decoded[*envelopev1.ProcessedEnvelope]) error {
		rows = rows[:0]
		for _, d := range batch {
			seq, err := ponixnats.StreamSequence(d.Msg)
			if err != nil {
				return err
			}
			rows = append(rows, ponixclickhouse.EnvelopeRow{Envelope: d.Value, StreamSeq: seq})
		}
		start := time.Now()
		if err := writer.Write(ctx, rows); err != nil {
			return err
		}
		logger.Info("stored batch", "batch_size", len(rows), "duration", time.Since(start))
		if logger.Enabled(ctx, slog.LevelDebug) {
			for _, r := range rows {
				logger.Debug("stored envelope", "end_device_id", r.Envelope.GetEndDeviceId(),
					"organization_id", r.Envelope.GetOrganizationId(), "stream_seq", r.StreamSeq)
			}
		}
		return nil
	}
}
