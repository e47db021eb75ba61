// Package migrate runs goose migrations against ClickHouse in-process, from an fs.FS (for
// example an embed.FS), with no goose binary. It brings the two pieces goose lacks for
// ClickHouse 18.16: a version [Store] that does not use inline INSERT VALUES nor
// mutations_sync, and a [TableLock] so that two instances starting together do not apply a
// migration twice. A failing migration gives a [*MigrationError] naming the file and the
// statement.
//
// Migration files are goose SQL files ({version}_{name}.sql with -- +goose Up / Down).
// ClickHouse has no transactional DDL: mark files with -- +goose NO TRANSACTION, and write
// each Down so that it restores the previous schema with its rows.
//
// Each file is rendered as a Go text/template first (see [Render] for the helpers), so that the
// same migration set creates plain MergeTree tables on a single server and, with
// [WithCluster], shard-local Replicated tables ON CLUSTER with a Distributed table over them,
// its history and lock kept cluster-wide ([ClusterStore], [ClusterLock]). A file without
// template actions is used as it is.
//
// A version table belongs to the migration set that first ran on it: any other set is refused
// with a [*CollisionError] naming both (see [WithApplication]). [EnsureDatabase] creates the
// database the migrations run in when the server lacks it.
package migrate

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/ponix-go/ponix/ponixclickhouse"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/database"
	"github.com/pressly/goose/v3/lock"
)

// Option configures a migration run.
type Option func(*options)

type options struct {
	application  string
	versionTable string
	lockTable    string
	lockTimeout  time.Duration
	staleAfter   time.Duration
	owner        string
	logger       *slog.Logger
	cluster      string
	database     string
}

// WithApplication gives a migration set tables of its own: goose's version table
// "<name>_goose_db_version" and the lock table "<name>_goose_lock". Two applications whose
// migrations share a database need distinct names: a version table belongs to the migration
// set that first ran on it (the Migrator marks it with the application's name and the set's
// first file), and any other set is refused with a [*CollisionError] naming both. Ponix's own
// migrations use the default tables.
func WithApplication(name string) Option {
	return func(o *options) {
		o.application = name
		o.versionTable, o.lockTable = name+"_"+DefaultVersionTable, name+"_"+DefaultLockTable
	}
}

// WithVersionTable sets goose's version table (default goose_db_version; see also
// [WithApplication]).
func WithVersionTable(name string) Option { return func(o *options) { o.versionTable = name } }

// WithLockTable sets the lock table (default goose_lock; see also [WithApplication]).
func WithLockTable(name string) Option { return func(o *options) { o.lockTable = name } }

// WithLockTimeout bounds the wait for another migrator's lock (default 5m).
func WithLockTimeout(d time.Duration) Option { return func(o *options) { o.lockTimeout = d } }

// WithStaleLockAfter sets the age after which a lock is taken to belong to a crashed migrator
// and is broken (default 30m; keep it longer than your slowest migration).
func WithStaleLockAfter(d time.Duration) Option { return func(o *options) { o.staleAfter = d } }

// WithLockOwner names this migrator in the lock table (default host-pid-random).
func WithLockOwner(owner string) Option { return func(o *options) { o.owner = owner } }

// WithCluster runs the migrations on cluster, a cluster of the servers' remote_servers: the
// templates render their ON CLUSTER forms (see [Render]), goose's version table is replicated
// to every node ([ClusterStore]) and the lock is cluster-wide ([ClusterLock]), so that
// migrators started at once against different nodes apply each migration once. Copies run
// with insert_distributed_sync=1. An empty name means a single server (the default).
func WithCluster(cluster string) Option { return func(o *options) { o.cluster = cluster } }

// WithDatabase names the database the migrations run in, which the cluster templates write
// into ZooKeeper paths and Distributed tables. Without it the Migrator asks the server
// (currentDatabase()) before its first run. Single-server migrations do not need it.
func WithDatabase(name string) Option { return func(o *options) { o.database = name } }

// WithLogger receives goose's progress at Info level and each executed statement at Debug
// level (default: slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

func buildOptions(opts []Option) options {
	o := options{
		versionTable: DefaultVersionTable,
		lockTable:    DefaultLockTable,
		lockTimeout:  5 * time.Minute,
		staleAfter:   30 * time.Minute,
		logger:       slog.Default(),
	}
	for _, opt := range opts {
		opt(&o)
	}
	if o.logger == nil {
		o.logger = slog.Default()
	}
	return o
}

