package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"slices"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ponix-go/ponix/ponixclickhouse"
	"github.com/ponix-go/ponix/ponixclickhouse/migrate"
	"github.com/ponix-go/ponix/ponixnats"
)

// ErrInvalidConfig is wrapped by the error [New] returns for a configuration it refuses; the
// error names the field.
var ErrInvalidConfig = errors.New("invalid pipeline configuration")

// Record is one message on its way to a row: its decoded value and its identity. Stream and
// Seq together identify the message for good (a stream deleted and created again has a new
// creation time): store them in the row as its de-duplication key (see [Key]).
type Record[T any] struct {
	// Value is the message decoded by the [Decoder].
	Value T
	// Stream is the stream incarnation the message was fetched from.
	Stream ponixnats.StreamID
	// Seq is the message's stream sequence.
	Seq uint64
	// Delivered is how many times the message was delivered, this delivery included.
	Delivered uint64
	// Msg is the message itself (subject, headers, metadata such as its delivery count).
	Msg jetstream.Msg
}

// StreamCreatedNanos returns the stream's creation time in Unix nanoseconds, the value of a
// [Key].StreamCreated column (0 when unknown).
func (r Record[T]) StreamCreatedNanos() uint64 {
	if r.Stream.Created.IsZero() {
		return 0
	}
	return uint64(r.Stream.Created.UnixNano())
}

// Key names the table's columns that hold a row's de-duplication key, which the [Config].Row
// function fills from the [Record]: the stream incarnation (Record.StreamCreatedNanos, a
// UInt64 column) and the stream sequence (Record.Seq, UInt64). With a Key:
//
//   - a batch that may hold messages already stored — one delivered before (after a crash
//     between an insert and its acks, an expired AckWait, a restart of NATS), or one at or
//     below the stream's last sequence when its durable consumer was created anew — is
//     checked against the table first: the messages whose key is stored are acknowledged
//     without being inserted again, so no copy reaches the table (nor a materialized view on
//     it). Batches of first deliveries pay nothing;
//   - a durable consumer created anew (it, or its stream, was deleted while the pipeline ran)
//     resumes after the messages already stored instead of at the last known ack floor.
//
// The check reads the key columns of the stream incarnation in the batch's sequence range:
// cheap when the table's sorting key (or a Lookup table's) starts with them. On a cluster
// (without Lookup) it reads each shard's local table on a replica that holds every part its
// shard committed, not the Distributed table, and holds the batch while a shard has none.
type Key struct {
	StreamCreated string
	StreamSeq     string
	// Lookup, if set, is the table the keys are read from (default the pipeline's Table), e.g.
	// a table sorted by the key that a materialized view fills.
	Lookup ponixclickhouse.Table
}

// Migrations are the goose migrations that create and change the table (see
// ponixclickhouse/migrate). Before consuming, the pipeline creates the database when missing
// and applies them; a table dropped while it runs is created again by applying them again.
type Migrations struct {
	// FS holds the migration files at its root.
	FS fs.FS
	// Options are passed to every migrate call. Give each application sharing a database its
	// own migration set: migrate.WithApplication("yours") (the default set is Ponix's own).
	// The pipeline adds migrate.WithLogger and, on a cluster, migrate.WithCluster and
	// migrate.WithDatabase before them.
	Options []migrate.Option
}

// Cluster makes the pipeline write to the shards of a ClickHouse cluster: each batch is split
// by shard and written into the shard-local tables, replica by replica
// (ponixclickhouse.ShardedWriter), instead of one INSERT into one server. [Config].Table is then
// the Distributed table, which reads (the already-stored check, the resume point) go through.
// On a cluster the pipeline names a table that does not fit and holds; it never re-creates one.
type Cluster[R any] struct {
	// Name is the cluster in the servers' remote_servers (required).
	Name string
	// ShardKey returns the value that picks a row's shard: the Distributed table's sharding
	// key (required).
	ShardKey func(R) uint64
	// NodeAddr, if set, maps a replica to the address to reach it (default host_address:port).
	NodeAddr func(ponixclickhouse.Replica) string
	// LocalTable is the shard-local table rows are written to, in Table's database (default
	// Table's name with ponixclickhouse.LocalTableSuffix, as Ponix's migrations name it).
	LocalTable string
}

