package pipeline

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/ponix-go/ponix/ponixclickhouse"
	"github.com/ponix-go/ponix/ponixclickhouse/migrate"
	"github.com/ponix-go/ponix/ponixnats"
	"github.com/ponix-go/ponix/runner/backoff"
)

// Pipeline moves messages from a JetStream stream into a ClickHouse table. Create it with
// [New]; then either call Run, which starts it, or call [Pipeline.Migrate] and
// [Pipeline.Start] first to see each step's error apart (a service's startup phases).
type Pipeline[T, R any] struct {
	cfg    Config[T, R]
	log    *slog.Logger
	hold   *ponixnats.Hold
	schema *schema[R]

	mu       sync.Mutex // guards the steps of Start
	migrated bool
	conn     driver.Conn // cfg.Conn, or the one Start opened (ownConn)
	ownConn  bool
	consumer atomic.Pointer[ponixnats.Consumer]
	writer   atomic.Pointer[writerRef[R]] // set once Run finds the table fits: consuming
	stopped  atomic.Bool                  // Run has returned
	rows     []R                          // reused: the consumer stores one batch, or part, at a time
	recheck  atomic.Pointer[recheck]
	// high and uncertain: see mayBeStored; the storing goroutine's alone.
	high      highWater
	uncertain bool
	// lookup reads which sequences of a batch are stored (storedSeqs; a fake in unit tests).
	lookup   func(ctx context.Context, recs []Record[T]) (map[uint64]struct{}, error)
	fresh    []Record[T] // reused by unstored
	freshIdx []int
}

// writer is what a pipeline writes batches with: a BatchWriter into one server, or a
// ShardedWriter into a cluster.
type writer[R any] interface {
	Write(ctx context.Context, rows []R) error
	CheckSchema(ctx context.Context) error
}

// writerRef holds the pipeline's writer once the table fits it.
type writerRef[R any] struct{ w writer[R] }

// New checks cfg and returns the pipeline; it does no I/O.
func New[T, R any](cfg Config[T, R]) (*Pipeline[T, R], error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	p := &Pipeline[T, R]{cfg: cfg, log: cfg.Logger, hold: ponixnats.NewHold(cfg.Hold)}
	p.lookup = p.storedSeqs
	p.schema = &schema[R]{
		table:     cfg.Table,
		columns:   cfg.Encoder().Columns(),
		newWriter: p.newWriter,
		log:       cfg.Logger,
		recheck:   backoff.Constant(schemaRecheck),
	}
	if cfg.Cluster != nil {
		p.schema.cluster = cfg.Cluster.Name
	} else if cfg.Migrations.FS != nil {
		p.schema.repair = p.reapply
	}
	return p, nil
}

// Hold says whether a batch is held because ClickHouse fails, and why (for metrics).
func (p *Pipeline[T, R]) Hold() *ponixnats.Hold { return p.hold }

// Consumer returns the durable consumer once Start created it (nil before), e.g. for its
// Health and Info.
func (p *Pipeline[T, R]) Consumer() *ponixnats.Consumer { return p.consumer.Load() }

// Migrate creates the database when it is missing and applies the migrations, if any (see
// [Migrations]). Start calls it when it has not run yet.
func (p *Pipeline[T, R]) Migrate(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.migrate(ctx)
}

func (p *Pipeline[T, R]) migrate(ctx context.Context) error {
	if p.migrated {
		return nil
	}
	if err := migrateUp(ctx, p.cfg.ClickHouse, p.cfg.Migrations.FS, p.cfg.migrateOptions(), p.log); err != nil {
		return err
	}
	p.migrated = true
	return nil
}

// Migrate creates the database of ch when it is missing and applies m, for a program that
// applies the migrations before it can build its pipeline (e.g. before it connects to NATS). A
// Pipeline given the same Migrations applies them again at Start, which finds nothing to do.
// Unlike [Pipeline.Migrate] it knows no [Cluster]: on one, m.Options must hold
// migrate.WithCluster and migrate.WithDatabase.
func Migrate(ctx context.Context, ch ponixclickhouse.Config, m Migrations, logger *slog.Logger) error {
	if logger == nil {
		logger = slog.Default()
	}
	return migrateUp(ctx, ch, m.FS, append([]migrate.Option{migrate.WithLogger(logger)}, m.Options...), logger)
}

func migrateUp(ctx context.Context, ch ponixclickhouse.Config, fsys fs.FS, opts []migrate.Option, logger *slog.Logger) error {
	if _, err := migrate.EnsureDatabase(ctx, ch, opts...); err != nil {
		return err
	}
	if fsys == nil {
		return nil
	}
	db := ponixclickhouse.OpenDB(ch)
	defer db.Close()
	if err := ponixclickhouse.PingDB(ctx, db, ch); err != nil {
		return err
	}
	results, err := migrate.Up(ctx, db, fsys, opts...)
	if err != nil {
		return err
	}
	if len(results) > 0 {
		logger.Info("migrations applied", "count", len(results))
	}
	return nil
}

// reapply applies every migration again: the repair of a dropped table whose migrations goose
// still records as applied.
func (p *Pipeline[T, R]) reapply(ctx context.Context) error {
	db := ponixclickhouse.OpenDB(p.cfg.ClickHouse)
	defer db.Close()
	m, err := migrate.New(db, p.cfg.Migrations.FS, p.cfg.migrateOptions()...)
	if err != nil {
		return err
	}
	results, err := m.Reapply(ctx)
	if err != nil {
		return err
	}
	p.log.Info("migrations applied again", "count", len(results))
	return nil
}