// Migrator is a goose provider for ClickHouse together with the statement tracking behind
// [MigrationError]. It is safe for concurrent use.
type Migrator struct {
	provider    *goose.Provider
	tracker     *statementTracker
	db          *sql.DB
	store       *Store
	vstore      database.StoreExtender // store, or the cluster store around it
	locker      lock.Locker            // the lock, then the ownership check (claimingLocker)
	application string
	logger      *slog.Logger
	cluster     string
	fsys        *templateFS
	dbname      *dbName // the cluster store's and lock's cache of the database name
}

// New prepares a Migrator for the migrations in fsys (at its root; use fs.Sub for a
// subdirectory) on db, which must be a clickhouse-go database/sql handle (see
// ponixclickhouse.OpenDB). Migrations run in the database the handle connects to.
func New(db *sql.DB, fsys fs.FS, opts ...Option) (*Migrator, error) {
	o := buildOptions(opts)
	if o.application != "" {
		if err := ponixclickhouse.ValidateIdentifier(o.application); err != nil {
			return nil, fmt.Errorf("migrate: application name: %w", err)
		}
	}
	m := &Migrator{db: db, cluster: o.cluster, fsys: &templateFS{base: fsys}, application: o.application, logger: o.logger}
	var (
		gooseStore database.Store
		err        error
	)
	if o.cluster == "" {
		if m.store, err = NewStore(o.versionTable); err != nil {
			return nil, err
		}
		if m.locker, err = NewTableLock(o.lockTable, o.owner, o.lockTimeout, o.staleAfter, o.logger); err != nil {
			return nil, err
		}
		gooseStore, m.vstore = m.store, m.store
		m.fsys.setData(renderData{})
	} else {
		cs, err := NewClusterStore(o.versionTable, o.cluster)
		if err != nil {
			return nil, err
		}
		cl, err := NewClusterLock(o.cluster, o.lockTable, o.owner, o.lockTimeout, o.staleAfter, o.logger)
		if err != nil {
			return nil, err
		}
		m.store, m.locker, gooseStore, m.vstore = cs.Store, cl, cs, cs
		if o.database != "" {
			if err := ponixclickhouse.ValidateIdentifier(o.database); err != nil {
				return nil, fmt.Errorf("migrate: database name: %w", err)
			}
			cs.db.set(o.database)
			cl.db.set(o.database)
			m.fsys.setData(renderData{Cluster: o.cluster, Database: o.database})
		}
		m.dbname = &cs.db
	}
	m.locker = &claimingLocker{Locker: m.locker, claim: m.claim}
	m.tracker = &statementTracker{next: o.logger.Handler(), mu: &sync.Mutex{}, last: map[string]string{}}
	p, err := goose.NewProvider("", db, m.fsys,
		goose.WithStore(gooseStore),
		goose.WithLocker(m.locker),
		goose.WithIsolateDDL(true),
		goose.WithDisableGlobalRegistry(true),
		goose.WithVerbose(true),
		goose.WithSlog(slog.New(m.tracker)),
	)
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	m.provider = p
	return m, nil
}

// prepare makes the templates renderable (on a cluster it asks the server for the database
// once, unless WithDatabase named it) and returns the context to run goose with: on a
// cluster, with the settings of cluster migrations. Its errors are wrapped as every
// Migrator error is (a connection failure names the setting at fault).
func (m *Migrator) prepare(ctx context.Context) (context.Context, error) {
	if m.cluster == "" {
		return ctx, nil
	}
	if d, ok := m.fsys.current(); !ok || !d.versionKnown {
		name, err := m.dbname.get(ctx, m.db)
		if err != nil {
			return ctx, m.wrap(err)
		}
		var version string
		if err := m.db.QueryRowContext(ctx, "SELECT version()").Scan(&version); err != nil {
			return ctx, m.wrap(fmt.Errorf("server version: %w", err))
		}
		m.fsys.setData(renderData{Cluster: m.cluster, Database: name, DropSync: ServerDropsSync(version), versionKnown: true})
	}
	return clusterContext(ctx), nil
}

// Cluster is the cluster the migrations run on ("" for a single server).
func (m *Migrator) Cluster() string { return m.cluster }

