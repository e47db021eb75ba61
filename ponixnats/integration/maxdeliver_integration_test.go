//go:build integration

package integration

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/ponix-go/ponix/ponixnats"
)

// Deliveries that end without an answer (an instance that crashed, was killed or stalled
// while holding them, as during a sink fault and a crash loop) never spend a message's
// deliveries. A durable consumer left by an older release with a JetStream max_deliver of 2,
// whose messages were each delivered twice to such an instance, is taken over: its
// max_deliver becomes unlimited and the running Consumer processes every message; nothing is
// dead-lettered.
func TestIntegrationDeliveriesWithoutAnswerNeverExhaustAMessage(t *testing.T) {
	ctx := context.Background()
	_, js := connectJS(t, testURL)
	stream := testStream(t, js)

	cfg := baseConfig(stream)
	cfg.MaxDeliver = 2
	cfg.AckWait = time.Second
	const n = 5
	publishN(t, js, stream+".dev", n, 0)

	// The older release's durable, and the crashed instance: two deliveries of every
	// message, never acked.
	raw, err := js.CreateConsumer(ctx, stream, jetstream.ConsumerConfig{
		Durable: cfg.Durable, AckPolicy: jetstream.AckExplicitPolicy, AckWait: cfg.AckWait, MaxDeliver: 2,
	})
	if err != nil {
		t.Fatal(err)
	}
	for delivery := 1; delivery <= 2; delivery++ {
		// The second fetch waits for the redeliveries, after AckWait.
		b, err := raw.Fetch(n, jetstream.FetchMaxWait(cfg.AckWait+10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		for range b.Messages() {
			got++
		}
		if got != n {
			t.Fatalf("delivery %d: fetched %d of %d messages", delivery, got, n)
		}
	}
	// The second deliveries expire too: JetStream will not deliver the messages again (it
	// marks nothing when it gives up; its own clock says when AckWait passed).
	eventually(t, 10*time.Second, "AckWait passed since the second deliveries, on the server's clock", func() bool {
		info, err := raw.Info(ctx)
		return err == nil && info.NumAckPending == n && info.Delivered.Last != nil &&
			info.TimeStamp.Sub(*info.Delivered.Last) > cfg.AckWait
	})

	var seen atomic.Int64
	c, err := ponixnats.NewConsumer(ctx, js, cfg, func(_ context.Context, in ponixnats.Batch[jetstream.Msg]) (ponixnats.Result, error) {
		b := in.Items
		seen.Add(int64(len(b)))
		return ponixnats.AckAll(len(b)), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.MaxDeliver != -1 {
		t.Fatalf("the durable's max_deliver is %d after the take-over, want -1 (unlimited)", info.Config.MaxDeliver)
	}
	stop := runConsumer(t, c)
	eventually(t, 10*time.Second, "every message processed and acked", func() bool { return c.Stats().Acked == n })
	stop()
	st := c.Stats()
	if st.DeadLettered != 0 || st.MaxDelivered != 0 || st.Redelivered != n {
		t.Errorf("stats %+v; want none dead-lettered and %d redelivered", st, n)
	}
	if _, err := js.Stream(ctx, stream+"_dlq"); err == nil {
		dlq, _ := js.Stream(ctx, stream+"_dlq")
		if di, err := dlq.Info(ctx); err == nil && di.State.Msgs != 0 {
			t.Errorf("dead-letter stream holds %d messages, want 0", di.State.Msgs)
		}
	}
	if s := seen.Load(); s != n {
		t.Errorf("processor saw %d messages, want %d", s, n)
	}
}
