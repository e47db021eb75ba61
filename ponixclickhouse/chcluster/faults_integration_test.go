//go:build integration

package chcluster_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/ponix-go/ponix/ponixclickhouse/chcluster"
)

// finding logs what a fault produced, in a form to grep for: go test -v | grep FINDING.
func finding(t *testing.T, label string, err error, elapsed time.Duration) {
	t.Helper()
	t.Logf("FINDING %s: after %s: %s", label, elapsed.Round(10*time.Millisecond), describe(err))
}

// timed runs f and returns its error and duration.
func timed(f func() error) (time.Duration, error) {
	begin := time.Now()
	err := f()
	return time.Since(begin), err
}

// wantCode fails the test unless err carries a ClickHouse exception with one of codes.
func wantCode(t *testing.T, label string, err error, codes ...int32) {
	t.Helper()
	ex := exception(err)
	if ex == nil {
		t.Errorf("%s: got %v, want a ClickHouse exception with code %v", label, err, codes)
		return
	}
	if !slices.Contains(codes, ex.Code) {
		t.Errorf("%s: got code %d (%s), want one of %v", label, ex.Code, firstLine(ex.Message), codes)
	}
}

// wantNetworkError fails the test unless err is a client-side error (no server exception).
func wantNetworkError(t *testing.T, label string, err error) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: got no error", label)
		return
	}
	if ex := exception(err); ex != nil {
		t.Errorf("%s: got server exception %d %s, want a network error", label, ex.Code, firstLine(ex.Message))
	}
}

// TestReplicationAndDistributedRead: rows inserted into one replica's local table reach the other
// replica of the shard; the Distributed table reads both shards, and FINAL collapses a newer
// version of a row that arrived through the other replica; an insert into the Distributed table
// with insert_distributed_sync=1 is split between the shards by the sharding key.
func TestReplicationAndDistributedRead(t *testing.T) {
	db := newDatabase(t)
	createTables(t, db)
	local, dist := db+".events_local", db+".events"
	ctx := ctxFor(t, 5*time.Minute)

	if err := insert(ctx, cl.Node(1, 1), local, rows(0, 100, 1)); err != nil {
		t.Fatal(err)
	}
	if err := insert(ctx, cl.Node(2, 2), local, rows(1000, 100, 1)); err != nil {
		t.Fatal(err)
	}
	d1 := waitCount(t, cl.Node(1, 2), "SELECT count() FROM "+local, 100, 2*time.Minute)
	d2 := waitCount(t, cl.Node(2, 1), "SELECT count() FROM "+local, 100, 2*time.Minute)
	t.Logf("replicated to the other replica in %s (shard 1) and %s (shard 2)", d1.Round(time.Millisecond), d2.Round(time.Millisecond))

	// A newer version of ids 0..9, inserted through the other replica of shard 1.
	if err := insert(ctx, cl.Node(1, 2), local, rows(0, 10, 2)); err != nil {
		t.Fatal(err)
	}
	waitCount(t, cl.Node(1, 1), "SELECT count() FROM "+local+" FINAL WHERE version = 2", 10, 2*time.Minute)
	for _, n := range cl.Nodes() {
		if got := mustCount(t, n, "SELECT count() FROM "+dist+" FINAL"); got != 200 {
			t.Errorf("on %s, Distributed FINAL count = %d, want 200", n.Name, got)
		}
		if got := mustCount(t, n, "SELECT count() FROM "+dist+" FINAL WHERE version = 2"); got != 10 {
			t.Errorf("on %s, Distributed FINAL count of version 2 = %d, want 10", n.Name, got)
		}
	}

	// Through the Distributed table, synchronously: 100 ids, split by id between the shards.
	syncCtx := settings(ctx, clickhouse.Settings{"insert_distributed_sync": 1})
	if err := insert(syncCtx, cl.Node(2, 1), dist, rows(5000, 100, 1)); err != nil {
		t.Fatal(err)
	}
	// Each shard's part lands on one replica and reaches the other by replication.
	s1, s2 := waitShards(t, "SELECT count() FROM "+local+" WHERE id >= 5000", 100, 2*time.Minute)
	if s1 == 0 || s2 == 0 {
		t.Errorf("Distributed sync insert of 100 rows: shard 1 holds %d, shard 2 holds %d", s1, s2)
	}
	t.Logf("Distributed insert (sharding key id, weights 1:1): shard 1 got %d rows, shard 2 got %d", s1, s2)
}

