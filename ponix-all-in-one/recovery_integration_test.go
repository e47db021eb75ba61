//go:build integration

package main_test

// JetStream objects removed under the running service: the durable consumer (an operator's
// `nats consumer rm`) or the whole stream (`nats stream rm`). The service creates them again
// by itself, resumes where the rows stand, and never collapses a new envelope into an old row.

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	envelopev1 "buf.build/gen/go/ponix/ponix/protocolbuffers/go/envelope/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/ponix-go/ponix/ponixnats/natstest"
)

// The durable consumer is deleted mid-stream of 20,000: the service creates it again without
// a restart, resumes after the stored rows (at most one batch stored twice), and stores
// everything exactly once.
func TestRecoveryDurableConsumerDeleted(t *testing.T) {
	t.Parallel()
	db := chSrv.NewDatabase(t)
	r := startSinkRun(t, 301, "consumer-deleted", db, db.Conn, nil)
	js := dlqJS(t, r.natsURL)
	r.fault()
	if err := js.DeleteConsumer(context.Background(), "processed_envelopes", "ponix-all-in-one"); err != nil {
		t.Fatal(err)
	}
	r.finish("a deleted consumer", r.want)
	logs := r.svc.logs.String()
	if n := strings.Count(logs, "the durable consumer no longer exists"); n != 1 {
		t.Errorf("the deletion was logged %d times, want once:\n%s", n, logs)
	}
	if dups := r.f.raw - r.f.stored; dups > 500 {
		t.Errorf("%d rows stored twice, want at most one batch (500)", dups)
	}
}

// The durable consumer is deleted while ClickHouse is unreachable and the service has stored
// what was published (so no batch of it is held: one held would be finished first). Where the
// stored rows end cannot be read, so the consumer is created again at once at the last known ack
// floor (saying so); what is published next is held by the sink (/readyz names it) until
// ClickHouse is back, and nothing is stored twice.
func TestRecoveryConsumerDeletedWhileClickHouseDown(t *testing.T) {
	t.Parallel()
	db := chSrv.NewDatabase(t)
	proxy := startProxy(t, db.Config.Addr)
	r := startSinkRun(t, 302, "consumer-deleted+clickhouse-down", db, db.Conn, func(env map[string]string) {
		env["PONIX_CLICKHOUSE_NATIVE_URL"] = proxy.addr()
	})
	all := envelopes(faultN+500, r.seed) // the first faultN are r.want; 500 more after the fault
	r.pub.wait(t, 120*time.Second)
	waitRaw(t, db.Conn, faultN, 120*time.Second, r.svc) // caught up: no batch in hand
	js := dlqJS(t, r.natsURL)
	r.fault()
	proxy.setDown(true)
	if err := js.DeleteConsumer(context.Background(), "processed_envelopes", "ponix-all-in-one"); err != nil {
		t.Fatal(err)
	}
	waitLog(t, r.svc, "the durable consumer no longer exists", 30*time.Second)
	waitFor(t, 30*time.Second, "the durable consumer created again while ClickHouse is down", func() bool {
		_, err := js.Consumer(context.Background(), "processed_envelopes", "ponix-all-in-one")
		return err == nil
	}, r.svc)
	publish(t, r.natsURL, all[faultN:])
	r.expectHold(pipelineCheckSink, "", "", 0)
	if !strings.Contains(r.svc.logs.String(), "where the stored rows end cannot be read") {
		t.Errorf("the service did not say that it resumed without knowing where the rows end")
	}
	proxy.setDown(false)
	r.finish("a consumer deleted while ClickHouse was down", all)
	if dups := r.f.raw - r.f.stored; dups != 0 {
		t.Errorf("%d rows stored twice: the messages delivered again were not all checked", dups)
	}
}

// The stream is deleted while the service runs: the service creates it again (publishers can
// publish again), stores what is published into the new stream, and keeps the old rows. The
// new envelopes repeat the old ones' organization, time and device with other data, and the
// new stream's sequences start at 1 again: under a key of the stream sequence alone they would
// collapse into the old rows; with the stream's creation time they are rows of their own.
func TestRecoveryStreamDeleted(t *testing.T) {
	t.Parallel()
	const n = 10_000
	db := chSrv.NewDatabase(t)
	nsrv := natstest.New(t)
	ensureStream(t, nsrv.URL(), 1)
	old := envelopes(n, 303)
	env := faultEnv(t, db, nsrv.URL())
	env["PONIX_HTTP_ADDR"] = "127.0.0.1:0"
	s := startService(t, env)
	base := httpBase(t, s)
	publish(t, nsrv.URL(), old)
	waitFinal(t, db.Conn, n, 60*time.Second, s)
	before := readRows(t, db)

	js := dlqJS(t, nsrv.URL())
	start := time.Now()
	if err := js.DeleteStream(context.Background(), "processed_envelopes"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the stream created again", func() bool {
		_, err := js.Stream(context.Background(), "processed_envelopes")
		return err == nil
	}, s)
	t.Logf("stream created again %s after its deletion", time.Since(start).Round(time.Millisecond))

	fresh := make([]*envelopev1.ProcessedEnvelope, n)
	for i, e := range old {
		c := proto.Clone(e).(*envelopev1.ProcessedEnvelope)
		c.Data.Fields["corrected"] = structpb.NewBoolValue(true)
		fresh[i] = c
	}
	publish(t, nsrv.URL(), fresh)
	waitFinal(t, db.Conn, 2*n, 60*time.Second, s)
	waitReady(t, s, base, http.StatusOK, 30*time.Second)
	waitSettled(t, nsrv.URL(), 60*time.Second, s)
	stopService(t, s)

	final, _, raw := tableCounts(t, db.Conn)
	if final != 2*n {
		t.Errorf("FINAL holds %d rows, want %d: the old %d and the new %d (none collapsed into another)", final, 2*n, n, n)
	}
	t.Logf("FIGURES scenario=stream-deleted published=%d stored_final=%d raw=%d", 2*n, final, raw)
	var oldRows, newRows uint64
	if err := db.Conn.QueryRow(context.Background(),
		"SELECT countIf(data NOT LIKE '%corrected%'), countIf(data LIKE '%corrected%') FROM processed_envelopes FINAL").Scan(&oldRows, &newRows); err != nil {
		t.Fatal(err)
	}
	if oldRows != n || newRows != n {
		t.Errorf("FINAL: %d old and %d new rows, want %d of each", oldRows, newRows, n)
	}
	after := queryRows(t, db.Conn, "FINAL WHERE data NOT LIKE '%corrected%'")
	for id, r := range before {
		if a, ok := after[id]; !ok || a.occurred != r.occurred || a.org != r.org {
			t.Errorf("old row %s changed or lost", id)
		}
	}
	if n := len(dlqMessages(t, nsrv.URL())); n != 0 {
		t.Errorf("%d messages dead-lettered", n)
	}
	if !strings.Contains(s.logs.String(), "the stream was deleted: creating it again") {
		t.Error("the service did not say that it created the stream again")
	}
}
