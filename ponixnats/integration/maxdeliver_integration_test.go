//go:build integration

package integration

import (
	"context"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/ponix-go/ponix/ponixnats"
)

// A message whose AckWait expires at its last delivery (here: fetched twice by
// a "crashed" instance of the same durable that never acks) is dropped by
// JetStream without any processor hearing of it. The running Consumer hears
// the MAX_DELIVERIES advisory and dead-letters it from the stream.
func TestIntegrationMaxDeliverAfterAckWaitExpiryDeadLetters(t *testing.T) {
	ctx := context.Background()
	_, js := connectJS(t, testURL)
	stream := testStream(t, js)

	cfg := baseConfig(stream)
	cfg.MaxDeliver = 2
	cfg.AckWait = time.Second
	var seen atomic.Int64
	c, err := ponixnats.NewConsumer(ctx, js, cfg, func(_ context.Context, b []jetstream.Msg) (ponixnats.Result, error) {
		seen.Add(int64(len(b)))
		return ponixnats.AckAll(len(b)), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	const n = 5
	publishN(t, js, stream+".dev", n, 0)

	// The crashed instance: two deliveries of every message, never acked.
	raw, err := js.Consumer(ctx, stream, cfg.Durable)
	if err != nil {
		t.Fatal(err)
	}
	for delivery := 1; delivery <= cfg.MaxDeliver; delivery++ {
		if delivery > 1 {
			time.Sleep(cfg.AckWait + 200*time.Millisecond)
		}
		b, err := raw.Fetch(n, jetstream.FetchMaxWait(2*time.Second))
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

	stop := runConsumer(t, c)
	eventually(t, 10*time.Second, "every expired message dead-lettered", func() bool {
		return c.Stats().MaxDeliverAdvisories == n
	})
	stop()
	if s := seen.Load(); s != 0 {
		t.Errorf("processor saw %d messages; JetStream must not deliver past MaxDeliver", s)
	}
	st := c.Stats()
	if st.DeadLettered != n || st.MaxDelivered != n || st.DeadLetterFailed != 0 {
		t.Errorf("stats %+v; want %d dead-lettered at MaxDeliver", st, n)
	}
	dlq, err := js.Stream(ctx, stream+"_dlq")
	if err != nil {
		t.Fatal(err)
	}
	info, err := dlq.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != n {
		t.Fatalf("dead-letter stream holds %d messages, want %d", info.State.Msgs, n)
	}
	seqs := map[string]bool{}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := dlq.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		h := m.Header
		if h.Get(ponixnats.HeaderDLQReason) != string(ponixnats.ReasonMaxDeliver) || h.Get(ponixnats.HeaderNumDelivered) != strconv.Itoa(cfg.MaxDeliver) ||
			!strings.Contains(h.Get(ponixnats.HeaderDLQError), "AckWait expired") || h.Get(ponixnats.HeaderOriginalSubject) != stream+".dev" {
			t.Errorf("dead letter %d headers %v", seq, h)
		}
		seqs[h.Get(ponixnats.HeaderOriginalSequence)] = true
		if want := string(m.Data); want != strconv.Itoa(int(mustAtoi(t, h.Get(ponixnats.HeaderOriginalSequence))-1)) {
			t.Errorf("dead letter %d carries %q, not the original payload of sequence %s", seq, m.Data, h.Get(ponixnats.HeaderOriginalSequence))
		}
	}
	if len(seqs) != n {
		t.Errorf("dead letters of %d distinct sequences, want %d", len(seqs), n)
	}
}

func mustAtoi(t *testing.T, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
