//go:build !ponix_noenvelope

package ponixclickhouse

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	envelopev1 "buf.build/gen/go/ponix/ponix/protocolbuffers/go/envelope/v1"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ponix-go/ponix/envelope"
)

func TestEnvelopeWriterRefusesAnInjectedTableName(t *testing.T) {
	if _, err := NewEnvelopeWriter(context.Background(), nil, Table{Name: "x`; DROP TABLE y; --"}); !errors.Is(err, ErrInvalidIdentifier) {
		t.Errorf("writer accepted an injected table name: %v", err)
	}
}

func TestEnvelopeEncoderRejectsWithFieldNames(t *testing.T) {
	ok := timestamppb.New(time.Unix(1700000000, 0))
	for _, tc := range []struct {
		name     string
		env      *envelopev1.ProcessedEnvelope
		field    string
		sentinel error
	}{
		{"nil occurred_at", &envelopev1.ProcessedEnvelope{ProcessedAt: ok}, "occurred_at", ErrNilTimestamp},
		{"nil processed_at", &envelopev1.ProcessedEnvelope{OccurredAt: ok}, "processed_at", ErrNilTimestamp},
		{"before 1970", &envelopev1.ProcessedEnvelope{OccurredAt: timestamppb.New(time.Unix(-1, 0)), ProcessedAt: ok}, "occurred_at", ErrTimestampOutOfRange},
		{"after 2106", &envelopev1.ProcessedEnvelope{OccurredAt: ok, ProcessedAt: timestamppb.New(time.Unix(1<<32, 0))}, "processed_at", ErrTimestampOutOfRange},
		{"invalid nanos", &envelopev1.ProcessedEnvelope{OccurredAt: &timestamppb.Timestamp{Nanos: -1}, ProcessedAt: ok}, "occurred_at", ErrTimestampOutOfRange},
		{"Inf", &envelopev1.ProcessedEnvelope{OccurredAt: ok, ProcessedAt: ok, Data: &structpb.Struct{Fields: map[string]*structpb.Value{"v": structpb.NewNumberValue(math.Inf(1))}}}, "data.v", envelope.ErrNonFiniteNumber},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := NewEnvelopeEncoder()
			e.Reset(1)
			err := e.Encode(EnvelopeRow{Envelope: tc.env, StreamSeq: 1})
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field || !errors.Is(err, tc.sentinel) {
				t.Fatalf("err = %v, want FieldError %s wrapping %v", err, tc.field, tc.sentinel)
			}
			if len(e.orgs) != 0 || len(e.ends) != 0 || len(e.buf) != 0 {
				t.Fatal("a rejected row left data in the encoder")
			}
		})
	}
	e := NewEnvelopeEncoder()
	e.Reset(1)
	if err := e.Encode(EnvelopeRow{}); err == nil {
		t.Fatal("nil envelope accepted")
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
