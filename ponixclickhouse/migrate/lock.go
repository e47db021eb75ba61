package migrate

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ponix-go/ponix/ponixclickhouse"
	"github.com/ponix-go/ponix/runner/backoff"
	"github.com/pressly/goose/v3/lock"
)

// DefaultLockTable is the name of the table whose existence is the migration lock.
const DefaultLockTable = "goose_lock"

const codeTableAlreadyExists = 57

// ErrLockTimeout is returned when the migration lock stays taken longer than the lock timeout.
var ErrLockTimeout = errors.New("migration lock not acquired in time")

// lockBackoff is the wait between two attempts to take a migration lock (a [TableLock] or a
// [ClusterLock]) that another migrator holds: 20ms, growing by half per attempt up to 1s.
func lockBackoff() backoff.Policy {
	return backoff.Policy{Initial: 20 * time.Millisecond, Max: time.Second, Factor: 1.5}
}

// TableLock is a mutex for migrators of one ClickHouse server, implementing goose's
// [lock.Locker]. ClickHouse has no advisory locks, but creating a table without IF NOT EXISTS
// is atomic on a single server: of two concurrent CREATE TABLE statements for the same name,
// one fails with TABLE_ALREADY_EXISTS (code 57). Holding the lock means having created the
// lock table; it records the owner and the acquisition time (server clock), and DROP TABLE
// releases it.
//
// A lock older than the stale timeout (its holder crashed) is broken by renaming the table
// away and dropping it. Scope: a single server (or the one node all migrators talk to). On a
// cluster, replicas do not share plain tables, so run migrations against one node.
type TableLock struct {
	table      string
	quoted     string
	owner      string
	timeout    time.Duration
	staleAfter time.Duration
	logger     *slog.Logger
	retry      backoff.Policy // the waits between attempts (lockBackoff)
}

var _ lock.Locker = (*TableLock)(nil)

// NewTableLock returns a lock on table (a plain identifier) for owner (empty: host-pid-random),
// waiting at most timeout for it and breaking locks older than staleAfter.
func NewTableLock(table, owner string, timeout, staleAfter time.Duration, logger *slog.Logger) (*TableLock, error) {
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
	return &TableLock{table: table, quoted: q, owner: owner, timeout: timeout, staleAfter: staleAfter, logger: logger,
		retry: lockBackoff()}, nil
}

func defaultOwner() string {
	host, _ := os.Hostname()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b))
}

// Owner is the name this lock writes into the lock table.
func (l *TableLock) Owner() string { return l.owner }

// Lock implements [lock.Locker]: it retries with backoff until it creates the lock table,
// the lock timeout passes ([ErrLockTimeout]) or ctx ends.
func (l *TableLock) Lock(ctx context.Context, db *sql.DB) error {
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	wait := l.retry.Start()
	for attempt := 0; ; attempt++ {
		err := l.tryCreate(ctx, db)
		if err == nil {
			l.logger.DebugContext(ctx, "migration lock acquired", "table", l.table, "owner", l.owner)
			return nil
		}
		var ex *clickhouse.Exception
		if !errors.As(err, &ex) || ex.Code != codeTableAlreadyExists {
			if ctx.Err() != nil {
				return l.timeoutError(ctx, db)
			}
			return fmt.Errorf("migrate: take lock %s: %w", l.table, err)
		}
		if holder, age, ok := l.holder(ctx, db); ok && age > l.staleAfter {
			l.logger.WarnContext(ctx, "breaking stale migration lock", "table", l.table, "holder", holder, "age", age)
			l.breakStale(ctx, db, holder)
			continue
		}
		if attempt == 0 {
			l.logger.InfoContext(ctx, "waiting for migration lock", "table", l.table)
		}
		if err := wait.Wait(ctx); err != nil {
			return l.timeoutError(ctx, db)
		}
	}
}

func (l *TableLock) timeoutError(ctx context.Context, db *sql.DB) error {
	holder, age, _ := l.holder(context.WithoutCancel(ctx), db)
	return fmt.Errorf("migrate: lock table %s held by %q for %s: %w (drop the table if its holder is gone, or wait for the stale timeout %s): %w",
		l.table, holder, age.Round(time.Second), ErrLockTimeout, l.staleAfter, ctx.Err())
}

// tryCreate creates the lock table with its one row in a single statement.
func (l *TableLock) tryCreate(ctx context.Context, db *sql.DB) error {
	_, err := db.ExecContext(ctx,
		`CREATE TABLE `+l.quoted+` ENGINE = TinyLog AS SELECT toString(?) AS owner, now() AS acquired_at`, l.owner)
	return err
}

// holder reads the lock row; ok is false when the table vanished or is still empty.
func (l *TableLock) holder(ctx context.Context, db *sql.DB) (owner string, age time.Duration, ok bool) {
	var secs int64
	err := db.QueryRowContext(ctx,
		`SELECT owner, toInt64(now()) - toInt64(acquired_at) FROM `+l.quoted+` LIMIT 1`).Scan(&owner, &secs)
	if err != nil {
		return "", 0, false
	}
	return owner, time.Duration(secs) * time.Second, true
}

// breakStale renames the lock table away (atomic: one breaker wins), checks that the renamed
// table still holds the stale owner, and drops it. If a fresh lock was renamed by mistake
// (the stale one was released and retaken in between), it is renamed back.
func (l *TableLock) breakStale(ctx context.Context, db *sql.DB, staleOwner string) {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	away := l.table + "_stale_" + hex.EncodeToString(b)
	if _, err := db.ExecContext(ctx, `RENAME TABLE `+l.quoted+` TO `+"`"+away+"`"); err != nil {
		return // another migrator broke it first, or it was released
	}
	var owner string
	_ = db.QueryRowContext(ctx, "SELECT owner FROM `"+away+"` LIMIT 1").Scan(&owner)
	if owner != staleOwner {
		if _, err := db.ExecContext(ctx, "RENAME TABLE `"+away+"` TO "+l.quoted); err == nil {
			return
		}
	}
	_, _ = db.ExecContext(ctx, "DROP TABLE IF EXISTS `"+away+"`")
}

// Unlock implements [lock.Locker]: it drops the lock table if this owner holds it.
func (l *TableLock) Unlock(ctx context.Context, db *sql.DB) error {
	owner, _, ok := l.holder(ctx, db)
	if !ok {
		return fmt.Errorf("migrate: release lock %s: lock table missing or unreadable", l.table)
	}
	if owner != l.owner {
		return fmt.Errorf("migrate: release lock %s: held by %q, not by %q", l.table, owner, l.owner)
	}
	if _, err := db.ExecContext(ctx, `DROP TABLE IF EXISTS `+l.quoted); err != nil {
		return fmt.Errorf("migrate: release lock %s: %w", l.table, err)
	}
	l.logger.DebugContext(ctx, "migration lock released", "table", l.table, "owner", l.owner)
	return nil
}
