// Package migrations holds the ClickHouse schema of Ponix as goose SQL migrations, embedded
// in the binary. Run them with github.com/ponix-go/ponix/ponixclickhouse/migrate:
//
//	db := ponixclickhouse.OpenDB(cfg)
//	_, err := migrate.Up(ctx, db, migrations.FS())
//
// The files reach the upstream schema in the upstream's two steps: create processed_envelopes
// (ordered by occurred_at, end_device_id), then add organization_id and re-key the table by
// (organization_id, occurred_at, end_device_id), copying the rows. A third step makes
// redeliveries collapse: stream_seq (the JetStream stream sequence) ends the sorting key of a
// ReplacingMergeTree; read with FINAL to see no copy before the background merge. Every step
// has a Down step, and the rebuilds keep the rows in both directions. The SQL names no
// database: migrations run in the database of the connection.
//
// The files are Go templates that migrate renders before goose reads them: on a single server
// they are the plain SQL of the steps above; with migrate.WithCluster they create shard-local
// Replicated tables ON CLUSTER and the Distributed table processed_envelopes over them (see
// the README).
package migrations

import (
	"embed"
	"io/fs"
)

//go:embed sql/*.sql
var files embed.FS

// FS returns the migration files at its root ({version}_{name}.sql), ready for goose.
func FS() fs.FS {
	sub, err := fs.Sub(files, "sql")
	if err != nil {
		panic(err) // "sql" is a valid path; fs.Sub cannot fail here
	}
	return sub
}

// Versions of the migrations, for DownTo and status checks.
const (
	// VersionCreate creates processed_envelopes.
	VersionCreate int64 = 20251101000000
	// VersionRekey adds organization_id and re-keys the table by it.
	VersionRekey int64 = 20251102000000
	// VersionDedup adds stream_seq to the sorting key of a ReplacingMergeTree, so that
	// redelivered messages collapse (read with FINAL).
	VersionDedup int64 = 20251201000000
	// VersionIncarnation adds stream_created_ns before stream_seq in the sorting key, so that
	// a stream deleted and created again (its sequences start at 1 again) never collapses a new
	// envelope into an old row.
	VersionIncarnation int64 = 20261201000000
)
