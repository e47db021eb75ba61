//go:build integration && cluster

package main_test

// Exactly once into the table and into a materialized view on it across a replica failover
// (issue 19): a ReplicatedSummingMergeTree view (a count per device and hour) on every
// shard-local table, the local tables' merges stopped (a copy stays visible to a raw count()),
// and the preferred replica of shard 2 SIGKILLed while an insert it has committed is still
// unanswered and not fetched by its peer. Either the writer retries the same batch on the peer
// (replica-failover-with-view), or the service is SIGKILLed first and the batch comes again,
// composed otherwise, while the replica is down (service-and-replica-killed-with-view). Each
// ends with raw count() = count() FINAL = the view's sum = 20,000 on every replica.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/ponix-go/ponix/ponixclickhouse"
	"github.com/ponix-go/ponix/ponixclickhouse/chcluster"
)

const (
	// countView is the materialized view on processed_envelopes_local, countTable its target.
	countView  = "envelopes_per_device"
	countTable = "envelopes_per_device_local"
	// slowView, on the killed replica only, sleeps after the count view has been written: while
	// windowTable holds a row, it holds the insert's answer back for about two seconds after the
	// insert is committed in ZooKeeper (views are written in the order of their names, after
	// the table). windowTable is a Memory table: a restart of the replica empties it.
	slowView    = "zz_slow_answer"
	windowTable = "commit_window_open"
	// failedOver is the service's log line for an insert stored by a shard's other replica.
	failedOver = "insert failed over to another replica of the shard"
)

// One replica SIGKILLed after it committed an insert and before it answered it: the writer
// sends the identical block to the shard's other replica, which deduplicates it (the block's
// ID is in ZooKeeper) and so does not feed its view either; the killed replica's part and view
// part reach the other replica once it is started again. Raw count() = count() FINAL = the
// view's sum = every envelope, on both replicas of each shard.
func clusterReplicaFailoverWithView(t *testing.T, cl *chcluster.Cluster) {
	r, w := startViewRun(t, cl, 209, "replica-failover-with-view")
	w.open()
	r.fault()
	w.waitCommitted()
	if err := cl.Kill(t.Context(), w.killed); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "a failover logged", func() bool { return strings.Contains(r.logsOf(), failedOver) }, r.svcs...)
	if deduped := w.killedUnfetched(); deduped == 0 {
		t.Errorf("%s deduplicated no block: the kill did not come between a commit and its answer", w.peer.Name)
	}
	// The shard works on one replica for a while.
	time.Sleep(5 * time.Second)
	w.restart()
	r.finishWithViews("a replica failover")
	if !strings.Contains(r.logsOf(), failedOver) {
		t.Errorf("no failover to the other replica logged")
	}
}

