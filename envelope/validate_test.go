package envelope

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	envelopev1 "buf.build/gen/go/ponix/ponix/protocolbuffers/go/envelope/v1"
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

func TestValidate(t *testing.T) {
	if err := Validate(testEnvelope("dev-1")); err != nil {
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
		"nbsp in device":   {func(e *envelopev1.ProcessedEnvelope) { e.EndDeviceId = "a\u00a0b" }, "end_device_id"},
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
			err := Validate(e)
			var ve *ValidationError
			if !errors.As(err, &ve) || ve.Field != c.field || !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v; want ValidationError on %s", err, c.field)
			}
		})
	}
	if err := Validate(nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("nil envelope: %v", err)
	}
}

func TestMsgIDIsDeterministicAndDistinct(t *testing.T) {
	a := testEnvelope("dev-1")
	b1, _ := proto.MarshalOptions{Deterministic: true}.Marshal(a)
	b2, _ := proto.MarshalOptions{Deterministic: true}.Marshal(proto.Clone(a))
	if MsgID(a, b1) != MsgID(a, b2) {
		t.Fatal("same envelope, different ids")
	}
	c := testEnvelope("dev-1")
	c.Data.Fields["temperature"] = structpb.NewNumberValue(22)
	bc, _ := proto.MarshalOptions{Deterministic: true}.Marshal(c)
	if MsgID(a, b1) == MsgID(c, bc) {
		t.Fatal("two readings of one device at one instant share an id")
	}
	if id := MsgID(a, b1); id[:len("org-1:dev-1:")] != "org-1:dev-1:" {
		t.Errorf("id %q", id)
	}
}

func TestSubject(t *testing.T) {
	if s, err := Subject("processed_envelopes", testEnvelope("dev-1")); err != nil || s != "processed_envelopes.dev-1" {
		t.Fatalf("Subject = %q, %v", s, err)
	}
	for _, bad := range []string{"", "a.b", "a*", "a>", "a b", "a\tb"} {
		if _, err := Subject("s", testEnvelope(bad)); !errors.Is(err, ErrInvalid) {
			t.Errorf("Subject for %q: %v", bad, err)
		}
	}
}

// sameValidation checks that ValidateWire judges b as Validate judges the envelope b decodes
// to.
func sameValidation(t *testing.T, b []byte) {
	t.Helper()
	werr := ValidateWire(b)
	env := new(envelopev1.ProcessedEnvelope)
	if uerr := proto.Unmarshal(b, env); uerr != nil {
		// Not an envelope. The wire check reads only the ids and timestamps, so it may pass
		// bytes whose data field is broken (a store rejects those); anything it rejects must
		// be malformed or invalid.
		if werr != nil && !errors.Is(werr, ErrMalformed) && !errors.Is(werr, ErrInvalid) {
			t.Fatalf("undecodable bytes: wire err = %v", werr)
		}
		return
	}
	verr := Validate(env)
	if (werr == nil) != (verr == nil) {
		t.Fatalf("wire err = %v, Validate = %v for %v", werr, verr, env)
	}
	if verr != nil && werr.Error() != verr.Error() {
		t.Fatalf("wire err %q, Validate %q", werr, verr)
	}
}

func TestValidateWireEqualsValidate(t *testing.T) {
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
		if err := ValidateWire(garbage); !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrInvalid) {
			t.Errorf("ValidateWire(%q) = %v", garbage, err)
		}
	}
}

func FuzzValidateWire(f *testing.F) {
	for _, e := range []*envelopev1.ProcessedEnvelope{testEnvelope("dev-1"), {EndDeviceId: "a.b"}} {
		b, _ := proto.Marshal(e)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) { sameValidation(t, b) })
}

