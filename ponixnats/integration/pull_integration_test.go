//go:build integration

package integration

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/ponix-go/ponix/ponixnats"
)

// seen is what a processor saw of one delivered message.
type seen struct {
	data, subject, header string
	md                    *jetstream.MsgMetadata
	batch                 int // the size of the batch it came in
}

// TestIntegrationDeliveredMessagesCarryWhatTheServerSent checks the messages the consumer's own
// pull requests bring (not nats.go's Fetch): body, subject, headers and the metadata of the ack
// subject, against what the stream stores; a byte bound ends each pull early; a redelivery counts.
func TestIntegrationDeliveredMessagesCarryWhatTheServerSent(t *testing.T) {
	ctx := context.Background()
	_, js := connectJS(t, testURL)
	stream := testStream(t, js)
	const n = 25
	for i := range n {
		m := nats.NewMsg(stream + ".dev" + strconv.Itoa(i%3))
		m.Data = fmt.Appendf(nil, "%-100d", i) // 100 bytes
		m.Header.Set("X-Test", "h"+strconv.Itoa(i))
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	var (
		mu       sync.Mutex
		got      = map[uint64][]seen{} // by stream sequence, each delivery
		released bool
	)
	cfg := baseConfig(stream)
	cfg.FetchMaxBytes = 350 // three messages' bodies: each pull ends at the byte bound
	c, err := ponixnats.NewConsumer(ctx, js, cfg, func(_ context.Context, in ponixnats.Batch[jetstream.Msg]) (ponixnats.Result, error) {
		mu.Lock()
		defer mu.Unlock()
		res := ponixnats.NewResult(len(in.Items))
		for i, m := range in.Items {
			md, err := m.Metadata()
			if err != nil {
				t.Errorf("Metadata of %q: %v", m.Data(), err)
				return ponixnats.AckAll(len(in.Items)), nil
			}
			got[md.Sequence.Stream] = append(got[md.Sequence.Stream], seen{string(m.Data()), m.Subject(), m.Headers().Get("X-Test"), md, len(in.Items)})
			if md.Sequence.Stream == 7 && !released {
				released = true
				res.Nak(i, 10*time.Millisecond) // once: its next delivery counts 2
				continue
			}
			res.Ack(i)
		}
		return res, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	stop := runConsumer(t, c)
	eventually(t, 10*time.Second, "every message delivered, the released one twice", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == n && len(got[7]) == 2
	})
	stop()
	waitSettled(t, js, c)

	st, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	var lastCSeq uint64
	for seq := uint64(1); seq <= n; seq++ {
		stored, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		for d, s := range got[seq] {
			if s.data != string(stored.Data) || s.subject != stored.Subject || s.header != stored.Header.Get("X-Test") {
				t.Errorf("sequence %d: got %q on %s (header %q); stored %q on %s (header %q)",
					seq, s.data, s.subject, s.header, stored.Data, stored.Subject, stored.Header.Get("X-Test"))
			}
			md := s.md
			if md.Stream != stream || md.Consumer != cfg.Durable || md.NumDelivered != uint64(d+1) || !md.Timestamp.Equal(stored.Time) {
				t.Errorf("sequence %d, delivery %d: metadata %+v; want stream %s, consumer %s, delivered %d, time %v",
					seq, d+1, md, stream, cfg.Durable, d+1, stored.Time)
			}
			if d == 0 && md.NumPending != n-seq {
				t.Errorf("sequence %d: %d pending at its first delivery, want %d", seq, md.NumPending, n-seq)
			}
			if md.Sequence.Consumer <= lastCSeq && d == 0 {
				t.Errorf("sequence %d: consumer sequence %d after %d", seq, md.Sequence.Consumer, lastCSeq)
			}
			if d == 0 {
				lastCSeq = md.Sequence.Consumer
			}
			if s.batch*len(stored.Data) > cfg.FetchMaxBytes {
				t.Errorf("sequence %d came in a batch of %d: more bytes than FetchMaxBytes (%d)", seq, s.batch, cfg.FetchMaxBytes)
			}
		}
	}
}
