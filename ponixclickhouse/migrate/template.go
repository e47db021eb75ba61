package migrate

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"
	"sync"
	"text/template"

	"github.com/ponix-go/ponix/ponixclickhouse"
)

// A migration file that holds the line "-- +ponix template" is a Go template (text/template),
// rendered before goose reads it, so that one migration set serves a single server and a
// cluster; files without the line are read as they are (your SQL may hold "{{" freely). On a single server every helper
// renders what a plain SQL file would hold; with [WithCluster] the same file creates
// shard-local Replicated tables ON CLUSTER and a Distributed table over them under the name
// queries use. The helpers:
//
//	{{ onCluster }}                    ""                      ON CLUSTER `c`
//	{{ local "t" }}                    t                       t_local (the table that stores the rows)
//	{{ engine "ReplacingMergeTree" "t" }}  ReplacingMergeTree()   ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/db/t_local', '{replica}')
//	{{ distributed "t" "key" }}        (nothing)               DROP TABLE IF EXISTS db.t ON CLUSTER c; CREATE TABLE db.t ON CLUSTER c AS db.t_local ENGINE = Distributed(c, db, t_local, key);
//	{{ dropDistributed "t" }}          (nothing)               DROP TABLE IF EXISTS db.t ON CLUSTER c;
//	{{ redistribute "t" "key" }}       (nothing)               the Distributed table t made anew over t_local (after t_local's columns changed)
//	{{ optimize "t" }}                 OPTIMIZE TABLE t FINAL; (nothing: 18.16 cannot OPTIMIZE … ON CLUSTER)
//	{{ sync }}                         ""                      " SYNC" on servers from 20.10 on, "" on older ones
//	{{ cluster }}                      ""                      c (for {{ if cluster }} … {{ end }})
//
// engine takes the engine's arguments after the table: {{ engine "ReplacingMergeTree" "t" "ver" }}.
// End every DROP of a local table with {{ sync }}: from 20.10 on, a database of the default
// Atomic engine drops a table minutes after DROP TABLE, and a Replicated table keeps its
// replica in ZooKeeper until then, so that a table created again at the same path (a Down, then
// an Up) would find it taken; DROP … SYNC drops at once. 18.16 knows neither Atomic nor SYNC.
// Statements that copy rows (INSERT … SELECT) name the logical tables (t, not t_local): on a
// cluster they read and write through Distributed tables, with insert_distributed_sync=1, so
// every row lands on the shard its sharding key names — the copy is per shard.

// TemplateMarker is the line that makes a migration file a template.
const TemplateMarker = "-- +ponix template"

// isTemplate reports whether src holds the TemplateMarker line.
func isTemplate(src []byte) bool {
	for _, line := range strings.Split(string(src), "\n") {
		if strings.TrimSpace(line) == TemplateMarker {
			return true
		}
	}
	return false
}

// renderData is what the templates see: the cluster (empty on a single server), the database
// the migrations run in (needed on a cluster for ZooKeeper paths and Distributed tables), and
// whether the servers take DROP … SYNC.
type renderData struct {
	Cluster  string
	Database string
	DropSync bool

	versionKnown bool // DropSync was set from the server's version
}

// templateFS renders the *.sql files of base as templates; other files and directories pass
// through. The data is set before goose reads a file (see Migrator.prepare).
type templateFS struct {
	base fs.FS

	mu   sync.Mutex
	data *renderData
}

func (t *templateFS) setData(d renderData) {
	t.mu.Lock()
	t.data = &d
	t.mu.Unlock()
}

func (t *templateFS) current() (renderData, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.data == nil {
		return renderData{}, false
	}
	return *t.data, true
}

// Open implements fs.FS.
func (t *templateFS) Open(name string) (fs.File, error) {
	if !strings.HasSuffix(name, ".sql") {
		return t.base.Open(name)
	}
	src, err := fs.ReadFile(t.base, name)
	if err != nil {
		return nil, err
	}
	if !isTemplate(src) {
		return t.base.Open(name)
	}
	data, ok := t.current()
	if !ok {
		return nil, &fs.PathError{Op: "open", Path: name, Err: errors.New("migrate: templates rendered before the database was known (use the Migrator's methods, which resolve it)")}
	}
	out, err := Render(name, src, RenderOptions{Cluster: data.Cluster, Database: data.Database, DropSync: data.DropSync})
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	info, err := fs.Stat(t.base, name)
	if err != nil {
		return nil, err
	}
	return &renderedFile{Reader: bytes.NewReader(out), info: renderedInfo{FileInfo: info, size: int64(len(out))}}, nil
}

