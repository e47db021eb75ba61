package ponixclickhouse

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// LocalTableSuffix names a table's shard-local table on a cluster, as the migrations create
// them: processed_envelopes (the Distributed table readers query) over
// processed_envelopes_local on every node.
const LocalTableSuffix = "_local"

// ErrUnknownCluster is wrapped by [ReadTopology]'s error when the server's remote_servers has
// no cluster of that name.
var ErrUnknownCluster = errors.New("no such cluster in the server's remote_servers")

// Replica is one server of a cluster, as system.clusters lists it.
type Replica struct {
	// Shard is the shard's number (shard_num, from 1); Num the replica's within it
	// (replica_num, from 1).
	Shard, Num int
	// Host is the name in remote_servers (host_name); it may resolve only inside the cluster's
	// network.
	Host string
	// Address is the IP the server resolved Host to (host_address).
	Address string
	// Port is the native protocol port.
	Port int
}

// Addr returns Address:Port, where a client reaches the replica without resolving Host.
func (r Replica) Addr() string { return net.JoinHostPort(r.Address, strconv.Itoa(r.Port)) }

func (r Replica) String() string {
	return fmt.Sprintf("shard %d replica %d (%s, %s)", r.Shard, r.Num, r.Host, r.Addr())
}

// Shard is one shard of a cluster: its weight and replicas.
type Shard struct {
	// Num is the shard's number (from 1).
	Num int
	// Weight is the shard's share of the rows a Distributed table sends (shard_weight).
	Weight int
	// Replicas serve the same data; in replica_num order.
	Replicas []Replica
}

// Topology is a cluster of the servers' remote_servers: its shards, in shard_num order.
type Topology struct {
	// Cluster is the cluster's name.
	Cluster string
	// Shards are in shard_num order.
	Shards []Shard

	slots []int // slot -> index into Shards, as the Distributed engine lays them out
}

// ReadTopology reads cluster from system.clusters on conn. A cluster the server does not
// know is an error wrapping [ErrUnknownCluster].
func ReadTopology(ctx context.Context, conn driver.Conn, cluster string) (Topology, error) {
	if err := ValidateIdentifier(cluster); err != nil {
		return Topology{}, fmt.Errorf("clickhouse: cluster name: %w", err)
	}
	rows, err := conn.Query(ctx, "SELECT shard_num, shard_weight, replica_num, host_name, host_address, port "+
		"FROM system.clusters WHERE cluster = '"+cluster+"' ORDER BY shard_num, replica_num")
	if err != nil {
		return Topology{}, fmt.Errorf("clickhouse: reading cluster %s from system.clusters: %w", cluster, err)
	}
	defer rows.Close()
	t := Topology{Cluster: cluster}
	for rows.Next() {
		var (
			shard, weight, replica uint32
			host, address          string
			port                   uint16
		)
		if err := rows.Scan(&shard, &weight, &replica, &host, &address, &port); err != nil {
			return Topology{}, fmt.Errorf("clickhouse: reading cluster %s from system.clusters: %w", cluster, err)
		}
		if n := len(t.Shards); n == 0 || t.Shards[n-1].Num != int(shard) {
			t.Shards = append(t.Shards, Shard{Num: int(shard), Weight: int(weight)})
		}
		s := &t.Shards[len(t.Shards)-1]
		s.Replicas = append(s.Replicas, Replica{Shard: int(shard), Num: int(replica), Host: host, Address: address, Port: int(port)})
	}
	if err := rows.Err(); err != nil {
		return Topology{}, fmt.Errorf("clickhouse: reading cluster %s from system.clusters: %w", cluster, err)
	}
	if len(t.Shards) == 0 {
		return Topology{}, fmt.Errorf("clickhouse: cluster %q: %w", cluster, ErrUnknownCluster)
	}
	if err := t.layout(); err != nil {
		return Topology{}, err
	}
	return t, nil
}

// NewTopology returns the topology of cluster made of shards (for tests and for clusters whose
// system.clusters a client cannot read).
func NewTopology(cluster string, shards []Shard) (Topology, error) {
	t := Topology{Cluster: cluster, Shards: slices.Clone(shards)}
	return t, t.layout()
}