// The service SIGKILLed while the preferred replica of shard 2 holds an insert it committed and
// has not answered, that replica SIGKILLed before its peer fetched the insert, and the service
// started again, with smaller batches, while the replica is down: the batch comes again
// (redelivered), composed otherwise, and is checked against the table. The peer alone cannot
// say what shard 2 holds, so the check must not read it (through the Distributed table, it did:
// it found none of the killed replica's rows, and they were stored twice, in the table and in
// the view): the batch is held, /readyz says why, until the killed replica is back. Then raw
// count() = count() FINAL = the view's sum = every envelope.
func clusterServiceAndReplicaKilledWithView(t *testing.T, cl *chcluster.Cluster) {
	r, w := startViewRun(t, cl, 210, "service-and-replica-killed-with-view")
	ctx := t.Context()
	w.open()
	env := clusterEnv(t, cl, r.db, r.natsURL, cl.Nodes()...)
	r.fault()
	w.waitCommitted()
	if err := r.svc.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	r.svc.wait(10 * time.Second)
	if err := cl.Kill(ctx, w.killed); err != nil {
		t.Fatal(err)
	}
	w.killedUnfetched()
	dedupBefore := dedupedBlocks(t, cl, w.peer)
	env["PONIX_NATS_BATCH_SIZE"] = "300" // the batches come again composed otherwise
	restarted := time.Now()
	r.startService(env)
	r.svcs = []*service{r.svc}
	var held readyEvent
	waitFor(t, 2*time.Minute, "the redelivered batch checked", func() bool {
		var ok bool
		held, ok = r.watch.firstNotReady(restarted, checkSinkName, ponixclickhouse.ErrReplicaBehind.Error())
		return ok || sumStored(r.svc.logs.String()) > 0
	}, r.svc)
	if held.code == 0 {
		t.Errorf("the redelivered batch was checked without a hold while a replica of shard 2 is down and its peer lacks its parts")
	} else {
		t.Logf("/readyz 503 %s after the restart: %s", held.at.Sub(restarted).Round(time.Millisecond), held.body.Checks[checkSinkName])
	}
	w.restart()
	r.finishWithViews("the service and a replica killed")
	t.Logf("the restarted service found %d redelivered messages stored already; %s deduplicated %d blocks since",
		sumStored(r.svc.logs.String()), w.peer.Name, dedupedBlocks(t, cl, w.peer)-dedupBefore)
}

// startViewRun starts a cluster run whose local tables have the count view (addCountViews),
// with a commit window (closed) on the preferred replica of shard 2, and returns once the
// fault point is stored.
func startViewRun(t *testing.T, cl *chcluster.Cluster, seed uint64, scenario string) (*clusterRun, *commitWindow) {
	t.Helper()
	r := newClusterRun(t, cl, seed, scenario, cl.Node(1, 2), cl.Nodes())
	t.Cleanup(func() { // before healAll's cleanup, which heals the nodes the drops need
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		for _, n := range cl.Nodes() {
			if err := cl.Heal(ctx, n); err != nil {
				t.Errorf("heal %s: %v", n.Name, err)
			}
		}
		dropOnCluster(t, cl, r.db, slowView, windowTable, countView, countTable)
	})
	for _, s := range r.svcs {
		waitLog(t, s, "fits the writer: consuming", 2*time.Minute) // the service migrated the database
	}
	// Views are made while the service has nothing to insert: ClickHouse 18.16 registers a new
	// view with its table before the view exists, and an insert in between fails with "Table
	// ... doesn't exist" (the writer then fails over, and the window never sees an insert).
	r.addCountViews()
	w := r.newCommitWindow(cl.Node(2, 1), cl.Node(2, 2)) // the preferred replica of shard 2, and its peer
	r.publish()
	return r, w
}

// commitWindow is a replica whose inserts are answered about two seconds after they are
// committed (slowView), and whose peer fetches nothing meanwhile: a replica killed in that
// window leaves a committed insert the writer saw fail, on that replica alone.
type commitWindow struct {
	r            *clusterRun
	killed, peer *chcluster.Node
	kconn        driver.Conn
	dedupBefore  uint64
}

// newCommitWindow makes the window, closed, on killed, whose shard's other replica is peer.
func (r *clusterRun) newCommitWindow(killed, peer *chcluster.Node) *commitWindow {
	t, cl := r.t, r.cl
	t.Helper()
	for _, q := range []string{
		fmt.Sprintf("CREATE TABLE %s.%s (open UInt8) ENGINE = Memory", r.db, windowTable),
		fmt.Sprintf("CREATE MATERIALIZED VIEW %[1]s.%[2]s ENGINE = Null AS SELECT sleepEachRow(0.008) AS slept "+
			"FROM %[1]s.processed_envelopes_local WHERE (SELECT count() FROM %[1]s.%[3]s) > 0", r.db, slowView, windowTable),
	} {
		if err := cl.Exec(t.Context(), killed, q); err != nil {
			t.Fatalf("%s on %s: %v", q, killed.Name, err)
		}
	}
	return &commitWindow{r: r, killed: killed, peer: peer, kconn: clusterConn(t, cl, killed, r.db)}
}

