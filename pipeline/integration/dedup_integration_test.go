//go:build integration

package integration

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	envelopev1 "buf.build/gen/go/ponix/ponix/protocolbuffers/go/envelope/v1"

	"github.com/ponix-go/ponix/pipeline"
)

// A message delivered again (here: fetched and never acknowledged, as by an instance killed
// between its insert and its acks) whose row is already stored is acknowledged without a
// second insert: the table holds each message once even without FINAL, and a materialized view
// on it counts each once.
func TestRedeliveredMessagesAlreadyStoredAreNotInsertedAgain(t *testing.T) {
	t.Parallel()
	ch := srv.Config(newDatabaseName(t))
	var alreadyStored, inserted atomic.Int64
	r := newRun(t, ch, func(c *pipeline.Config[*envelopev1.ProcessedEnvelope, event]) {
		c.Consumer.AckWait = time.Second
		c.Observe = func(ins pipeline.Insert[*envelopev1.ProcessedEnvelope]) {
			alreadyStored.Add(int64(ins.Stored))
			if ins.Err == nil {
				inserted.Add(int64(len(ins.Records) - ins.Stored))
			}
		}
	})
	if err := r.p.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	conn := openDB(t, ch)
	for _, q := range []string{
		"SYSTEM STOP MERGES " + tableName, // a copy would otherwise collapse before the raw count
		"CREATE MATERIALIZED VIEW events_per_device ENGINE = SummingMergeTree() ORDER BY end_device_id " +
			"AS SELECT end_device_id, count() AS n FROM " + tableName + " GROUP BY end_device_id",
	} {
		if err := conn.Exec(t.Context(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	seqs := r.publishEnvelopes("dev1", 100)

	// A first delivery that stores the first 60 rows and dies before acknowledging anything.
	cons, err := r.js.Consumer(t.Context(), streamName, durableName)
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.FetchNoWait(100)
	if err != nil {
		t.Fatal(err)
	}
	fetched := 0
	for range batch.Messages() {
		fetched++
	}
	if fetched != 100 {
		t.Fatalf("fetched %d messages, want 100", fetched)
	}
	info, err := r.js.Stream(t.Context(), streamName)
	if err != nil {
		t.Fatal(err)
	}
	created := info.CachedInfo().Created.UnixNano()
	if err := conn.Exec(t.Context(), fmt.Sprintf(
		"INSERT INTO %s (end_device_id, organization_id, occurred_at, stream_created_ns, stream_seq) "+
			"SELECT 'dev1', 'org', toDateTime('2026-12-04 00:00:00'), %d, number FROM system.numbers WHERE number BETWEEN %d AND %d LIMIT 60",
		tableName, created, seqs[0], seqs[59])); err != nil {
		t.Fatal(err)
	}

	// The pipeline gets the 100 messages again after AckWait: 60 are stored already.
	r.start()
	waitRows(t, conn, seqs) // FINAL and raw: each message once
	// One INSERT writes the table, then the view: the rows can show in the table a moment
	// before the view has them. Observe runs once the INSERT has returned.
	waitFor(t, "the pipeline's INSERT returned", func() (bool, string) {
		n := inserted.Load()
		return n >= 40, fmt.Sprintf("%d rows inserted", n)
	})
	var viewed uint64
	if err := conn.QueryRow(t.Context(), "SELECT sum(n) FROM events_per_device").Scan(&viewed); err != nil {
		t.Fatal(err)
	}
	if viewed != 100 {
		t.Errorf("the materialized view counts %d rows, want 100 (a copy inserted again is counted twice)", viewed)
	}
	if n := alreadyStored.Load(); n != 60 {
		t.Errorf("Observe saw %d records already stored, want 60", n)
	}
	r.wantDeadLetters(nil)
}