// layout gives each shard as many slots as its weight, in shard order, as the Distributed
// engine does.
func (t *Topology) layout() error {
	t.slots = t.slots[:0]
	for i, s := range t.Shards {
		if len(s.Replicas) == 0 {
			return fmt.Errorf("clickhouse: cluster %s: shard %d has no replica", t.Cluster, s.Num)
		}
		for range s.Weight {
			t.slots = append(t.slots, i)
		}
	}
	if len(t.slots) == 0 {
		return fmt.Errorf("clickhouse: cluster %s: every shard has weight 0", t.Cluster)
	}
	return nil
}

// ShardIndex returns the index in Shards of the shard that a row with sharding key key belongs
// to: the slot key modulo the total weight, each shard owning as many consecutive slots as its
// weight — what a Distributed table whose sharding key is that UInt64 column does with the row.
func (t Topology) ShardIndex(key uint64) int { return t.slots[key%uint64(len(t.slots))] }

// ClusterConfig configures a [ShardedWriter].
type ClusterConfig struct {
	// Cluster is the cluster's name in the servers' remote_servers.
	Cluster string
	// Conn holds what every node is connected with: user, password, database, TLS, dial and
	// read timeouts, pool size. Its addresses are not used: each replica's comes from the
	// topology (see NodeAddr). Its Logger receives the driver's messages about the replicas'
	// connections; nil discards them (the failures it logs come back from Write).
	Conn Config
	// InsertTimeout bounds each insert into one replica (default 15 s; [WithInsertTimeout] sets
	// it too). A replica that does not answer in time (partitioned, stalled) fails, and the rows
	// go to the next replica of the shard.
	InsertTimeout time.Duration
	// PrepareTimeout bounds the first step of each insert, in which the server answers the
	// INSERT statement before any data is sent (default 5 s; at most InsertTimeout). A
	// connection to a partitioned node gets no answer at all: this is how long the writer waits
	// before it tries the next replica, while a large batch still gets InsertTimeout to be sent.
	PrepareTimeout time.Duration
	// InsertQuorum, when above 1, makes every insert wait until that many replicas of the shard
	// hold the rows (insert_quorum). An insert then fails while fewer replicas are alive.
	InsertQuorum int
	// DistributedTable, when set, is the Distributed table readers query; CheckSchema checks
	// that it exists on the node of the seed connection.
	DistributedTable string
	// NodeAddr returns where to reach a replica; default [Replica.Addr] (host_address:port).
	NodeAddr func(Replica) string
}

// ShardedWriter writes rows of type T into the shard-local tables of a ClickHouse cluster.
// Each Write splits its rows by shard — the shard a Distributed table sharded by the same key
// would pick ([Topology.ShardIndex]) — encodes every shard's rows first (a row the encoder
// rejects fails the Write with a [*RowError] before anything is sent), then inserts each
// shard's rows as one native batch into that shard's local table, the shards concurrently.
//
// Within a shard the writer prefers one replica and fails over, within the same Write, to the
// next when an insert fails for any reason but the data (a dead, partitioned or read-only
// replica, a timeout: each attempt is bounded by InsertTimeout); the replica that worked is
// preferred from then on. A Write returns nil only when every shard stored its rows: an insert
// into a Replicated table returns once the part is written on the replica and registered in
// ZooKeeper, and its peers fetch it from there.
//
// A failed Write may have stored the rows of some shards. Writing the same rows again sends
// those shards identical blocks, which a Replicated table deduplicates (insert_deduplicate,
// on by default): nothing is stored twice. Rows with the same key always go to the same shard,
// so copies that are stored (a batch composed differently) collapse there under FINAL.
//
// ShardedWriter is safe for concurrent use. Close it to close its connections.
type ShardedWriter[T any] struct {
	cfg    ClusterConfig
	topo   Topology
	table  Table
	query  string
	key    func(T) uint64
	seed   driver.Conn
	pool   encoderPool[T]
	shards []*shardConns[T]
	logger *slog.Logger
	// settings go with each INSERT: insert_quorum, WithStallTimeout's; nil: none.
	settings clickhouse.Settings
}

// shardConns are the connections to the replicas of one shard and the preferred one.
type shardConns[T any] struct {
	shard   Shard
	conns   []driver.Conn
	writers []*BatchWriter[T] // per replica, for CheckSchema
	mu      sync.Mutex
	prefer  int
}

func (s *shardConns[T]) preferred() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.prefer
}

func (s *shardConns[T]) setPreferred(i int) {
	s.mu.Lock()
	s.prefer = i
	s.mu.Unlock()
}

