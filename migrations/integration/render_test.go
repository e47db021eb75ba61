package integration_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ponix-go/ponix/migrations"
	"github.com/ponix-go/ponix/ponixclickhouse/migrate"
)

// normalized keeps the goose annotations and the SQL of a migration file, without its comments,
// with whitespace collapsed (and none before ';'), so that two renderings compare by content.
func normalized(b []byte) string {
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || (strings.HasPrefix(l, "--") && !strings.HasPrefix(l, "-- +goose")) {
			continue
		}
		lines = append(lines, l)
	}
	s := strings.Join(strings.Fields(strings.Join(lines, " ")), " ")
	return strings.ReplaceAll(s, " ;", ";")
}

// On a single server the templates render the SQL the migrations held before they were
// templates (kept in testdata/single-server): existing databases see the same statements.
func TestSingleServerRenderingIsTheOriginalSQL(t *testing.T) {
	names, err := fs.Glob(migrations.FS(), "*.sql")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		src, err := fs.ReadFile(migrations.FS(), n)
		if err != nil {
			t.Fatal(err)
		}
		got, err := migrate.Render(n, src, migrate.RenderOptions{})
		if err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile(filepath.Join("testdata", "single-server", n))
		if err != nil {
			t.Fatal(err)
		}
		if normalized(got) != normalized(want) {
			t.Errorf("%s renders for a single server as\n%s\nwant\n%s", n, normalized(got), normalized(want))
		}
	}
}

// On a cluster every DDL statement runs ON CLUSTER, rows live in Replicated tables at a
// ZooKeeper path naming database and table, and queries find a Distributed table sharded by
// stream_seq once the table has it.
func TestClusterRendering(t *testing.T) {
	names, err := fs.Glob(migrations.FS(), "*.sql")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		src, err := fs.ReadFile(migrations.FS(), n)
		if err != nil {
			t.Fatal(err)
		}
		out, err := migrate.Render(n, src, migrate.RenderOptions{Cluster: "ponix", Database: "events"})
		if err != nil {
			t.Fatal(err)
		}
		for _, stmt := range strings.Split(normalized(out), ";") {
			stmt = strings.TrimSpace(stmt)
			stmt = strings.TrimSpace(strings.NewReplacer("-- +goose NO TRANSACTION", "", "-- +goose Up", "", "-- +goose Down", "").Replace(stmt))
			if stmt == "" {
				continue
			}
			ddl := !strings.HasPrefix(stmt, "INSERT")
			if ddl && !strings.Contains(stmt, " ON CLUSTER ponix") {
				t.Errorf("%s: DDL without ON CLUSTER: %s", n, stmt)
			}
			if strings.Contains(stmt, "MergeTree(") && !strings.Contains(stmt, "ENGINE = Replicated") {
				t.Errorf("%s: a table that is not replicated: %s", n, stmt)
			}
			if strings.Contains(stmt, "OPTIMIZE") {
				t.Errorf("%s: OPTIMIZE on a cluster (18.16 refuses it ON CLUSTER): %s", n, stmt)
			}
		}
	}
	src, _ := fs.ReadFile(migrations.FS(), "20261201000000_key_processed_envelopes_by_stream_incarnation.sql")
	out, _ := migrate.Render("step4", src, migrate.RenderOptions{Cluster: "ponix", Database: "events", DropSync: true})
	for _, want := range []string{
		"CREATE TABLE processed_envelopes_incarnation_local ON CLUSTER ponix (",
		"ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/events/processed_envelopes_incarnation_local', '{replica}')",
		"CREATE TABLE events.processed_envelopes_redistributed ON CLUSTER ponix AS events.processed_envelopes_local ENGINE = Distributed(ponix, events, processed_envelopes_local, stream_seq);",
		"RENAME TABLE processed_envelopes_local TO processed_envelopes_preincarnation_local, processed_envelopes_incarnation_local TO processed_envelopes_local ON CLUSTER ponix;",
		"DROP TABLE processed_envelopes_preincarnation_local ON CLUSTER ponix SYNC;", // a 25.x cluster
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("step 4 on a cluster lacks %q:\n%s", want, out)
		}
	}
}
