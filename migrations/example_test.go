package migrations_test

import (
	"context"
	"log"

	"github.com/ponix-go/ponix/migrations"
	"github.com/ponix-go/ponix/ponixclickhouse"
	"github.com/ponix-go/ponix/ponixclickhouse/migrate"
)

// Bring a database to the current schema, in-process.
func ExampleFS() {
	db := ponixclickhouse.OpenDB(ponixclickhouse.Config{Addr: "localhost:9000", Database: "ponix", Username: "ponix", Password: "ponix"})
	defer db.Close()
	if _, err := migrate.Up(context.Background(), db, migrations.FS()); err != nil {
		log.Fatal(err)
	}
}