// NewShardedWriter returns a writer into the shard-local table table of the cluster in cfg,
// whose topology it reads from system.clusters through seed (any node). newEncoder makes the
// encoders of T, key gives a row's sharding key. It opens a connection pool per replica and
// checks the tables (see [ShardedWriter.CheckSchema]): a table that does not fit fails here,
// not at the first Write.
func NewShardedWriter[T any](ctx context.Context, seed driver.Conn, cfg ClusterConfig, table Table, newEncoder func() Encoder[T], key func(T) uint64, opts ...WriterOption) (*ShardedWriter[T], error) {
	topo, err := ReadTopology(ctx, seed, cfg.Cluster)
	if err != nil {
		return nil, err
	}
	w, err := NewShardedWriterFor(topo, seed, cfg, table, newEncoder, key, opts...)
	if err != nil {
		return nil, err
	}
	if err := w.CheckSchema(ctx); err != nil {
		_ = w.Close()
		return nil, err
	}
	return w, nil
}

// NewShardedWriterFor is [NewShardedWriter] with a topology given rather than read, and
// without the schema check. seed (may be nil) serves CheckSchema's look at the Distributed
// table.
func NewShardedWriterFor[T any](topo Topology, seed driver.Conn, cfg ClusterConfig, table Table, newEncoder func() Encoder[T], key func(T) uint64, opts ...WriterOption) (*ShardedWriter[T], error) {
	o := writerOptions{logger: slog.Default()}
	for _, opt := range opts {
		opt(&o)
	}
	if o.insertTimeout > 0 {
		if cfg.InsertTimeout > 0 && cfg.InsertTimeout != o.insertTimeout {
			return nil, fmt.Errorf("clickhouse sharded writer: ClusterConfig.InsertTimeout %s and WithInsertTimeout %s differ: set one", cfg.InsertTimeout, o.insertTimeout)
		}
		cfg.InsertTimeout = o.insertTimeout
	}
	if cfg.InsertTimeout <= 0 {
		cfg.InsertTimeout = 15 * time.Second
	}
	if cfg.PrepareTimeout <= 0 {
		cfg.PrepareTimeout = 5 * time.Second
	}
	cfg.PrepareTimeout = min(cfg.PrepareTimeout, cfg.InsertTimeout)
	if cfg.NodeAddr == nil {
		cfg.NodeAddr = Replica.Addr
	}
	if len(topo.slots) == 0 {
		if err := topo.layout(); err != nil {
			return nil, err
		}
	}
	// The column list and the INSERT statement, as a BatchWriter builds them.
	probe, err := newBatchWriter(nil, table, newEncoder, opts...)
	if err != nil {
		return nil, err
	}
	w := &ShardedWriter[T]{cfg: cfg, topo: topo, table: table, query: probe.query,
		key: key, seed: seed, logger: o.logger.With("cluster", topo.Cluster), settings: probe.settings}
	if cfg.InsertQuorum > 1 {
		w.settings = clickhouse.Settings{"insert_quorum": cfg.InsertQuorum}
		maps.Copy(w.settings, probe.settings)
	}
	w.pool.newEncoder = newEncoder
	for _, s := range topo.Shards {
		sc := &shardConns[T]{shard: s}
		for _, r := range s.Replicas {
			ccfg := cfg.Conn
			ccfg.Addr, ccfg.Addrs = cfg.NodeAddr(r), nil
			if ccfg.Logger == nil {
				ccfg.Logger = slog.New(slog.DiscardHandler) // every failure it would log comes back from Write
			}
			conn, err := clickhouse.Open(ccfg.Options())
			if err != nil {
				_ = w.Close()
				return nil, fmt.Errorf("clickhouse: cluster %s: %s: %w", topo.Cluster, r, err)
			}
			sc.conns = append(sc.conns, conn)
			bw, err := newBatchWriter(conn, table, newEncoder, opts...)
			if err != nil {
				_ = w.Close()
				return nil, err
			}
			sc.writers = append(sc.writers, bw)
		}
		w.shards = append(w.shards, sc)
	}
	return w, nil
}

// Topology is the cluster the writer writes to.
func (w *ShardedWriter[T]) Topology() Topology { return w.topo }

// Table is the shard-local table the writer inserts into.
func (w *ShardedWriter[T]) Table() Table { return w.table }

// Query is the INSERT statement sent to each shard.
func (w *ShardedWriter[T]) Query() string { return w.query }