// open stops the peer's fetches, then opens the window: from then on the killed replica's
// inserts are answered late.
func (w *commitWindow) open() {
	t := w.r.t
	t.Helper()
	w.fetches("STOP")
	w.dedupBefore = dedupedBlocks(t, w.r.cl, w.peer)
	if err := w.kconn.Exec(t.Context(), "INSERT INTO "+windowTable+" SELECT 1"); err != nil {
		t.Fatalf("open the commit window on %s: %v", w.killed.Name, err)
	}
}

// fetches stops or starts (verb) the peer's fetches of the local table and the count view.
func (w *commitWindow) fetches(verb string) {
	t := w.r.t
	t.Helper()
	for _, table := range []string{"processed_envelopes_local", countTable} {
		if err := w.r.cl.Exec(t.Context(), w.peer, "SYSTEM "+verb+" FETCHES "+w.r.db+"."+table); err != nil {
			t.Fatalf("SYSTEM %s FETCHES on %s: %v", verb, w.peer.Name, err)
		}
	}
}

// waitCommitted waits for an insert on the window's replica that is past its table and count
// view, in the slow view: committed, unanswered. The count view's part is committed after the
// table's, and the highest block number of the count table's parts rises with each commit
// (merges keep it): an insert is past both commits once that number has risen while the same
// insert runs. The time an insert has run says nothing of it: on a loaded machine an insert
// can take longer than the slow view's sleep to reach its commit.
func (w *commitWindow) waitCommitted() {
	t := w.r.t
	t.Helper()
	q := fmt.Sprintf("SELECT (SELECT max(max_block_number) FROM system.parts WHERE database = currentDatabase() "+
		"AND table = '%s' AND active) AS block, query_id FROM system.processes "+
		"WHERE query LIKE 'INSERT INTO%%processed_envelopes_local%%' LIMIT 1", countTable)
	var (
		running string // the insert seen running
		before  int64  // the count table's highest block number when it was first seen
	)
	waitFor(t, 30*time.Second, "an insert on "+w.killed.Name+" past its commit", func() bool {
		var (
			block int64
			qid   string
		)
		switch err := w.kconn.QueryRow(t.Context(), q).Scan(&block, &qid); {
		case errors.Is(err, sql.ErrNoRows):
			running = "" // between two inserts
			return false
		case err != nil:
			return false
		case qid != running:
			running, before = qid, block
			return false
		}
		return block > before
	}, w.r.svcs...)
}

// killedUnfetched checks, once the window's replica is killed, that its peer has parts of it
// (table and count view) to fetch, lets the peer fetch again (the parts wait for the killed
// replica), and returns how many blocks the peer has deduplicated since the window opened.
func (w *commitWindow) killedUnfetched() uint64 {
	t, cl := w.r.t, w.r.cl
	t.Helper()
	deduped := dedupedBlocks(t, cl, w.peer) - w.dedupBefore
	// The peer copies the shard's replication log into its queue on its own schedule (a
	// ZooKeeper watch): the killed replica's last commit may reach the queue a moment after
	// the kill.
	var unfetched map[string]uint64
	deadline := time.Now().Add(30 * time.Second)
	for {
		unfetched = unfetchedParts(t, cl, w.peer, w.r.db)
		if unfetched["processed_envelopes_local"] > 0 && unfetched[countTable] > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(pollEvery)
	}
	t.Logf("%s killed mid-insert; %s deduplicated %d retried blocks and has %v parts of the killed replica to fetch",
		w.killed.Name, w.peer.Name, deduped, unfetched)
	if unfetched["processed_envelopes_local"] == 0 || unfetched[countTable] == 0 {
		t.Errorf("%s has no part of the killed replica to fetch (%v) 30 s after the kill: the kill did not come before the peer fetched the insert",
			w.peer.Name, unfetched)
	}
	w.fetches("START")
	return deduped
}