// Start runs Migrate unless done, opens the ClickHouse connection unless Config.Conn is set,
// ensures the stream and creates or binds the durable consumer (where a Key says when it is
// created anew). Run calls it when it has not run yet; after a failure it can be called again,
// and repeats only the steps not done.
func (p *Pipeline[T, R]) Start(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.consumer.Load() != nil {
		return nil
	}
	if err := p.migrate(ctx); err != nil {
		return err
	}
	if p.conn == nil {
		if p.conn = p.cfg.Conn; p.conn == nil {
			conn, err := ponixclickhouse.Open(ctx, p.cfg.ClickHouse)
			if err != nil {
				return err
			}
			p.conn, p.ownConn = conn, true
		}
		p.schema.conn = p.conn
	}
	if p.cfg.Cluster != nil {
		topo, err := ponixclickhouse.ReadTopology(ctx, p.conn, p.cfg.Cluster.Name)
		if err != nil {
			return err // an unknown cluster: errors.Is ponixclickhouse.ErrUnknownCluster
		}
		nodes := 0
		for _, sh := range topo.Shards {
			nodes += len(sh.Replicas)
		}
		p.log.Info("writing to a ClickHouse cluster", "cluster", topo.Cluster, "shards", len(topo.Shards), "nodes", nodes)
	}
	stream := p.cfg.Stream
	if _, err := ponixnats.EnsureStream(ctx, p.cfg.JetStream, stream); err != nil {
		return err
	}
	cc := p.cfg.Consumer
	cc.EnsureStream = &stream
	if p.cfg.Key.StreamSeq != "" {
		cc.ResumeAt = p.resumeAt
	}
	opts := []ponixnats.StoreOption{ponixnats.WithHold(p.hold)}
	c, err := ponixnats.NewConsumer(ctx, p.cfg.JetStream, cc, p.cfg.Decode.processor(p.store, opts...))
	if err != nil {
		return fmt.Errorf("consumer %s on stream %s: %w", cc.Durable, cc.Stream, err)
	}
	p.consumer.Store(c)
	return nil
}

// Run starts the pipeline unless started, waits until the table fits the writer (reporting
// what is wrong meanwhile, see [Pipeline.Checks]), then consumes until ctx ends: it stops
// fetching, stores and acks the batch in hand, and returns.
func (p *Pipeline[T, R]) Run(ctx context.Context) error {
	defer p.stopped.Store(true)
	if err := p.Start(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	w, err := p.schema.wait(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while waiting for the table: nothing was fetched
		}
		return err
	}
	p.writer.Store(&writerRef[R]{w})
	p.log.Info("the ClickHouse table fits the writer: consuming", "table", p.cfg.Table.String())
	if c, ok := w.(io.Closer); ok {
		defer c.Close() // a cluster writer's connections to the nodes
	}
	return p.consumer.Load().Run(ctx)
}

// Close closes the ClickHouse connection Start opened, if any. Call it after Run returned.
func (p *Pipeline[T, R]) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.ownConn || p.conn == nil {
		return nil
	}
	err := p.conn.Close()
	p.conn, p.ownConn = nil, false
	return err
}

// newWriter builds the writer, which checks the table (on a cluster: each shard's local table
// and the Distributed table).
func (p *Pipeline[T, R]) newWriter(ctx context.Context) (writer[R], error) {
	opts := []ponixclickhouse.WriterOption{ponixclickhouse.WithLogger(p.log), ponixclickhouse.WithInsertTimeout(p.cfg.InsertTimeout),
		ponixclickhouse.WithStallTimeout(stallTimeout(p.cfg.Consumer))}
	cl := p.cfg.Cluster
	if cl == nil {
		return ponixclickhouse.NewBatchWriter(ctx, p.conn, p.cfg.Table, p.cfg.Encoder, opts...)
	}
	local := cl.LocalTable
	if local == "" {
		local = p.cfg.Table.Name + ponixclickhouse.LocalTableSuffix
	}
	return ponixclickhouse.NewShardedWriter(ctx, p.conn, ponixclickhouse.ClusterConfig{
		Cluster: cl.Name, Conn: p.cfg.ClickHouse, NodeAddr: cl.NodeAddr, DistributedTable: p.cfg.Table.Name,
	}, ponixclickhouse.Table{Database: p.cfg.Table.Database, Name: local}, p.cfg.Encoder, cl.ShardKey, opts...)
}

// stallTimeout is how long ClickHouse waits on an insert whose writer sent nothing more of it
// before it gives the insert up and stores none of it (ponixclickhouse.WithStallTimeout): half
// the consumer's takeover time (ponixnats.ConsumerConfig.TakeoverAfter), in whole seconds, at
// least one. The insert of a process stalled in the middle of it (SIGSTOP, a frozen VM) is
// dropped by the server before another instance can be given the batch, so it cannot commit
// a second copy when the process goes on.
func stallTimeout(c ponixnats.ConsumerConfig) time.Duration {
	return max(time.Second, (c.TakeoverAfter() / 2).Truncate(time.Second))
}

// clusterProblem is what a table that does not fit the writer means on a cluster. The pipeline
// holds and names the problem there rather than repair it: a table is usually lost on one node
// while its replica and the other shards keep theirs, and applying the migrations again would
// rebuild tables that hold data. Creating a replica's table again (with the definition it has
// on the other replica of its shard) makes it fetch its data from that replica.
func clusterProblem(cluster string, err error) error {
	return fmt.Errorf("%w: on cluster %s Ponix does not create or change tables by itself: restore the table on that node "+
		"(SHOW CREATE TABLE on another replica of its shard, run it there: the replica fetches its data from its peer) "+
		"or apply the migrations to a new database; the consumer holds until the table fits", err, cluster)
}