// ReadDir implements fs.ReadDirFS (goose lists the directory to find the migrations).
func (t *templateFS) ReadDir(name string) ([]fs.DirEntry, error) { return fs.ReadDir(t.base, name) }

// Stat implements fs.StatFS.
func (t *templateFS) Stat(name string) (fs.FileInfo, error) { return fs.Stat(t.base, name) }

type renderedFile struct {
	*bytes.Reader
	info renderedInfo
}

func (f *renderedFile) Stat() (fs.FileInfo, error) { return f.info, nil }
func (f *renderedFile) Close() error               { return nil }

type renderedInfo struct {
	fs.FileInfo
	size int64
}

func (i renderedInfo) Size() int64 { return i.size }

// RenderOptions say what a migration file is rendered for.
type RenderOptions struct {
	// Cluster is the cluster's name; empty renders for a single server.
	Cluster string
	// Database is the database the migrations run in; required with Cluster.
	Database string
	// DropSync makes {{ sync }} render " SYNC" on a cluster (servers from 20.10 on; see
	// [ServerDropsSync]).
	DropSync bool
}

// Render renders one migration file (name is used in errors) as opts say. See the package
// documentation of the helpers above. Cluster and database must be plain identifiers.
func Render(name string, src []byte, opts RenderOptions) ([]byte, error) {
	if opts.Cluster != "" {
		if err := ponixclickhouse.ValidateIdentifier(opts.Cluster); err != nil {
			return nil, fmt.Errorf("migrate: cluster name: %w", err)
		}
		if err := ponixclickhouse.ValidateIdentifier(opts.Database); err != nil {
			return nil, fmt.Errorf("migrate: database name (needed on a cluster): %w", err)
		}
	}
	r := renderer{cluster: opts.Cluster, db: opts.Database, sync: opts.Cluster != "" && opts.DropSync}
	tmpl, err := template.New(path.Base(name)).Option("missingkey=error").Funcs(r.funcs()).Parse(string(src))
	if err != nil {
		return nil, fmt.Errorf("migrate: template %s: %w", name, err)
	}
	var out bytes.Buffer
	if err := tmpl.Execute(&out, renderData{Cluster: opts.Cluster, Database: opts.Database, DropSync: r.sync}); err != nil {
		return nil, fmt.Errorf("migrate: template %s: %w", name, err)
	}
	return out.Bytes(), nil
}

