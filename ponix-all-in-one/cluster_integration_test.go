//go:build integration && cluster

package main_test

// The service binary against a real ClickHouse 18.16 cluster: 2 shards x 2 replicas and
// ZooKeeper in Docker (ponixclickhouse/chcluster), one cluster for every scenario, healed
// between them. Each scenario gives the service a fresh database (the service migrates it ON
// CLUSTER), publishes 20,000 envelopes, injects one fault mid-stream and ends with every
// envelope exactly once under FINAL through the Distributed table, nothing dead-lettered, both
// replicas of each shard in agreement and the rows spread over both shards by the sharding key
// (stream_seq). Run with `make test-cluster` (builds the images when they are missing):
//
//	go test -tags 'integration cluster' -run TestCluster -v .
//
// Each scenario logs its FIGURES line (as the fault tests do) and a CLUSTER line.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/ponix-go/ponix/migrations"
	"github.com/ponix-go/ponix/ponixclickhouse"
	"github.com/ponix-go/ponix/ponixclickhouse/chcluster"
	"github.com/ponix-go/ponix/ponixclickhouse/migrate"
	"github.com/ponix-go/ponix/ponixnats/natstest"
)

const (
	clusterUser     = "ponix"
	clusterPassword = "ponix-cluster"
)

// clusterRun is one cluster scenario in progress.
type clusterRun struct {
	*sinkRun
	cl       *chcluster.Cluster
	db       string
	svcs     []*service
	reads    *chcluster.Node // the node the test reads through
	at       uint64          // the row count after which the fault is injected
	healedAt time.Time       // the fault's end
}

func TestCluster(t *testing.T) {
	begin := time.Now()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	// docker/cluster/test.sh names the cluster, so that a stopped run can remove it.
	cl, err := chcluster.Start(ctx, chcluster.Config{Name: os.Getenv("PONIX_TEST_CLUSTER_NAME"), User: clusterUser, Password: clusterPassword, Logger: logger})
	if err != nil {
		t.Fatalf("start the ClickHouse cluster (images: docker/cluster/build-images.sh): %v", err)
	}
	t.Cleanup(func() {
		if err := cl.Close(); err != nil {
			t.Error(err)
		}
	})
	t.Logf("cluster %s (%d x %d, ClickHouse 18.16 + ZooKeeper 3.8) ready in %s", cl.Name(), cl.Shards(), cl.Replicas(),
		time.Since(begin).Round(time.Millisecond))

	t.Run("plain", func(t *testing.T) { clusterPlain(t, cl) })
	t.Run("two-instances-on-different-nodes", func(t *testing.T) { clusterTwoInstances(t, cl) })
	t.Run("replica-killed-and-restarted", func(t *testing.T) { clusterReplicaKilled(t, cl) })
	t.Run("replica-failover-with-view", func(t *testing.T) { clusterReplicaFailoverWithView(t, cl) })
	t.Run("service-and-replica-killed-with-view", func(t *testing.T) { clusterServiceAndReplicaKilledWithView(t, cl) })
	t.Run("zookeeper-stopped-20s", func(t *testing.T) { clusterZooKeeperStopped(t, cl) })
	t.Run("shard-down-20s", func(t *testing.T) { clusterShardDown(t, cl) })
	t.Run("node-partitioned", func(t *testing.T) { clusterPartition(t, cl) })
	t.Run("sigkill-mid-batch", func(t *testing.T) { clusterSIGKILL(t, cl) })
	t.Run("table-detached-on-a-shard", func(t *testing.T) { clusterTableDetached(t, cl) })
	t.Run("single-server-database-refused", func(t *testing.T) { clusterRefusesSingleServerHistory(t, cl) })
}

// clusterDatabase creates a database ON CLUSTER for one scenario and drops it at cleanup.
func clusterDatabase(t *testing.T, cl *chcluster.Cluster) string {
	t.Helper()
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	db := "ponix_" + hex.EncodeToString(b)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	if err := cl.Exec(ctx, cl.Node(1, 1), "CREATE DATABASE "+db+" ON CLUSTER "+cl.ClusterName()); err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		// Tables first (their ZooKeeper paths go with them): 18.16 fails a DROP DATABASE ON
		// CLUSTER whose Replicated tables' directories are not empty yet ("Directory not empty").
		dropOnCluster(t, cl, db, "processed_envelopes", "processed_envelopes_local", "goose_db_version", "goose_lock")
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		if err := cl.Exec(ctx, cl.Node(1, 1), "DROP DATABASE IF EXISTS "+db+" ON CLUSTER "+cl.ClusterName()); err != nil {
			t.Logf("drop database %s (its tables are gone): %v", db, err)
		}
	})
	return db
}