// Insert is one insert attempt of a batch, or of a part of one while the records the sink
// refuses are isolated, as given to [Config].Observe.
type Insert[T any] struct {
	// Records are the records written, in order. The slice is reused by the next attempt:
	// it is valid during the Observe call only.
	Records []Record[T]
	// Took is how long the attempt took.
	Took time.Duration
	// Err is nil when the records were stored.
	Err error
	// Stored counts the records found already stored (see [Key]): acknowledged, not inserted
	// again. They are among Records.
	Stored int
}

// Config describes a pipeline from a JetStream stream into a ClickHouse table. T is the decoded
// message (a protobuf message with [Proto], or the raw bytes with [Raw]); R is the row the
// Encoder writes.
type Config[T, R any] struct {
	// JetStream is the JetStream context to consume with (required).
	JetStream jetstream.JetStream
	// Stream is the stream to consume. It is created, or updated, at Start, and created again
	// if it is deleted while the pipeline runs. Name is required.
	Stream ponixnats.StreamConfig
	// Consumer configures the durable pull consumer: Durable is required; batch size, waits,
	// AckWait, MaxAckPending, DrainTimeout and the dead-letter stream are yours. Stream,
	// EnsureStream and, when a Key is set, ResumeAt are the pipeline's: leave them empty (or
	// Stream equal to Stream.Name). Logger defaults to the pipeline's.
	Consumer ponixnats.ConsumerConfig

	// ClickHouse is how to connect to ClickHouse (required): for the migrations, for the nodes
	// of a Cluster, and for Conn when none is given.
	ClickHouse ponixclickhouse.Config
	// Conn, if set, is the connection the pipeline reads and writes with; the caller closes it.
	// Nil: Start opens one from ClickHouse and Close closes it.
	Conn driver.Conn
	// Table is the table rows are written to (required).
	Table ponixclickhouse.Table
	// Encoder returns a new encoder of rows (required), e.g. a ponixclickhouse.ColumnSet's
	// Encoder. Its columns must all be in the table, with types that take its values.
	Encoder func() ponixclickhouse.Encoder[R]
	// Decode turns each message into a T, or dead-letters it (required): [Proto] or [Raw].
	Decode Decoder[T]
	// Row makes a message's row (required). It is called once per message per insert attempt:
	// keep it to field copies; refuse a value in the Encoder (ponixclickhouse.ColumnFunc), which
	// names the column, or in the Decoder's validation.
	Row func(Record[T]) R
	// Key, if set, names the de-duplication key's columns (see [Key]); both must be among the
	// Encoder's columns.
	Key Key
	// Migrations, if FS is set, are applied before consuming (see [Migrations]).
	Migrations Migrations
	// Cluster, if set, writes to a ClickHouse cluster (see [Cluster]).
	Cluster *Cluster[R]
	// InsertTimeout, if positive, bounds each INSERT (see ponixclickhouse.WithInsertTimeout).
	InsertTimeout time.Duration
	// Hold configures how a batch is held while ClickHouse fails. Classify defaults to
	// ponixclickhouse.Classify; Logger to the pipeline's.
	Hold ponixnats.HoldConfig
	// Observe, if set, is called after each insert attempt, e.g. to record metrics. It runs on
	// the consumer's goroutine: keep it short.
	Observe func(Insert[T])
	// Logger receives the pipeline's lines (one per stored batch at info level). Default
	// slog.Default().
	Logger *slog.Logger
}

