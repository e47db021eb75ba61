//go:build !ponixnats_noenvelope

package ponixnats

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	envelopev1 "buf.build/gen/go/ponix/ponix/protocolbuffers/go/envelope/v1"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// sameValidation checks that ValidateEnvelopeWire judges b as ValidateEnvelope
// judges the envelope b decodes to.
func sameValidation(t *testing.T, b []byte) {
	t.Helper()
	werr := ValidateEnvelopeWire(b)
	env := new(envelopev1.ProcessedEnvelope)
	if uerr := proto.Unmarshal(b, env); uerr != nil {
		// Not an envelope. The wire check reads only the ids and timestamps, so it may
		// pass bytes whose data field is broken (the store rejects those); anything it
		// rejects must be a decode error or an invalid envelope.
		if werr != nil && !errors.Is(werr, ErrDecode) && !errors.Is(werr, ErrInvalidEnvelope) {
			t.Fatalf("undecodable bytes: wire err = %v", werr)
		}
		return
	}
	verr := ValidateEnvelope(env)
	if (werr == nil) != (verr == nil) {
		t.Fatalf("wire err = %v, ValidateEnvelope = %v for %v", werr, verr, env)
	}
	if verr != nil && werr.Error() != verr.Error() {
		t.Fatalf("wire err %q, ValidateEnvelope %q", werr, verr)
	}
}

func TestValidateEnvelopeWireEqualsValidateEnvelope(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	ts := func() *timestamppb.Timestamp {
		switch r.IntN(5) {
		case 0:
			return nil
		case 1:
			return &timestamppb.Timestamp{Seconds: 1, Nanos: -1}
		case 2:
			return &timestamppb.Timestamp{Seconds: 253402300800}
		default:
			return timestamppb.New(time.Unix(r.Int64N(2e9), r.Int64N(1e9)))
		}
	}
	for range 5000 {
		env := &envelopev1.ProcessedEnvelope{
			EndDeviceId:    []string{"dev-1", "", "a.b", "a b", "ünï", "x>"}[r.IntN(6)],
			OrganizationId: []string{"org", ""}[r.IntN(2)],
			OccurredAt:     ts(),
			ProcessedAt:    ts(),
		}
		b, err := proto.Marshal(env)
		if err != nil {
			t.Fatal(err)
		}
		sameValidation(t, b)
		other, _ := proto.Marshal(&envelopev1.ProcessedEnvelope{EndDeviceId: "d2", OccurredAt: ts()})
		sameValidation(t, append(append([]byte{}, b...), other...)) // merged messages
		if len(b) > 0 {
			sameValidation(t, b[:r.IntN(len(b))])
		}
	}
	for _, garbage := range [][]byte{{0xff, 0xff}, []byte("hello world"), {0x0a, 0x02, 0xff, 0xfe}} {
		if err := ValidateEnvelopeWire(garbage); !errors.Is(err, ErrDecode) && !errors.Is(err, ErrInvalidEnvelope) {
			t.Errorf("ValidateEnvelopeWire(%q) = %v", garbage, err)
		}
	}
}

func FuzzValidateEnvelopeWire(f *testing.F) {
	for _, e := range []*envelopev1.ProcessedEnvelope{testEnvelope("dev-1"), {EndDeviceId: "a.b"}} {
		b, _ := proto.Marshal(e)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) { sameValidation(t, b) })
}

func TestValidateEnvelopeWireDoesNotAllocate(t *testing.T) {
	b, _ := proto.Marshal(testEnvelope("dev-1"))
	if n := testing.AllocsPerRun(200, func() {
		if err := ValidateEnvelopeWire(b); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("ValidateEnvelopeWire allocates %v times for a valid envelope", n)
	}
}

func TestEnvelopeWireProcessorResults(t *testing.T) {
	noTime := testEnvelope("dev-2")
	noTime.OccurredAt = nil
	batch := []jetstream.Msg{
		envMsg(t, testEnvelope("dev-0")), envMsg(t, noTime), &fakeMsg{subject: "x", data: []byte{0xff}},
		envMsg(t, testEnvelope("bad-3")), envMsg(t, testEnvelope("dev-4")),
	}
	var stored []string
	p := NewEnvelopeWireProcessor(func(_ context.Context, msgs []jetstream.Msg) error {
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
	res, err := p(context.Background(), batch)
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

	// A store outage holds the batch; when the consumer stops it is nak'd, never dead-lettered.
	boom := errors.New("down")
	p = NewEnvelopeWireProcessor(func(context.Context, []jetstream.Msg) error { return boom },
		WithHold(NewHold(HoldConfig{MinBackoff: time.Millisecond, Logger: discard})))
	res, err = p(stoppedContext(), batch[:1])
	if d, _ := res.Decision(0); err != nil || d.Action != ActionNak || !errors.Is(d.Err, boom) {
		t.Fatalf("outage: %+v, %v", d, err)
	}
}