// dropOnCluster drops tables of db ON CLUSTER, in the order given, those that exist.
func dropOnCluster(t *testing.T, cl *chcluster.Cluster, db string, tables ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for _, table := range tables {
		if err := cl.Exec(ctx, cl.Node(1, 1), "DROP TABLE IF EXISTS "+db+"."+table+" ON CLUSTER "+cl.ClusterName()); err != nil {
			t.Errorf("drop table %s.%s: %v", db, table, err)
		}
	}
}

// healAll undoes, at cleanup, every fault on every node and ZooKeeper.
func healAll(t *testing.T, cl *chcluster.Cluster) {
	t.Helper()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		for _, n := range append([]*chcluster.Node{cl.ZooKeeper()}, cl.Nodes()...) {
			if err := cl.Heal(ctx, n); err != nil {
				t.Errorf("heal %s: %v", n.Name, err)
			}
		}
		for _, n := range cl.Nodes() {
			waitWritable(t, cl, n)
		}
	})
}

// waitWritable waits until no Replicated table of node n is read-only: after its ZooKeeper
// session expired (ZooKeeper stopped, the node partitioned) each table restarts its session on
// its own, some seconds after the node answers again.
func waitWritable(t *testing.T, cl *chcluster.Cluster, n *chcluster.Node) {
	t.Helper()
	begin := time.Now()
	var last error
	for time.Since(begin) < 2*time.Minute {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		conn, err := cl.Open(ctx, n)
		if err == nil {
			var readOnly uint64
			err = conn.QueryRow(ctx, "SELECT count() FROM system.replicas WHERE is_readonly OR is_session_expired").Scan(&readOnly)
			conn.Close()
			if err == nil && readOnly == 0 {
				cancel()
				return
			}
			if err == nil {
				err = fmt.Errorf("%d read-only replicated tables", readOnly)
			}
		}
		cancel()
		last = err
		time.Sleep(500 * time.Millisecond)
	}
	t.Errorf("%s still has read-only tables after 2 min: %v", n.Name, last)
}