// restart starts the killed replica again, as it was before the window (merges stopped; the
// window closed: the restart emptied its Memory table), and marks the end of the fault.
func (w *commitWindow) restart() {
	t, cl := w.r.t, w.r.cl
	t.Helper()
	ctx := t.Context()
	if err := cl.Start(ctx, w.killed); err != nil {
		t.Fatal(err)
	}
	if err := cl.WaitReady(ctx, w.killed); err != nil {
		t.Fatal(err)
	}
	// The restarted server merges again (SYSTEM STOP MERGES is not kept).
	q := "SYSTEM STOP MERGES " + w.r.db + ".processed_envelopes_local"
	if err := cl.Exec(ctx, w.killed, q); err != nil {
		t.Fatalf("%s on %s: %v", q, w.killed.Name, err)
	}
	var open uint64
	if err := clusterConn(t, cl, w.killed, w.r.db).QueryRow(ctx, "SELECT count() FROM "+windowTable).Scan(&open); err != nil || open != 0 {
		t.Fatalf("the commit window on %s after its restart: %d rows, %v; want it closed (0 rows)", w.killed.Name, open, err)
	}
	w.r.healed()
}

// finishWithViews waits for every envelope, stops the services once every message is
// acknowledged (nothing is inserted after that), then checks the table through the
// Distributed table (finishExact), the count views and the shards.
func (r *clusterRun) finishWithViews(fault string) {
	t := r.t
	t.Helper()
	r.pub.wait(t, 3*time.Minute)
	waitFinal(t, r.conn, faultN, 3*time.Minute, r.svcs...)
	r.f.recovery = time.Since(r.healedAt) // the fault's end -> every envelope stored
	finishExact(t, r.conn, r.natsURL, r.want, r.seed, &r.f, fault, r.svcs...)
	r.checkCountViews()
	r.checkShards()
}

