package ponixnats

import (
	"context"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// BenchmarkProtoStoreProcessor measures NewProtoStoreProcessor on a 5,000-message batch of
// fakes that decodes, validates and stores at once: decoding dominates, the rest is the
// processor's own work.
func BenchmarkProtoStoreProcessor(b *testing.B) {
	msgs := make([]jetstream.Msg, 5000)
	for i := range msgs {
		data, err := proto.Marshal(wrapperspb.String(fmt.Sprint("v", i)))
		if err != nil {
			b.Fatal(err)
		}
		msgs[i] = &fakeMsg{subject: fmt.Sprint("s.dev-", i), data: data}
	}
	p := NewProtoStoreProcessor(func() *wrapperspb.StringValue { return new(wrapperspb.StringValue) },
		func(context.Context, Batch[Decoded[*wrapperspb.StringValue]]) error { return nil },
		func(*wrapperspb.StringValue) error { return nil }, WithHold(NewHold(HoldConfig{Logger: discard})))
	batch := msgBatch(msgs)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p(context.Background(), batch); err != nil {
			b.Fatal(err)
		}
	}
}
