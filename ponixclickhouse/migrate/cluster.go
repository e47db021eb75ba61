package migrate

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ponix-go/ponix/ponixclickhouse"
	"github.com/ponix-go/ponix/runner/backoff"
	"github.com/pressly/goose/v3/database"
	"github.com/pressly/goose/v3/lock"
)

// Migrations on a cluster (see [WithCluster]).
//
// The bookkeeping must hold for several migrators starting at once against different nodes:
//
//   - The version table is a ReplicatedMergeTree created ON CLUSTER on every node with one
//     ZooKeeper path for all of them (/clickhouse/ponix/<database>/<table>) and a replica name
//     unique per node ('{shard}-{replica}'): a version recorded through any node reaches every
//     node. Before reading it, a migrator runs SYSTEM SYNC REPLICA on it, so that it sees every
//     version recorded before it took the lock. Versions are inserted with
//     insert_deduplicate=0: a Replicated table would otherwise drop a row identical to one
//     inserted before (the same version, again, within the same second after a Down).
//   - The lock is one more replica, named 'lock', of a replicated table that every node holds
//     (see [ClusterLock]), created on the migrator's node. ZooKeeper creates that replica once:
//     of migrators on different nodes exactly one succeeds, the others get
//     REPLICA_IS_ALREADY_EXIST (253); on the same node, TABLE_ALREADY_EXISTS (57) (measured on
//     18.16.1 with ZooKeeper 3.8). The other nodes' replicas keep the ZooKeeper path alive:
//     dropping the last replica of a path removes the path recursively, and a migrator creating
//     its replica meanwhile got code 999 (No node) — a race measured here with a lock that was
//     a table of its own.

// Settings of every statement a cluster migration runs: copies through Distributed tables are
// synchronous (every row is on its shard when the INSERT returns), and no block is
// deduplicated (a version row inserted again after a Down must be stored). Both are UInt64
// settings, which clickhouse-go sends intact to 18.16 too.
var clusterSettings = clickhouse.Settings{"insert_distributed_sync": 1, "insert_deduplicate": 0}

func clusterContext(ctx context.Context) context.Context {
	return clickhouse.Context(ctx, clickhouse.WithSettings(clusterSettings))
}

// Codes of ClickHouse exceptions the cluster lock tells apart.
const (
	codeReplicaAlreadyExists = 253
	codeCoordination         = 999 // a ZooKeeper error
)

// ErrSingleServerSchema is returned on a cluster when the database of the migrator's node
// already holds a version table that is not replicated: the schema of a single server, which
// Ponix does not convert (see the README: moving a single-server table into a cluster).
var ErrSingleServerSchema = errors.New("the database holds a single-server migration history (its version table is not replicated)")

// ErrReapplyOnCluster is returned by Reapply on a cluster: applying every migration again
// against tables that still exist on some nodes is not safe there.
var ErrReapplyOnCluster = errors.New("migrate: applying the migrations again is not supported on a cluster")

// ZooKeeperBookkeepingPath is the ZooKeeper path of the cluster-wide bookkeeping table name
// (version table or lock) of database: /clickhouse/ponix/<database>/<table>.
func ZooKeeperBookkeepingPath(database, table string) string {
	return "/clickhouse/ponix/" + database + "/" + table
}

// currentDatabase asks the server for the connection's database.
func currentDatabase(ctx context.Context, db database.DBTxConn) (string, error) {
	var name string
	if err := db.QueryRowContext(ctx, "SELECT currentDatabase()").Scan(&name); err != nil {
		return "", fmt.Errorf("current database: %w", err)
	}
	return name, nil
}

// dbName caches the database name, asked for once.
type dbName struct {
	mu   sync.Mutex
	name string
}

func (d *dbName) get(ctx context.Context, db database.DBTxConn) (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.name != "" {
		return d.name, nil
	}
	name, err := currentDatabase(ctx, db)
	if err != nil {
		return "", err
	}
	d.name = name
	return name, nil
}

func (d *dbName) set(name string) {
	d.mu.Lock()
	d.name = name
	d.mu.Unlock()
}

// ClusterStore is the goose [database.Store] for a cluster: a [Store] whose version table is
// replicated to every node of the cluster (see the comment at the top of this file).
type ClusterStore struct {
	*Store
	cluster string
	db      dbName
}

var _ database.StoreExtender = (*ClusterStore)(nil)

// NewClusterStore returns the store of the version table (a plain identifier) on cluster.
func NewClusterStore(table, cluster string) (*ClusterStore, error) {
	s, err := NewStore(table)
	if err != nil {
		return nil, err
	}
	if err := ponixclickhouse.ValidateIdentifier(cluster); err != nil {
		return nil, fmt.Errorf("migrate: cluster name: %w", err)
	}
	return &ClusterStore{Store: s, cluster: cluster}, nil
}

