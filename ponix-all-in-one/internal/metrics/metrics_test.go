package metrics_test

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ponix-go/ponix/ponix-all-in-one/internal/metrics"
	"github.com/ponix-go/ponix/ponixclickhouse"
	"github.com/ponix-go/ponix/ponixnats"
)

type fakeConsumer struct {
	stats   ponixnats.Stats
	info    *jetstream.ConsumerInfo
	err     error
	standby bool
}

func (f *fakeConsumer) Stats() ponixnats.Stats { return f.stats }
func (f *fakeConsumer) Owner() bool            { return !f.standby }
func (f *fakeConsumer) Info(context.Context) (*jetstream.ConsumerInfo, error) {
	return f.info, f.err
}

func TestCountersAndHistograms(t *testing.T) {
	m := metrics.New("v1.2.3")
	m.Published(nil)
	m.Published(nil)
	m.Published(errors.New("no stream"))
	m.ObserveInsert(30, 0, 20*time.Millisecond, nil)
	m.ObserveInsert(5, 3, 3*time.Second, nil) // 3 of them found stored already
	m.ObserveInsert(7, 0, time.Second, errors.New("timeout"))
	// Parts refused as data while a batch is bisected are not sink faults: no insert error.
	refused := &ponixclickhouse.WriteError{Rows: 4, Op: "send", Err: &clickhouse.Exception{Code: 27, Message: "cannot parse"}}
	m.ObserveInsert(4, 0, time.Millisecond, refused)
	m.ObserveInsert(2, 0, time.Millisecond, refused)
	// A row the encoder refuses (nothing sent): a refused part, but no insert in the histograms.
	m.ObserveInsert(9, 0, time.Millisecond, &ponixclickhouse.RowError{Index: 3, Err: errors.New("no occurred_at")})

	want := `
# HELP ponix_envelopes_published_total Envelopes published to JetStream by the sample producer (acknowledged by the stream).
# TYPE ponix_envelopes_published_total counter
ponix_envelopes_published_total 2
# HELP ponix_publish_errors_total Failed publishes of the sample producer.
# TYPE ponix_publish_errors_total counter
ponix_publish_errors_total 1
# HELP ponix_envelopes_stored_total Envelopes committed to ClickHouse (before their messages are acked).
# TYPE ponix_envelopes_stored_total counter
ponix_envelopes_stored_total 35
# HELP ponix_insert_errors_total ClickHouse batch insert attempts that failed for a fault of the sink (a failing sink holds the batch and tries again; see ponix_sink_blocked). Parts of a batch refused as data while its bad records are isolated count in ponix_insert_refused_parts_total instead.
# TYPE ponix_insert_errors_total counter
ponix_insert_errors_total 1
# HELP ponix_insert_refused_parts_total Insert attempts that ClickHouse refused as data (a parse, type or value error) while the batch is split to find the records it refuses alone; those records are dead-lettered (ponix_envelopes_dead_lettered_total).
# TYPE ponix_insert_refused_parts_total counter
ponix_insert_refused_parts_total 3
# HELP ponix_envelopes_already_stored_total Envelopes delivered again (after a crash between an insert and its acks, an expired AckWait, a NATS restart, a consumer created anew) whose row was stored already: acknowledged without a second insert. They also count in ponix_envelopes_stored_total.
# TYPE ponix_envelopes_already_stored_total counter
ponix_envelopes_already_stored_total 3
# HELP ponix_build_info Build information of ponix-all-in-one; the value is always 1.
# TYPE ponix_build_info gauge
`
	err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want+buildInfoLine()),
		"ponix_envelopes_published_total", "ponix_publish_errors_total", "ponix_envelopes_stored_total", "ponix_insert_errors_total", "ponix_insert_refused_parts_total", "ponix_envelopes_already_stored_total", "ponix_build_info")
	if err != nil {
		t.Error(err)
	}
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sawGo bool
	for _, mf := range mfs {
		switch mf.GetName() {
		case "ponix_insert_batch_size":
			h := mf.GetMetric()[0].GetHistogram()
			if h.GetSampleCount() != 5 || h.GetSampleSum() != 48 {
				t.Errorf("batch size histogram count %d sum %v, want 5 and 48 (every attempt that sent rows)", h.GetSampleCount(), h.GetSampleSum())
			}
		case "ponix_insert_duration_seconds":
			h := mf.GetMetric()[0].GetHistogram()
			if h.GetSampleCount() != 5 || h.GetSampleSum() < 4.01 || h.GetSampleSum() > 4.03 {
				t.Errorf("duration histogram count %d sum %v, want 5 and 4.022", h.GetSampleCount(), h.GetSampleSum())
			}
		case "go_goroutines":
			sawGo = true
		}
	}
	if !sawGo {
		t.Error("no Go runtime metrics")
	}
}

