//go:build integration

package integration

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ponix-go/ponix/ponixnats"
)

// The consumer hands its processor each batch with the batch's identity in the value: the
// stream's name and creation time (the incarnation a de-duplication key needs), the durable's
// name and a Stopping channel that is open while the consumer runs.
func TestIntegrationBatchCarriesItsStreamIncarnation(t *testing.T) {
	_, js := connectJS(t, testURL)
	stream := testStream(t, js)
	publishN(t, js, stream+".a", 3, 0)
	st, err := js.Stream(context.Background(), stream)
	if err != nil {
		t.Fatal(err)
	}
	created := st.CachedInfo().Created

	got := make(chan ponixnats.Batch[jetstream.Msg], 10)
	cfg := baseConfig(stream)
	c, err := ponixnats.NewConsumer(context.Background(), js, cfg, func(_ context.Context, in ponixnats.Batch[jetstream.Msg]) (ponixnats.Result, error) {
		stopping := false
		select {
		case <-in.Stopping:
			stopping = true
		default:
		}
		if !stopping {
			got <- in
		}
		return ponixnats.AckAll(in.Len()), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	stop := runConsumer(t, c)
	defer stop()
	select {
	case b := <-got:
		if b.Stream.Name != stream || !b.Stream.Created.Equal(created) || b.Consumer != cfg.Durable || b.Len() != 3 {
			t.Fatalf("batch stream %+v consumer %q len %d; want stream %s created %s, consumer %s, 3 messages",
				b.Stream, b.Consumer, b.Len(), stream, created, cfg.Durable)
		}
		if b.Stopping == nil {
			t.Fatal("the batch has no Stopping channel")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no batch within 10 s")
	}
}
