package migrations_test

import (
	"fmt"
	"io/fs"
	"log"

	"github.com/ponix-go/ponix/migrations"
)

// FS holds the goose SQL files of the schema, oldest first. Apply them in-process with
// ponixclickhouse/migrate: migrate.Up(ctx, db, migrations.FS()).
func ExampleFS() {
	names, err := fs.Glob(migrations.FS(), "*.sql")
	if err != nil {
		log.Fatal(err)
	}
	for _, n := range names {
		fmt.Println(n)
	}
	// Output:
	// 20251101000000_create_processed_envelopes.sql
	// 20251102000000_rekey_processed_envelopes_by_organization.sql
	// 20251201000000_dedup_processed_envelopes_by_stream_seq.sql
	// 20261201000000_key_processed_envelopes_by_stream_incarnation.sql
}