func buildInfoLine() string {
	return `ponix_build_info{goversion="` + goVersion() + `",version="v1.2.3"} 1
`
}

func goVersion() string { return runtime.Version() }

func TestNilMetricsRecordNothing(t *testing.T) {
	var m *metrics.Metrics
	m.Published(nil)
	m.ObserveInsert(1, 0, time.Second, nil) // must not panic
}

func TestConsumerCollector(t *testing.T) {
	m := metrics.New("test")
	f := &fakeConsumer{
		stats: ponixnats.Stats{Messages: 10, Acked: 7, Naked: 2, DeadLettered: 1, Batches: 3},
		info:  &jetstream.ConsumerInfo{NumPending: 42, NumAckPending: 5, NumRedelivered: 1},
	}
	if err := m.WatchConsumer(f, "s1", "c1", time.Second, nil); err != nil {
		t.Fatal(err)
	}
	const labels = `{consumer="c1",stream="s1"}`
	want := "" +
		"# HELP ponix_envelopes_consumed_total Messages fetched from the JetStream consumer and handed to the processor (redeliveries included).\n" +
		"# TYPE ponix_envelopes_consumed_total counter\n" +
		"ponix_envelopes_consumed_total" + labels + " 10\n" +
		"# HELP ponix_envelopes_acked_total Messages acknowledged after their rows were committed.\n" +
		"# TYPE ponix_envelopes_acked_total counter\n" +
		"ponix_envelopes_acked_total" + labels + " 7\n" +
		"# HELP ponix_consumer_pending_messages Messages in the stream not yet delivered to the consumer (JetStream num_pending).\n" +
		"# TYPE ponix_consumer_pending_messages gauge\n" +
		"ponix_consumer_pending_messages" + labels + " 42\n" +
		"# HELP ponix_consumer_ack_pending_messages Messages delivered and not yet acknowledged (JetStream num_ack_pending).\n" +
		"# TYPE ponix_consumer_ack_pending_messages gauge\n" +
		"ponix_consumer_ack_pending_messages" + labels + " 5\n" +
		"# HELP ponix_consumer_info_ok 1 when the last consumer info request succeeded, 0 when it failed.\n" +
		"# TYPE ponix_consumer_info_ok gauge\n" +
		"ponix_consumer_info_ok" + labels + " 1\n"
	names := []string{"ponix_envelopes_consumed_total", "ponix_envelopes_acked_total", "ponix_consumer_pending_messages", "ponix_consumer_ack_pending_messages", "ponix_consumer_info_ok"}
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}

	// Counters move with the consumer; a failed info drops the gauges and
	// flags it.
	f.stats.Messages, f.stats.Released, f.stats.Redelivered = 15, 4, 3
	f.err = errors.New("timeout")
	if n, err := testutil.GatherAndCount(m.Registry(), "ponix_consumer_pending_messages"); err != nil || n != 0 {
		t.Errorf("pending gauge series with info failing = %d (%v), want 0", n, err)
	}
	want = "" +
		"# HELP ponix_envelopes_released_total Messages given back for redelivery without a verdict on them (a hold given back after PONIX_CLICKHOUSE_RETRY_SECS, a stop while held, a processor failure); never counted towards MaxDeliver.\n" +
		"# TYPE ponix_envelopes_released_total counter\n" +
		"ponix_envelopes_released_total" + labels + " 4\n" +
		"# HELP ponix_envelopes_redelivered_total Messages handed to the processor that had been delivered before (a restart, a crash, an expired AckWait, a release): their rows may already be stored.\n" +
		"# TYPE ponix_envelopes_redelivered_total counter\n" +
		"ponix_envelopes_redelivered_total" + labels + " 3\n" +
		"# HELP ponix_consumer_info_ok 1 when the last consumer info request succeeded, 0 when it failed.\n" +
		"# TYPE ponix_consumer_info_ok gauge\n" +
		"ponix_consumer_info_ok" + labels + " 0\n"
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "ponix_envelopes_released_total", "ponix_envelopes_redelivered_total", "ponix_consumer_info_ok"); err != nil {
		t.Error(err)
	}

	// The owner gauge follows the consumer: 1 while it consumes, 0 while it stands by.
	for _, standby := range []bool{false, true} {
		f.standby = standby
		want := "# HELP ponix_consumer_owner 1 while this instance consumes the durable (owns it, one ack per batch; always, one ack per message), 0 while it stands by.\n" +
			"# TYPE ponix_consumer_owner gauge\n" +
			"ponix_consumer_owner" + labels + " " + map[bool]string{false: "1", true: "0"}[standby] + "\n"
		if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "ponix_consumer_owner"); err != nil {
			t.Errorf("standby %v: %v", standby, err)
		}
	}
	if err := m.WatchConsumer(f, "s1", "c1", 0, nil); err == nil {
		t.Error("watching the same consumer twice was accepted")
	}
}

