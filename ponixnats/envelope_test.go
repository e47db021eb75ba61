//go:build !ponix_noenvelope

package ponixnats

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	envelopev1 "buf.build/gen/go/ponix/ponix/protocolbuffers/go/envelope/v1"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ponix-go/ponix/envelope"
)

func testEnvelope(dev string) *envelopev1.ProcessedEnvelope {
	data, _ := structpb.NewStruct(map[string]any{"temperature": 21.5, "unit": "C", "ok": true})
	now := time.Date(2025, 11, 1, 12, 0, 0, 123, time.UTC)
	return &envelopev1.ProcessedEnvelope{
		EndDeviceId:    dev,
		OrganizationId: "org-1",
		OccurredAt:     timestamppb.New(now),
		ProcessedAt:    timestamppb.New(now.Add(time.Second)),
		Data:           data,
	}
}

func TestProducerSubjectValidation(t *testing.T) {
	p := NewEnvelopeProducer(nil, "processed_envelopes")
	s, err := p.Subject(testEnvelope("dev-1"))
	if err != nil || s != "processed_envelopes.dev-1" {
		t.Fatalf("Subject = %q, %v", s, err)
	}
	for _, bad := range []string{"", "a.b", "*", ">", "a b"} {
		_, err := p.Subject(testEnvelope(bad))
		var ve *envelope.ValidationError
		if !errors.Is(err, envelope.ErrInvalid) || !errors.As(err, &ve) || ve.Field != "end_device_id" || ve.Value != bad {
			t.Errorf("Subject(%q) err = %v", bad, err)
		}
		// Publish must fail before touching the (nil) JetStream.
		if err := p.Publish(context.Background(), testEnvelope(bad)); !errors.Is(err, envelope.ErrInvalid) {
			t.Errorf("Publish(%q) err = %v", bad, err)
		}
	}
}

func envMsg(t *testing.T, e *envelopev1.ProcessedEnvelope) jetstream.Msg {
	t.Helper()
	b, err := proto.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	return &fakeMsg{subject: "processed_envelopes." + e.GetEndDeviceId(), data: b}
}

func TestEnvelopeProcessorResults(t *testing.T) {
	invalid := testEnvelope("dev-2")
	invalid.ProcessedAt = nil
	batch := []jetstream.Msg{envMsg(t, testEnvelope("dev-1")), envMsg(t, invalid), &fakeMsg{subject: "x", data: []byte{0xff}}, envMsg(t, testEnvelope("dev-3"))}

	var stored []string
	p := NewEnvelopeProcessor(func(_ context.Context, in Batch[Decoded[*envelopev1.ProcessedEnvelope]]) error {
		envs := in.Items
		for _, e := range envs {
			stored = append(stored, e.Value.GetEndDeviceId())
		}
		return nil
	})
	res, err := p(context.Background(), msgBatch(batch))
	if err != nil {
		t.Fatal(err)
	}
	if len(stored) != 2 || stored[0] != "dev-1" || stored[1] != "dev-3" {
		t.Fatalf("stored %v; want [dev-1 dev-3]", stored)
	}
	want := []struct {
		a Action
		r Reason
	}{{ActionAck, ""}, {ActionDeadLetter, ReasonInvalid}, {ActionDeadLetter, ReasonDecode}, {ActionAck, ""}}
	for i, w := range want {
		d, ok := res.Decision(i)
		if !ok || d.Action != w.a || d.Reason != w.r {
			t.Fatalf("index %d = %+v; want %s/%s", i, d, w.a, w.r)
		}
	}
	if d, _ := res.Decision(1); !errors.Is(d.Err, envelope.ErrInvalid) {
		t.Fatalf("invalid envelope error = %v", d.Err)
	}

	// A sink fault never dead-letters: with the consumer stopping, the valid ones are released
	// and the invalid ones still dead-lettered.
	boom := errors.New("clickhouse down")
	p = NewEnvelopeProcessor(func(context.Context, Batch[Decoded[*envelopev1.ProcessedEnvelope]]) error { return boom },
		WithHold(NewHold(HoldConfig{MinBackoff: time.Millisecond, Logger: discard})))
	res, err = p(context.Background(), stoppedBatch(batch))
	if err != nil {
		t.Fatal(err)
	}
	for i, a := range []Action{ActionRelease, ActionDeadLetter, ActionDeadLetter, ActionRelease} {
		if d, _ := res.Decision(i); d.Action != a {
			t.Fatalf("store failure: index %d = %+v; want %s", i, d, a)
		}
	}
}

// rejectErr is a store error naming one envelope, as the ClickHouse writer's
// RowError does.
type rejectErr struct{ i int }

func (e rejectErr) Error() string      { return fmt.Sprintf("row %d cannot be stored", e.i) }
func (e rejectErr) RejectedIndex() int { return e.i }

func TestEnvelopeProcessorDeadLettersRejectedEnvelopesAndStoresTheRest(t *testing.T) {
	batch := []jetstream.Msg{
		envMsg(t, testEnvelope("dev-0")), envMsg(t, testEnvelope("bad-1")),
		envMsg(t, testEnvelope("dev-2")), envMsg(t, testEnvelope("bad-3")),
	}
	var calls int
	var stored []string
	p := NewEnvelopeProcessor(func(_ context.Context, in Batch[Decoded[*envelopev1.ProcessedEnvelope]]) error {
		envs := in.Items
		calls++
		for i, e := range envs {
			if strings.HasPrefix(e.Value.GetEndDeviceId(), "bad") {
				return fmt.Errorf("write: %w", rejectErr{i})
			}
		}
		for _, e := range envs {
			stored = append(stored, e.Value.GetEndDeviceId())
		}
		return nil
	})
	res, err := p(context.Background(), msgBatch(batch))
	if err != nil {
		t.Fatal(err)
	}
	if calls != 3 || strings.Join(stored, ",") != "dev-0,dev-2" {
		t.Fatalf("store called %d times, stored %v; want 3 calls storing dev-0,dev-2", calls, stored)
	}
	for i, w := range []Action{ActionAck, ActionDeadLetter, ActionAck, ActionDeadLetter} {
		d, ok := res.Decision(i)
		if !ok || d.Action != w {
			t.Fatalf("index %d = %+v; want %s", i, d, w)
		}
		if w == ActionDeadLetter && (d.Reason != ReasonRejected || !strings.Contains(d.Err.Error(), "cannot be stored")) {
			t.Errorf("index %d: reason %q, err %v", i, d.Reason, d.Err)
		}
	}
}
