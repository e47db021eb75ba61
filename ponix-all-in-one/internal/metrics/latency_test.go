package metrics_test

import (
	"strings"
	"testing"
	"time"

	envelopev1 "buf.build/gen/go/ponix/ponix/protocolbuffers/go/envelope/v1"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ponix-go/ponix/ponix-all-in-one/internal/metrics"
)

// wireMsg is a stored message: only its data is read.
type wireMsg struct {
	jetstream.Msg
	data []byte
}

func (m wireMsg) Data() []byte { return m.data }

func envelopeMsg(t testing.TB, processed time.Time) jetstream.Msg {
	t.Helper()
	b, err := proto.Marshal(&envelopev1.ProcessedEnvelope{
		EndDeviceId: "d1", OrganizationId: "o1",
		OccurredAt: timestamppb.New(processed.Add(-time.Second)), ProcessedAt: timestamppb.New(processed),
	})
	if err != nil {
		t.Fatal(err)
	}
	return wireMsg{data: b}
}

func TestObserveStoredRecordsTheNewestStoredEnvelope(t *testing.T) {
	m := metrics.New("test")
	if n, err := testutil.GatherAndCount(m.Registry(), "ponix_newest_stored_envelope_timestamp_seconds", "ponix_newest_stored_envelope_age_seconds"); err != nil || n != 0 {
		t.Fatalf("newest stored envelope series before anything is stored: %d (%v), want none", n, err)
	}
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	// The caller passes each stored batch's last envelope.
	m.ObserveStored(envelopeMsg(t, base).Data(), base.Add(2*time.Second))
	// A batch whose last message is older (a redelivery) does not move the newest back.
	m.ObserveStored(envelopeMsg(t, base.Add(-10*time.Minute)).Data(), base.Add(3*time.Second))
	// Bytes that are not an envelope are not sampled; an empty batch neither.
	m.ObserveStored([]byte{0xff, 0xff}, base)
	m.ObserveStored(nil, base)
	var nilMetrics *metrics.Metrics
	nilMetrics.ObserveStored(envelopeMsg(t, base).Data(), base) // records nothing, no panic

	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		switch mf.GetName() {
		case "ponix_end_to_end_latency_seconds":
			h := mf.GetMetric()[0].GetHistogram()
			got["count"], got["sum"] = float64(h.GetSampleCount()), h.GetSampleSum()
			if !strings.Contains(mf.GetHelp(), "last message") {
				t.Errorf("help %q does not say what is sampled", mf.GetHelp())
			}
		case "ponix_newest_stored_envelope_timestamp_seconds":
			got["newest"] = mf.GetMetric()[0].GetGauge().GetValue()
		case "ponix_newest_stored_envelope_age_seconds":
			got["age"] = mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	if got["count"] != 2 || got["sum"] != 2+603 {
		t.Errorf("latency histogram count %v sum %v, want 2 and 605 (2 s, then 603 s)", got["count"], got["sum"])
	}
	if want := float64(base.Unix()); got["newest"] != want {
		t.Errorf("newest stored processed_at %v, want %v", got["newest"], want)
	}
	if age := got["age"]; age < 3600 || age > 3600+60 {
		t.Errorf("newest stored envelope age %v s, want about an hour", age)
	}
}

// The cost ObserveStored adds to each stored batch (one envelope parsed, one histogram
// observation), whatever the batch size.
func BenchmarkObserveStored(b *testing.B) {
	m := metrics.New("bench")
	newest := envelopeMsg(b, time.Now()).Data()
	b.ReportAllocs()
	for b.Loop() {
		m.ObserveStored(newest, time.Now())
	}
}