func TestValidateWireDoesNotAllocate(t *testing.T) {
	b, _ := proto.Marshal(testEnvelope("dev-1"))
	if n := testing.AllocsPerRun(200, func() {
		if err := ValidateWire(b); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("ValidateWire allocates %v times for a valid envelope", n)
	}
}

// Parse reads what proto.Unmarshal reads: the last id, merged timestamps, data; and marks a
// repeated data field as irregular.
func TestParseMatchesProtoUnmarshal(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for range 2000 {
		a, b := testEnvelope([]string{"x", "dev-2"}[r.IntN(2)]), testEnvelope("dev-3")
		if r.IntN(2) == 0 {
			b.OccurredAt = &timestamppb.Timestamp{Nanos: 5} // merges: seconds from a, nanos from b
		}
		if r.IntN(3) == 0 {
			b.Data = nil
		}
		one, _ := proto.Marshal(a)
		two, _ := proto.Marshal(b)
		buf := append(append([]byte{}, one...), two...)
		var w Wire
		if err := w.Parse(buf); err != nil {
			t.Fatal(err)
		}
		env := new(envelopev1.ProcessedEnvelope)
		if err := proto.Unmarshal(buf, env); err != nil {
			t.Fatal(err)
		}
		if string(w.EndDeviceID) != env.GetEndDeviceId() || string(w.OrganizationID) != env.GetOrganizationId() ||
			w.OccurredAt.Seconds != env.GetOccurredAt().GetSeconds() || w.OccurredAt.Nanos != env.GetOccurredAt().GetNanos() ||
			w.ProcessedAt.Seconds != env.GetProcessedAt().GetSeconds() {
			t.Fatalf("Parse %+v, proto.Unmarshal %v", w, env)
		}
		if w.Irregular != (b.Data != nil) {
			t.Fatalf("Irregular = %v with data given %d times", w.Irregular, 1+map[bool]int{true: 1}[b.Data != nil])
		}
	}
	var w Wire
	if err := w.Parse([]byte{0x0a, 0x02, 0xff, 0xfe}); !errors.Is(err, ErrMalformed) {
		t.Errorf("invalid UTF-8 id: %v", err)
	}
}

// AppendWire gives what Append gives for the Struct the bytes decode to.
func TestAppendWireEqualsAppend(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	var e DataJSON
	for range 3000 {
		s := randomStruct(r, 0)
		b, err := proto.MarshalOptions{Deterministic: r.IntN(2) == 0}.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		want, werr := e.Append(nil, s)
		got, gerr := e.AppendWire(nil, b)
		if (werr == nil) != (gerr == nil) || string(want) != string(got) {
			t.Fatalf("AppendWire %s (%v), Append %s (%v)", got, gerr, want, werr)
		}
		if werr != nil && werr.Error() != gerr.Error() {
			t.Fatalf("errors differ: wire %v, decoded %v", gerr, werr)
		}
	}
}

// deadLetterReason is what ponixnats reads from a rejection: the DeadLetterReason of an error
// in the chain that has one.
func deadLetterReason(err error) string {
	var r interface{ DeadLetterReason() string }
	if errors.As(err, &r) {
		return r.DeadLetterReason()
	}
	return ""
}

// Every error says what it is about: malformed bytes are dead-lettered as "decode", an
// invalid envelope as "invalid" (naming the field, also as a *FieldError), and a value that
// only a sink cannot hold carries no reason of its own.
func TestErrorsNameTheFieldAndTheirDeadLetterReason(t *testing.T) {
	noTime := testEnvelope("dev-1")
	noTime.OccurredAt = nil
	badTime := testEnvelope("dev-1")
	badTime.ProcessedAt = &timestamppb.Timestamp{Seconds: 1, Nanos: 1e9}
	badOrg := testEnvelope("dev-1")
	badOrg.OrganizationId = ""
	for _, tc := range []struct {
		name     string
		bytes    []byte
		field    string
		sentinel error
		reason   string
	}{
		{"garbage", []byte{0xff, 0xff}, "envelope", ErrMalformed, "decode"},
		{"truncated timestamp", []byte{0x12, 0x02, 0x08}, "envelope", ErrMalformed, "decode"},
		{"id not UTF-8", []byte{0x0a, 0x02, 0xff, 0xfe}, "end_device_id", ErrMalformed, "decode"},
		{"id not a subject token", mustMarshal(t, testEnvelope("a.b")), "end_device_id", ErrInvalid, "invalid"},
		{"empty organization", mustMarshal(t, badOrg), "organization_id", ErrInvalid, "invalid"},
		{"no occurred_at", mustMarshal(t, noTime), "occurred_at", ErrNilTimestamp, "invalid"},
		{"processed_at nanos out of range", mustMarshal(t, badTime), "processed_at", ErrTimestampOutOfRange, "invalid"},
		{"empty bytes", nil, "end_device_id", ErrInvalid, "invalid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidateWire(tc.bytes)
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field || !errors.Is(err, tc.sentinel) {
				t.Fatalf("err = %v; want a FieldError on %s wrapping %v", err, tc.field, tc.sentinel)
			}
			if got := deadLetterReason(err); got != tc.reason {
				t.Errorf("dead-letter reason %q, want %q", got, tc.reason)
			}
			if !strings.Contains(err.Error(), tc.field) {
				t.Errorf("%q does not name %s", err, tc.field)
			}
		})
	}
	if got := deadLetterReason(fmt.Errorf("store: %w", &PathError{Path: "x", Err: ErrNonFiniteNumber})); got != "" {
		t.Errorf("a NaN in data has dead-letter reason %q, want none (the sink decides)", got)
	}
}

func mustMarshal(t *testing.T, env *envelopev1.ProcessedEnvelope) []byte {
	t.Helper()
	b, err := proto.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
