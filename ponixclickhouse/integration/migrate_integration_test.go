//go:build integration

package integration

import (
	"context"
	"database/sql"
	"errors"
	"io/fs"
	"os"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/ponix-go/ponix/ponixclickhouse"
	"github.com/ponix-go/ponix/ponixclickhouse/migrate"
	"github.com/pressly/goose/v3"
)

func sub(t *testing.T, dir string) fs.FS {
	t.Helper()
	return os.DirFS("testdata/" + dir)
}

func count(t *testing.T, db *sql.DB, q string) uint64 {
	t.Helper()
	var n uint64
	if err := db.QueryRowContext(t.Context(), q).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

func TestUpStatusNoopDownTo(t *testing.T) {
	d := srv.NewDatabase(t)
	ctx := t.Context()
	res, err := migrate.Up(ctx, d.DB, sub(t, "good"))
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 2 {
		t.Fatalf("applied %d migrations, want 2", len(res))
	}
	if n := count(t, d.DB, "SELECT count() FROM items_copy"); n != 1000 {
		t.Fatalf("items_copy has %d rows, want 1000", n)
	}
	// Re-run is a no-op.
	res, err = migrate.Up(ctx, d.DB, sub(t, "good"))
	if err != nil || len(res) != 0 {
		t.Fatalf("second Up applied %d migrations (err %v), want 0", len(res), err)
	}
	if n := count(t, d.DB, "SELECT count() FROM items_copy"); n != 1000 {
		t.Fatalf("items_copy has %d rows after re-run, want 1000", n)
	}
	st, err := migrate.Status(ctx, d.DB, sub(t, "good"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st {
		if s.State != "applied" || s.AppliedAt.IsZero() {
			t.Errorf("status of %s = %s at %v, want applied", s.Source.Path, s.State, s.AppliedAt)
		}
	}
	// Down to 1 drops the copy only; the version row is gone.
	if _, err := migrate.DownTo(ctx, d.DB, sub(t, "good"), 1); err != nil {
		t.Fatal(err)
	}
	if n := count(t, d.DB, "SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'items_copy'"); n != 0 {
		t.Fatal("items_copy still exists after DownTo(1)")
	}
	if n := count(t, d.DB, "SELECT count() FROM goose_db_version WHERE version_id = 2"); n != 0 {
		t.Fatalf("version 2 still recorded %d times after DownTo(1)", n)
	}
	m, err := migrate.New(d.DB, sub(t, "good"))
	if err != nil {
		t.Fatal(err)
	}
	if v, err := m.Version(ctx); err != nil || v != 1 {
		t.Fatalf("version = %d, %v; want 1", v, err)
	}
	// And up again.
	if res, err := m.Up(ctx); err != nil || len(res) != 1 {
		t.Fatalf("Up after DownTo applied %d (err %v), want 1", len(res), err)
	}
	if _, err := m.DownTo(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if n := count(t, d.DB, "SELECT count() FROM system.tables WHERE database = currentDatabase() AND name IN ('items', 'items_copy')"); n != 0 {
		t.Fatalf("%d tables left after DownTo(0)", n)
	}
	if n := count(t, d.DB, "SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'goose_lock'"); n != 0 {
		t.Fatal("lock table left behind")
	}
}

func TestFailingMigrationNamesFileAndStatement(t *testing.T) {
	d := srv.NewDatabase(t)
	_, err := migrate.Up(t.Context(), d.DB, sub(t, "broken"))
	var me *migrate.MigrationError
	if !errors.As(err, &me) {
		t.Fatalf("err = %v (%T), want *MigrationError", err, err)
	}
	if me.File != "00002_broken.sql" || me.Version != 2 || me.Direction != "up" {
		t.Errorf("MigrationError = %+v", me)
	}
	if !strings.Contains(me.Statement, "NoSuchEngineAnywhere") {
		t.Errorf("statement = %q, want the failing CREATE TABLE broken", me.Statement)
	}
	if len(me.Applied) != 1 || me.Applied[0] != "00001_create_items.sql" {
		t.Errorf("applied = %v, want [00001_create_items.sql]", me.Applied)
	}
	msg := err.Error()
	for _, want := range []string{"00002_broken.sql", "NoSuchEngineAnywhere", "CREATE TABLE broken"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
	t.Logf("error: %v", err)
	// The lock is released after a failure, so a fixed set of migrations can run.
	if _, err := migrate.Up(t.Context(), d.DB, sub(t, "good")); err == nil {
		t.Log("good migrations ran after the failure")
	} else if errors.Is(err, migrate.ErrLockTimeout) {
		t.Fatalf("lock not released after a failed migration: %v", err)
	}
}

func TestConcurrentMigratorsApplyEachMigrationOnce(t *testing.T) {
	d := srv.NewDatabase(t)
	const n = 3
	var wg sync.WaitGroup
	results := make([]int, n)
	errs := make([]error, n)
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			res, err := migrate.Up(context.Background(), d.DB, sub(t, "good"), migrate.WithLockOwner("migrator-"+string(rune('a'+i))))
			results[i], errs[i] = len(res), err
		})
	}
	close(start)
	wg.Wait()
	total := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("migrator %d: %v", i, errs[i])
		}
		total += results[i]
	}
	if total != 2 {
		t.Fatalf("migrators applied %v migrations in total, want 2 (each once)", results)
	}
	if c := count(t, d.DB, "SELECT count() FROM goose_db_version WHERE version_id > 0"); c != 2 {
		t.Fatalf("%d version rows, want 2", c)
	}
	if c := count(t, d.DB, "SELECT count() FROM items_copy"); c != 1000 {
		t.Fatalf("items_copy has %d rows, want 1000 (copied once)", c)
	}
}

