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

	"github.com/pressly/goose/v3"
)

// Option configures a migration run.
type Option func(*options)

type options struct {
	versionTable string
	lockTable    string
	lockTimeout  time.Duration
	staleAfter   time.Duration
	owner        string
	logger       *slog.Logger
}

// WithVersionTable sets goose's version table (default goose_db_version).
func WithVersionTable(name string) Option { return func(o *options) { o.versionTable = name } }

// WithLockTable sets the lock table (default goose_lock).
func WithLockTable(name string) Option { return func(o *options) { o.lockTable = name } }

// WithLockTimeout bounds the wait for another migrator's lock (default 5m).
func WithLockTimeout(d time.Duration) Option { return func(o *options) { o.lockTimeout = d } }

// WithStaleLockAfter sets the age after which a lock is taken to belong to a crashed migrator
// and is broken (default 30m; keep it longer than your slowest migration).
func WithStaleLockAfter(d time.Duration) Option { return func(o *options) { o.staleAfter = d } }

// WithLockOwner names this migrator in the lock table (default host-pid-random).
func WithLockOwner(owner string) Option { return func(o *options) { o.owner = owner } }

// WithLogger receives goose's progress at Info level and each executed statement at Debug
// level (default: discard).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

func buildOptions(opts []Option) options {
	o := options{
		versionTable: DefaultVersionTable,
		lockTable:    DefaultLockTable,
		lockTimeout:  5 * time.Minute,
		staleAfter:   30 * time.Minute,
		logger:       slog.New(slog.DiscardHandler),
	}
	for _, opt := range opts {
		opt(&o)
	}
	if o.logger == nil {
		o.logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Migrator is a goose provider for ClickHouse together with the statement tracking behind
// [MigrationError]. It is safe for concurrent use.
type Migrator struct {
	provider *goose.Provider
	tracker  *statementTracker
	db       *sql.DB
	store    *Store
	locker   *TableLock
}

// New prepares a Migrator for the migrations in fsys (at its root; use fs.Sub for a
// subdirectory) on db, which must be a clickhouse-go database/sql handle (see
// ponixclickhouse.OpenDB). Migrations run in the database the handle connects to.
func New(db *sql.DB, fsys fs.FS, opts ...Option) (*Migrator, error) {
	o := buildOptions(opts)
	store, err := NewStore(o.versionTable)
	if err != nil {
		return nil, err
	}
	locker, err := NewTableLock(o.lockTable, o.owner, o.lockTimeout, o.staleAfter, o.logger)
	if err != nil {
		return nil, err
	}
	tracker := &statementTracker{next: o.logger.Handler(), mu: &sync.Mutex{}, last: map[string]string{}}
	p, err := goose.NewProvider("", db, fsys,
		goose.WithStore(store),
		goose.WithLocker(locker),
		goose.WithIsolateDDL(true),
		goose.WithDisableGlobalRegistry(true),
		goose.WithVerbose(true),
		goose.WithSlog(slog.New(tracker)),
	)
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	return &Migrator{provider: p, tracker: tracker, db: db, store: store, locker: locker}, nil
}

// Provider is the underlying goose provider, for operations this package does not wrap.
func (m *Migrator) Provider() *goose.Provider { return m.provider }

// Up applies every pending migration, under the lock.
func (m *Migrator) Up(ctx context.Context) ([]*goose.MigrationResult, error) {
	res, err := m.provider.Up(ctx)
	return res, m.wrap(err)
}

// UpTo applies the pending migrations up to and including version, under the lock.
func (m *Migrator) UpTo(ctx context.Context, version int64) ([]*goose.MigrationResult, error) {
	res, err := m.provider.UpTo(ctx, version)
	return res, m.wrap(err)
}

// DownTo rolls back, newest first, every applied migration above version (0 rolls back all).
func (m *Migrator) DownTo(ctx context.Context, version int64) ([]*goose.MigrationResult, error) {
	res, err := m.provider.DownTo(ctx, version)
	return res, m.wrap(err)
}

// Reapply forgets every migration recorded as applied (it drops goose's version table, under
// the migration lock) and then applies them all again. It is the repair for a database whose
// objects were lost while goose's records of them stayed — a table dropped by mistake: Up
// alone sees nothing to do. Use it only with migration sets whose migrations can run again on
// what is left (each creating what it needs and dropping its own leftovers first), as the
// migrations module's are.
func (m *Migrator) Reapply(ctx context.Context) ([]*goose.MigrationResult, error) {
	if err := m.locker.Lock(ctx, m.db); err != nil {
		return nil, fmt.Errorf("migrate: reapply: %w", err)
	}
	_, err := m.db.ExecContext(ctx, "DROP TABLE IF EXISTS "+m.store.quoted)
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
	st, err := m.provider.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrate: status: %w", err)
	}
	return st, nil
}

// Version is the highest applied version (0 when none).
func (m *Migrator) Version(ctx context.Context) (int64, error) {
	v, err := m.provider.GetDBVersion(ctx)
	if err != nil {
		return 0, fmt.Errorf("migrate: version: %w", err)
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