// clusterConn opens a connection to db on node n, closed at cleanup. Its Distributed queries
// skip a replica more than a second behind its peer (one restarted after a fault, still
// fetching), so that counts read during a scenario do not go back in time.
func clusterConn(t *testing.T, cl *chcluster.Cluster, n *chcluster.Node, db string) driver.Conn {
	t.Helper()
	opts := cl.Options(n)
	opts.Auth.Database = db
	opts.ReadTimeout = time.Minute
	opts.Settings = clickhouse.Settings{"max_replica_delay_for_distributed_queries": 1}
	conn, err := clickhouse.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.Ping(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// clusterEnv configures the service for the cluster: the seed nodes of
// PONIX_CLICKHOUSE_NATIVE_URL (tried in order), the cluster name and the scenario's database.
func clusterEnv(t *testing.T, cl *chcluster.Cluster, db, natsURL string, seeds ...*chcluster.Node) map[string]string {
	addrs := make([]string, len(seeds))
	for i, n := range seeds {
		addrs[i] = n.Addr()
	}
	return map[string]string{
		"PONIX_DATA_DIR":              t.TempDir(),
		"PONIX_CLICKHOUSE_NATIVE_URL": strings.Join(addrs, ","),
		"PONIX_CLICKHOUSE_CLUSTER":    cl.ClusterName(),
		"PONIX_CLICKHOUSE_DATABASE":   db,
		"PONIX_CLICKHOUSE_USERNAME":   cl.User(),
		"PONIX_CLICKHOUSE_PASSWORD":   cl.Password(),
		"PONIX_NATS_URL":              natsURL,
		"PONIX_PRODUCER_ENABLED":      "false",
		"PONIX_NATS_BATCH_SIZE":       "500",
		"PONIX_NATS_BATCH_WAIT_SECS":  "1",
		"PONIX_NATS_ACK_WAIT_SECS":    "6",
		"PONIX_STARTUP_TIMEOUT_SECS":  "90",
		"PONIX_SHUTDOWN_TIMEOUT_SECS": "20",
		"PONIX_LOG_LEVEL":             "info",
		"PONIX_HTTP_ADDR":             "127.0.0.1:0",
	}
}

// startClusterRun starts NATS, the services (one per seed list) and a publisher of 20,000
// envelopes, and returns once the cluster holds the seeded fault point's row count (read
// through the Distributed table on node reads).
func startClusterRun(t *testing.T, cl *chcluster.Cluster, seed uint64, scenario string, reads *chcluster.Node, seeds ...[]*chcluster.Node) *clusterRun {
	t.Helper()
	r := newClusterRun(t, cl, seed, scenario, reads, seeds...)
	r.publish()
	return r
}

// newClusterRun is startClusterRun without the publisher: NATS and the services are started.
func newClusterRun(t *testing.T, cl *chcluster.Cluster, seed uint64, scenario string, reads *chcluster.Node, seeds ...[]*chcluster.Node) *clusterRun {
	t.Helper()
	db := clusterDatabase(t, cl)
	healAll(t, cl) // cleanups run last first: heal, then drop the database
	nsrv := natstest.New(t)
	ensureStream(t, nsrv.URL(), 1)
	conn := clusterConn(t, cl, reads, db)
	r := &clusterRun{
		sinkRun: &sinkRun{t: t, conn: conn, natsURL: nsrv.URL(), want: envelopes(faultN, seed), seed: seed,
			f: figures{scenario: "cluster-" + scenario, published: faultN}},
		cl: cl, db: db, reads: reads,
	}
	r.stored = shardCounter(t, cl, db)
	r.at = faultPoint(t, seed)
	for _, s := range seeds {
		r.startService(clusterEnv(t, cl, db, nsrv.URL(), s...))
		r.svcs = append(r.svcs, r.svc)
	}
	return r
}

// publish starts the publisher of the run's envelopes and returns once the cluster holds the
// fault point's row count.
func (r *clusterRun) publish() {
	r.t.Helper()
	// 500 envelopes every 250 ms: the stream is still being published when the fault starts.
	r.pub = startPublisher(r.t, r.natsURL, r.want, 500, 250*time.Millisecond)
	waitRaw(r.t, r.conn, r.at, 2*time.Minute, r.svcs...)
}

// shardCounter returns a count of the rows the shards hold: for each shard the most any of its
// replicas holds (its own rows: processed_envelopes_local, without FINAL), summed. A replica
// that lags behind the other one of its shard, or one that is down, does not change it; only an
// insert does. The connections are opened now, before any fault.
func shardCounter(t *testing.T, cl *chcluster.Cluster, db string) func() uint64 {
	t.Helper()
	nodes := cl.Nodes()
	conns := make([]driver.Conn, len(nodes))
	for i, n := range nodes {
		conns[i] = clusterConn(t, cl, n, db)
	}
	return func() uint64 {
		perShard := make([]uint64, cl.Shards())
		for i, n := range nodes {
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			var rows uint64
			err := conns[i].QueryRow(ctx, "SELECT count() FROM processed_envelopes_local").Scan(&rows)
			cancel()
			if err != nil {
				continue // down or unreachable: its shard's other replica counts
			}
			perShard[n.Shard-1] = max(perShard[n.Shard-1], rows)
		}
		var total uint64
		for _, c := range perShard {
			total += c
		}
		return total
	}
}

// finishCluster waits for every envelope, lets every replica catch up, checks the placement by
// shard, then (finishExact) stops the services and checks the table exactly.
func (r *clusterRun) finishCluster(fault string) {
	t := r.t
	t.Helper()
	r.pub.wait(t, 3*time.Minute)
	took := waitFinal(t, r.conn, faultN, 3*time.Minute, r.svcs...)
	switch {
	case !r.healedAt.IsZero():
		r.f.recovery = time.Since(r.healedAt) // fault end -> every envelope stored
	case r.f.recovery == 0:
		r.f.recovery = took
	}
	r.checkShards()
	finishExact(t, r.conn, r.natsURL, r.want, r.seed, &r.f, fault, r.svcs...)
}

// checkShards waits until every replica has fetched what its shard holds (SYSTEM SYNC
// REPLICA), then checks on every node that its shard holds rows, only rows whose sharding key
// names that shard, as many as the other replica of the shard, and that the shards add up to
// every envelope.
func (r *clusterRun) checkShards() {
	t := r.t
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	perShard := make([]uint64, r.cl.Shards())
	var parts []string
	for _, n := range r.cl.Nodes() {
		waitWritable(t, r.cl, n)
		conn := clusterConn(t, r.cl, n, r.db)
		if err := conn.Exec(ctx, "SYSTEM SYNC REPLICA processed_envelopes_local"); err != nil {
			t.Fatalf("SYSTEM SYNC REPLICA on %s: %v", n.Name, err)
		}
		var rows, misplaced uint64
		// Shards have weight 1 each: shard s holds the keys with stream_seq % 2 = s-1.
		q := fmt.Sprintf("SELECT count(), countIf(stream_seq %% %d != %d) FROM processed_envelopes_local FINAL", r.cl.Shards(), n.Shard-1)
		if err := conn.QueryRow(ctx, q).Scan(&rows, &misplaced); err != nil {
			t.Fatalf("%s on %s: %v", q, n.Name, err)
		}
		parts = append(parts, fmt.Sprintf("%s=%d", n.Name[strings.LastIndexByte(n.Name, '-')+1:], rows))
		if misplaced != 0 {
			t.Errorf("%s (shard %d) holds %d rows whose sharding key names the other shard", n.Name, n.Shard, misplaced)
		}
		if rows == 0 {
			t.Errorf("%s (shard %d) holds no row: the rows are not spread over the shards", n.Name, n.Shard)
		}
		switch {
		case n.Replica == 1:
			perShard[n.Shard-1] = rows
		case perShard[n.Shard-1] != rows:
			t.Errorf("the replicas of shard %d disagree: %d and %d rows", n.Shard, perShard[n.Shard-1], rows)
		}
	}
	var total uint64
	for _, c := range perShard {
		total += c
	}
	if total != faultN {
		t.Errorf("the shards hold %d rows with FINAL, want %d", total, faultN)
	}
	t.Logf("CLUSTER scenario=%s database=%s rows_final_per_replica %s shards_total=%d", r.f.scenario, r.db, strings.Join(parts, " "), total)
}

// healed marks the end of the fault: the fault's duration, and the time until the next new row
// is stored (when rows are still missing).
func (r *clusterRun) healed() {
	r.f.faultDuration = time.Since(r.start)
	end := time.Now()
	r.healedAt = end
	if stuck := rawCount(r.t, r.conn); stuck < faultN {
		waitResume(r.t, r.conn, stuck, 2*time.Minute, r.svcs...)
		r.f.resume = time.Since(end)
	}
}

// logsOf returns the logs of every service of the run.
func (r *clusterRun) logsOf() string {
	var b strings.Builder
	for _, s := range r.svcs {
		b.WriteString(s.logs.String())
	}
	return b.String()
}

// Plain run: the service migrates a fresh database ON CLUSTER and stores every envelope on
// the shard of its key, replicated.
func clusterPlain(t *testing.T, cl *chcluster.Cluster) {
	r := startClusterRun(t, cl, 201, "plain", cl.Node(2, 2), cl.Nodes())
	r.finishCluster("a plain cluster run")
	ctx := t.Context()
	for _, n := range cl.Nodes() {
		conn := clusterConn(t, cl, n, r.db)
		rs, err := conn.Query(ctx, "SELECT name, engine FROM system.tables WHERE database = currentDatabase() ORDER BY name")
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for rs.Next() {
			var name, engine string
			if err := rs.Scan(&name, &engine); err != nil {
				t.Fatal(err)
			}
			got[name] = engine
		}
		rs.Close()
		want := map[string]string{"processed_envelopes": "Distributed", "processed_envelopes_local": "ReplicatedReplacingMergeTree",
			"goose_db_version": "ReplicatedMergeTree", "goose_lock": "ReplicatedReplacingMergeTree"}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("tables on %s: %v, want %v", n.Name, got, want)
		}
	}
	if !strings.Contains(r.logsOf(), "writing to a ClickHouse cluster") {
		t.Errorf("the service did not log the cluster it writes to")
	}
}

// Two instances started at once against different nodes: they migrate the fresh database once
// (the cluster-wide lock) and share the durable consumer: with one ack per batch, the default,
// one owns it at a time and stores the batches while the other stands by.
func clusterTwoInstances(t *testing.T, cl *chcluster.Cluster) {
	r := startClusterRun(t, cl, 202, "two-instances", cl.Node(1, 1),
		[]*chcluster.Node{cl.Node(1, 2)}, []*chcluster.Node{cl.Node(2, 1)})
	r.finishCluster("two instances on different nodes")
	stored := 0
	for i, s := range r.svcs {
		n := countLines(s.logs.String(), "stored batch")
		stored += n
		t.Logf("instance %d (seed node %s) stored %d batches", i, []string{cl.Node(1, 2).Name, cl.Node(2, 1).Name}[i], n)
	}
	if stored == 0 {
		t.Errorf("no instance stored a batch")
	}
	applied := 0
	for _, s := range r.svcs {
		if strings.Contains(s.logs.String(), `msg="migrations applied" count=4`) {
			applied++
		}
	}
	if applied != 1 {
		t.Errorf("%d instances applied the 4 migrations, want exactly 1 (the other finds them applied)", applied)
	}
	for _, n := range cl.Nodes() {
		conn := clusterConn(t, cl, n, r.db)
		var versions, rows uint64
		if err := conn.QueryRow(t.Context(), "SELECT uniqExact(version_id), count() FROM goose_db_version WHERE version_id > 0").Scan(&versions, &rows); err != nil {
			t.Fatal(err)
		}
		if versions != 4 || rows != 4 {
			t.Errorf("goose_db_version on %s: %d versions in %d rows, want 4 in 4 (each recorded once, replicated)", n.Name, versions, rows)
		}
	}
}

// One replica killed mid-stream (SIGKILL) and started again 10 s later: its shard's inserts
// fail over to the other replica, and it catches up after the restart.
func clusterReplicaKilled(t *testing.T, cl *chcluster.Cluster) {
	killed := cl.Node(1, 1) // the preferred replica of shard 1, and the first seed node
	r := startClusterRun(t, cl, 203, "replica-killed", cl.Node(2, 2), cl.Nodes())
	ctx := t.Context()
	r.fault()
	if err := cl.Kill(ctx, killed); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Second)
	if err := cl.Start(ctx, killed); err != nil {
		t.Fatal(err)
	}
	if err := cl.WaitReady(ctx, killed); err != nil {
		t.Fatal(err)
	}
	r.healed()
	r.finishCluster("a killed replica")
	if !strings.Contains(r.logsOf(), "insert failed over to another replica of the shard") {
		t.Errorf("no failover to the other replica logged")
	}
}

