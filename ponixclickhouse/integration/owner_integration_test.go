//go:build integration

package integration

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/ponix-go/ponix/ponixclickhouse"
	"github.com/ponix-go/ponix/ponixclickhouse/migrate"
)

// readingsSet is a second application's migration set, as an application that runs its own
// migrations through the migrate package would have.
var readingsSet = fstest.MapFS{"20990101000000_create_readings.sql": {Data: []byte(
	"-- +goose NO TRANSACTION\n-- +goose Up\nCREATE TABLE readings (x UInt8) ENGINE = MergeTree() ORDER BY x;\n-- +goose Down\nDROP TABLE readings;\n")}}

// comment is the comment of the version table's version_id column: the owner's mark.
func comment(t *testing.T, db *sql.DB, table string) string {
	t.Helper()
	rows, err := db.QueryContext(t.Context(), "DESCRIBE TABLE "+table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		if vals[0] == "version_id" {
			return vals[4].(string) // comment_expression on 18.16, comment on 25.x
		}
	}
	t.Fatalf("%s has no version_id column", table)
	return ""
}

// A second application that runs its migrations without WithApplication on the default
// tables is refused with an error naming both sets, whichever ran first; the owner's
// migrations keep working.
func TestSecondApplicationCollides(t *testing.T) {
	ctx := t.Context()
	t.Run("ponix first", func(t *testing.T) {
		d := srv.NewDatabase(t)
		good := os.DirFS("testdata/good")
		if _, err := migrate.Up(ctx, d.DB, good); err != nil {
			t.Fatal(err)
		}
		_, err := migrate.Up(ctx, d.DB, readingsSet)
		var ce *migrate.CollisionError
		if !errors.As(err, &ce) || !errors.Is(err, migrate.ErrForeignVersions) {
			t.Fatalf("err = %v (%T), want a *migrate.CollisionError", err, err)
		}
		t.Logf("refused: %v", err)
		if ce.VersionTable != "goose_db_version" || ce.OwnerFirst != "00001_create_items.sql" || ce.Application != "" ||
			len(ce.Migrations) != 1 || ce.Migrations[0] != "20990101000000_create_readings.sql" {
			t.Errorf("%+v", ce)
		}
		for _, w := range []string{"00001_create_items.sql", "20990101000000_create_readings.sql", "migrate.WithApplication("} {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("message lacks %q", w)
			}
		}
		if n := count(t, d.DB, "SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'readings'"); n != 0 {
			t.Error("the refused set created its table")
		}
		if n := count(t, d.DB, "SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'goose_lock'"); n != 0 {
			t.Error("the refused migrator left the lock taken")
		}
		// The owner's migrations still work: down, up, and a no-op.
		if _, err := migrate.DownTo(ctx, d.DB, good, 1); err != nil {
			t.Fatal(err)
		}
		if res, err := migrate.Up(ctx, d.DB, good); err != nil || len(res) != 1 {
			t.Fatalf("owner's Up after the refusal: %d applied, %v", len(res), err)
		}
		if res, err := migrate.Up(ctx, d.DB, good); err != nil || len(res) != 0 {
			t.Fatalf("owner's re-run: %d applied, %v", len(res), err)
		}
		// Nor may the other set roll the owner's migrations back.
		if _, err := migrate.DownTo(ctx, d.DB, readingsSet, 0); !errors.As(err, &ce) {
			t.Fatalf("DownTo by the other set: %v, want a *CollisionError", err)
		}
		// With a name of its own, the other application applies beside the owner.
		if res, err := migrate.Up(ctx, d.DB, readingsSet, migrate.WithApplication("readings")); err != nil || len(res) != 1 {
			t.Fatalf("with WithApplication: %d applied, %v", len(res), err)
		}
		if c := comment(t, d.DB, "readings_goose_db_version"); !strings.Contains(c, `"application":"readings"`) {
			t.Errorf("readings_goose_db_version marked %q", c)
		}
	})
	t.Run("other application first", func(t *testing.T) {
		// The other application took the default tables on an empty database: Ponix's
		// migrations are refused with an error that says whose the table is.
		d := srv.NewDatabase(t)
		if _, err := migrate.Up(ctx, d.DB, readingsSet); err != nil {
			t.Fatal(err)
		}
		_, err := migrate.Up(ctx, d.DB, os.DirFS("testdata/good"))
		var ce *migrate.CollisionError
		if !errors.As(err, &ce) || ce.OwnerFirst != "20990101000000_create_readings.sql" || ce.Migrations[0] != "00001_create_items.sql" {
			t.Fatalf("err = %v, want a *CollisionError naming both sets", err)
		}
		if len(ce.Foreign) != 1 || ce.Foreign[0] != 20990101000000 {
			t.Errorf("foreign versions %v", ce.Foreign)
		}
		t.Logf("refused: %v", err)
	})
	t.Run("named applications on one table", func(t *testing.T) {
		d := srv.NewDatabase(t)
		if _, err := migrate.Up(ctx, d.DB, readingsSet, migrate.WithApplication("readings")); err != nil {
			t.Fatal(err)
		}
		_, err := migrate.Up(ctx, d.DB, readingsSet, migrate.WithApplication("meters"),
			migrate.WithVersionTable("readings_goose_db_version"), migrate.WithLockTable("readings_goose_lock"))
		var ce *migrate.CollisionError
		if !errors.As(err, &ce) || ce.Owner != "readings" || ce.Application != "meters" ||
			!strings.Contains(err.Error(), `application "readings"`) || !strings.Contains(err.Error(), `migrate.WithApplication("meters")`) {
			t.Fatalf("err = %v, want a *CollisionError naming readings and meters", err)
		}
	})
	t.Run("started together", func(t *testing.T) {
		// Two sets on an empty database at once: the lock serialises them, the first marks
		// the table, the second is refused.
		d := srv.NewDatabase(t)
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i, fsys := range []fstest.MapFS{readingsSet, nil} {
			wg.Go(func() {
				if fsys == nil {
					_, errs[i] = migrate.Up(context.Background(), d.DB, os.DirFS("testdata/good"))
					return
				}
				_, errs[i] = migrate.Up(context.Background(), d.DB, fsys)
			})
		}
		wg.Wait()
		var ce *migrate.CollisionError
		ok := 0
		for _, err := range errs {
			switch {
			case err == nil:
				ok++
			case !errors.As(err, &ce):
				t.Fatalf("err = %v, want a *CollisionError", err)
			}
		}
		if ok != 1 {
			t.Fatalf("%d of 2 sets applied (errors %v), want exactly 1", ok, errs)
		}
	})
}