func TestLockTimesOutWhileHeldAndBreaksStaleLock(t *testing.T) {
	d := srv.NewDatabase(t)
	ctx := t.Context()
	holder, err := migrate.NewTableLock("goose_lock", "holder", time.Second, time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := holder.Lock(ctx, d.DB); err != nil {
		t.Fatal(err)
	}
	_, err = migrate.Up(ctx, d.DB, sub(t, "good"), migrate.WithLockTimeout(500*time.Millisecond))
	if !errors.Is(err, migrate.ErrLockTimeout) || !strings.Contains(err.Error(), `"holder"`) {
		t.Fatalf("err = %v, want ErrLockTimeout naming the holder", err)
	}
	if c := count(t, d.DB, "SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'items'"); c != 0 {
		t.Fatal("a migration ran without the lock")
	}
	// The holder "crashes"; once its lock is older than the stale timeout it is broken.
	time.Sleep(1100 * time.Millisecond)
	res, err := migrate.Up(ctx, d.DB, sub(t, "good"), migrate.WithStaleLockAfter(time.Second/2))
	if err != nil || len(res) != 2 {
		t.Fatalf("Up after stale lock: %d applied, %v", len(res), err)
	}
	if err := holder.Unlock(ctx, d.DB); err == nil {
		t.Error("the crashed holder could release a lock it no longer holds")
	}
}

// Two applications' migration sets in one database: with the default tables the second is
// refused with an error that says what to do; with tables of their own both apply.
func TestTwoMigrationSetsInOneDatabase(t *testing.T) {
	db := srv.NewDatabase(t)
	ctx := t.Context()
	other := fstest.MapFS{"20990101000000_create_other.sql": {Data: []byte(
		"-- +goose NO TRANSACTION\n-- +goose Up\nCREATE TABLE other (x UInt8) ENGINE = MergeTree() ORDER BY x;\n-- +goose Down\nDROP TABLE other;\n")}}
	if _, err := migrate.Up(ctx, db.DB, os.DirFS("testdata/good")); err != nil {
		t.Fatal(err)
	}
	_, err := migrate.Up(ctx, db.DB, other)
	if !errors.Is(err, migrate.ErrForeignVersions) || !strings.Contains(err.Error(), "WithApplication") {
		t.Fatalf("a second set on the default tables: err = %v, want ErrForeignVersions naming WithApplication", err)
	}
	t.Logf("refused: %v", err)
	res, err := migrate.Up(ctx, db.DB, other, migrate.WithApplication("other_app"))
	if err != nil || len(res) != 1 {
		t.Fatalf("with its own tables: %d applied, %v", len(res), err)
	}
	var n uint64
	if err := db.Conn.QueryRow(ctx, "SELECT count() FROM system.tables WHERE database = currentDatabase() AND name IN ('other_app_goose_db_version', 'goose_db_version', 'items', 'other')").Scan(&n); err != nil || n != 4 {
		t.Fatalf("%d of the 4 tables, %v", n, err)
	}
	// Each set applies again with nothing to do.
	for _, run := range []func() ([]*goose.MigrationResult, error){
		func() ([]*goose.MigrationResult, error) { return migrate.Up(ctx, db.DB, os.DirFS("testdata/good")) },
		func() ([]*goose.MigrationResult, error) {
			return migrate.Up(ctx, db.DB, other, migrate.WithApplication("other_app"))
		},
	} {
		if res, err := run(); err != nil || len(res) != 0 {
			t.Fatalf("re-run: %d applied, %v", len(res), err)
		}
	}
}

// A refused password is explained as Open explains it: the setting, not a bare server code.
func TestMigrateNamesAWrongPassword(t *testing.T) {
	cfg := srv.Config("")
	cfg.Password = "not-the-password"
	db := ponixclickhouse.OpenDB(cfg)
	defer db.Close()
	_, err := migrate.Up(t.Context(), db, os.DirFS("testdata/good"))
	var ce *ponixclickhouse.ConfigError
	if !errors.As(err, &ce) || ce.Setting != "Username/Password" || !errors.Is(err, ponixclickhouse.ErrAuthentication) {
		t.Fatalf("err = %v, want a ConfigError naming Username/Password", err)
	}
}

// Files without the template marker are read as they are: "{{" in a user's SQL is just SQL.
func TestPlainSQLIsNotATemplate(t *testing.T) {
	db := srv.NewDatabase(t)
	plain := fstest.MapFS{"00001_braces.sql": {Data: []byte(
		"-- +goose NO TRANSACTION\n-- +goose Up\nCREATE TABLE braces (s String DEFAULT '{{ not a template }}') ENGINE = MergeTree() ORDER BY s;\n-- +goose Down\nDROP TABLE braces;\n")}}
	if _, err := migrate.Up(t.Context(), db.DB, plain, migrate.WithApplication("braces_app")); err != nil {
		t.Fatal(err)
	}
	var def string
	if err := db.Conn.QueryRow(t.Context(), "SELECT default_expression FROM system.columns WHERE database = currentDatabase() AND table = 'braces'").Scan(&def); err != nil || !strings.Contains(def, "{{ not a template }}") {
		t.Fatalf("default %q, %v", def, err)
	}
}