// Write inserts rows, each into the local table of its shard; see [ShardedWriter]. A failure
// is a [*RowError] (nothing sent), a [*ShardError] when one shard failed, or a
// [*ClusterWriteError] holding one per shard that failed: [Classify] it as any write error.
func (w *ShardedWriter[T]) Write(ctx context.Context, rows []T) error {
	if len(rows) == 0 {
		return nil
	}
	parts := make([][]int, len(w.shards))
	for i, r := range rows {
		s := w.topo.ShardIndex(w.key(r))
		parts[s] = append(parts[s], i)
	}
	encs := make([]Encoder[T], len(w.shards))
	defer func() {
		for _, e := range encs {
			if e != nil {
				w.pool.put(e)
			}
		}
	}()
	for s, idx := range parts {
		if len(idx) == 0 {
			continue
		}
		enc := w.pool.get()
		encs[s] = enc
		if err := encode(enc, rows, idx); err != nil {
			return err
		}
	}
	errs := make([]error, len(w.shards))
	var wg sync.WaitGroup
	for s, idx := range parts {
		if len(idx) == 0 {
			continue
		}
		wg.Go(func() { errs[s] = w.writeShard(ctx, s, encs[s], rows, idx) })
	}
	wg.Wait()
	return joinSinkFirst(errs)
}

// encode resets enc and encodes rows[i] for every i of idx.
func encode[T any](enc Encoder[T], rows []T, idx []int) error {
	enc.Reset(len(idx))
	for _, i := range idx {
		if err := enc.Encode(rows[i]); err != nil {
			return &RowError{Index: i, Err: err}
		}
	}
	return nil
}

// writeShard inserts the encoded rows (rows[i] for i in idx) into shard s, trying its replicas
// from the preferred one on.
func (w *ShardedWriter[T]) writeShard(ctx context.Context, s int, enc Encoder[T], rows []T, idx []int) error {
	sc := w.shards[s]
	first := sc.preferred()
	se := &ShardError{Cluster: w.topo.Cluster, Shard: sc.shard.Num, Rows: len(idx)}
	for k := range sc.conns {
		r := (first + k) % len(sc.conns)
		replica := sc.shard.Replicas[r]
		if k > 0 {
			if err := encode(enc, rows, idx); err != nil { // AppendTo consumed the encoder
				return err
			}
		}
		start := time.Now()
		err := w.insert(ctx, sc.conns[r], enc, len(idx))
		if err == nil {
			if k > 0 {
				sc.setPreferred(r)
				failed := se.Replicas[len(se.Replicas)-1]
				w.logger.WarnContext(ctx, "insert failed over to another replica of the shard", "shard", sc.shard.Num,
					"replica", replica.Host, "addr", w.cfg.NodeAddr(replica), "rows", len(idx),
					"failed_replica", failed.Replica.Host, "class", string(Classify(failed.Err)), "error", failed.Err)
			}
			w.logger.DebugContext(ctx, "clickhouse shard batch inserted", "shard", sc.shard.Num, "replica", replica.Host,
				"rows", len(idx), "duration", time.Since(start))
			return nil
		}
		se.Replicas = append(se.Replicas, &ReplicaError{Replica: replica, Addr: w.cfg.NodeAddr(replica), Err: err})
		if ctx.Err() != nil {
			return se
		}
		if c := Classify(err); c == ClassData || c == ClassRow {
			return se // the rows, not the replica: every replica would refuse them
		}
		// Logged at debug level only: a failover that works is logged (warning) with this error,
		// and a shard whose every replica fails returns all their errors.
		w.logger.DebugContext(ctx, "insert into a replica failed", "shard", sc.shard.Num,
			"replica", replica.Host, "addr", w.cfg.NodeAddr(replica), "class", string(Classify(err)), "error", err)
	}
	return se
}

// errPrepareTimeout is the cause of an insert given up because the server did not answer its
// INSERT statement within PrepareTimeout.
var errPrepareTimeout = errors.New("no answer to the INSERT statement")

