package app

import (
	"context"
	"fmt"
	"log/slog"
	"time"

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
	// WrapStore, if set, wraps the function that stores a batch in ClickHouse
	// (one call per insert attempt), e.g. to observe stored batches.
	WrapStore func(ponixnats.MsgStore) ponixnats.MsgStore
}

// NewConsumer builds the consumer path of the service: a durable JetStream pull
// consumer on cfg's stream whose batches are validated and written to
// ClickHouse through conn in one native INSERT each, then acked.
//
//   - Envelopes go from the messages' wire bytes straight into the insert's
//     columns (ponixnats.NewEnvelopeWireProcessor, EnvelopeRow.Wire): no
//     protobuf message is built on the way.
//   - Undecodable and invalid envelopes, and rows ClickHouse can never hold
//     (a ponixclickhouse.RowError is a ponixnats.Rejection), are dead-lettered
//     alone; a sink error no retry can fix dead-letters the batch.
//   - A retryable sink error (ClickHouse down or overloaded) is retried in
//     place with backoff (ponixnats.RetryStore) for up to
//     PONIX_CLICKHOUSE_RETRY_SECS (0: as long as the service runs), so an
//     outage does not use up the messages' deliveries.
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
	store = ponixnats.RetryStore(store, ponixnats.RetryOptions{
		Retryable:   ponixclickhouse.IsRetryable,
		MaxDuration: cfg.ClickHouseRetry(),
		Logger:      logger,
	})
	processor := ponixnats.NewEnvelopeWireProcessor(store, ponixnats.WithPermanentError(ponixclickhouse.IsPermanent))
	consumer, err := ponixnats.NewConsumer(ctx, js, ponixnats.ConsumerConfig{
		Stream:    cfg.NATSStream,
		Durable:   cfg.NATSConsumer,
		BatchSize: cfg.NATSBatchSize,
		MaxWait:   cfg.BatchWait(),
		// Fault tolerance knobs (PONIX_NATS_ACK_WAIT_SECS, _MAX_DELIVER,
		// _MAX_ACK_PENDING, _REPLICAS).
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

// storeFunc writes a batch of envelope messages as EnvelopeRows from their
// wire bytes, keyed by their stream sequence (the de-duplication key), and
// logs one line per stored batch.
func storeFunc(writer *ponixclickhouse.BatchWriter[ponixclickhouse.EnvelopeRow], logger *slog.Logger) ponixnats.MsgStore {
	var rows []ponixclickhouse.EnvelopeRow // reused: the consumer stores one batch at a time
	return func(ctx context.Context, msgs []jetstream.Msg) error {
		rows = rows[:0]
		for _, m := range msgs {
			seq, err := ponixnats.StreamSequence(m)
			if err != nil {
				return err
			}
			rows = append(rows, ponixclickhouse.EnvelopeRow{Wire: m.Data(), StreamSeq: seq})
		}
		start := time.Now()
		if err := writer.Write(ctx, rows); err != nil {
			return err
		}
		logger.Info("stored batch", "batch_size", len(rows), "duration", time.Since(start))
		if logger.Enabled(ctx, slog.LevelDebug) {
			for _, m := range msgs {
				logger.Debug("stored envelope", "subject", m.Subject())
			}
		}
		return nil
	}
}
