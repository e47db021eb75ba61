//go:build !ponix_noenvelope

package ponixclickhouse

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	envelopev1 "buf.build/gen/go/ponix/ponix/protocolbuffers/go/envelope/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ponix-go/ponix/envelope"
)

func TestEnvelopeWriterRefusesAnInjectedTableName(t *testing.T) {
	if _, err := NewEnvelopeWriter(context.Background(), nil, Table{Name: "x`; DROP TABLE y; --"}); !errors.Is(err, ErrInvalidIdentifier) {
		t.Errorf("writer accepted an injected table name: %v", err)
	}
}

// envelopeTable is the migrations' table, as the envelope writer fills it.
var envelopeTable = []string{"organization_id String", "end_device_id String", "occurred_at DateTime", "processed_at DateTime",
	"data String", "stream_created_ns UInt64", "stream_seq UInt64"}

func validEnvelope(dev string) *envelopev1.ProcessedEnvelope {
	ok := timestamppb.New(time.Unix(1700000000, 0))
	data, _ := structpb.NewStruct(map[string]any{"v": 1.5})
	return &envelopev1.ProcessedEnvelope{EndDeviceId: dev, OrganizationId: "org-1", OccurredAt: ok, ProcessedAt: ok, Data: data}
}

// deadLetterReason is what ponixnats reads from a rejection: the DeadLetterReason of an error
// in its chain that has one ("" when none: the reason is ponixnats' default, rejected).
func deadLetterReason(err error) string {
	var r interface{ DeadLetterReason() string }
	if errors.As(err, &r) {
		return r.DeadLetterReason()
	}
	return ""
}

// The encoder validates while it encodes, in one pass over the bytes: a malformed or invalid
// envelope, or one the table cannot hold, fails the Write with a RowError at its index whose
// cause names the field (an *envelope.FieldError) and the problem, and says how a consumer
// dead-letters it (decode, invalid, or no reason of its own: rejected). Nothing is sent.
func TestEnvelopeEncoderRejectsWithFieldNames(t *testing.T) {
	mut := func(f func(e *envelopev1.ProcessedEnvelope)) *envelopev1.ProcessedEnvelope {
		e := validEnvelope("dev-bad")
		f(e)
		return e
	}
	marshal := func(e *envelopev1.ProcessedEnvelope) []byte {
		b, err := proto.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	inf := &structpb.Struct{Fields: map[string]*structpb.Value{"v": structpb.NewNumberValue(math.Inf(1))}}
	for _, tc := range []struct {
		name     string
		env      *envelopev1.ProcessedEnvelope // nil: wire only
		wire     []byte                        // nil: proto.Marshal(env)
		field    string
		sentinel error
		reason   string
	}{
		{"nil occurred_at", mut(func(e *envelopev1.ProcessedEnvelope) { e.OccurredAt = nil }), nil, "occurred_at", ErrNilTimestamp, "invalid"},
		{"nil processed_at", mut(func(e *envelopev1.ProcessedEnvelope) { e.ProcessedAt = nil }), nil, "processed_at", ErrNilTimestamp, "invalid"},
		{"before 1970", mut(func(e *envelopev1.ProcessedEnvelope) { e.OccurredAt = timestamppb.New(time.Unix(-1, 0)) }), nil, "occurred_at", ErrTimestampOutOfRange, ""},
		{"after 2106", mut(func(e *envelopev1.ProcessedEnvelope) { e.ProcessedAt = timestamppb.New(time.Unix(1<<32, 0)) }), nil, "processed_at", ErrTimestampOutOfRange, ""},
		{"invalid nanos", mut(func(e *envelopev1.ProcessedEnvelope) { e.OccurredAt = &timestamppb.Timestamp{Nanos: -1} }), nil, "occurred_at", ErrTimestampOutOfRange, "invalid"},
		{"Inf", mut(func(e *envelopev1.ProcessedEnvelope) { e.Data = inf }), nil, "data.v", envelope.ErrNonFiniteNumber, ""},
		{"empty end_device_id", mut(func(e *envelopev1.ProcessedEnvelope) { e.EndDeviceId = "" }), nil, "end_device_id", envelope.ErrInvalid, "invalid"},
		{"end_device_id not a subject token", mut(func(e *envelopev1.ProcessedEnvelope) { e.EndDeviceId = "a.b" }), nil, "end_device_id", envelope.ErrInvalid, "invalid"},
		{"empty organization_id", mut(func(e *envelopev1.ProcessedEnvelope) { e.OrganizationId = "" }), nil, "organization_id", envelope.ErrInvalid, "invalid"},
		{"garbage", nil, []byte{0xff, 0xfe, 0xfd}, "envelope", envelope.ErrMalformed, "decode"},
		{"id not UTF-8", nil, []byte{0x0a, 0x02, 0xff, 0xfe}, "end_device_id", envelope.ErrMalformed, "decode"},
		{"data malformed", nil, append(marshal(mut(func(e *envelopev1.ProcessedEnvelope) { e.Data = nil })), 0x1a, 0x02, 0x0a, 0x05), "data", envelope.ErrMalformed, "decode"},
		{"empty bytes", nil, []byte{}, "end_device_id", envelope.ErrInvalid, "invalid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wire := tc.wire
			if wire == nil {
				wire = marshal(tc.env)
			}
			paths := map[string]EnvelopeRow{"wire": {Wire: wire}}
			if tc.env != nil {
				paths["decoded"] = EnvelopeRow{Envelope: tc.env}
			}
			for path, bad := range paths {
				var last *colBatch
				w, err := newBatchWriter(colConn{tb: t, defs: envelopeTable, last: &last}, Table{Name: DefaultEnvelopeTable}, func() Encoder[EnvelopeRow] { return NewEnvelopeEncoder() })
				if err != nil {
					t.Fatal(err)
				}
				rows := []EnvelopeRow{{Wire: marshal(validEnvelope("dev-0"))}, {Envelope: validEnvelope("dev-1")}, bad, {Wire: marshal(validEnvelope("dev-3"))}}
				err = w.Write(context.Background(), rows)
				var re *RowError
				if !errors.As(err, &re) || re.Index != 2 || Classify(err) != ClassRow {
					t.Fatalf("%s: err = %v, want a RowError at index 2", path, err)
				}
				var fe *envelope.FieldError
				if !errors.As(err, &fe) || fe.Field != tc.field || !errors.Is(err, tc.sentinel) || !strings.Contains(err.Error(), tc.field) {
					t.Fatalf("%s: err = %v, want FieldError %s wrapping %v", path, err, tc.field, tc.sentinel)
				}
				if got := deadLetterReason(err); got != tc.reason {
					t.Errorf("%s: %v: dead-letter reason %q, want %q", path, err, got, tc.reason)
				}
				if last != nil {
					t.Fatalf("%s: a batch was prepared for a Write with a bad row", path)
				}
			}
			e := NewEnvelopeEncoder()
			e.Reset(1)
			if err := e.Encode(EnvelopeRow{Wire: wire, StreamSeq: 1}); err == nil {
				t.Fatal("accepted")
			}
			if len(e.ids) != 0 || len(e.idEnds) != 0 || len(e.ends) != 0 || len(e.buf) != 0 {
				t.Fatal("a rejected row left data in the encoder")
			}
		})
	}
	e := NewEnvelopeEncoder()
	e.Reset(1)
	if err := e.Encode(EnvelopeRow{}); !errors.Is(err, envelope.ErrInvalid) {
		t.Fatalf("an empty row: %v, want an invalid envelope", err)
	}
}

