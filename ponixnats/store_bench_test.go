package ponixnats

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

// BenchmarkStoreProcessor measures the store processor's own work per 5,000-message batch of
// fakes: a batch that stores at once (the hot path), the same observed (WithObserver), and one
// whose single bad record is found by bisecting.
func BenchmarkStoreProcessor(b *testing.B) {
	msgs := seqBatch(5000)
	bad := msgs[2500].Subject()
	hold := NewHold(HoldConfig{Logger: discard})
	ok := func(context.Context, Batch[jetstream.Msg]) error { return nil }
	oneBad := func(_ context.Context, in Batch[jetstream.Msg]) error {
		for _, m := range in.Items {
			if m.Subject() == bad {
				return dataErr{"code 6: cannot parse"}
			}
		}
		return nil
	}
	var stored int
	observe := WithObserver(func(a StoreAttempt[jetstream.Msg]) {
		if a.Err == nil {
			stored += a.Batch.Len()
		}
	})
	for _, bc := range []struct {
		name  string
		store MsgStore
		opts  []StoreOption
	}{{"stored", ok, nil}, {"stored_observed", ok, []StoreOption{observe}}, {"one_bad", oneBad, nil}} {
		b.Run(bc.name, func(b *testing.B) {
			p := NewStoreProcessor(bc.store, append(bc.opts, WithHold(hold))...)
			batch := msgBatch(msgs)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := p(context.Background(), batch); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