// A version table written before marks existed (an older Ponix) is adopted by its own set
// and marked; another set is refused from it.
func TestUnmarkedVersionTableIsAdopted(t *testing.T) {
	ctx := t.Context()
	d := srv.NewDatabase(t)
	good := os.DirFS("testdata/good")
	m, err := migrate.New(d.DB, good)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.UpTo(ctx, 1); err != nil {
		t.Fatal(err)
	}
	// What an older Ponix left: the same table without the comment.
	if _, err := d.DB.ExecContext(ctx, "ALTER TABLE goose_db_version COMMENT COLUMN version_id ''"); err != nil {
		t.Fatal(err)
	}
	if c := comment(t, d.DB, "goose_db_version"); c != "" {
		t.Fatalf("comment %q left", c)
	}
	_, err = migrate.Up(ctx, d.DB, readingsSet)
	var ce *migrate.CollisionError
	if !errors.As(err, &ce) || ce.Owner != "" || ce.OwnerFirst != "" || len(ce.Foreign) != 1 || ce.Foreign[0] != 1 {
		t.Fatalf("another set on the unmarked table: err = %v, want a *CollisionError with version 1 foreign", err)
	}
	t.Logf("refused: %v", err)
	if c := comment(t, d.DB, "goose_db_version"); c != "" {
		t.Fatalf("the refused set marked the table: %q", c)
	}
	res, err := migrate.Up(ctx, d.DB, good)
	if err != nil || len(res) != 1 {
		t.Fatalf("the owner's Up on its unmarked table: %d applied, %v", len(res), err)
	}
	if c := comment(t, d.DB, "goose_db_version"); !strings.Contains(c, `"first":"00001_create_items.sql"`) {
		t.Fatalf("adopted table marked %q", c)
	}
	if _, err := migrate.Up(ctx, d.DB, readingsSet); !errors.As(err, &ce) || ce.OwnerFirst != "00001_create_items.sql" {
		t.Fatalf("another set on the adopted table: err = %v", err)
	}
}

