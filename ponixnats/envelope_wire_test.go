//go:build !ponix_noenvelope

package ponixnats

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

func TestEnvelopeWireProcessorResults(t *testing.T) {
	noTime := testEnvelope("dev-2")
	noTime.OccurredAt = nil
	batch := []jetstream.Msg{
		envMsg(t, testEnvelope("dev-0")), envMsg(t, noTime), &fakeMsg{subject: "x", data: []byte{0xff}},
		envMsg(t, testEnvelope("bad-3")), envMsg(t, testEnvelope("dev-4")),
	}
	var stored []string
	p := NewEnvelopeWireProcessor(func(_ context.Context, in Batch[jetstream.Msg]) error {
		msgs := in.Items
		for i, m := range msgs {
			if strings.HasSuffix(m.Subject(), "bad-3") {
				return rejectErr{i}
			}
		}
		for _, m := range msgs {
			stored = append(stored, m.Subject())
		}
		return nil
	})
	res, err := p(context.Background(), msgBatch(batch))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(stored, ",") != "processed_envelopes.dev-0,processed_envelopes.dev-4" {
		t.Fatalf("stored %v", stored)
	}
	want := []struct {
		a Action
		r Reason
	}{{ActionAck, ""}, {ActionDeadLetter, ReasonInvalid}, {ActionDeadLetter, ReasonDecode}, {ActionDeadLetter, ReasonRejected}, {ActionAck, ""}}
	for i, w := range want {
		if d, ok := res.Decision(i); !ok || d.Action != w.a || d.Reason != w.r {
			t.Fatalf("index %d = %+v; want %s/%s", i, d, w.a, w.r)
		}
	}
	if d, _ := res.Decision(1); !strings.Contains(d.Err.Error(), "occurred_at") {
		t.Errorf("invalid envelope error %v does not name the field", d.Err)
	}

	// A store outage holds the batch; when the consumer stops it is released, never dead-lettered.
	boom := errors.New("down")
	p = NewEnvelopeWireProcessor(func(context.Context, Batch[jetstream.Msg]) error { return boom },
		WithHold(NewHold(HoldConfig{MinBackoff: time.Millisecond, Logger: discard})))
	res, err = p(context.Background(), stoppedBatch(batch[:1]))
	if d, _ := res.Decision(0); err != nil || d.Action != ActionRelease || !errors.Is(d.Err, boom) {
		t.Fatalf("outage: %+v, %v", d, err)
	}
}
