//go:build integration && cluster

package main_test

// Exactly once into the table and into a materialized view on it across a replica failover
// (issue 19): a ReplicatedSummingMergeTree view (a count per device and hour) on every
// shard-local table, the local tables' merges stopped (a copy stays visible to a raw count()),
// the preferred replica of shard 2 SIGKILLed while an insert it has committed is still
// unanswered, and the same batch retried on the shard's other replica.

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ponix-go/ponix/ponixclickhouse/chcluster"
)

const (
	// countView is the materialized view on processed_envelopes_local, countTable its target.
	countView  = "envelopes_per_device"
	countTable = "envelopes_per_device_local"
	// slowView, on the killed replica only, sleeps after the count view has been written: it
	// holds the insert's answer back for about two seconds after the insert is committed in
	// ZooKeeper (views are written in the order of their names, after the table).
	slowView = "zz_slow_answer"
	// failedOver is the service's log line for an insert stored by a shard's other replica.
	failedOver = "insert failed over to another replica of the shard"
)

// One replica SIGKILLed after it committed an insert and before it answered it: the writer
// sends the identical block to the shard's other replica, which deduplicates it (the block's
// ID is in ZooKeeper) and so does not feed its view either; the killed replica's part and view
// part reach the other replica once it is started again. Raw count() = count() FINAL = the
// view's sum = every envelope, on both replicas of each shard.
func clusterReplicaFailoverWithView(t *testing.T, cl *chcluster.Cluster) {
	killed, peer := cl.Node(2, 1), cl.Node(2, 2) // the preferred replica of shard 2, and its peer
	r := newClusterRun(t, cl, 209, "replica-failover-with-view", cl.Node(1, 2), cl.Nodes())
	t.Cleanup(func() { // before healAll's cleanup: the drops need every node
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		if err := cl.Heal(ctx, killed); err != nil {
			t.Errorf("heal %s: %v", killed.Name, err)
		}
		dropOnCluster(t, cl, r.db, slowView, countView, countTable)
	})
	for _, s := range r.svcs {
		waitLog(t, s, "fits the writer: consuming", 2*time.Minute) // the service migrated the database
	}
	r.addCountViews()
	r.publish()

	ctx := t.Context()
	if err := cl.Exec(ctx, killed, fmt.Sprintf("CREATE MATERIALIZED VIEW %s.%s ENGINE = Null AS "+
		"SELECT sleepEachRow(0.008) AS slept FROM %[1]s.processed_envelopes_local", r.db, slowView)); err != nil {
		t.Fatal(err)
	}
	// The peer fetches nothing from now on: what the killed replica commits stays on it alone.
	fetches := func(verb string) {
		for _, table := range []string{"processed_envelopes_local", countTable} {
			if err := cl.Exec(ctx, peer, "SYSTEM "+verb+" FETCHES "+r.db+"."+table); err != nil {
				t.Fatalf("SYSTEM %s FETCHES on %s: %v", verb, peer.Name, err)
			}
		}
	}
	fetches("STOP")
	dedupBefore := dedupedBlocks(t, cl, peer)
	kconn := clusterConn(t, cl, killed, r.db)
	r.fault()
	// An insert that is past its table and count view, in the slow view: committed, unanswered.
	waitFor(t, 30*time.Second, "an insert on "+killed.Name+" past its commit", func() bool {
		var n uint64
		err := kconn.QueryRow(ctx, "SELECT count() FROM system.processes "+
			"WHERE query LIKE 'INSERT INTO%processed_envelopes_local%' AND elapsed > 1").Scan(&n)
		return err == nil && n > 0
	}, r.svcs...)
	if err := cl.Kill(ctx, killed); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "a failover logged", func() bool { return strings.Contains(r.logsOf(), failedOver) }, r.svcs...)
	deduped := dedupedBlocks(t, cl, peer) - dedupBefore
	unfetched := unfetchedParts(t, cl, peer, r.db)
	t.Logf("%s killed mid-insert; %s deduplicated %d retried blocks and has %v parts of the killed replica to fetch",
		killed.Name, peer.Name, deduped, unfetched)
	if deduped == 0 {
		t.Errorf("%s deduplicated no block: the kill did not come between a commit and its answer", peer.Name)
	}
	if unfetched["processed_envelopes_local"] == 0 || unfetched[countTable] == 0 {
		t.Errorf("%s has no part of the killed replica to fetch (%v): the kill did not come before the peer fetched the insert", peer.Name, unfetched)
	}
	fetches("START") // the parts wait for the killed replica
	// The shard works on one replica for a while.
	time.Sleep(5 * time.Second)
	if err := cl.Start(ctx, killed); err != nil {
		t.Fatal(err)
	}
	if err := cl.WaitReady(ctx, killed); err != nil {
		t.Fatal(err)
	}
	// The restarted server merges again (SYSTEM STOP MERGES is not kept) and has the slow view.
	for _, q := range []string{"SYSTEM STOP MERGES " + r.db + ".processed_envelopes_local", "DROP TABLE " + r.db + "." + slowView} {
		if err := cl.Exec(ctx, killed, q); err != nil {
			t.Fatalf("%s on %s: %v", q, killed.Name, err)
		}
	}
	r.healed()

	r.pub.wait(t, 3*time.Minute)
	waitFinal(t, r.conn, faultN, 3*time.Minute, r.svcs...)
	r.f.recovery = time.Since(r.healedAt) // the replica back -> every envelope stored
	// Every message acknowledged and the services stopped: nothing is inserted after this.
	finishExact(t, r.conn, r.natsURL, r.want, r.seed, &r.f, "a replica failover", r.svcs...)
	r.checkCountViews()
	r.checkShards()
	if !strings.Contains(r.logsOf(), failedOver) {
		t.Errorf("no failover to the other replica logged")
	}
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