// addCountViews puts a count per device and hour on every shard-local table — a
// ReplicatedSummingMergeTree fed by a materialized view, both ON CLUSTER — and stops the
// local tables' merges on every node, so that a copy stays in a raw count().
func (r *clusterRun) addCountViews() {
	t, cl := r.t, r.cl
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	on := " ON CLUSTER " + cl.ClusterName()
	for _, q := range []string{
		fmt.Sprintf("CREATE TABLE %[1]s.%[2]s%[3]s (end_device_id String, hour DateTime, envelopes UInt64) "+
			"ENGINE = ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/%[1]s/%[2]s', '{replica}') "+
			"PARTITION BY toYYYYMM(hour) ORDER BY (end_device_id, hour)", r.db, countTable, on),
		fmt.Sprintf("CREATE MATERIALIZED VIEW %[1]s.%[2]s%[3]s TO %[1]s.%[4]s AS "+
			"SELECT end_device_id, toStartOfHour(occurred_at) AS hour, count() AS envelopes "+
			"FROM %[1]s.processed_envelopes_local GROUP BY end_device_id, hour", r.db, countView, on, countTable),
	} {
		if err := cl.Exec(ctx, cl.Node(1, 1), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	for _, n := range cl.Nodes() {
		if err := cl.Exec(ctx, n, "SYSTEM STOP MERGES "+r.db+".processed_envelopes_local"); err != nil {
			t.Fatalf("stop merges on %s: %v", n.Name, err)
		}
	}
}

// dedupedBlocks returns how many inserted blocks node n has dropped as duplicates of blocks
// already committed in ZooKeeper (since it started).
func dedupedBlocks(t *testing.T, cl *chcluster.Cluster, n *chcluster.Node) uint64 {
	t.Helper()
	conn := clusterConn(t, cl, n, "default")
	var v uint64
	if err := conn.QueryRow(t.Context(), "SELECT sum(value) FROM system.events WHERE event = 'DuplicatedInsertedBlocks'").Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// unfetchedParts returns, per table of db, the parts node n has yet to fetch from its peers.
func unfetchedParts(t *testing.T, cl *chcluster.Cluster, n *chcluster.Node, db string) map[string]uint64 {
	t.Helper()
	conn := clusterConn(t, cl, n, db)
	rows, err := conn.Query(t.Context(), "SELECT table, count() FROM system.replication_queue "+
		"WHERE database = currentDatabase() AND type = 'GET_PART' GROUP BY table")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]uint64{}
	for rows.Next() {
		var (
			table string
			parts uint64
		)
		if err := rows.Scan(&table, &parts); err != nil {
			t.Fatal(err)
		}
		out[table] = parts
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// checkCountViews waits until every replica has fetched every part its shard committed, then
// checks on every node that the raw count() of the local table (merges stopped: copies
// count), its count() FINAL and the view's sum agree, that both replicas of a shard hold the
// same, and that the shards add up to every envelope. Then it starts the merges again.
//
// SYSTEM SYNC REPLICA cannot wait for the fetches here: it waits for the replica's whole
// queue, which holds the merges the shard's leader assigns and the stopped merges postpone.
func (r *clusterRun) checkCountViews() {
	t := r.t
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	type counts struct{ raw, final, view uint64 }
	perShard := make([]counts, r.cl.Shards())
	var parts []string
	for _, n := range r.cl.Nodes() {
		conn := clusterConn(t, r.cl, n, r.db)
		// Every entry of the shard's replication log copied into the queue, no fetch in it.
		waitFor(t, 3*time.Minute, n.Name+" fetched its shard's parts", func() bool {
			var behind uint64
			err := conn.QueryRow(ctx, "SELECT count() FROM system.replicas WHERE database = currentDatabase() "+
				"AND (log_pointer <= log_max_index OR inserts_in_queue > 0)").Scan(&behind)
			return err == nil && behind == 0
		})
		var c counts
		for q, v := range map[string]*uint64{
			"SELECT count() FROM processed_envelopes_local":       &c.raw,
			"SELECT count() FROM processed_envelopes_local FINAL": &c.final,
			"SELECT sum(envelopes) FROM " + countTable:            &c.view,
		} {
			if err := conn.QueryRow(ctx, q).Scan(v); err != nil {
				t.Fatalf("%s on %s: %v", q, n.Name, err)
			}
		}
		parts = append(parts, fmt.Sprintf("%s=%d/%d/%d", n.Name[strings.LastIndexByte(n.Name, '-')+1:], c.raw, c.final, c.view))
		if c.raw != c.final || c.view != c.final {
			t.Errorf("%s (shard %d): raw count() %d, count() FINAL %d, view sum %d: want one number (no copy in the table nor in the view)",
				n.Name, n.Shard, c.raw, c.final, c.view)
		}
		switch {
		case n.Replica == 1:
			perShard[n.Shard-1] = c
		case perShard[n.Shard-1] != c:
			t.Errorf("the replicas of shard %d disagree: raw/final/view %v and %v", n.Shard, perShard[n.Shard-1], c)
		}
	}
	var total counts
	for _, c := range perShard {
		total.raw, total.final, total.view = total.raw+c.raw, total.final+c.final, total.view+c.view
	}
	if total.raw != faultN || total.final != faultN || total.view != faultN {
		t.Errorf("the shards hold raw %d, FINAL %d, view sum %d: want %d each", total.raw, total.final, total.view, faultN)
	}
	t.Logf("VIEW scenario=%s raw/final/view_per_replica %s shards_total raw=%d final=%d view=%d published=%d",
		r.f.scenario, strings.Join(parts, " "), total.raw, total.final, total.view, faultN)
	for _, n := range r.cl.Nodes() {
		if err := r.cl.Exec(ctx, n, "SYSTEM START MERGES "+r.db+".processed_envelopes_local"); err != nil {
			t.Fatalf("start merges on %s: %v", n.Name, err)
		}
	}
}
