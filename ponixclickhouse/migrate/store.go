package migrate

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/ponix-go/ponix/ponixclickhouse"
	"github.com/ponix-go/ponix/runner/backoff"
	"github.com/pressly/goose/v3/database"
)

// DefaultVersionTable is the name of goose's version table.
const DefaultVersionTable = "goose_db_version"

// Store is a goose [database.Store] for ClickHouse that works on 18.16 as well as 25.x.
// goose's built-in clickhouse dialect cannot be used with 18.16: it inserts version rows with
// inline VALUES (which hangs there) and deletes with SETTINGS mutations_sync (unknown there).
// Store inserts through a prepared batch in a transaction and deletes with ALTER TABLE …
// DELETE, then waits until the mutation is done. The version table lives in the connection's
// database.
type Store struct {
	table        string
	quoted       string
	mutationWait time.Duration
	mutationPoll backoff.Policy // the wait between two looks at a pending mutation
}

var _ database.StoreExtender = (*Store)(nil)

// NewStore returns a Store whose version table is named table (a plain identifier).
func NewStore(table string) (*Store, error) {
	q, err := ponixclickhouse.QuoteIdentifier(table)
	if err != nil {
		return nil, fmt.Errorf("migrate: version table: %w", err)
	}
	return &Store{table: table, quoted: q, mutationWait: 2 * time.Minute,
		mutationPoll: backoff.Constant(20 * time.Millisecond)}, nil
}

// Tablename implements [database.Store].
func (s *Store) Tablename() string { return s.table }

// CreateVersionTable implements [database.Store].
func (s *Store) CreateVersionTable(ctx context.Context, db database.DBTxConn) error {
	q := `CREATE TABLE IF NOT EXISTS ` + s.quoted + ` (
	version_id Int64,
	is_applied UInt8,
	tstamp DateTime DEFAULT now()
) ENGINE = MergeTree() ORDER BY (version_id, tstamp)`
	if _, err := db.ExecContext(ctx, q); err != nil {
		return fmt.Errorf("create version table %s: %w", s.table, err)
	}
	return nil
}

// Insert implements [database.Store]. The row goes through a prepared statement in a
// transaction, which clickhouse-go sends as a native batch on commit. When db is already a
// transaction, goose commits it.
func (s *Store) Insert(ctx context.Context, db database.DBTxConn, req database.InsertRequest) error {
	q := `INSERT INTO ` + s.quoted + ` (version_id, is_applied, tstamp)`
	now := time.Now().UTC().Truncate(time.Second)
	if tx, ok := db.(*sql.Tx); ok {
		stmt, err := tx.PrepareContext(ctx, q)
		if err != nil {
			return fmt.Errorf("insert version %d: %w", req.Version, err)
		}
		defer stmt.Close()
		if _, err := stmt.ExecContext(ctx, req.Version, uint8(1), now); err != nil {
			return fmt.Errorf("insert version %d: %w", req.Version, err)
		}
		return nil
	}
	var (
		tx  *sql.Tx
		err error
	)
	switch c := db.(type) {
	case *sql.Conn:
		tx, err = c.BeginTx(ctx, nil)
	case *sql.DB:
		tx, err = c.BeginTx(ctx, nil)
	default:
		return fmt.Errorf("insert version %d: unsupported connection type %T", req.Version, db)
	}
	if err != nil {
		return fmt.Errorf("insert version %d: begin: %w", req.Version, err)
	}
	stmt, err := tx.PrepareContext(ctx, q)
	if err != nil {
		_ = tx.Rollback()
		return fmt.Errorf("insert version %d: %w", req.Version, err)
	}
	if _, err := stmt.ExecContext(ctx, req.Version, uint8(1), now); err != nil {
		_ = stmt.Close()
		_ = tx.Rollback()
		return fmt.Errorf("insert version %d: %w", req.Version, err)
	}
	_ = stmt.Close()
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("insert version %d: commit: %w", req.Version, err)
	}
	return nil
}