// ZooKeeper stopped for 20 s: every Replicated table is read-only (code 242) or cannot
// allocate a block (999); the batch is held (class read_only), nothing is dead-lettered, and
// the service resumes by itself once ZooKeeper is back.
func clusterZooKeeperStopped(t *testing.T, cl *chcluster.Cluster) {
	r := startClusterRun(t, cl, 204, "zookeeper-stopped-20s", cl.Node(2, 2), cl.Nodes())
	ctx := t.Context()
	r.fault()
	if err := cl.StopZooKeeper(ctx); err != nil {
		t.Fatal(err)
	}
	r.expectHold(checkSinkName, "read_only", "read_only", 20*time.Second-time.Since(r.start)-2*time.Second)
	if err := cl.StartZooKeeper(ctx); err != nil {
		t.Fatal(err)
	}
	r.healed()
	waitReady(t, r.svc, r.base, http.StatusOK, 2*time.Minute)
	t.Logf("resumed: /readyz 200 %s after ZooKeeper was back", (time.Since(r.start) - r.f.faultDuration).Round(time.Millisecond))
	r.finishCluster("ZooKeeper stopped")
}

// checkSinkName is the readiness check of held batches.
const checkSinkName = "sink"

// Both replicas of shard 2 stopped for 20 s: its rows cannot be stored anywhere, so the batch
// is held (class unreachable) while shard 1 keeps its part of the batch — stored once: each
// retry sends shard 1 the identical block, which the Replicated table deduplicates.
func clusterShardDown(t *testing.T, cl *chcluster.Cluster) {
	r := startClusterRun(t, cl, 205, "shard-down-20s", cl.Node(1, 2), cl.Nodes())
	ctx := t.Context()
	shard1 := clusterConn(t, cl, cl.Node(1, 2), r.db)
	local := func() uint64 {
		var n uint64
		if err := shard1.QueryRow(ctx, "SELECT count() FROM processed_envelopes_local").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	r.fault()
	stopAll(t, cl, cl.Shard(2))
	var ev readyEvent
	for {
		var ok bool
		if ev, ok = r.watch.firstNotReady(r.start, checkSinkName, "unreachable"); ok {
			break
		}
		checkAlive(t, r.svc)
		if time.Since(r.start) > 30*time.Second {
			t.Fatalf("/readyz did not report the held batch within 30 s; logs:\n%s", r.svc.logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("/readyz 503 after %s: %s", ev.at.Sub(r.start).Round(time.Millisecond), ev.body.Checks[checkSinkName])
	time.Sleep(2 * time.Second) // the attempt that saw the fault is over
	before := local()
	time.Sleep(20*time.Second - time.Since(r.start))
	after := local()
	if after != before {
		t.Errorf("shard 1 went from %d to %d rows while the batch was held: a retry stored its part again", before, after)
	}
	if n := len(dlqMessages(t, r.natsURL)); n != 0 {
		t.Fatalf("%d messages dead-lettered while a shard was down", n)
	}
	if info := consumerState(t, r.natsURL); info.NumRedelivered != 0 {
		t.Errorf("%d messages redelivered while the batch was held", info.NumRedelivered)
	}
	if ev := r.lastNotReady(); ev.blocked["unreachable"] != 1 {
		t.Errorf("ponix_sink_blocked{class=unreachable} = %v during the hold, want 1", ev.blocked)
	}
	retries := countLines(r.svc.logs.String()[r.logs0:], "the batch stays held") + 1
	for _, n := range cl.Shard(2) {
		if err := cl.Start(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range cl.Shard(2) {
		if err := cl.WaitReady(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	r.healed()
	t.Logf("during the hold: shard 1 kept %d rows across the retries (%d hold log lines)", after, retries)
	waitReady(t, r.svc, r.base, http.StatusOK, 2*time.Minute)
	r.finishCluster("a shard down")
}

// stopAll stops nodes at once (docker stop, in parallel).
func stopAll(t *testing.T, cl *chcluster.Cluster, nodes []*chcluster.Node) {
	t.Helper()
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() { errs[i] = cl.Stop(t.Context(), n) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// One node cut off the network (docker network disconnect) for 25 s: the insert in flight to
// it gets no answer and is bounded by the insert timeout (15 s), new connections time out;
// its shard's rows go to the other replica, and the node catches up once connected again.
func clusterPartition(t *testing.T, cl *chcluster.Cluster) {
	cut := cl.Node(1, 1) // the preferred replica of shard 1, and the first seed node
	r := startClusterRun(t, cl, 206, "node-partitioned", cl.Node(2, 2), cl.Nodes())
	ctx := t.Context()
	r.fault()
	if err := cl.Disconnect(ctx, cut); err != nil {
		t.Fatal(err)
	}
	time.Sleep(25 * time.Second)
	if err := cl.Connect(ctx, cut); err != nil {
		t.Fatal(err)
	}
	if err := cl.WaitReady(ctx, cut); err != nil {
		t.Fatal(err)
	}
	r.healed()
	r.finishCluster("a partitioned node")
	if !strings.Contains(r.logsOf(), "insert failed over to another replica of the shard") {
		t.Errorf("no failover to the other replica logged")
	}
}

// The service SIGKILLed while an insert is in flight (its replica frozen with docker pause),
// then started again: the batch comes again; what one shard had stored of it is deduplicated
// or collapses under FINAL.
func clusterSIGKILL(t *testing.T, cl *chcluster.Cluster) {
	frozen := cl.Node(2, 1) // the preferred replica of shard 2
	r := startClusterRun(t, cl, 207, "sigkill-mid-batch", cl.Node(1, 2), cl.Nodes())
	ctx := t.Context()
	env := clusterEnv(t, cl, r.db, r.natsURL, cl.Nodes()...)
	if err := cl.Pause(ctx, frozen); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // the next insert into shard 2 waits for an answer
	info := consumerState(t, r.natsURL)
	if err := r.svc.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	r.svc.wait(10 * time.Second)
	killedAt := time.Now()
	t.Logf("killed with %d messages unacked", info.NumAckPending)
	if info.NumAckPending == 0 {
		t.Errorf("no message in flight at the kill: the test did not kill mid-batch")
	}
	if err := cl.Unpause(ctx, frozen); err != nil {
		t.Fatal(err)
	}
	r.startService(env)
	r.svcs = []*service{r.svc}
	stuck := rawCount(t, r.conn)
	r.f.resume = time.Since(killedAt) + waitResume(t, r.conn, stuck, 2*time.Minute, r.svc)
	r.healedAt = killedAt // recovery: from the kill to every envelope stored
	r.finishCluster("a SIGKILL mid-batch")
}

// The local table of shard 2 detached on both its replicas (as if lost on that shard): the
// service holds and names the problem in /readyz — on a cluster it never creates tables by
// itself — and resumes by itself once the table is attached again.
func clusterTableDetached(t *testing.T, cl *chcluster.Cluster) {
	r := startClusterRun(t, cl, 208, "table-detached-on-a-shard", cl.Node(1, 2), cl.Nodes())
	ctx := t.Context()
	table := r.db + ".processed_envelopes_local"
	t.Cleanup(func() { // attach it again if the test stops early
		for _, n := range cl.Shard(2) {
			_ = cl.Exec(context.Background(), n, "ATTACH TABLE "+table)
		}
	})
	r.fault()
	for _, n := range cl.Shard(2) {
		if err := cl.Exec(ctx, n, "DETACH TABLE "+table); err != nil {
			t.Fatal(err)
		}
	}
	var ev readyEvent
	for {
		var ok bool
		if ev, ok = r.watch.firstNotReady(r.start, checkSchemaName, "does not create or change tables"); ok {
			break
		}
		checkAlive(t, r.svc)
		if time.Since(r.start) > 30*time.Second {
			t.Fatalf("/readyz did not name the missing table within 30 s; logs:\n%s", r.svc.logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	problem := ev.body.Checks[checkSchemaName]
	t.Logf("/readyz 503 after %s: schema: %s", ev.at.Sub(r.start).Round(time.Millisecond), problem)
	for _, want := range []string{"shard 2", "processed_envelopes_local does not exist"} {
		if !strings.Contains(problem, want) {
			t.Errorf("/readyz schema check %q does not name %q", problem, want)
		}
	}
	time.Sleep(5 * time.Second)
	if n := len(dlqMessages(t, r.natsURL)); n != 0 {
		t.Fatalf("%d messages dead-lettered while a table was missing", n)
	}
	if strings.Contains(r.svc.logs.String(), "applying the migrations again") {
		t.Errorf("the service tried to repair a cluster table by applying the migrations again")
	}
	for _, n := range cl.Shard(2) {
		if err := cl.Exec(ctx, n, "ATTACH TABLE "+table); err != nil {
			t.Fatal(err)
		}
	}
	r.healed()
	waitReady(t, r.svc, r.base, http.StatusOK, 2*time.Minute)
	r.finishCluster("a table detached on a shard")
}

// checkSchemaName is the readiness check of the table's fit.
const checkSchemaName = "schema"

// A database whose history is a single server's (a plain MergeTree version table, left by
// migrations run without PONIX_CLICKHOUSE_CLUSTER) is refused: the startup fails naming the
// variables, and nothing is converted.
func clusterRefusesSingleServerHistory(t *testing.T, cl *chcluster.Cluster) {
	db := clusterDatabase(t, cl)
	n := cl.Node(1, 1)
	sqlDB := ponixclickhouse.OpenDB(ponixclickhouse.Config{Addr: n.Addr(), Database: db, Username: cl.User(), Password: cl.Password()})
	defer sqlDB.Close()
	if _, err := migrate.Up(t.Context(), sqlDB, migrations.FS()); err != nil {
		t.Fatalf("single-server migrations on %s: %v", n.Name, err)
	}
	nsrv := natstest.New(t)
	s := startService(t, clusterEnv(t, cl, db, nsrv.URL(), n))
	if code := s.wait(2 * time.Minute); code != 1 {
		t.Fatalf("exit code %d, want 1; logs:\n%s", code, s.logs.String())
	}
	logs := s.logs.String()
	for _, want := range []string{"startup phase migrations failed (check PONIX_CLICKHOUSE_DATABASE, PONIX_CLICKHOUSE_CLUSTER)",
		"single-server migration history"} {
		if !strings.Contains(logs, want) {
			t.Errorf("the logs do not say %q:\n%s", want, logs)
		}
	}
	conn := clusterConn(t, cl, n, db)
	var engine string
	if err := conn.QueryRow(t.Context(), "SELECT engine FROM system.tables WHERE database = currentDatabase() AND name = 'processed_envelopes'").Scan(&engine); err != nil || engine != "ReplacingMergeTree" {
		t.Errorf("the single server's table is now %q (%v), want it untouched (ReplacingMergeTree)", engine, err)
	}
}
