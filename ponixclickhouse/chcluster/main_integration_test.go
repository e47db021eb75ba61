//go:build integration

package chcluster_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/ponix-go/ponix/ponixclickhouse/chcluster"
)

// cl is the cluster every test of this package shares. Tests run one at a time (no t.Parallel):
// each breaks the cluster in its own way and heals it in t.Cleanup before the next one starts.
var cl *chcluster.Cluster

// password exercises authentication between the nodes (Distributed, ON CLUSTER) and the XML
// escaping of the generated configuration.
const password = "p0nix&<cluster>"

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	begin := time.Now()
	// docker/cluster/test.sh names the cluster, so that a stopped run can remove it.
	c, err := chcluster.Start(ctx, chcluster.Config{Name: os.Getenv("PONIX_TEST_CLUSTER_NAME"), Password: password, Logger: logger})
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: the chcluster integration tests could not start their cluster: %v\n", err)
		if errors.Is(err, chcluster.ErrNoImage) || errors.Is(err, chcluster.ErrNoDocker) {
			fmt.Fprintln(os.Stderr, "These tests need a Docker engine and two local images: run docker/cluster/build-images.sh (from the repository root) first.")
		}
		return 1
	}
	defer func() {
		if err := c.Close(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}()
	fmt.Fprintf(os.Stderr, "chcluster: %d x %d cluster %s on %s ready in %s (from images present)\n",
		c.Shards(), c.Replicas(), c.Name(), c.Subnet(), time.Since(begin).Round(time.Millisecond))
	cl = c
	return m.Run()
}

// ctxFor returns a context that ends with the test or after d.
func ctxFor(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

// newDatabase creates a database ON CLUSTER with a unique name and drops it at cleanup.
func newDatabase(t *testing.T) string {
	t.Helper()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	db := "t_" + hex.EncodeToString(b)
	ctx := ctxFor(t, 5*time.Minute)
	n := cl.Node(1, 1)
	if err := cl.Exec(ctx, n, "CREATE DATABASE "+db+" ON CLUSTER "+cl.ClusterName()); err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		if err := cl.Exec(ctx, n, "DROP DATABASE IF EXISTS "+db+" ON CLUSTER "+cl.ClusterName()); err != nil {
			t.Errorf("drop database %s: %v", db, err)
		}
	})
	return db
}

// createTables creates db.events_local (ReplicatedReplacingMergeTree, one replica per node,
// replicated within each shard) and db.events (Distributed over the cluster, sharded by id)
// ON CLUSTER.
func createTables(t *testing.T, db string) {
	t.Helper()
	ctx := ctxFor(t, 5*time.Minute)
	n := cl.Node(1, 1)
	stmts := []string{
		"CREATE TABLE " + db + ".events_local ON CLUSTER " + cl.ClusterName() + " " +
			"(id UInt64, v String, version UInt32) " +
			"ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/" + db + "/events_local', '{replica}', version) " +
			"ORDER BY id",
		"CREATE TABLE " + db + ".events ON CLUSTER " + cl.ClusterName() + " " +
			"(id UInt64, v String, version UInt32) " +
			"ENGINE = Distributed(" + cl.ClusterName() + ", " + db + ", events_local, id)",
	}
	for _, s := range stmts {
		if err := cl.Exec(ctx, n, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

// row is one row of the events tables.
type row struct {
	id      uint64
	v       string
	version uint32
}

// rows returns n rows with ids from, from+1, … and the given version.
func rows(from uint64, n int, version uint32) []row {
	out := make([]row, n)
	for i := range out {
		id := from + uint64(i)
		out[i] = row{id: id, v: fmt.Sprintf("v%d-%d", id, version), version: version}
	}
	return out
}

// insert sends rows to table on node n as one native batch over a new connection.
func insert(ctx context.Context, n *chcluster.Node, table string, rs []row) error {
	conn, err := cl.Open(ctx, n)
	if err != nil {
		return err
	}
	defer conn.Close()
	return insertOn(ctx, conn, table, rs)
}

// insertOn sends rows to table as one native batch on conn.
func insertOn(ctx context.Context, conn driver.Conn, table string, rs []row) error {
	batch, err := conn.PrepareBatch(ctx, "INSERT INTO "+table+" (id, v, version)")
	if err != nil {
		return fmt.Errorf("prepare batch: %w", err)
	}
	for _, r := range rs {
		if err := batch.Append(r.id, r.v, r.version); err != nil {
			_ = batch.Abort()
			return fmt.Errorf("append: %w", err)
		}
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	return nil
}

// count runs a query that returns one UInt64 on node n.
func count(ctx context.Context, n *chcluster.Node, query string) (uint64, error) {
	conn, err := cl.Open(ctx, n)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	var c uint64
	if err := conn.QueryRow(ctx, query).Scan(&c); err != nil {
		return 0, fmt.Errorf("%s: %w", query, err)
	}
	return c, nil
}

// mustCount is count that fails the test on error.
func mustCount(t *testing.T, n *chcluster.Node, query string) uint64 {
	t.Helper()
	c, err := count(ctxFor(t, time.Minute), n, query)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// waitCount waits until query on n returns want, and returns how long that took.
func waitCount(t *testing.T, n *chcluster.Node, query string, want uint64, limit time.Duration) time.Duration {
	t.Helper()
	begin := time.Now()
	deadline := begin.Add(limit)
	var got uint64
	var err error
	for time.Now().Before(deadline) {
		got, err = count(ctxFor(t, 30*time.Second), n, query)
		if err == nil && got == want {
			return time.Since(begin)
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("on %s, %s: got %d (err %v), want %d after %s", n.Name, query, got, err, want, limit)
	return 0
}

// settings returns ctx carrying ClickHouse settings for one query.
func settings(ctx context.Context, s clickhouse.Settings) context.Context {
	return clickhouse.Context(ctx, clickhouse.WithSettings(s))
}

// exception returns the server exception in err, or nil.
func exception(err error) *clickhouse.Exception {
	var ex *clickhouse.Exception
	if errors.As(err, &ex) {
		return ex
	}
	return nil
}

// describe renders err for the findings: the exception code and message, or the Go error chain.
func describe(err error) string {
	if err == nil {
		return "<nil>"
	}
	if ex := exception(err); ex != nil {
		return fmt.Sprintf("ClickHouse exception code %d (%s): %s", ex.Code, ex.Name,
			strings.ReplaceAll(strings.TrimSpace(ex.Message), "\n", " | "))
	}
	return fmt.Sprintf("%T: %v", errors.Unwrap(err), err)
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// heal undoes every fault on n at cleanup (see Cluster.Heal).
func heal(t *testing.T, n *chcluster.Node) {
	t.Helper()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		if err := cl.Heal(ctx, n); err != nil {
			t.Errorf("heal: %v", err)
		}
	})
}