// A database that does not exist is created, once.
func TestEnsureDatabaseCreatesAMissingDatabase(t *testing.T) {
	ctx := t.Context()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := "missing_" + hex.EncodeToString(b)
	cfg := srv.Config(name)
	t.Cleanup(func() {
		admin, err := ponixclickhouse.Open(context.Background(), srv.Config(""))
		if err == nil {
			_ = admin.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name)
			_ = admin.Close()
		}
	})
	db := ponixclickhouse.OpenDB(cfg)
	defer db.Close()
	if err := ponixclickhouse.PingDB(ctx, db, cfg); !errors.Is(err, ponixclickhouse.ErrUnknownDatabase) {
		t.Fatalf("ping before: %v, want ErrUnknownDatabase", err)
	}
	created, err := migrate.EnsureDatabase(ctx, cfg)
	if err != nil || !created {
		t.Fatalf("EnsureDatabase: %v, %v; want created", created, err)
	}
	if created, err := migrate.EnsureDatabase(ctx, cfg); err != nil || created {
		t.Fatalf("EnsureDatabase again: %v, %v; want nothing to do", created, err)
	}
	db2 := ponixclickhouse.OpenDB(cfg) // db's pool may hold the refused attempt
	defer db2.Close()
	if res, err := migrate.Up(ctx, db2, os.DirFS("testdata/good")); err != nil || len(res) != 2 {
		t.Fatalf("migrations in the created database: %d applied, %v", len(res), err)
	}
}

// Reapply on the Migrator that applied the set (goose creates its version table once per
// Migrator) rebuilds the dropped tables and leaves the version table marked; another set's
// Reapply leaves the table alone.
func TestReapplyKeepsTheMark(t *testing.T) {
	ctx := t.Context()
	d := srv.NewDatabase(t)
	m, err := migrate.New(d.DB, os.DirFS("testdata/good"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Up(ctx); err != nil {
		t.Fatal(err)
	}
	other, err := migrate.New(d.DB, readingsSet)
	if err != nil {
		t.Fatal(err)
	}
	var ce *migrate.CollisionError
	if _, err := other.Reapply(ctx); !errors.As(err, &ce) {
		t.Fatalf("another set's Reapply: %v, want a *CollisionError", err)
	}
	if n := count(t, d.DB, "SELECT count() FROM goose_db_version WHERE version_id > 0"); n != 2 {
		t.Fatalf("%d versions left after the refused Reapply, want 2", n)
	}
	for _, table := range []string{"items_copy", "items"} {
		if _, err := d.DB.ExecContext(ctx, "DROP TABLE "+table); err != nil {
			t.Fatal(err)
		}
	}
	res, err := m.Reapply(ctx)
	if err != nil || len(res) != 2 {
		t.Fatalf("Reapply: %d applied, %v", len(res), err)
	}
	if n := count(t, d.DB, "SELECT count() FROM items_copy"); n != 1000 {
		t.Fatalf("items_copy has %d rows, want 1000", n)
	}
	if c := comment(t, d.DB, "goose_db_version"); !strings.Contains(c, `"first":"00001_create_items.sql"`) {
		t.Fatalf("version table marked %q after Reapply", c)
	}
}
