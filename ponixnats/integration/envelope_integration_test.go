//go:build integration && !ponix_noenvelope

package integration

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	envelopev1 "buf.build/gen/go/ponix/ponix/protocolbuffers/go/envelope/v1"
	"github.com/nats-io/nats.go/jetstream"
	envpkg "github.com/ponix-go/ponix/envelope"
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

// wireRowError is a store's rejection of one row, as ponixclickhouse.RowError is.
type wireRowError struct {
	i   int
	err error
}

func (e *wireRowError) Error() string      { return "row " + strconv.Itoa(e.i) + ": " + e.err.Error() }
func (e *wireRowError) Unwrap() error      { return e.err }
func (e *wireRowError) RejectedIndex() int { return e.i }

// The wire processor does not check the messages: the store validates while it reads the bytes
// (as the ClickHouse envelope encoder does), and the reasons of the dead letters come from its
// errors: decode for bytes that are not an envelope, invalid for an invalid envelope.
func TestIntegrationEnvelopeWireProcessorDeadLettersWithTheStoresReasons(t *testing.T) {
	ctx := context.Background()
	_, js := connectJS(t, testURL)
	stream := testStream(t, js)
	p := ponixnats.NewEnvelopeProducer(js, stream)
	for _, dev := range []string{"dev-1", "dev-2", "dev-3"} {
		if err := p.Publish(ctx, testEnvelope(dev)); err != nil {
			t.Fatal(err)
		}
	}
	invalid := testEnvelope("dev-4")
	invalid.OccurredAt = nil // the producer only checks the subject token
	if err := p.Publish(ctx, invalid); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, stream+".garbage", []byte{0xff, 0xfe}); err != nil {
		t.Fatal(err)
	}

	var (
		mu     sync.Mutex
		stored []string
	)
	store := func(_ context.Context, in ponixnats.Batch[jetstream.Msg]) error {
		for i, m := range in.Items {
			var w envpkg.Wire
			err := w.Parse(m.Data())
			if err == nil {
				err = w.Validate()
			}
			if err != nil {
				return &wireRowError{i, err}
			}
		}
		mu.Lock()
		defer mu.Unlock()
		for _, m := range in.Items {
			stored = append(stored, m.Subject())
		}
		return nil
	}
	c, err := ponixnats.NewConsumer(ctx, js, baseConfig(stream), ponixnats.NewEnvelopeWireProcessor(store))
	if err != nil {
		t.Fatal(err)
	}
	stop := runConsumer(t, c)
	eventually(t, 10*time.Second, "every message stored or dead-lettered", func() bool {
		s := c.Stats()
		return s.Acked+s.DeadLettered == 5
	})
	stop()
	mu.Lock()
	if got := strings.Join(stored, ","); got != stream+".dev-1,"+stream+".dev-2,"+stream+".dev-3" {
		t.Fatalf("stored %s", got)
	}
	mu.Unlock()
	dlq, err := js.Stream(ctx, stream+"_dlq")
	if err != nil {
		t.Fatal(err)
	}
	for subject, want := range map[string]struct {
		reason ponixnats.Reason
		names  string
	}{"dev-4": {ponixnats.ReasonInvalid, "occurred_at"}, "garbage": {ponixnats.ReasonDecode, "malformed"}} {
		raw, err := dlq.GetLastMsgForSubject(ctx, stream+"_dlq."+stream+"."+subject)
		if err != nil {
			t.Fatalf("dead letter of %s: %v", subject, err)
		}
		if raw.Header.Get(ponixnats.HeaderDLQReason) != string(want.reason) || !strings.Contains(raw.Header.Get(ponixnats.HeaderDLQError), want.names) {
			t.Errorf("dead letter of %s: headers %v, want reason %s and an error naming %q", subject, raw.Header, want.reason, want.names)
		}
	}
	// The producer's only header, Nats-Msg-Id, which the consumer keeps as a string while it
	// holds the message, reaches the dead letter.
	src, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	orig, err := src.GetLastMsgForSubject(ctx, stream+".dev-4")
	if err != nil {
		t.Fatal(err)
	}
	dl, err := dlq.GetLastMsgForSubject(ctx, stream+"_dlq."+stream+".dev-4")
	if err != nil {
		t.Fatal(err)
	}
	if id := orig.Header.Get(jetstream.MsgIDHeader); len(orig.Header) != 1 || id == "" || dl.Header.Get(ponixnats.HeaderOriginalMsgID) != id {
		t.Errorf("original headers %v, dead letter's %s = %q", orig.Header, ponixnats.HeaderOriginalMsgID, dl.Header.Get(ponixnats.HeaderOriginalMsgID))
	}
	if info := consumerInfo(t, c); info.NumAckPending != 0 || info.NumPending != 0 {
		t.Fatalf("ack pending %d pending %d", info.NumAckPending, info.NumPending)
	}
}