// withDefaults returns c with its defaults filled in and checks it.
func (c Config[T, R]) withDefaults() (Config[T, R], error) {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	var errs []error
	bad := func(field, problem string) { errs = append(errs, fmt.Errorf("%s: %s", field, problem)) }
	if c.JetStream == nil {
		bad("JetStream", "required")
	}
	if c.Stream.Name == "" {
		bad("Stream.Name", "required")
	}
	switch c.Consumer.Stream {
	case "", c.Stream.Name:
		c.Consumer.Stream = c.Stream.Name
	default:
		bad("Consumer.Stream", fmt.Sprintf("%q differs from Stream.Name %q: leave it empty", c.Consumer.Stream, c.Stream.Name))
	}
	if c.Consumer.Durable == "" {
		bad("Consumer.Durable", "required")
	}
	if c.Consumer.EnsureStream != nil {
		bad("Consumer.EnsureStream", "set by the pipeline from Stream: leave it nil")
	}
	if c.Consumer.Logger == nil {
		c.Consumer.Logger = c.Logger
	}
	if len(c.ClickHouse.Addresses()) == 0 {
		bad("ClickHouse", "required: the address of a server (Addr or Addrs)")
	}
	if c.Table.Name == "" {
		bad("Table.Name", "required")
	} else if err := c.Table.Validate(); err != nil {
		bad("Table", err.Error())
	}
	if c.Encoder == nil {
		bad("Encoder", "required")
	}
	if c.Decode.processor == nil {
		bad("Decode", "required: pipeline.Proto or pipeline.Raw")
	}
	if c.Row == nil {
		bad("Row", "required")
	}
	if (c.Key.StreamCreated == "") != (c.Key.StreamSeq == "") {
		bad("Key", "set both StreamCreated and StreamSeq, or neither")
	}
	if c.Key.Lookup != (ponixclickhouse.Table{}) {
		if c.Key.StreamSeq == "" {
			bad("Key.Lookup", "set with StreamCreated and StreamSeq only")
		} else if err := c.Key.Lookup.Validate(); err != nil {
			bad("Key.Lookup", err.Error())
		}
	}
	if c.Key.StreamSeq != "" {
		if c.Consumer.ResumeAt != nil {
			bad("Consumer.ResumeAt", "set by the pipeline from Key: leave it nil")
		}
		if c.Encoder != nil {
			cols := c.Encoder().Columns()
			for _, k := range []string{c.Key.StreamCreated, c.Key.StreamSeq} {
				if !slices.Contains(cols, k) {
					bad("Key", fmt.Sprintf("column %q is not among the Encoder's columns %v", k, cols))
				}
			}
		}
	}
	if cl := c.Cluster; cl != nil {
		if cl.Name == "" {
			bad("Cluster.Name", "required")
		}
		if cl.ShardKey == nil {
			bad("Cluster.ShardKey", "required")
		}
		if cl.LocalTable != "" {
			if err := ponixclickhouse.ValidateIdentifier(cl.LocalTable); err != nil {
				bad("Cluster.LocalTable", err.Error())
			}
		}
	}
	if c.Hold.Classify == nil {
		c.Hold.Classify = func(err error) string { return string(ponixclickhouse.Classify(err)) }
	}
	if c.Hold.Logger == nil {
		c.Hold.Logger = c.Logger.With("stream", c.Stream.Name, "consumer", c.Consumer.Durable)
	}
	if len(errs) > 0 {
		return c, fmt.Errorf("%w: %w", ErrInvalidConfig, errors.Join(errs...))
	}
	return c, nil
}

// migrateOptions are the options of every migrate call.
func (c Config[T, R]) migrateOptions() []migrate.Option {
	opts := []migrate.Option{migrate.WithLogger(c.Logger)}
	if c.Cluster != nil {
		opts = append(opts, migrate.WithCluster(c.Cluster.Name), migrate.WithDatabase(c.ClickHouse.Database))
	}
	return append(opts, c.Migrations.Options...)
}

// storeFunc is what a Decoder's processor hands each batch, or part of one, to.
type storeFunc[T any] func(ctx context.Context, batch ponixnats.Batch[Record[T]]) error
