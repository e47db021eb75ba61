package migrate

import (
	"io/fs"
	"strings"
	"testing"
	"testing/fstest"
)

const sample = `-- +goose NO TRANSACTION
-- +goose Up
CREATE TABLE {{ local "t" }} {{ onCluster }} (x UInt64, v UInt32) ENGINE = {{ engine "ReplacingMergeTree" "t" "v" }} ORDER BY x;
{{ distributed "t" "x" }}
{{ optimize "t" }}
{{ if cluster }}-- on {{ cluster }}{{ end }}
-- +goose Down
{{ dropDistributed "t" }}
DROP TABLE {{ local "t" }} {{ onCluster }}{{ sync }};
`

func TestRenderSingleServerAndCluster(t *testing.T) {
	single, err := Render("s.sql", []byte(sample), RenderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"CREATE TABLE t  (x UInt64, v UInt32) ENGINE = ReplacingMergeTree(v) ORDER BY x;",
		"OPTIMIZE TABLE t FINAL;",
		"DROP TABLE t ;",
	} {
		if !strings.Contains(string(single), want) {
			t.Errorf("single server: lacks %q:\n%s", want, single)
		}
	}
	if strings.Contains(string(single), "Distributed") || strings.Contains(string(single), "CLUSTER") {
		t.Errorf("single server: cluster statements:\n%s", single)
	}
	cl, err := Render("s.sql", []byte(sample), RenderOptions{Cluster: "c1", Database: "db"})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"CREATE TABLE t_local ON CLUSTER c1 (x UInt64, v UInt32) ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/db/t_local', '{replica}', v) ORDER BY x;",
		"DROP TABLE IF EXISTS db.t ON CLUSTER c1;\nCREATE TABLE db.t ON CLUSTER c1 AS db.t_local ENGINE = Distributed(c1, db, t_local, x);",
		"-- on c1",
		"DROP TABLE t_local ON CLUSTER c1;",
	} {
		if !strings.Contains(string(cl), want) {
			t.Errorf("cluster: lacks %q:\n%s", want, cl)
		}
	}
	if strings.Contains(string(cl), "OPTIMIZE") {
		t.Errorf("cluster: OPTIMIZE rendered (18.16 refuses it ON CLUSTER):\n%s", cl)
	}
}

func TestRenderRefusesBadNamesAndTemplates(t *testing.T) {
	for name, tc := range map[string]struct{ src, cluster, db string }{
		"cluster name":        {"SELECT 1;", "bad-name", "db"},
		"database name":       {"SELECT 1;", "c", "x;DROP"},
		"no database":         {"SELECT 1;", "c", ""},
		"table name":          {`{{ local "t; DROP" }}`, "", ""},
		"engine not a family": {`{{ engine "Log" "t" }}`, "", ""},
		"engine replicated":   {`{{ engine "ReplicatedMergeTree" "t" }}`, "", ""},
		"unknown helper":      {`{{ nope }}`, "", ""},
	} {
		if _, err := Render("x.sql", []byte(tc.src), RenderOptions{Cluster: tc.cluster, Database: tc.db}); err == nil {
			t.Errorf("%s: rendered without error", name)
		}
	}
}

// The templating file system renders the .sql files that carry the TemplateMarker, only once
// the data is set, and passes everything else (plain .sql files included) through.
func TestTemplateFS(t *testing.T) {
	marked := TemplateMarker + "\n{{ local \"t\" }}"
	base := fstest.MapFS{
		"1_a.sql": {Data: []byte(marked)},
		"2_b.sql": {Data: []byte(`SELECT '{{ not rendered }}'`)},
		"README":  {Data: []byte("{{ not rendered }}")},
	}
	tfs := &templateFS{base: base}
	if _, err := fs.ReadFile(tfs, "1_a.sql"); err == nil {
		t.Error("rendered before the data was set")
	}
	tfs.setData(renderData{Cluster: "c", Database: "db"})
	b, err := fs.ReadFile(tfs, "1_a.sql")
	if want := TemplateMarker + "\nt_local"; err != nil || string(b) != want {
		t.Errorf("1_a.sql = %q, %v; want %q", b, err, want)
	}
	if b, err := fs.ReadFile(tfs, "2_b.sql"); err != nil || string(b) != `SELECT '{{ not rendered }}'` {
		t.Errorf("2_b.sql (no marker) = %q, %v; want it unchanged", b, err)
	}
	if b, _ := fs.ReadFile(tfs, "README"); string(b) != "{{ not rendered }}" {
		t.Errorf("README = %q", b)
	}
	names, err := fs.Glob(tfs, "*.sql")
	if err != nil || len(names) != 2 {
		t.Errorf("glob = %v, %v", names, err)
	}
}

func TestRenderSync(t *testing.T) {
	for v, want := range map[string]bool{"18.16.1": false, "20.9.3.45": false, "20.10.2.20": true, "25.8.2.29": true, "x": false} {
		if got := ServerDropsSync(v); got != want {
			t.Errorf("ServerDropsSync(%q) = %v, want %v", v, got, want)
		}
	}
	out, err := Render("s.sql", []byte(sample), RenderOptions{Cluster: "c1", Database: "db", DropSync: true})
	if err != nil || !strings.Contains(string(out), "DROP TABLE t_local ON CLUSTER c1 SYNC;") {
		t.Errorf("cluster with SYNC: %v\n%s", err, out)
	}
	out, err = Render("s.sql", []byte(sample), RenderOptions{DropSync: true})
	if err != nil || strings.Contains(string(out), "SYNC") {
		t.Errorf("single server: SYNC rendered: %v\n%s", err, out)
	}
}