type fakeHold struct{ st ponixnats.HoldState }

func (f *fakeHold) State() ponixnats.HoldState { return f.st }

func TestSinkCollectorShowsTheHoldAndItsClass(t *testing.T) {
	m := metrics.New("test")
	h := &fakeHold{}
	if err := m.WatchSink(h, []ponixclickhouse.Class{ponixclickhouse.ClassUnreachable, ponixclickhouse.ClassStorage}); err != nil {
		t.Fatal(err)
	}
	want := "" +
		"# HELP ponix_sink_blocked 1 while a batch is held because ClickHouse fails with this class of error (unreachable, authentication, schema, storage, ...), else 0.\n" +
		"# TYPE ponix_sink_blocked gauge\n" +
		"ponix_sink_blocked{class=\"storage\"} 0\n" +
		"ponix_sink_blocked{class=\"unreachable\"} 0\n" +
		"# HELP ponix_last_stored_batch_timestamp_seconds Unix time of the last batch stored in ClickHouse; 0 when none was.\n" +
		"# TYPE ponix_last_stored_batch_timestamp_seconds gauge\n" +
		"ponix_last_stored_batch_timestamp_seconds 0\n"
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "ponix_sink_blocked", "ponix_last_stored_batch_timestamp_seconds"); err != nil {
		t.Error(err)
	}
	stored := time.Unix(1_700_000_000, 0)
	h.st = ponixnats.HoldState{Held: true, Class: "storage", Since: time.Now().Add(-90 * time.Second), LastStored: stored, Holds: 3}
	want = "" +
		"# HELP ponix_sink_blocked 1 while a batch is held because ClickHouse fails with this class of error (unreachable, authentication, schema, storage, ...), else 0.\n" +
		"# TYPE ponix_sink_blocked gauge\n" +
		"ponix_sink_blocked{class=\"storage\"} 1\n" +
		"ponix_sink_blocked{class=\"unreachable\"} 0\n" +
		"# HELP ponix_sink_holds_total Holds started: times a batch was held because ClickHouse failed.\n" +
		"# TYPE ponix_sink_holds_total counter\n" +
		"ponix_sink_holds_total 3\n" +
		"# HELP ponix_last_stored_batch_timestamp_seconds Unix time of the last batch stored in ClickHouse; 0 when none was.\n" +
		"# TYPE ponix_last_stored_batch_timestamp_seconds gauge\n" +
		"ponix_last_stored_batch_timestamp_seconds 1.7e+09\n"
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "ponix_sink_blocked", "ponix_sink_holds_total", "ponix_last_stored_batch_timestamp_seconds"); err != nil {
		t.Error(err)
	}
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		switch mf.GetName() {
		case "ponix_sink_blocked_seconds":
			if v := mf.GetMetric()[0].GetGauge().GetValue(); v < 89 || v > 120 {
				t.Errorf("ponix_sink_blocked_seconds = %v, want about 90", v)
			}
		case "ponix_seconds_since_last_stored_batch":
			if v := mf.GetMetric()[0].GetGauge().GetValue(); v < float64(time.Since(stored)/time.Second)-5 {
				t.Errorf("ponix_seconds_since_last_stored_batch = %v", v)
			}
		}
	}
}