// waitShards waits until both replicas of each shard return the same count for query and the
// shards' counts add up to want; it returns the counts of shards 1 and 2.
func waitShards(t *testing.T, query string, want uint64, limit time.Duration) (uint64, uint64) {
	t.Helper()
	begin := time.Now()
	var got [2][2]uint64
	for {
		for s := range 2 {
			for r := range 2 {
				got[s][r] = mustCount(t, cl.Node(s+1, r+1), query)
			}
		}
		if got[0][0] == got[0][1] && got[1][0] == got[1][1] && got[0][0]+got[1][0] == want {
			return got[0][0], got[1][0]
		}
		if time.Since(begin) > limit {
			t.Fatalf("%s: replicas of shard 1 hold %v, of shard 2 %v; want agreement and %d in all", query, got[0], got[1], want)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// TestDeduplication (g): an identical block inserted twice into a Replicated table is stored once,
// whichever replica of the shard receives the copy, and the second insert reports success. The
// block's identity is a hash of the part as written (rows sorted by the ORDER BY key), so the same
// rows in another order are deduplicated too, while one changed value makes a new block.
// insert_deduplicate=0 stores an identical block again.
func TestDeduplication(t *testing.T) {
	db := newDatabase(t)
	createTables(t, db)
	local := db + ".events_local"
	ctx := ctxFor(t, 5*time.Minute)
	block := rows(0, 50, 1)
	for i, n := range []int{1, 1, 2} {
		d, err := timed(func() error { return insert(ctx, cl.Node(1, n), local, block) })
		if err != nil {
			t.Fatalf("insert %d of the same block into replica %d: %v", i+1, n, err)
		}
		if i > 0 {
			finding(t, "(g) identical block inserted again into replica "+cl.Node(1, n).Name, err, d)
		}
	}
	waitCount(t, cl.Node(1, 2), "SELECT count() FROM "+local, 50, 2*time.Minute)
	if got := mustCount(t, cl.Node(1, 1), "SELECT count() FROM "+local); got != 50 {
		t.Errorf("after three inserts of one 50-row block: %d rows, want 50", got)
	}
	// The same rows in another order make the same sorted part: deduplicated.
	reordered := slices.Clone(block)
	slices.Reverse(reordered)
	if err := insert(ctx, cl.Node(1, 1), local, reordered); err != nil {
		t.Fatal(err)
	}
	if got := mustCount(t, cl.Node(1, 1), "SELECT count() FROM "+local); got != 50 {
		t.Errorf("after the same rows in another order: %d rows, want 50 (deduplicated)", got)
	}
	// One changed value: another block.
	changed := slices.Clone(block)
	changed[49].v += "-changed"
	if err := insert(ctx, cl.Node(1, 1), local, changed); err != nil {
		t.Fatal(err)
	}
	if got := mustCount(t, cl.Node(1, 1), "SELECT count() FROM "+local); got != 100 {
		t.Errorf("after the block with one changed value: %d rows, want 100 (not deduplicated)", got)
	}
	noDedup := settings(ctx, clickhouse.Settings{"insert_deduplicate": 0})
	if err := insert(noDedup, cl.Node(1, 1), local, block); err != nil {
		t.Fatal(err)
	}
	if got := mustCount(t, cl.Node(1, 1), "SELECT count() FROM "+local); got != 150 {
		t.Errorf("after insert_deduplicate=0: %d rows, want 150", got)
	}
	if got := mustCount(t, cl.Node(1, 1), "SELECT count() FROM "+local+" FINAL"); got != 50 {
		t.Errorf("FINAL: %d rows, want 50", got)
	}
	t.Logf("FINDING (g) identical block again (either replica): no error, nothing stored; same rows reordered: " +
		"deduplicated too; one value changed: stored; insert_deduplicate=0: stored again; FINAL collapses all copies")
}

// TestKillReplicaCatchesUp (b): a killed replica refuses inserts with a client-side network
// error, its peer keeps accepting them, and after a restart it fetches what it missed.
func TestKillReplicaCatchesUp(t *testing.T) {
	db := newDatabase(t)
	createTables(t, db)
	local := db + ".events_local"
	ctx := ctxFor(t, 8*time.Minute)
	r1, r2 := cl.Node(1, 1), cl.Node(1, 2)
	if err := insert(ctx, r1, local, rows(0, 100, 1)); err != nil {
		t.Fatal(err)
	}
	waitCount(t, r2, "SELECT count() FROM "+local, 100, 2*time.Minute)

	before, err := cl.Open(ctx, r2) // a connection opened before the crash
	if err != nil {
		t.Fatal(err)
	}
	defer before.Close()
	heal(t, r2)
	if err := cl.Kill(ctx, r2); err != nil {
		t.Fatal(err)
	}

	d, err := timed(func() error { return insertOn(ctx, before, local, rows(100, 10, 1)) })
	finding(t, "(b) insert into a killed node on a connection opened before the kill", err, d)
	wantNetworkError(t, "(b) open connection", err)

	raw, err := clickhouse.Open(cl.Options(r2)) // no ping: the error comes from the insert
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	d, err = timed(func() error { return insertOn(ctx, raw, local, rows(100, 10, 1)) })
	finding(t, "(b) insert into a killed node on a new connection", err, d)
	wantNetworkError(t, "(b) new connection", err)

	if err := insert(ctx, r1, local, rows(100, 100, 1)); err != nil {
		t.Fatalf("insert into the live replica while its peer is dead: %v", err)
	}

	begin := time.Now()
	if err := cl.Start(ctx, r2); err != nil {
		t.Fatal(err)
	}
	if err := cl.WaitReady(ctx, r2); err != nil {
		t.Fatal(err)
	}
	ready := time.Since(begin)
	caught := waitCount(t, r2, "SELECT count() FROM "+local, 200, 3*time.Minute)
	t.Logf("MEASURE killed replica: docker start to ready %s, then caught up (200 rows) %s later",
		ready.Round(time.Millisecond), caught.Round(time.Millisecond))

	// A graceful restart of another node, timed end to end.
	n := cl.Node(2, 1)
	d, err = timed(func() error { return cl.Restart(ctx, n) })
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("MEASURE graceful restart (docker stop + start + ready) of %s: %s", n.Name, d.Round(time.Millisecond))
}

// TestZooKeeperDown (a): without ZooKeeper a Replicated table refuses inserts (first while the
// session is still believed alive, then after it expired), SELECTs keep working, ON CLUSTER DDL
// fails, and inserts work again once ZooKeeper is back.
func TestZooKeeperDown(t *testing.T) {
	db := newDatabase(t)
	createTables(t, db)
	local := db + ".events_local"
	ctx := ctxFor(t, 8*time.Minute)
	n := cl.Node(1, 1)
	if err := insert(ctx, n, local, rows(0, 10, 1)); err != nil {
		t.Fatal(err)
	}
	heal(t, cl.ZooKeeper())
	t.Cleanup(func() { waitInsertable(t, db) })
	if err := cl.StopZooKeeper(ctx); err != nil {
		t.Fatal(err)
	}

	d, err := timed(func() error { return insert(ctx, n, local, rows(100, 10, 1)) })
	finding(t, "(a) insert right after ZooKeeper stopped", err, d)
	wantCode(t, "(a) insert right after ZooKeeper stopped", err, 999, 242, 225)

	if got, err := count(ctx, n, "SELECT count() FROM "+local); err != nil || got != 10 {
		t.Errorf("SELECT without ZooKeeper: %d, %v; want 10 rows", got, err)
	}

	time.Sleep(15 * time.Second) // past the servers' ZooKeeper session timeout (10 s)
	d, err = timed(func() error { return insert(ctx, n, local, rows(200, 10, 1)) })
	finding(t, "(a) insert 15 s after ZooKeeper stopped", err, d)
	wantCode(t, "(a) insert 15 s after ZooKeeper stopped", err, 999, 242, 225)

	d, err = timed(func() error {
		return cl.Exec(ctx, n, "CREATE TABLE "+db+".x ON CLUSTER "+cl.ClusterName()+" (id UInt64) ENGINE = Memory")
	})
	finding(t, "(a) ON CLUSTER DDL without ZooKeeper", err, d)
	wantCode(t, "(a) ON CLUSTER DDL without ZooKeeper", err, 999, 225, 159)

	begin := time.Now()
	if err := cl.StartZooKeeper(ctx); err != nil {
		t.Fatal(err)
	}
	zkReady := time.Since(begin)
	var last error
	for time.Since(begin) < 3*time.Minute {
		if last = insert(ctx, n, local, rows(300, 10, 1)); last == nil {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if last != nil {
		t.Fatalf("inserts still fail 3 min after ZooKeeper came back: %v", last)
	}
	t.Logf("MEASURE ZooKeeper back: answering after %s, first successful insert after %s",
		zkReady.Round(time.Millisecond), time.Since(begin).Round(time.Millisecond))
	if got := mustCount(t, n, "SELECT count() FROM "+local); got != 20 {
		t.Errorf("after ZooKeeper came back: %d rows, want 20 (the failed inserts stored nothing)", got)
	}

	// ZooKeeper partitioned instead of stopped: no connection is closed, the session just stops
	// answering.
	if err := cl.Disconnect(ctx, cl.ZooKeeper()); err != nil {
		t.Fatal(err)
	}
	d, err = timed(func() error { return insert(ctx, n, local, rows(400, 10, 1)) })
	finding(t, "(a) insert right after ZooKeeper was partitioned", err, d)
	wantCode(t, "(a) insert right after ZooKeeper was partitioned", err, 999, 242, 225)
	time.Sleep(15 * time.Second)
	d, err = timed(func() error { return insert(ctx, n, local, rows(500, 10, 1)) })
	finding(t, "(a) insert 15 s after ZooKeeper was partitioned", err, d)
	wantCode(t, "(a) insert 15 s after ZooKeeper was partitioned", err, 999, 242, 225)
	begin = time.Now()
	if err := cl.Heal(ctx, cl.ZooKeeper()); err != nil {
		t.Fatal(err)
	}
	waitInsertable(t, db)
	t.Logf("MEASURE ZooKeeper partition healed: every node accepts inserts after %s", time.Since(begin).Round(time.Millisecond))
	if got := mustCount(t, n, "SELECT count() FROM "+local+" WHERE id >= 400 AND id < 600"); got != 0 {
		t.Logf("FINDING (a) %d rows of the inserts that failed during the ZooKeeper partition were stored", got)
	}
}

// waitInsertable waits until every node accepts an insert into a Replicated table of db again
// (after ZooKeeper came back, tables leave read-only mode one by one).
func waitInsertable(t *testing.T, db string) {
	t.Helper()
	for _, n := range cl.Nodes() {
		begin := time.Now()
		for {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			err := insert(ctx, n, db+".events_local", rows(900000+uint64(n.Shard*10+n.Replica), 1, 1))
			cancel()
			if err == nil {
				break
			}
			if time.Since(begin) > 3*time.Minute {
				t.Errorf("%s still refuses inserts: %v", n.Name, err)
				break
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
}

// TestPartition (c): a node cut off the network cannot be reached (a dial that times out, a
// request on an open connection that gets no answer), its peer keeps accepting inserts, and after
// the partition heals the node catches up.
func TestPartition(t *testing.T) {
	db := newDatabase(t)
	createTables(t, db)
	local := db + ".events_local"
	ctx := ctxFor(t, 8*time.Minute)
	cut, peer := cl.Node(2, 1), cl.Node(2, 2)
	if err := insert(ctx, cut, local, rows(0, 100, 1)); err != nil {
		t.Fatal(err)
	}
	waitCount(t, peer, "SELECT count() FROM "+local, 100, 2*time.Minute)

	before, err := cl.Open(ctx, cut)
	if err != nil {
		t.Fatal(err)
	}
	defer before.Close()
	heal(t, cut)
	if err := cl.Disconnect(ctx, cut); err != nil {
		t.Fatal(err)
	}

	short, cancel := context.WithTimeout(ctx, 20*time.Second)
	d, err := timed(func() error { return insertOn(short, before, local, rows(100, 10, 1)) })
	cancel()
	finding(t, "(c) insert into a partitioned node on a connection opened before (context deadline 20 s)", err, d)
	wantNetworkError(t, "(c) open connection", err)

	raw, err := clickhouse.Open(cl.Options(cut)) // DialTimeout 5 s, no ping
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	d, err = timed(func() error { return insertOn(ctx, raw, local, rows(100, 10, 1)) })
	finding(t, "(c) insert into a partitioned node on a new connection (DialTimeout 5 s)", err, d)
	wantNetworkError(t, "(c) new connection", err)

	if err := insert(ctx, peer, local, rows(100, 100, 1)); err != nil {
		t.Fatalf("insert into the peer of a partitioned node: %v", err)
	}

	time.Sleep(15 * time.Second) // let the partitioned node's ZooKeeper session expire
	begin := time.Now()
	if err := cl.Connect(ctx, cut); err != nil {
		t.Fatal(err)
	}
	if err := cl.WaitReady(ctx, cut); err != nil {
		t.Fatal(err)
	}
	ready := time.Since(begin)
	caught := waitCount(t, cut, "SELECT count() FROM "+local, 200, 3*time.Minute)
	t.Logf("MEASURE partition healed: node ready after %s, caught up %s later", ready.Round(time.Millisecond), caught.Round(time.Millisecond))
	if err := insert(ctx, cut, local, rows(200, 10, 1)); err != nil {
		t.Errorf("insert into the healed node: %v", err)
	}
}

// TestDistributedSyncShardDown (d): with a whole shard down, a synchronous insert into the
// Distributed table fails — after storing the other shard's rows — while an asynchronous one
// succeeds and delivers its rows once the shard is back.
func TestDistributedSyncShardDown(t *testing.T) {
	db := newDatabase(t)
	createTables(t, db)
	local, dist := db+".events_local", db+".events"
	ctx := ctxFor(t, 8*time.Minute)
	for _, n := range cl.Shard(2) {
		heal(t, n)
		if err := cl.Stop(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	entry := cl.Node(1, 1)

	syncCtx := settings(ctx, clickhouse.Settings{"insert_distributed_sync": 1})
	d, err := timed(func() error { return insert(syncCtx, entry, dist, rows(0, 100, 1)) })
	finding(t, "(d) Distributed insert, insert_distributed_sync=1, shard 2 down", err, d)
	wantCode(t, "(d) sync insert with a shard down", err, 279, 210, 209, 519)

	if err := insert(ctx, entry, dist, rows(1000, 100, 1)); err != nil {
		t.Errorf("Distributed insert, insert_distributed_sync=0, shard 2 down: %v (want success, queued)", err)
	}
	shard1 := mustCount(t, entry, "SELECT count() FROM "+local+" WHERE id >= 1000")
	t.Logf("FINDING (d) asynchronous Distributed insert with shard 2 down succeeded; shard 1 holds %d of its rows at once, the rest is queued", shard1)

	for _, n := range cl.Shard(2) {
		if err := cl.Start(ctx, n); err != nil {
			t.Fatal(err)
		}
		if err := cl.WaitReady(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	took := waitCount(t, entry, "SELECT count() FROM "+dist+" WHERE id >= 1000", 100, 3*time.Minute)
	t.Logf("MEASURE queued Distributed rows delivered %s after shard 2 was ready", took.Round(time.Millisecond))
	time.Sleep(2 * time.Second) // let replication settle
	var left []string
	for _, n := range cl.Nodes() {
		left = append(left, fmt.Sprintf("%s: %d", n.Name, mustCount(t, n, "SELECT count() FROM "+local+" WHERE id < 100")))
	}
	t.Logf("FINDING (d) rows the failed synchronous insert left, per replica: %s", strings.Join(left, ", "))
}

// TestInsertQuorum (e): insert_quorum=2 with one replica of the shard down fails at once; with the
// replica partitioned (its ZooKeeper session not yet expired) it waits for insert_quorum_timeout.
// With both replicas up it succeeds.
func TestInsertQuorum(t *testing.T) {
	db := newDatabase(t)
	createTables(t, db)
	local := db + ".events_local"
	ctx := ctxFor(t, 8*time.Minute)
	r1, r2 := cl.Node(1, 1), cl.Node(1, 2)
	quorum := settings(ctx, clickhouse.Settings{"insert_quorum": 2, "insert_quorum_timeout": 15000})

	if err := insert(quorum, r1, local, rows(0, 10, 1)); err != nil {
		t.Fatalf("quorum insert with both replicas up: %v", err)
	}
	if got := mustCount(t, r2, "SELECT count() FROM "+local); got != 10 {
		t.Errorf("after a quorum insert the other replica holds %d rows, want 10 at once", got)
	}

	heal(t, r2)
	if err := cl.Stop(ctx, r2); err != nil {
		t.Fatal(err)
	}
	d, err := timed(func() error { return insert(quorum, r1, local, rows(100, 10, 1)) })
	finding(t, "(e) insert_quorum=2, other replica stopped", err, d)
	wantCode(t, "(e) quorum with a replica stopped", err, 285, 286)
	t.Logf("FINDING (e) rows of the refused quorum insert on %s: %d", r1.Name,
		mustCount(t, r1, "SELECT count() FROM "+local+" WHERE id >= 100 AND id < 110"))

	if err := cl.Start(ctx, r2); err != nil {
		t.Fatal(err)
	}
	if err := cl.WaitReady(ctx, r2); err != nil {
		t.Fatal(err)
	}
	waitQuorum(t, quorum, r1, local)

	if err := cl.Disconnect(ctx, r2); err != nil {
		t.Fatal(err)
	}
	d, err = timed(func() error { return insert(quorum, r1, local, rows(200, 10, 1)) })
	finding(t, "(e) insert_quorum=2, insert_quorum_timeout=15s, other replica partitioned", err, d)
	wantCode(t, "(e) quorum with a replica partitioned", err, 285, 286, 319, 159)
	t.Logf("FINDING (e) rows of that quorum insert on %s: %d", r1.Name,
		mustCount(t, r1, "SELECT count() FROM "+local+" WHERE id >= 200 AND id < 210"))
	if err := cl.Connect(ctx, r2); err != nil {
		t.Fatal(err)
	}
	if err := cl.WaitReady(ctx, r2); err != nil {
		t.Fatal(err)
	}
	waitQuorum(t, quorum, r1, local)
}

// waitQuorum waits until a quorum insert (as set in quorum) into table on n succeeds, that is
// until the other replica is active again; at most 3 minutes.
func waitQuorum(t *testing.T, quorum context.Context, n *chcluster.Node, table string) {
	t.Helper()
	begin := time.Now()
	var err error
	for id := uint64(500000); time.Since(begin) < 3*time.Minute; id++ {
		if err = insert(quorum, n, table, rows(id, 1, 1)); err == nil {
			t.Logf("MEASURE quorum inserts succeed again %s after the replica was ready", time.Since(begin).Round(time.Millisecond))
			return
		}
		time.Sleep(time.Second)
	}
	t.Fatalf("quorum insert on %s still fails: %v", n, err)
}

// TestOnClusterDDLNodeDown (f): an ON CLUSTER DDL with one node down runs on the others and waits
// for the missing one until distributed_ddl_task_timeout, then fails; the node runs the DDL when it
// comes back.
func TestOnClusterDDLNodeDown(t *testing.T) {
	db := newDatabase(t)
	ctx := ctxFor(t, 8*time.Minute)
	down := cl.Node(2, 2)
	heal(t, down)
	if err := cl.Stop(ctx, down); err != nil {
		t.Fatal(err)
	}
	// distributed_ddl_task_timeout is an Int64 setting, which clickhouse-go cannot send to 18.16
	// with the query (see TestSettingsReachServer): SET it on a connection of its own.
	opts := cl.Options(cl.Node(1, 1))
	opts.MaxOpenConns, opts.MaxIdleConns = 1, 1
	conn, err := clickhouse.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.Exec(ctx, "SET distributed_ddl_task_timeout = 20"); err != nil {
		t.Fatal(err)
	}
	ddl := "CREATE TABLE " + db + ".x ON CLUSTER " + cl.ClusterName() + " (id UInt64) ENGINE = Memory"
	d, err := timed(func() error { return conn.Exec(ctx, ddl) })
	finding(t, "(f) ON CLUSTER DDL with one node stopped, distributed_ddl_task_timeout = 20", err, d)
	if d < 19*time.Second || d > 60*time.Second {
		t.Errorf("the DDL returned after %s, want about distributed_ddl_task_timeout (20 s)", d)
	}
	wantCode(t, "(f) ON CLUSTER DDL with a node down", err, 159)
	for _, n := range cl.Nodes() {
		if n == down {
			continue
		}
		if got := mustCount(t, n, "SELECT count() FROM system.tables WHERE database = '"+db+"' AND name = 'x'"); got != 1 {
			t.Errorf("the DDL did not run on live node %s", n.Name)
		}
	}
	if err := cl.Start(ctx, down); err != nil {
		t.Fatal(err)
	}
	if err := cl.WaitReady(ctx, down); err != nil {
		t.Fatal(err)
	}
	took := waitCount(t, down, "SELECT count() FROM system.tables WHERE database = '"+db+"' AND name = 'x'", 1, 3*time.Minute)
	t.Logf("FINDING (f) the node that was down ran the DDL %s after it was ready", took.Round(time.Millisecond))
}

// TestSettingsReachServer records how settings sent by clickhouse-go arrive at this server. Before
// protocol revision 54429 (18.16 speaks 54412) a setting travels in its own binary form, and
// clickhouse-go writes every value as an unsigned varint: right for UInt64 and Bool settings (the
// ones these tests use, asserted here), wrong for others (logged).
func TestSettingsReachServer(t *testing.T) {
	ctx := ctxFor(t, time.Minute)
	conn, err := cl.Open(ctx, cl.Node(1, 1))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, s := range []struct {
		name  string
		sent  int
		exact bool
	}{
		{"insert_quorum", 2, true}, {"insert_quorum_timeout", 15000, true},
		{"insert_distributed_sync", 1, true}, {"insert_deduplicate", 0, true},
		{"distributed_ddl_task_timeout", 20, false}, {"distributed_ddl_task_timeout", 40, false},
		{"max_execution_time", 7, false}, {"max_execution_time", 60, false},
	} {
		var got string
		q := "SELECT value FROM system.settings WHERE name = '" + s.name + "'"
		if err := conn.QueryRow(settings(ctx, clickhouse.Settings{s.name: s.sent}), q).Scan(&got); err != nil {
			t.Fatal(err)
		}
		t.Logf("FINDING setting %s sent as %d arrives as %s", s.name, s.sent, got)
		if s.exact && got != fmt.Sprint(s.sent) {
			t.Errorf("setting %s sent as %d arrives as %s", s.name, s.sent, got)
		}
	}
}