// CreateVersionTable implements [database.Store]: ON CLUSTER, replicated to every node.
func (s *ClusterStore) CreateVersionTable(ctx context.Context, db database.DBTxConn) error {
	name, err := s.db.get(ctx, db)
	if err != nil {
		return fmt.Errorf("migrate: cluster version table: %w", err)
	}
	q := fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s.%s ON CLUSTER %s (
	version_id Int64,
	is_applied UInt8,
	tstamp DateTime DEFAULT now()
) ENGINE = ReplicatedMergeTree('%s', '{shard}-{replica}') ORDER BY (version_id, tstamp)`,
		name, s.quoted, s.cluster, ZooKeeperBookkeepingPath(name, s.table))
	if _, err := db.ExecContext(ctx, q); err != nil {
		return fmt.Errorf("create version table %s on cluster %s: %w", s.table, s.cluster, err)
	}
	return nil
}

// Insert implements [database.Store], with insert_deduplicate=0.
func (s *ClusterStore) Insert(ctx context.Context, db database.DBTxConn, req database.InsertRequest) error {
	return s.Store.Insert(clusterContext(ctx), db, req)
}

// sync waits until this node's replica of the version table has every version recorded
// through any node so far.
func (s *ClusterStore) sync(ctx context.Context, db database.DBTxConn) error {
	if _, err := db.ExecContext(ctx, "SYSTEM SYNC REPLICA "+s.quoted); err != nil {
		return fmt.Errorf("sync the version table %s with the other nodes: %w", s.table, err)
	}
	return nil
}

// GetMigration implements [database.Store], after syncing the replica.
func (s *ClusterStore) GetMigration(ctx context.Context, db database.DBTxConn, version int64) (*database.GetMigrationResult, error) {
	if err := s.sync(ctx, db); err != nil {
		return nil, err
	}
	return s.Store.GetMigration(ctx, db, version)
}

// GetLatestVersion implements [database.Store], after syncing the replica.
func (s *ClusterStore) GetLatestVersion(ctx context.Context, db database.DBTxConn) (int64, error) {
	if err := s.sync(ctx, db); err != nil {
		return -1, err
	}
	return s.Store.GetLatestVersion(ctx, db)
}

// ListMigrations implements [database.Store], after syncing the replica.
func (s *ClusterStore) ListMigrations(ctx context.Context, db database.DBTxConn) ([]*database.ListMigrationsResult, error) {
	if err := s.sync(ctx, db); err != nil {
		return nil, err
	}
	return s.Store.ListMigrations(ctx, db)
}

// TableExists implements [database.StoreExtender]: the version table exists on this node and
// holds goose's version 0 (after syncing the replica). A table created ON CLUSTER by another
// migrator, which has not inserted its version 0 yet, does not count: this migrator inserts
// one too (goose reads the versions as a set). A version table that exists but is not
// replicated is the history of a single server: [ErrSingleServerSchema].
func (s *ClusterStore) TableExists(ctx context.Context, db database.DBTxConn) (bool, error) {
	var engine string
	err := db.QueryRowContext(ctx,
		`SELECT engine FROM system.tables WHERE database = currentDatabase() AND name = ?`, s.table).Scan(&engine)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("check version table %s: %w", s.table, err)
	}
	if !strings.HasPrefix(engine, "Replicated") {
		return false, fmt.Errorf("migrate: version table %s is a %s on this node, not replicated: %w; migrate a cluster in a database of its own",
			s.table, engine, ErrSingleServerSchema)
	}
	if err := s.sync(ctx, db); err != nil {
		return false, err
	}
	var zero uint64
	if err := db.QueryRowContext(ctx, "SELECT count() FROM "+s.quoted+" WHERE version_id = 0").Scan(&zero); err != nil {
		return false, fmt.Errorf("check version table %s: %w", s.table, err)
	}
	return zero > 0, nil
}

// ClusterLock is a mutex for migrators of one database on a ClickHouse cluster, implementing
// goose's [lock.Locker] (see the comment at the top of this file). The lock table (default
// goose_lock) is a ReplicatedReplacingMergeTree on every node, created ON CLUSTER once, with
// one ZooKeeper path for all: it anchors that path, so that it never disappears. Holding the
// lock means having created, on one's node, the table <lock table>_held: one more replica at
// the same path, under the fixed replica name 'lock', which ZooKeeper lets exist once in the
// whole cluster. The holder writes its name and the time into it; the row replicates to every
// node's lock table, where waiting migrators read who holds the lock. Dropping the _held table
// removes that replica (never the path, which the anchors keep): the lock is free. A lock
// older than the stale timeout (its holder crashed) is broken with DROP TABLE … ON CLUSTER.
type ClusterLock struct {
	cluster    string
	table      string
	quoted     string
	held       string // the table whose existence is the lock
	owner      string
	timeout    time.Duration
	staleAfter time.Duration
	logger     *slog.Logger
	db         dbName
	dropSuffix string         // " SYNC" on servers whose drops are delayed (see ServerDropsSync)
	retry      backoff.Policy // the waits between attempts (lockBackoff)
}

var _ lock.Locker = (*ClusterLock)(nil)

// NewClusterLock returns the lock of cluster on table (a plain identifier) for owner (empty:
// host-pid-random), waiting at most timeout and breaking locks older than staleAfter.
func NewClusterLock(cluster, table, owner string, timeout, staleAfter time.Duration, logger *slog.Logger) (*ClusterLock, error) {
	if err := ponixclickhouse.ValidateIdentifier(cluster); err != nil {
		return nil, fmt.Errorf("migrate: cluster name: %w", err)
	}
	q, err := ponixclickhouse.QuoteIdentifier(table)
	if err != nil {
		return nil, fmt.Errorf("migrate: lock table: %w", err)
	}
	if owner == "" {
		owner = defaultOwner()
	}
	if logger == nil {
		logger = slog.Default()
	}
	return &ClusterLock{cluster: cluster, table: table, quoted: q, held: table + "_held", owner: owner, timeout: timeout,
		staleAfter: staleAfter, logger: logger, retry: lockBackoff()}, nil
}

// Owner is the name this lock writes into the lock table.
func (l *ClusterLock) Owner() string { return l.owner }

// Lock implements [lock.Locker]: it retries with back-off until it creates the _held table,
// the lock timeout passes ([ErrLockTimeout]) or ctx ends. ZooKeeper errors (code 999) are
// retried too: a migrator that just released the lock may still be removing its replica.
func (l *ClusterLock) Lock(ctx context.Context, db *sql.DB) error {
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	name, err := l.db.get(ctx, db)
	if err != nil {
		return fmt.Errorf("migrate: cluster lock: %w", err)
	}
	var version string
	if err := db.QueryRowContext(ctx, "SELECT version()").Scan(&version); err != nil {
		return fmt.Errorf("migrate: cluster lock: server version: %w", err)
	}
	if ServerDropsSync(version) {
		// Without SYNC, a dropped Replicated table keeps its replica in ZooKeeper for minutes
		// (Atomic databases): the lock would stay taken.
		l.dropSuffix = " SYNC"
	}
	if err := l.ensureAnchor(ctx, db, name); err != nil {
		return err
	}
	wait := l.retry.Start()
	var last error
	for attempt := 0; ; attempt++ {
		err := l.tryCreate(ctx, db, name)
		if err == nil {
			l.logger.DebugContext(ctx, "cluster migration lock acquired", "table", l.held, "owner", l.owner)
			return nil
		}
		var ex *clickhouse.Exception
		switch {
		case errors.As(err, &ex) && (ex.Code == codeTableAlreadyExists || ex.Code == codeReplicaAlreadyExists):
			if h, ok := l.holder(ctx, db, name); ok && h.age > l.staleAfter {
				l.logger.WarnContext(ctx, "breaking stale cluster migration lock", "table", l.held, "node", h.node, "owner", h.owner, "age", h.age)
				l.breakStale(ctx, db, name, h)
				continue
			}
			if attempt == 0 {
				l.logger.InfoContext(ctx, "waiting for the cluster migration lock", "table", l.held)
			}
		case errors.As(err, &ex) && ex.Code == codeCoordination:
			last = err
			l.logger.DebugContext(ctx, "cluster migration lock: ZooKeeper refused, retrying", "error", err)
		default:
			if ctx.Err() != nil {
				return l.timeoutError(ctx, db, name, last)
			}
			return fmt.Errorf("migrate: take cluster lock %s: %w", l.held, err)
		}
		if err := wait.Wait(ctx); err != nil {
			return l.timeoutError(ctx, db, name, last)
		}
	}
}

// lockColumns are the columns of the lock table and of the _held table (one replicated table).
const lockColumns = "(owner String, acquired_at DateTime)"

// ensureAnchor creates the lock table ON CLUSTER unless this node has it (an ON CLUSTER DDL
// waits for every node: a node down would stall every start).
func (l *ClusterLock) ensureAnchor(ctx context.Context, db *sql.DB, name string) error {
	var n uint64
	if err := db.QueryRowContext(ctx, "SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = ?", l.table).Scan(&n); err != nil {
		return fmt.Errorf("migrate: cluster lock %s: %w", l.table, err)
	}
	if n > 0 {
		return nil
	}
	_, err := db.ExecContext(ctx, fmt.Sprintf(
		"CREATE TABLE IF NOT EXISTS %s.%s ON CLUSTER %s %s ENGINE = ReplicatedReplacingMergeTree('%s', '{shard}-{replica}', acquired_at) ORDER BY tuple()",
		name, l.quoted, l.cluster, lockColumns, ZooKeeperBookkeepingPath(name, l.table)))
	if err != nil {
		return fmt.Errorf("migrate: create the cluster lock table %s on cluster %s: %w", l.table, l.cluster, err)
	}
	return nil
}

// tryCreate creates the _held replica, then records the owner in it. If recording fails, it
// drops the replica again and returns the error.
func (l *ClusterLock) tryCreate(ctx context.Context, db *sql.DB, name string) error {
	_, err := db.ExecContext(ctx, fmt.Sprintf(
		"CREATE TABLE %s %s ENGINE = ReplicatedReplacingMergeTree('%s', 'lock', acquired_at) ORDER BY tuple()",
		l.held, lockColumns, ZooKeeperBookkeepingPath(name, l.table)))
	if err != nil {
		return err
	}
	if _, err := db.ExecContext(clusterContext(ctx), "INSERT INTO "+l.held+" (owner, acquired_at) SELECT toString(?), now()", l.owner); err != nil {
		_, _ = db.ExecContext(context.WithoutCancel(ctx), "DROP TABLE IF EXISTS "+l.held+l.dropSuffix)
		return err
	}
	return nil
}

// lockHolder is what the cluster says about the lock: the node holding it, since when (from
// ZooKeeper), and the owner's name (from the lock table, as far as it has replicated).
type lockHolder struct {
	node  string
	owner string
	age   time.Duration
	ctime time.Time
}

// holder reads the lock's replica in ZooKeeper; ok is false when there is none.
func (l *ClusterLock) holder(ctx context.Context, db *sql.DB, name string) (lockHolder, bool) {
	var (
		value string
		secs  int64
		ctime time.Time
	)
	err := db.QueryRowContext(ctx, "SELECT value, toInt64(now()) - toInt64(ctime), ctime FROM system.zookeeper WHERE path = ? AND name = 'host'",
		ZooKeeperBookkeepingPath(name, l.table)+"/replicas/lock").Scan(&value, &secs, &ctime)
	if err != nil {
		return lockHolder{}, false
	}
	h := lockHolder{age: time.Duration(secs) * time.Second, ctime: ctime}
	for _, line := range strings.Split(value, "\n") {
		if v, ok := strings.CutPrefix(line, "host: "); ok {
			h.node = v
		}
	}
	_ = db.QueryRowContext(ctx, "SELECT owner FROM "+l.quoted+" ORDER BY acquired_at DESC LIMIT 1").Scan(&h.owner)
	return h, true
}

func (l *ClusterLock) timeoutError(ctx context.Context, db *sql.DB, name string, last error) error {
	h, _ := l.holder(context.WithoutCancel(ctx), db, name)
	if last != nil && h.node == "" {
		return fmt.Errorf("migrate: cluster lock %s: %w: %w (last: %w)", l.held, ErrLockTimeout, ctx.Err(), last)
	}
	return fmt.Errorf("migrate: cluster lock %s held by %q on node %q for %s: %w (if its holder is gone: DROP TABLE %s.%s ON CLUSTER %s, or wait for the stale timeout %s): %w",
		l.held, h.owner, h.node, h.age.Round(time.Second), ErrLockTimeout, name, l.held, l.cluster, l.staleAfter, ctx.Err())
}

// breakStale drops the _held table everywhere, if ZooKeeper still shows the same stale lock.
func (l *ClusterLock) breakStale(ctx context.Context, db *sql.DB, name string, stale lockHolder) {
	if h, ok := l.holder(ctx, db, name); !ok || !h.ctime.Equal(stale.ctime) {
		return // released (and maybe taken again) meanwhile
	}
	_, _ = db.ExecContext(ctx, fmt.Sprintf("DROP TABLE IF EXISTS %s.%s ON CLUSTER %s%s", name, l.held, l.cluster, l.dropSuffix))
}

// Unlock implements [lock.Locker]: it drops the _held table on this node if this owner holds
// it.
func (l *ClusterLock) Unlock(ctx context.Context, db *sql.DB) error {
	var owner string
	if err := db.QueryRowContext(ctx, "SELECT owner FROM "+l.held+" ORDER BY acquired_at DESC LIMIT 1").Scan(&owner); err != nil {
		return fmt.Errorf("migrate: release cluster lock %s: reading its owner on this node: %w", l.held, err)
	}
	if owner != l.owner {
		return fmt.Errorf("migrate: release cluster lock %s: held by %q, not by %q", l.held, owner, l.owner)
	}
	if _, err := db.ExecContext(ctx, "DROP TABLE IF EXISTS "+l.held+l.dropSuffix); err != nil {
		return fmt.Errorf("migrate: release cluster lock %s: %w", l.held, err)
	}
	l.logger.DebugContext(ctx, "cluster migration lock released", "table", l.held, "owner", l.owner)
	return nil
}