// insert sends the encoded rows to conn as one batch, within InsertTimeout, the server's answer
// to the statement within PrepareTimeout.
func (w *ShardedWriter[T]) insert(ctx context.Context, conn driver.Conn, enc Encoder[T], n int) error {
	tctx, cancelTimeout := context.WithTimeout(ctx, w.cfg.InsertTimeout)
	defer cancelTimeout()
	actx, cancel := context.WithCancelCause(tctx)
	defer cancel(nil)
	if w.settings != nil {
		actx = clickhouse.Context(actx, clickhouse.WithSettings(w.settings))
	}
	timedOut := func(err error) error {
		if ctx.Err() != nil {
			return err
		}
		if errors.Is(context.Cause(actx), errPrepareTimeout) {
			// err is context.Canceled (the timer canceled the insert), which says "the caller
			// gave up": keep it out of the chain; this is a replica that does not answer.
			return fmt.Errorf("%w within %s: %w (%v)", errPrepareTimeout, w.cfg.PrepareTimeout, context.DeadlineExceeded, err)
		}
		if errors.Is(actx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("no answer within %s: %w (%w)", w.cfg.InsertTimeout, context.DeadlineExceeded, err)
		}
		return err
	}
	// The batch keeps the context for Send: the prepare step is bounded by a timer that is
	// stopped once the server answered.
	watchdog := time.AfterFunc(w.cfg.PrepareTimeout, func() { cancel(errPrepareTimeout) })
	batch, err := conn.PrepareBatch(actx, w.query)
	watchdog.Stop()
	if err == nil && context.Cause(actx) != nil {
		_ = batch.Abort() // the timer fired just as the answer came
		err = context.Cause(actx)
	}
	if err != nil {
		return &WriteError{Table: w.table, Rows: n, Op: "prepare", Err: timedOut(err)}
	}
	defer func() {
		if !batch.IsSent() {
			_ = batch.Abort()
		}
	}()
	if err := enc.AppendTo(batch); err != nil {
		return &WriteError{Table: w.table, Rows: n, Op: "append", Err: err}
	}
	if err := batch.Send(); err != nil {
		return &WriteError{Table: w.table, Rows: n, Op: "send", Err: timedOut(err)}
	}
	return nil
}

// ErrReplicaBehind is wrapped by [ShardedWriter.QueryShards]' error for a replica that cannot
// tell what its shard has committed: it has entries of the shard's replication log to read,
// parts to fetch (from a replica that may be down), or parts to check against ZooKeeper (one an
// insert cut off left on it, which its shard may not have committed).
var ErrReplicaBehind = errors.New("the replica does not hold every part its shard committed yet")

// catchUpWait is how long QueryShards waits for a replica of a shard to hold every part its
// shard committed: a replica fetches a part moments after another one committed it, unless
// that one is down.
const catchUpWait = 5 * time.Second

// QueryShards runs query on one replica of every shard and calls scan with each answer (a
// replica that fails while scan reads is followed by the next: scan may see a shard's rows
// more than once). query is run as given: it names the shard-local table ([ShardedWriter.Table]).
//
// The replica asked is one that holds every part its shard has committed — it has read the
// shard's whole replication log and has no part left to fetch — so that an answer says what
// the shard holds. A read through the Distributed table does not: it may be served by a
// replica still fetching a part that another committed, and while that one is down, the part
// is on it alone. Nor does a replica with a part to check against ZooKeeper: an insert cut off
// in its commit may have left a part there that the shard never committed, and that the check
// removes minutes later. QueryShards tries the replicas from the preferred one on, for up to 5 s
// while one is behind; a shard none of whose replicas holds every part (one down, the other waiting
// for its parts) fails it with a [*ShardError] holding each replica's error ([ErrReplicaBehind]
// for one behind). A local table that is not Replicated has nothing to fetch.
func (w *ShardedWriter[T]) QueryShards(ctx context.Context, query string, scan func(driver.Rows) error) error {
	for _, sc := range w.shards {
		if err := w.queryShard(ctx, sc, query, scan); err != nil {
			return err
		}
	}
	return nil
}

