//go:build integration

package integration

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/ponix-go/ponix/ponixnats"
)

// BenchmarkFetchAck measures the per-message cost of the consumer's transport:
// fetch in batches of 10,000 and ack each message explicitly (as a consumer
// shared by several instances must), against the embedded server.
func BenchmarkFetchAck(b *testing.B) {
	ctx := context.Background()
	nc, err := nats.Connect(testURL)
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	name := fmt.Sprintf("bench_ack_%d", streamSeq.Add(1))
	if _, err := ponixnats.EnsureStream(ctx, js, ponixnats.StreamConfig{Name: name}); err != nil {
		b.Fatal(err)
	}
	defer js.DeleteStream(ctx, name)
	payload := make([]byte, 300)
	for i := 0; i < b.N; i++ {
		if _, err := js.PublishAsync(name+".dev", payload); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		b.Fatal("publishing timed out")
	}
	cons, err := js.CreateConsumer(ctx, name, jetstream.ConsumerConfig{
		Durable: "bench", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 20_000,
	})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for got := 0; got < b.N; {
		batch, err := cons.Fetch(10_000, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			b.Fatal(err)
		}
		for m := range batch.Messages() {
			if err := m.Ack(); err != nil {
				b.Fatal(err)
			}
			got++
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			b.Fatal(err)
		}
	}
	if err := nc.FlushTimeout(30 * time.Second); err != nil {
		b.Fatal(err)
	}
}
