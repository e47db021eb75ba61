//go:build !ponixnats_noenvelope

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

func TestValidateEnvelope(t *testing.T) {
	if err := ValidateEnvelope(testEnvelope("dev-1")); err != nil {
		t.Fatalf("valid envelope rejected: %v", err)
	}
	cases := map[string]struct {
		mut   func(e *envelopev1.ProcessedEnvelope)
		field string
	}{
		"empty device":     {func(e *envelopev1.ProcessedEnvelope) { e.EndDeviceId = "" }, "end_device_id"},
		"dotted device":    {func(e *envelopev1.ProcessedEnvelope) { e.EndDeviceId = "a.b" }, "end_device_id"},
		"wildcard device":  {func(e *envelopev1.ProcessedEnvelope) { e.EndDeviceId = "a>" }, "end_device_id"},
		"space in device":  {func(e *envelopev1.ProcessedEnvelope) { e.EndDeviceId = "a b" }, "end_device_id"},
		"empty org":        {func(e *envelopev1.ProcessedEnvelope) { e.OrganizationId = "" }, "organization_id"},
		"no occurred_at":   {func(e *envelopev1.ProcessedEnvelope) { e.OccurredAt = nil }, "occurred_at"},
		"bad occurred_at":  {func(e *envelopev1.ProcessedEnvelope) { e.OccurredAt = &timestamppb.Timestamp{Nanos: -1} }, "occurred_at"},
		"no processed_at":  {func(e *envelopev1.ProcessedEnvelope) { e.ProcessedAt = nil }, "processed_at"},
		"bad processed_at": {func(e *envelopev1.ProcessedEnvelope) { e.ProcessedAt = &timestamppb.Timestamp{Seconds: 1 << 60} }, "processed_at"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			e := testEnvelope("dev-1")
			c.mut(e)
			err := ValidateEnvelope(e)
			var ve *ValidationError
			if !errors.As(err, &ve) || ve.Field != c.field || !errors.Is(err, ErrInvalidEnvelope) {
				t.Fatalf("err = %v; want ValidationError on %s", err, c.field)
			}
		})
	}
	if err := ValidateEnvelope(nil); !errors.Is(err, ErrInvalidEnvelope) {
		t.Fatalf("nil envelope: %v", err)
	}
}

func TestEnvelopeMsgIDDeterministic(t *testing.T) {
	a, b := testEnvelope("dev-1"), testEnvelope("dev-1")
	enc := func(e *envelopev1.ProcessedEnvelope) []byte {
		d, err := proto.MarshalOptions{Deterministic: true}.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	if EnvelopeMsgID(a, enc(a)) != EnvelopeMsgID(b, enc(b)) {
		t.Fatal("same envelope, different ids")
	}
	b.Data.Fields["temperature"] = structpb.NewNumberValue(22)
	if EnvelopeMsgID(a, enc(a)) == EnvelopeMsgID(b, enc(b)) {
		t.Fatal("different payloads at the same instant share an id")
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
		var ve *ValidationError
		if !errors.Is(err, ErrInvalidSubjectToken) || !errors.As(err, &ve) || ve.Field != "end_device_id" || ve.Value != bad {
			t.Errorf("Subject(%q) err = %v", bad, err)
		}
		// Publish must fail before touching the (nil) JetStream.
		if err := p.Publish(context.Background(), testEnvelope(bad)); !errors.Is(err, ErrInvalidSubjectToken) {
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
	p := NewEnvelopeProcessor(func(_ context.Context, envs []Decoded[*envelopev1.ProcessedEnvelope]) error {
		for _, e := range envs {
			stored = append(stored, e.Value.GetEndDeviceId())
		}
		return nil
	})
	res, err := p(context.Background(), batch)
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
	if d, _ := res.Decision(1); !errors.Is(d.Err, ErrInvalidEnvelope) {
		t.Fatalf("invalid envelope error = %v", d.Err)
	}

	// A sink fault never dead-letters: with the consumer stopping, the valid ones are nak'd
	// and the invalid ones still dead-lettered.
	boom := errors.New("clickhouse down")
	p = NewEnvelopeProcessor(func(context.Context, []Decoded[*envelopev1.ProcessedEnvelope]) error { return boom },
		WithHold(NewHold(HoldConfig{MinBackoff: time.Millisecond, Logger: discard})))
	res, err = p(stoppedContext(), batch)
	if err != nil {
		t.Fatal(err)
	}
	for i, a := range []Action{ActionNak, ActionDeadLetter, ActionDeadLetter, ActionNak} {
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
	p := NewEnvelopeProcessor(func(_ context.Context, envs []Decoded[*envelopev1.ProcessedEnvelope]) error {
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
	res, err := p(context.Background(), batch)
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