// ServerDropsSync reports whether a server of version (as version() says, e.g. "25.8.2.29" or
// "18.16.1") takes DROP TABLE … SYNC: from 20.10 on.
func ServerDropsSync(version string) bool {
	parts := strings.SplitN(version, ".", 3)
	if len(parts) < 2 {
		return false
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil {
		return false
	}
	return major > 20 || (major == 20 && minor >= 10)
}

// renderer holds the helpers of one rendering.
type renderer struct {
	cluster, db string
	sync        bool
}

func (r renderer) funcs() template.FuncMap {
	return template.FuncMap{
		"cluster":         func() string { return r.cluster },
		"onCluster":       r.onCluster,
		"local":           r.local,
		"engine":          r.engine,
		"distributed":     r.distributed,
		"dropDistributed": r.dropDistributed,
		"redistribute":    r.redistribute,
		"optimize":        r.optimize,
		"sync":            r.syncSuffix,
	}
}

func ident(name string) (string, error) {
	if err := ponixclickhouse.ValidateIdentifier(name); err != nil {
		return "", fmt.Errorf("table name: %w", err)
	}
	return name, nil
}

func (r renderer) syncSuffix() string {
	if r.sync {
		return " SYNC"
	}
	return ""
}

func (r renderer) onCluster() string {
	if r.cluster == "" {
		return ""
	}
	return "ON CLUSTER " + r.cluster
}

func (r renderer) local(table string) (string, error) {
	t, err := ident(table)
	if err != nil || r.cluster == "" {
		return t, err
	}
	return t + ponixclickhouse.LocalTableSuffix, nil
}

// engine renders a MergeTree-family engine; on a cluster its Replicated variant, at the
// ZooKeeper path /clickhouse/tables/{shard}/<database>/<local table> (18.16 has no {database}
// or {table} macros) with the replica macro.
func (r renderer) engine(kind, table string, args ...string) (string, error) {
	if !strings.HasSuffix(kind, "MergeTree") || strings.HasPrefix(kind, "Replicated") {
		return "", fmt.Errorf("engine %q: want a MergeTree-family engine such as ReplacingMergeTree (the helper adds Replicated on a cluster)", kind)
	}
	local, err := r.local(table)
	if err != nil {
		return "", err
	}
	if r.cluster == "" {
		return kind + "(" + strings.Join(args, ", ") + ")", nil
	}
	all := append([]string{"'" + ZooKeeperTablePath(r.db, local) + "'", "'{replica}'"}, args...)
	return "Replicated" + kind + "(" + strings.Join(all, ", ") + ")", nil
}

// ZooKeeperTablePath is the ZooKeeper path of a shard-local table that the migration templates
// create on a cluster: /clickhouse/tables/{shard}/<database>/<table>, with the {shard} macro
// left for the server to fill. The path keeps the name the table was created with, also after
// a RENAME.
func ZooKeeperTablePath(database, table string) string {
	return "/clickhouse/tables/{shard}/" + database + "/" + table
}

func (r renderer) distributed(table, key string) (string, error) {
	if r.cluster == "" {
		return "", nil
	}
	t, err := ident(table)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("DROP TABLE IF EXISTS %s.%s ON CLUSTER %s;\n", r.db, t, r.cluster) + r.createDistributed(t, t, key), nil
}

// createDistributed renders the statement that creates Distributed table name over the local
// table of table. The AS clause names the database: 18.16 resolves it in the default database
// on the other nodes otherwise.
func (r renderer) createDistributed(name, table, key string) string {
	local := table + ponixclickhouse.LocalTableSuffix
	return fmt.Sprintf("CREATE TABLE %s.%s ON CLUSTER %s AS %s.%s ENGINE = Distributed(%s, %s, %s, %s);",
		r.db, name, r.cluster, r.db, local, r.cluster, r.db, local, key)
}

func (r renderer) dropDistributed(table string) (string, error) {
	if r.cluster == "" {
		return "", nil
	}
	t, err := ident(table)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("DROP TABLE IF EXISTS %s.%s ON CLUSTER %s;", r.db, t, r.cluster), nil
}

// redistribute makes the Distributed table anew over the local table, after its columns or
// the sharding key changed: a new Distributed table is created beside it and swapped in with
// one RENAME, so that readers never miss the name.
func (r renderer) redistribute(table, key string) (string, error) {
	if r.cluster == "" {
		return "", nil
	}
	t, err := ident(table)
	if err != nil {
		return "", err
	}
	next, prev := t+"_redistributed", t+"_undistributed"
	return strings.Join([]string{
		fmt.Sprintf("DROP TABLE IF EXISTS %s.%s ON CLUSTER %s;", r.db, next, r.cluster),
		fmt.Sprintf("DROP TABLE IF EXISTS %s.%s ON CLUSTER %s;", r.db, prev, r.cluster),
		r.createDistributed(next, t, key),
		fmt.Sprintf("RENAME TABLE %s.%s TO %s.%s, %s.%s TO %s.%s ON CLUSTER %s;", r.db, t, r.db, prev, r.db, next, r.db, t, r.cluster),
		fmt.Sprintf("DROP TABLE %s.%s ON CLUSTER %s;", r.db, prev, r.cluster),
	}, "\n"), nil
}

func (r renderer) optimize(table string) (string, error) {
	t, err := ident(table)
	if err != nil {
		return "", err
	}
	if r.cluster != "" {
		// OPTIMIZE … ON CLUSTER fails on 18.16 ("Unknown log entry type: 0"), and a plain one
		// would merge one shard only. Queries read with FINAL; merges come in the background.
		return "", nil
	}
	return "OPTIMIZE TABLE " + t + " FINAL;", nil
}
