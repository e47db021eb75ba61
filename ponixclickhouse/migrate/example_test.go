package migrate_test

import (
	"context"
	"log"
	"testing/fstest"

	"github.com/ponix-go/ponix/ponixclickhouse"
	"github.com/ponix-go/ponix/ponixclickhouse/migrate"
)

// Run goose migrations from an fs.FS (usually an embed.FS) in-process.
func ExampleUp() {
	fsys := fstest.MapFS{"00001_create_t.sql": {Data: []byte(`-- +goose NO TRANSACTION
-- +goose Up
CREATE TABLE t (x UInt64) ENGINE = MergeTree() ORDER BY x;
-- +goose Down
DROP TABLE t;
`)}}
	db := ponixclickhouse.OpenDB(ponixclickhouse.Config{Addr: "localhost:9000", Database: "ponix"})
	defer db.Close()
	results, err := migrate.Up(context.Background(), db, fsys)
	if err != nil {
		log.Fatal(err) // a *migrate.MigrationError names the file and the statement
	}
	log.Printf("applied %d migrations", len(results))
}
