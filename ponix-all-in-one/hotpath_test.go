package main

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	envelopev1 "buf.build/gen/go/ponix/ponix/protocolbuffers/go/envelope/v1"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ponix-go/ponix/ponixclickhouse"
	"github.com/ponix-go/ponix/ponixnats"
)

// benchMsg is a delivered JetStream message without a server: its bytes and its ack subject.
type benchMsg struct {
	jetstream.Msg // nil: calling anything not overridden panics
	subject       string
	reply         string
	data          []byte
}

func (m *benchMsg) Data() []byte    { return m.data }
func (m *benchMsg) Subject() string { return m.subject }
func (m *benchMsg) Reply() string   { return m.reply }

// BenchmarkHotPath is the CPU the service spends on each envelope between the fetch and the
// INSERT: the wire processor, then the store as the service builds it (an EnvelopeRow from the
// message's bytes and stream sequence) and the envelope encoder, as a BatchWriter runs it. The
// network, ClickHouse and the acks are left out. "valid": every envelope is stored;
// "invalid-1pct": every 100th envelope has no occurred_at and is dead-lettered.
func BenchmarkHotPath(b *testing.B) {
	for _, bench := range []struct {
		name       string
		invalidPer int // every invalidPer-th envelope is invalid; 0: none
	}{{"valid", 0}, {"invalid-1pct", 100}} {
		b.Run(bench.name, func(b *testing.B) { benchmarkHotPath(b, bench.invalidPer) })
	}
}

func benchmarkHotPath(b *testing.B, invalidPer int) {
	const n = 10000 // the service's default batch size
	data, err := structpb.NewStruct(map[string]any{"temperature": 21.5, "humidity": 40, "ok": true, "label": "sensor-1"})
	if err != nil {
		b.Fatal(err)
	}
	now := timestamppb.New(time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC))
	msgs := make([]jetstream.Msg, n)
	for i := range msgs {
		dev := fmt.Sprintf("dev-%04d", i%1000)
		env := &envelopev1.ProcessedEnvelope{EndDeviceId: dev, OrganizationId: "org-1", OccurredAt: now, ProcessedAt: now, Data: data}
		if invalidPer > 0 && i%invalidPer == invalidPer-1 {
			env.OccurredAt = nil
		}
		wire, err := proto.Marshal(env)
		if err != nil {
			b.Fatal(err)
		}
		msgs[i] = &benchMsg{subject: "processed_envelopes." + dev, reply: "$JS.ACK.processed_envelopes.ponix.1." + strconv.Itoa(i+1) + "." + strconv.Itoa(i+1) + ".1.0", data: wire}
	}
	enc := ponixclickhouse.NewEnvelopeEncoder()
	var rows []ponixclickhouse.EnvelopeRow
	store := func(_ context.Context, batch ponixnats.Batch[jetstream.Msg]) error {
		rows = rows[:0]
		for _, m := range batch.Items {
			seq, err := ponixnats.StreamSequence(m)
			if err != nil {
				return err
			}
			rows = append(rows, ponixclickhouse.EnvelopeRow{Wire: m.Data(), StreamSeq: seq, StreamCreated: batch.Stream.Created})
		}
		enc.Reset(len(rows))
		for i, r := range rows {
			if err := enc.Encode(r); err != nil {
				return &ponixclickhouse.RowError{Index: i, Err: err}
			}
		}
		return nil
	}
	process := ponixnats.NewEnvelopeWireProcessor(store)
	batch := ponixnats.Batch[jetstream.Msg]{Stream: ponixnats.StreamID{Name: "processed_envelopes", Created: now.AsTime()}, Consumer: "ponix", Items: msgs}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		res, err := process(ctx, batch)
		if err != nil {
			b.Fatal(err)
		}
		if d, ok := res.Decision(0); !ok || d.Action != ponixnats.ActionAck {
			b.Fatalf("first message: %+v", d)
		}
		if d, ok := res.Decision(n - 1); invalidPer > 0 && (!ok || d.Reason != ponixnats.ReasonInvalid) {
			b.Fatalf("last message: %+v", d)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/envelope")
}
