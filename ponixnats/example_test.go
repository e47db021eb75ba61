package ponixnats_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ponix-go/ponix/ponixnats"
)

// The generic use: decode every message as your protobuf type, store the decoded values in
// one call per batch. A message that does not decode is dead-lettered (to "events_dlq");
// a store failure holds the batch in place until the store works again. Needs a NATS server
// with JetStream at 127.0.0.1:4222 (nats-server -js).
func ExampleNewProtoStoreProcessor() {
	ctx, stop := context.WithTimeout(context.Background(), time.Minute)
	defer stop()
	nc, err := ponixnats.Connect(ctx, "nats://127.0.0.1:4222", ponixnats.WithName("events-sink"))
	if err != nil {
		log.Fatal(err) // says whether the server was unreachable, refused the credentials, or TLS failed
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := ponixnats.EnsureStream(ctx, js, ponixnats.StreamConfig{Name: "events"}); err != nil {
		log.Fatal(err)
	}
	b, _ := proto.Marshal(timestamppb.Now())
	if _, err := js.Publish(ctx, "events.clock", b); err != nil {
		log.Fatal(err)
	}

	store := func(ctx context.Context, batch ponixnats.Batch[ponixnats.Decoded[*timestamppb.Timestamp]]) error {
		for _, d := range batch.Items {
			// batch.Stream (name and creation time) with the stream sequence identify the
			// message: a de-duplication key for the sink.
			seq, _ := ponixnats.StreamSequence(d.Msg)
			fmt.Println("stored", d.Value.AsTime().Format(time.RFC3339), "from", batch.Stream.Name, "stream sequence", seq)
		}
		return nil // all or nothing: an error holds the batch and stores it again later
	}
	c, err := ponixnats.NewConsumer(ctx, js, ponixnats.ConsumerConfig{Stream: "events", Durable: "events-sink"},
		ponixnats.NewProtoStoreProcessor(func() *timestamppb.Timestamp { return new(timestamppb.Timestamp) }, store, nil))
	if err != nil {
		log.Fatal(err)
	}
	if err := c.Run(ctx); err != nil { // until ctx ends; returns after the last acks are confirmed
		log.Fatal(err)
	}
}

// A processor that decides per message: indices are positions in the fetched batch.
func ExampleProtoProcessor() {
	handle := func(_ context.Context, batch ponixnats.Batch[ponixnats.Decoded[*timestamppb.Timestamp]]) (ponixnats.Result, error) {
		res := ponixnats.NewResult(0)
		for _, d := range batch.Items {
			if d.Value.GetSeconds() < 0 {
				res.DeadLetter(d.Index, ponixnats.ReasonInvalid, errors.New("before 1970"))
				continue
			}
			res.Ack(d.Index)
		}
		return res, nil
	}
	p := ponixnats.ProtoProcessor(func() *timestamppb.Timestamp { return new(timestamppb.Timestamp) }, handle)
	_ = p // pass to ponixnats.NewConsumer
}

// A partial result: ack some messages, retry one later, dead-letter another.
// Indices the result does not mention are nak'd (and logged).
func ExampleNewResult() {
	r := ponixnats.NewResult(4)
	r.Ack(0)
	r.Nak(1, 5*time.Second)
	r.DeadLetter(2, ponixnats.ReasonInvalid, fmt.Errorf("missing field"))
	r.Ack(0) // mentioned twice: the most conservative decision is kept
	r.Nak(0, 0)
	for i := range r.Len() {
		d, ok := r.Decision(i)
		fmt.Println(i, d.Action, ok)
	}
	// Output:
	// 0 nak true
	// 1 nak true
	// 2 dead_letter true
	// 3 none false
}