// Delete implements [database.Store]: ALTER TABLE … DELETE, then wait for the mutation.
func (s *Store) Delete(ctx context.Context, db database.DBTxConn, version int64) error {
	q := fmt.Sprintf("ALTER TABLE %s DELETE WHERE version_id = %d", s.quoted, version)
	if _, err := db.ExecContext(ctx, q); err != nil {
		return fmt.Errorf("delete version %d: %w", version, err)
	}
	if err := waitMutations(ctx, db, s.table, s.mutationWait, s.mutationPoll); err != nil {
		return fmt.Errorf("delete version %d: %w", version, err)
	}
	return nil
}

// waitMutations polls system.mutations, waiting poll's waits in between, until no mutation of
// table is pending; it gives up after limit.
func waitMutations(ctx context.Context, db database.DBTxConn, table string, limit time.Duration, poll backoff.Policy) error {
	deadline := time.Now().Add(limit)
	wait := poll.Start()
	for {
		var pending uint64
		err := db.QueryRowContext(ctx,
			`SELECT count() FROM system.mutations WHERE database = currentDatabase() AND table = ? AND is_done = 0`,
			table).Scan(&pending)
		if err != nil {
			return fmt.Errorf("wait for mutation on %s: %w", table, err)
		}
		if pending == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("mutation on %s not done after %s", table, limit)
		}
		if err := wait.Wait(ctx); err != nil {
			return err
		}
	}
}

// GetMigration implements [database.Store].
func (s *Store) GetMigration(ctx context.Context, db database.DBTxConn, version int64) (*database.GetMigrationResult, error) {
	q := `SELECT tstamp, is_applied FROM ` + s.quoted + ` WHERE version_id = ? ORDER BY tstamp DESC LIMIT 1`
	var (
		ts      time.Time
		applied uint8
	)
	err := db.QueryRowContext(ctx, q, version).Scan(&ts, &applied)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("version %d: %w", version, database.ErrVersionNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get version %d: %w", version, err)
	}
	return &database.GetMigrationResult{Timestamp: ts, IsApplied: applied == 1}, nil
}

// GetLatestVersion implements [database.Store].
func (s *Store) GetLatestVersion(ctx context.Context, db database.DBTxConn) (int64, error) {
	var (
		v int64
		n uint64
	)
	if err := db.QueryRowContext(ctx, `SELECT max(version_id), count() FROM `+s.quoted).Scan(&v, &n); err != nil {
		return -1, fmt.Errorf("get latest version: %w", err)
	}
	if n == 0 {
		return -1, database.ErrVersionNotFound
	}
	return v, nil
}

// ListMigrations implements [database.Store].
func (s *Store) ListMigrations(ctx context.Context, db database.DBTxConn) ([]*database.ListMigrationsResult, error) {
	rows, err := db.QueryContext(ctx, `SELECT version_id, is_applied FROM `+s.quoted+` ORDER BY version_id DESC`)
	if err != nil {
		return nil, fmt.Errorf("list migrations: %w", err)
	}
	defer rows.Close()
	var out []*database.ListMigrationsResult
	for rows.Next() {
		var (
			v       int64
			applied uint8
		)
		if err := rows.Scan(&v, &applied); err != nil {
			return nil, fmt.Errorf("list migrations: %w", err)
		}
		out = append(out, &database.ListMigrationsResult{Version: v, IsApplied: applied == 1})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list migrations: %w", err)
	}
	return out, nil
}

// TableExists implements [database.StoreExtender].
// It asks EXISTS TABLE rather than system.tables: on ClickHouse 18.16 reading system.tables
// while another migrator renames a table fails with code 60 (the renamed table "doesn't
// exist"), which stopped a second instance starting beside the first.
func (s *Store) TableExists(ctx context.Context, db database.DBTxConn) (bool, error) {
	var n uint8
	err := db.QueryRowContext(ctx, `EXISTS TABLE `+s.quoted).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("check version table %s: %w", s.table, err)
	}
	return n > 0, nil
}
