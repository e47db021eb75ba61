//go:build integration && !ponix_noenvelope

package integration

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	envelopev1 "buf.build/gen/go/ponix/ponix/protocolbuffers/go/envelope/v1"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/ponix-go/ponix/ponixnats"
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

func TestIntegrationEnvelopeProducerDeduplicates(t *testing.T) {
	ctx := context.Background()
	_, js := connectJS(t, testURL)
	stream := testStream(t, js)
	p := ponixnats.NewEnvelopeProducer(js, stream)

	env := testEnvelope("dev-1")
	if err := p.Publish(ctx, env); err != nil {
		t.Fatal(err)
	}
	if err := p.Publish(ctx, env); err != nil { // republish: dropped by Nats-Msg-Id
		t.Fatal(err)
	}
	other := testEnvelope("dev-2")
	if err := p.PublishBatch(ctx, []*envelopev1.ProcessedEnvelope{env, other, other}); err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 2 {
		t.Fatalf("stream holds %d messages; want 2 (duplicates dropped)", info.State.Msgs)
	}
	raw, err := st.GetLastMsgForSubject(ctx, stream+".dev-2")
	if err != nil {
		t.Fatal(err)
	}
	var got envelopev1.ProcessedEnvelope
	if err := proto.Unmarshal(raw.Data, &got); err != nil || !proto.Equal(&got, other) {
		t.Fatalf("stored envelope differs: %v %v", err, &got)
	}
	if raw.Header.Get(jetstream.MsgIDHeader) == "" {
		t.Fatal("no Nats-Msg-Id header")
	}
	// A bad id is refused before anything is published.
	if err := p.PublishBatch(ctx, []*envelopev1.ProcessedEnvelope{testEnvelope("dev-3"), testEnvelope("a.b")}); err == nil {
		t.Fatal("batch with an invalid end_device_id accepted")
	}
	if info, _ := st.Info(ctx); info.State.Msgs != 2 {
		t.Fatalf("invalid batch published %d messages", info.State.Msgs-2)
	}
}

func TestIntegrationEnvelopeProcessorStoresAndDeadLetters(t *testing.T) {
	ctx := context.Background()
	_, js := connectJS(t, testURL)
	stream := testStream(t, js)
	p := ponixnats.NewEnvelopeProducer(js, stream)
	var valid []*envelopev1.ProcessedEnvelope
	for _, dev := range []string{"dev-1", "dev-2", "dev-3"} {
		e := testEnvelope(dev)
		valid = append(valid, e)
		if err := p.Publish(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	invalid := testEnvelope("dev-4")
	invalid.OccurredAt = nil // the producer only checks the subject token
	if err := p.Publish(ctx, invalid); err != nil {
		t.Fatal(err)
	}

	var (
		mu     sync.Mutex
		stored []*envelopev1.ProcessedEnvelope
		fail   = true
	)
	store := func(_ context.Context, in ponixnats.Batch[ponixnats.Decoded[*envelopev1.ProcessedEnvelope]]) error {
		batch := in.Items
		mu.Lock()
		defer mu.Unlock()
		if fail { // the first insert fails: everything valid must come back
			fail = false
			return context.DeadlineExceeded
		}
		for _, d := range batch {
			stored = append(stored, d.Value)
		}
		return nil
	}
	cfg := baseConfig(stream)
	c, err := ponixnats.NewConsumer(ctx, js, cfg, ponixnats.NewEnvelopeProcessor(store))
	if err != nil {
		t.Fatal(err)
	}
	stop := runConsumer(t, c)
	eventually(t, 5*time.Second, "valid envelopes stored", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(stored) >= 3
	})
	waitSettled(t, js, c)
	stop()
	mu.Lock()
	if len(stored) != 3 {
		t.Fatalf("stored %d envelopes; want 3", len(stored))
	}
	for i := range valid {
		if !proto.Equal(stored[i], valid[i]) {
			t.Fatalf("stored[%d] = %v; want %v", i, stored[i], valid[i])
		}
	}
	mu.Unlock()

	dlq, err := js.Stream(ctx, stream+"_dlq")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := dlq.GetLastMsgForSubject(ctx, stream+"_dlq."+stream+".dev-4")
	if err != nil {
		t.Fatal(err)
	}
	if raw.Header.Get(ponixnats.HeaderDLQReason) != string(ponixnats.ReasonInvalid) || !strings.Contains(raw.Header.Get(ponixnats.HeaderDLQError), "occurred_at") {
		t.Fatalf("dead letter headers %v", raw.Header)
	}
	if info := consumerInfo(t, c); info.NumAckPending != 0 || info.NumPending != 0 {
		t.Fatalf("ack pending %d pending %d", info.NumAckPending, info.NumPending)
	}
	if s := c.Stats(); s.DeadLettered != 1 || s.Acked != 3 {
		t.Fatalf("stats %+v", s)
	}
}