// queryShard is QueryShards on one shard.
func (w *ShardedWriter[T]) queryShard(ctx context.Context, sc *shardConns[T], query string, scan func(driver.Rows) error) error {
	deadline := time.Now().Add(catchUpWait)
	failed := make([]error, len(sc.conns)) // a replica that failed otherwise than behind is not asked again
	for {
		first, behind := sc.preferred(), false
		for k := range sc.conns {
			r := (first + k) % len(sc.conns)
			if failed[r] != nil && !errors.Is(failed[r], ErrReplicaBehind) {
				continue
			}
			err := w.queryReplica(ctx, sc.conns[r], query, scan)
			if err == nil {
				return nil
			}
			if ctx.Err() != nil {
				return err
			}
			failed[r] = err
			behind = behind || errors.Is(err, ErrReplicaBehind)
		}
		if !behind || time.Now().After(deadline) {
			se := &ShardError{Cluster: w.topo.Cluster, Shard: sc.shard.Num}
			for k := range sc.conns {
				r := (first + k) % len(sc.conns)
				replica := sc.shard.Replicas[r]
				se.Replicas = append(se.Replicas, &ReplicaError{Replica: replica, Addr: w.cfg.NodeAddr(replica), Err: failed[r]})
			}
			return se
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// queryReplica runs query on one replica if it holds every part its shard committed, within
// InsertTimeout.
func (w *ShardedWriter[T]) queryReplica(ctx context.Context, conn driver.Conn, query string, scan func(driver.Rows) error) error {
	ctx, cancel := context.WithTimeout(ctx, w.cfg.InsertTimeout)
	defer cancel()
	if err := w.table.Validate(); err != nil {
		return err
	}
	database := "currentDatabase()"
	if w.table.Database != "" {
		database = "'" + w.table.Database + "'" // a valid identifier: no quote in it
	}
	// log_pointer is the next log entry to read; 0 and 0 is a log without entries (or a first
	// entry read moments later: reading the log needs no other replica). A replica without its
	// ZooKeeper session cannot tell what its shard committed (and reports zeros).
	//
	// parts_to_check counts the parts the replica is to check against ZooKeeper. An insert whose
	// commit to ZooKeeper was cut off (ZooKeeper lost mid-insert: "Unknown status, client must
	// retry") leaves its part on that replica, queued there for a check minutes later: if the
	// commit did not happen, the check removes the part and no other replica ever gets it. Its
	// rows show on that replica until then, and are not the shard's: the replica cannot answer.
	rows, err := conn.Query(ctx, "SELECT toUInt64(is_session_expired), "+
		"toUInt64(log_pointer <= log_max_index AND log_max_index + log_pointer > 0), toUInt64(inserts_in_queue), "+
		"toUInt64(parts_to_check) "+
		"FROM system.replicas WHERE database = "+database+" AND table = '"+w.table.Name+"'")
	if err != nil {
		return err
	}
	var expired, unread, fetches, toCheck uint64
	if rows.Next() {
		err = rows.Scan(&expired, &unread, &fetches, &toCheck)
	}
	if err == nil {
		err = rows.Err()
	}
	rows.Close()
	switch {
	case err != nil:
		return err
	case expired != 0:
		return fmt.Errorf("%w: its ZooKeeper session expired, it cannot tell", ErrReplicaBehind)
	case unread != 0:
		return fmt.Errorf("%w: it has not read its shard's replication log to the end", ErrReplicaBehind)
	case fetches != 0:
		return fmt.Errorf("%w: %d parts to fetch", ErrReplicaBehind, fetches)
	case toCheck != 0:
		return fmt.Errorf("%w: %d parts to check against ZooKeeper (an insert cut off may have left one that its shard did not commit)", ErrReplicaBehind, toCheck)
	}
	rows, err = conn.Query(ctx, query)
	if err != nil {
		return err
	}
	defer rows.Close()
	return scan(rows)
}

// CheckSchema checks, on one replica of each shard (the preferred one, else the next that
// answers), that the local table exists and takes the writer's columns, and, when
// DistributedTable is set, that the Distributed table exists on the seed's node. A mismatch
// is a [*SchemaError] wrapped with the shard and replica it was found on; a shard none of whose
// replicas answers gives a [*ShardError].
func (w *ShardedWriter[T]) CheckSchema(ctx context.Context) error {
	for _, sc := range w.shards {
		first := sc.preferred()
		se := &ShardError{Cluster: w.topo.Cluster, Shard: sc.shard.Num}
		ok := false
		for k := range sc.conns {
			r := (first + k) % len(sc.conns)
			replica := sc.shard.Replicas[r]
			cctx, cancel := context.WithTimeout(ctx, w.cfg.InsertTimeout)
			err := sc.writers[r].CheckSchema(cctx)
			cancel()
			var schemaErr *SchemaError
			if errors.As(err, &schemaErr) {
				return fmt.Errorf("cluster %s, %s: %w", w.topo.Cluster, replica, err)
			}
			if err == nil {
				ok = true
				break
			}
			if ctx.Err() != nil {
				return err
			}
			se.Replicas = append(se.Replicas, &ReplicaError{Replica: replica, Addr: w.cfg.NodeAddr(replica), Err: err})
		}
		if !ok {
			return se
		}
	}
	if w.cfg.DistributedTable != "" && w.seed != nil {
		dist := Table{Database: w.table.Database, Name: w.cfg.DistributedTable}
		cols, err := TableColumns(ctx, w.seed, dist)
		if err != nil {
			return err
		}
		if len(cols) == 0 {
			return &SchemaError{Table: dist, TableMissing: true}
		}
	}
	return nil
}

// Close closes the connections to every replica.
func (w *ShardedWriter[T]) Close() error {
	var errs []error
	for _, sc := range w.shards {
		for _, c := range sc.conns {
			if err := c.Close(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// ReplicaError is a failed insert into (or check of) one replica.
type ReplicaError struct {
	// Replica is the replica as the topology lists it.
	Replica Replica
	// Addr is where the writer reached it.
	Addr string
	// Err is the failure, usually a [*WriteError].
	Err error
}

func (e *ReplicaError) Error() string {
	return fmt.Sprintf("replica %d (%s, %s): %v", e.Replica.Num, e.Replica.Host, e.Addr, e.Err)
}

// Unwrap returns the failure.
func (e *ReplicaError) Unwrap() error { return e.Err }

// ShardError is a shard whose rows could not be stored: every replica tried failed (or one
// refused the data, which every replica would). Its class ([Classify]) is that of the most
// telling replica error: a server's answer comes before a network failure.
type ShardError struct {
	// Cluster and Shard (its number) name the shard.
	Cluster string
	Shard   int
	// Rows is the number of rows meant for the shard; 0 for a read or a check.
	Rows int
	// Replicas holds one *ReplicaError per replica tried, in the order tried.
	Replicas []*ReplicaError
}

func (e *ShardError) Error() string {
	var b strings.Builder
	if e.Rows > 0 {
		fmt.Fprintf(&b, "clickhouse: cluster %s shard %d: %d rows not stored", e.Cluster, e.Shard, e.Rows)
	} else { // a read or a check
		fmt.Fprintf(&b, "clickhouse: cluster %s shard %d: no replica answered", e.Cluster, e.Shard)
	}
	for i, r := range e.Replicas {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		b.WriteString(r.Error())
	}
	return b.String()
}

// Unwrap returns the replicas' errors, server answers first.
func (e *ShardError) Unwrap() []error {
	out := make([]error, 0, len(e.Replicas))
	for _, r := range e.Replicas {
		if isException(r) {
			out = append(out, r)
		}
	}
	for _, r := range e.Replicas {
		if !isException(r) {
			out = append(out, r)
		}
	}
	return out
}

func isException(err error) bool {
	var ex *clickhouse.Exception
	return errors.As(err, &ex)
}

// joinSinkFirst combines the errors of the shards of one Write (nil ones ignored): nil, the
// one error, or a [*ClusterWriteError].
func joinSinkFirst(errs []error) error {
	var sink, other []error
	for _, err := range errs {
		switch {
		case err == nil:
		case Classify(err).SinkFault():
			sink = append(sink, err)
		default:
			other = append(other, err)
		}
	}
	switch len(sink) + len(other) {
	case 0:
		return nil
	case 1:
		return append(sink, other...)[0]
	}
	return &ClusterWriteError{Sink: sink, Other: other}
}

// ClusterWriteError is a [ShardedWriter.Write] that failed on several shards. While any shard
// fails as a sink (unreachable, read-only, ...), only those errors are in its chain, so that
// [Classify] and a batch consumer's record-fault check see a failing sink — the batch is held,
// not split — although another shard may have refused the data; that refusal is still in the
// message, and comes back alone once the sink works.
type ClusterWriteError struct {
	// Sink are the shards' errors that are sink faults; Other the rest (refused data).
	Sink, Other []error
}

func (e *ClusterWriteError) Error() string {
	msgs := make([]string, 0, len(e.Sink)+len(e.Other))
	for _, err := range append(slices.Clone(e.Sink), e.Other...) {
		msgs = append(msgs, err.Error())
	}
	return strings.Join(msgs, "; ")
}

// Unwrap returns the sink faults, or when there is none the other errors.
func (e *ClusterWriteError) Unwrap() []error {
	if len(e.Sink) > 0 {
		return e.Sink
	}
	return e.Other
}