// Provider is the underlying goose provider, for operations this package does not wrap. On a
// cluster, run one of the Migrator's methods first (it resolves the database the templates
// need) and pass goose a context with the cluster settings.
func (m *Migrator) Provider() *goose.Provider { return m.provider }

// Up applies every pending migration, under the lock. A version table of another migration
// set (another application's) is refused with a [*CollisionError]; one without an owner's
// mark (new, or written by an older Ponix) is marked as this set's if every version it
// records is one of the set's.
func (m *Migrator) Up(ctx context.Context) ([]*goose.MigrationResult, error) {
	return m.up(ctx, m.provider.Up)
}

// UpTo applies the pending migrations up to and including version, under the lock, as Up.
func (m *Migrator) UpTo(ctx context.Context, version int64) ([]*goose.MigrationResult, error) {
	return m.up(ctx, func(ctx context.Context) ([]*goose.MigrationResult, error) {
		return m.provider.UpTo(ctx, version)
	})
}

// up runs apply once the templates are renderable and the version table is this set's (or
// no set's yet: the lock checks again, and marks it).
func (m *Migrator) up(ctx context.Context, apply func(context.Context) ([]*goose.MigrationResult, error)) ([]*goose.MigrationResult, error) {
	ctx, err := m.prepare(ctx)
	if err != nil {
		return nil, err
	}
	if err := m.check(ctx); err != nil {
		return nil, m.wrap(err)
	}
	res, err := apply(ctx)
	return res, m.wrap(err)
}

// DownTo rolls back, newest first, every applied migration above version (0 rolls back all),
// under the lock, on a version table of this set only (see Up).
func (m *Migrator) DownTo(ctx context.Context, version int64) ([]*goose.MigrationResult, error) {
	ctx, err := m.prepare(ctx)
	if err != nil {
		return nil, err
	}
	res, err := m.provider.DownTo(ctx, version)
	return res, m.wrap(err)
}

// Reapply forgets every migration recorded as applied (it drops goose's version table, under
// the migration lock) and then applies them all again. It is the repair for a database whose
// objects were lost while goose's records of them stayed — a table dropped by mistake: Up
// alone sees nothing to do. Use it only with migration sets whose migrations can run again on
// what is left (each creating what it needs and dropping its own leftovers first), as the
// migrations module's are. On a cluster it returns [ErrReapplyOnCluster]: there a table is
// usually lost on one node while its replicas and the other shards keep theirs, and running
// the history again would rebuild tables that hold data. A version table of another
// migration set is left alone ([*CollisionError]).
func (m *Migrator) Reapply(ctx context.Context) ([]*goose.MigrationResult, error) {
	if m.cluster != "" {
		return nil, ErrReapplyOnCluster
	}
	if err := m.locker.Lock(ctx, m.db); err != nil {
		if ce := (*CollisionError)(nil); errors.As(err, &ce) {
			return nil, ce
		}
		return nil, fmt.Errorf("migrate: reapply: %w", err)
	}
	_, err := m.db.ExecContext(ctx, "DROP TABLE IF EXISTS "+m.store.quoted)
	if err == nil {
		// An empty version table again, marked as this set's (goose creates its table once
		// per Migrator: one that ran before would not notice the drop).
		err = m.claim(ctx, m.db)
	}
	if uerr := m.locker.Unlock(context.WithoutCancel(ctx), m.db); uerr != nil && err == nil {
		err = uerr
	}
	if err != nil {
		return nil, fmt.Errorf("migrate: reapply: forgetting the applied versions: %w", err)
	}
	return m.Up(ctx)
}

// Status reports every migration in the source with whether and when it was applied.
func (m *Migrator) Status(ctx context.Context) ([]*goose.MigrationStatus, error) {
	ctx, err := m.prepare(ctx)
	if err != nil {
		return nil, err
	}
	st, err := m.provider.Status(ctx)
	if err != nil {
		return nil, m.wrap(fmt.Errorf("status: %w", err))
	}
	return st, nil
}

// Version is the highest applied version (0 when none).
func (m *Migrator) Version(ctx context.Context) (int64, error) {
	ctx, err := m.prepare(ctx)
	if err != nil {
		return 0, err
	}
	v, err := m.provider.GetDBVersion(ctx)
	if err != nil {
		return 0, m.wrap(fmt.Errorf("version: %w", err))
	}
	return v, nil
}

