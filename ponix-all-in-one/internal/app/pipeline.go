package app

import (
	"io/fs"
	"log/slog"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ponix-go/ponix/pipeline"
	"github.com/ponix-go/ponix/ponix-all-in-one/internal/config"
	"github.com/ponix-go/ponix/ponixclickhouse"
	"github.com/ponix-go/ponix/ponixclickhouse/migrate"
	"github.com/ponix-go/ponix/ponixnats"
)

// Pipeline is the service's consumer path: ProcessedEnvelope messages, from their wire bytes,
// into processed_envelopes.
type Pipeline = pipeline.Pipeline[[]byte, ponixclickhouse.EnvelopeRow]

// PipelineOptions adapt the consumer path to where it runs: the service adds its metrics and
// its migrations, the benchmark (cmd/ponix-bench) its measurements. See pipeline.Config.
type PipelineOptions struct {
	Logger     *slog.Logger
	ClickHouse ponixclickhouse.Config
	Conn       driver.Conn
	Migrations fs.FS // nil: none applied (nor re-applied to re-create a dropped table)
	Observe    func(pipeline.Insert[[]byte])
}

// NewPipeline composes the library pipeline for ProcessedEnvelope with the service's
// configuration: a durable JetStream pull consumer on the configured stream whose batches are
// written to ClickHouse in one native INSERT each, then acked (see the pipeline package for
// the delivery rules).
//
//   - Envelopes go from the messages' wire bytes straight into the insert's columns
//     (ponixclickhouse.EnvelopeRow.Wire), validated on the way: no protobuf message is built,
//     and each envelope's bytes are read once.
//   - PONIX_CLICKHOUSE_RETRY_SECS can bound a hold, after which the batch is nak'd with a
//     growing delay; PONIX_CLICKHOUSE_CLUSTER writes to a cluster's shards.
func NewPipeline(cfg config.Config, js jetstream.JetStream, opts PipelineOptions) (*Pipeline, error) {
	var cluster *pipeline.Cluster[ponixclickhouse.EnvelopeRow]
	if cfg.ClickHouseCluster != "" {
		cluster = &pipeline.Cluster[ponixclickhouse.EnvelopeRow]{Name: cfg.ClickHouseCluster, ShardKey: ponixclickhouse.EnvelopeShardKey}
	}
	return pipeline.New(pipeline.Config[[]byte, ponixclickhouse.EnvelopeRow]{
		JetStream: js,
		Stream:    ponixnats.StreamConfig{Name: cfg.NATSStream, Subjects: []string{cfg.NATSSubject}, Replicas: cfg.NATSReplicas},
		Consumer: ponixnats.ConsumerConfig{
			Durable:   cfg.NATSConsumer,
			BatchSize: cfg.NATSBatchSize,
			MaxWait:   cfg.BatchWait(),
			// PONIX_NATS_ACK_WAIT_SECS, _MAX_ACK_PENDING, _REPLICAS. The pipeline never naks a
			// message for itself (a record it cannot store is dead-lettered at once), so
			// MaxDeliver has nothing to count: unlimited.
			AckWait:       cfg.AckWait(),
			Ack:           cfg.AckMode(),
			MaxDeliver:    -1,
			MaxAckPending: cfg.NATSMaxAckPending,
			// PONIX_NATS_SHARED_PULL_CONNECTION
			PullOnSharedConnection: cfg.NATSSharedPullConnection,
			DrainTimeout:           drainTimeout(cfg),
			DeadLetter:             ponixnats.DeadLetterConfig{Replicas: cfg.NATSReplicas},
		},
		ClickHouse: opts.ClickHouse,
		Conn:       opts.Conn,
		Table:      ponixclickhouse.Table{Name: ponixclickhouse.DefaultEnvelopeTable},
		Encoder: func() ponixclickhouse.Encoder[ponixclickhouse.EnvelopeRow] {
			return ponixclickhouse.NewEnvelopeEncoder()
		},
		// The encoder validates each envelope while it encodes it from its wire bytes (read once);
		// the processor dead-letters what it refuses with the envelope's reason.
		Decode: pipeline.RawProcessor(ponixnats.NewEnvelopeWireProcessor),
		Row: func(r pipeline.Record[[]byte]) ponixclickhouse.EnvelopeRow {
			// The stream's creation time tells its incarnations apart (see migration 4).
			return ponixclickhouse.EnvelopeRow{Wire: r.Value, StreamSeq: r.Seq, StreamCreated: r.Stream.Created}
		},
		Key:           pipeline.Key{StreamCreated: "stream_created_ns", StreamSeq: "stream_seq"},
		Migrations:    pipeline.Migrations{FS: opts.Migrations}, // on a cluster the pipeline adds its options
		Cluster:       cluster,
		InsertTimeout: cfg.ClickHouseInsertTimeout(),
		Hold:          ponixnats.HoldConfig{MaxDuration: cfg.ClickHouseRetry()},
		Observe:       opts.Observe,
		Logger:        opts.Logger,
	})
}

// migrateOptions are the options of the service's migration runs: on a cluster, its name and
// the database, whose name the cluster's ZooKeeper paths and Distributed tables carry.
func migrateOptions(cfg config.Config) []migrate.Option {
	if cfg.ClickHouseCluster == "" {
		return nil
	}
	return []migrate.Option{migrate.WithCluster(cfg.ClickHouseCluster), migrate.WithDatabase(cfg.ClickHouseDatabase)}
}

// drainTimeout is the part of PONIX_SHUTDOWN_TIMEOUT_SECS the batches in hand may take to be
// stored and acked at shutdown; closing the connections gets the rest.
func drainTimeout(cfg config.Config) time.Duration {
	return max(time.Second, cfg.ShutdownTimeout()*2/3)
}