// Valid rows, given decoded or as bytes, all reach the batch.
func TestEnvelopeWriterAppendsValidRows(t *testing.T) {
	var last *colBatch
	w, err := newBatchWriter(colConn{tb: t, defs: envelopeTable, last: &last}, Table{Name: DefaultEnvelopeTable}, func() Encoder[EnvelopeRow] { return NewEnvelopeEncoder() })
	if err != nil {
		t.Fatal(err)
	}
	b, _ := proto.Marshal(validEnvelope("dev-0"))
	if err := w.Write(context.Background(), []EnvelopeRow{{Wire: b, StreamSeq: 1}, {Envelope: validEnvelope("dev-1"), StreamSeq: 2}}); err != nil {
		t.Fatal(err)
	}
	if last == nil || last.rows() != 2 || last.value(1, 0) != "dev-0" || last.value(1, 1) != "dev-1" || last.value(4, 0) != `{"v":1.5}` {
		t.Fatalf("batch %+v", last)
	}
}

func BenchmarkEnvelopeEncode(b *testing.B) {
	data, _ := structpb.NewStruct(map[string]any{"temperature": 21.5, "humidity": 40, "ok": true, "label": "sensor-1"})
	now := timestamppb.Now()
	env := &envelopev1.ProcessedEnvelope{OrganizationId: "org", EndDeviceId: "dev", OccurredAt: now, ProcessedAt: now, Data: data}
	const batch = 1000
	e := NewEnvelopeEncoder()
	b.ReportAllocs()
	for b.Loop() {
		e.Reset(batch)
		for i := range batch {
			if err := e.Encode(EnvelopeRow{Envelope: env, StreamSeq: uint64(i)}); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/envelope")
}