// Up applies the pending migrations of fsys to db. See [New].
func Up(ctx context.Context, db *sql.DB, fsys fs.FS, opts ...Option) ([]*goose.MigrationResult, error) {
	m, err := New(db, fsys, opts...)
	if err != nil {
		return nil, err
	}
	return m.Up(ctx)
}

// DownTo rolls the migrations of fsys back to version. See [New].
func DownTo(ctx context.Context, db *sql.DB, fsys fs.FS, version int64, opts ...Option) ([]*goose.MigrationResult, error) {
	m, err := New(db, fsys, opts...)
	if err != nil {
		return nil, err
	}
	return m.DownTo(ctx, version)
}

// Status reports the state of the migrations of fsys on db. See [New].
func Status(ctx context.Context, db *sql.DB, fsys fs.FS, opts ...Option) ([]*goose.MigrationStatus, error) {
	m, err := New(db, fsys, opts...)
	if err != nil {
		return nil, err
	}
	return m.Status(ctx)
}

// MigrationError is a migration that failed: which file, which direction, which statement.
type MigrationError struct {
	// File is the migration's file name, e.g. 20251101000000_create_processed_envelopes.sql.
	File string
	// Version is the migration's version.
	Version int64
	// Direction is "up" or "down".
	Direction string
	// Statement is the SQL statement that failed, when known.
	Statement string
	// Applied lists the files applied successfully before the failure in the same run.
	Applied []string
	// Err is the server's error.
	Err error
}

func (e *MigrationError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "migrate: migration %s (version %d, %s) failed", e.File, e.Version, e.Direction)
	if e.Statement != "" {
		fmt.Fprintf(&b, " at statement %q", shorten(e.Statement, 400))
	}
	fmt.Fprintf(&b, ": %v", e.Err)
	return b.String()
}

// Unwrap returns the server's error.
func (e *MigrationError) Unwrap() error { return e.Err }

func shorten(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

func (m *Migrator) wrap(err error) error {
	if err == nil {
		return nil
	}
	if ce := (*CollisionError)(nil); errors.As(err, &ce) {
		return ce
	}
	if ce := ponixclickhouse.ExplainConnectError(err); ce != err {
		return fmt.Errorf("migrate: %w", ce)
	}
	var pe *goose.PartialError
	if !errors.As(err, &pe) || pe.Failed == nil || pe.Failed.Source == nil {
		return fmt.Errorf("migrate: %w", err)
	}
	file := path.Base(pe.Failed.Source.Path)
	me := &MigrationError{
		File:      file,
		Version:   pe.Failed.Source.Version,
		Direction: pe.Failed.Direction,
		Statement: m.tracker.lastStatement(file),
		Err:       pe.Err,
	}
	for _, a := range pe.Applied {
		if a.Source != nil {
			me.Applied = append(me.Applied, path.Base(a.Source.Path))
		}
	}
	return me
}

// statementTracker is the slog handler given to goose: it remembers the last statement goose
// announced for each source file (goose logs "executing statement" just before running one)
// and passes records on to the user's handler, statements at Debug level.
type statementTracker struct {
	next slog.Handler
	mu   *sync.Mutex
	last map[string]string
}

func (h *statementTracker) lock() *sync.Mutex { return h.mu }

func (h *statementTracker) lastStatement(file string) string {
	mu := h.lock()
	mu.Lock()
	defer mu.Unlock()
	return h.last[file]
}

func (h *statementTracker) Enabled(context.Context, slog.Level) bool { return true }

func (h *statementTracker) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "executing statement" {
		var stmt, src string
		r.Attrs(func(a slog.Attr) bool {
			switch a.Key {
			case "statement":
				stmt = a.Value.String()
			case "source":
				src = a.Value.String()
			}
			return true
		})
		mu := h.lock()
		mu.Lock()
		h.last[src] = stmt
		mu.Unlock()
		r = r.Clone()
		r.Level = slog.LevelDebug
	}
	if !h.next.Enabled(ctx, r.Level) {
		return nil
	}
	return h.next.Handle(ctx, r)
}

func (h *statementTracker) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &statementTracker{next: h.next.WithAttrs(attrs), mu: h.lock(), last: h.last}
}

func (h *statementTracker) WithGroup(name string) slog.Handler {
	return &statementTracker{next: h.next.WithGroup(name), mu: h.lock(), last: h.last}
}
