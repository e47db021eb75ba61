//go:build !ponix_noenvelope

package ponixclickhouse

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	envelopev1 "buf.build/gen/go/ponix/ponix/protocolbuffers/go/envelope/v1"
	chproto "github.com/ClickHouse/ch-go/proto"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// benchWireEnvelopes returns n envelopes as ponix-bench publishes them (deterministic
// protobuf): 1,000 devices in 10 organizations, eight readings each, one nested.
func benchWireEnvelopes(tb testing.TB, n int) [][]byte {
	tb.Helper()
	rnd := rand.New(rand.NewPCG(1, 2))
	base := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	out := make([][]byte, n)
	for i := range out {
		dev := i % 1000
		occurred := base.Add(time.Duration(i) * time.Millisecond)
		env := &envelopev1.ProcessedEnvelope{
			EndDeviceId:    fmt.Sprintf("device-%04d", dev),
			OrganizationId: fmt.Sprintf("org-%02d", dev%10),
			OccurredAt:     timestamppb.New(occurred),
			ProcessedAt:    timestamppb.New(occurred.Add(time.Duration(20+rnd.IntN(200)) * time.Millisecond)),
			Data: &structpb.Struct{Fields: map[string]*structpb.Value{
				"temperature": structpb.NewNumberValue(float64(150+rnd.IntN(200)) / 10),
				"humidity":    structpb.NewNumberValue(float64(300+rnd.IntN(500)) / 10),
				"battery":     structpb.NewNumberValue(float64(rnd.IntN(101))),
				"rssi":        structpb.NewNumberValue(float64(-40 - rnd.IntN(80))),
				"status":      structpb.NewStringValue([...]string{"active", "idle", "maintenance"}[rnd.IntN(3)]),
				"firmware":    structpb.NewStringValue("v2.4.1"),
				"door_open":   structpb.NewBoolValue(rnd.IntN(10) == 0),
				"location": structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{
					"lat": structpb.NewNumberValue(52.52 + rnd.Float64()/100),
					"lon": structpb.NewNumberValue(13.40 + rnd.Float64()/100),
				}}),
			}},
		}
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(env)
		if err != nil {
			tb.Fatal(err)
		}
		out[i] = b
	}
	return out
}

// BenchmarkEnvelopeWrite is the client side of one insert of 10,000 envelopes (the service's
// default batch) from their wire bytes, without a server: BatchWriter.Write encodes them into
// fresh clickhouse-go columns (PrepareBatch makes new ones for every insert), then the columns
// are encoded into a native block as Send does.
func BenchmarkEnvelopeWrite(b *testing.B) {
	const n = 10000
	rows := make([]EnvelopeRow, n)
	for i, w := range benchWireEnvelopes(b, n) {
		rows[i] = EnvelopeRow{Wire: w, StreamSeq: uint64(i + 1)}
	}
	var last *colBatch
	w, err := newBatchWriter(colConn{tb: b, defs: envelopeTable, last: &last}, Table{Name: DefaultEnvelopeTable},
		func() Encoder[EnvelopeRow] { return NewEnvelopeEncoder() })
	if err != nil {
		b.Fatal(err)
	}
	var block chproto.Buffer
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := w.Write(ctx, rows); err != nil {
			b.Fatal(err)
		}
		block.Reset()
		for _, c := range last.cols {
			c.Encode(&block)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/envelope")
}
