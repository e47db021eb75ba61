package ponixnats_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/ponix-go/ponix/ponixnats"
	"github.com/ponix-go/ponix/ponixnats/embedded"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// The generic use: decode every message as a protobuf type, handle the
// decoded values, say per message what happens. Undecodable messages go to
// the dead-letter stream "events_dlq".
func ExampleProtoProcessor() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// An in-process server; in production pass your server's URL.
	srv, err := embedded.Start(ctx, embedded.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Shutdown()

	nc, err := ponixnats.Connect(ctx, srv.URL(), ponixnats.WithName("example"))
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := ponixnats.EnsureStream(ctx, js, ponixnats.StreamConfig{Name: "events"}); err != nil {
		log.Fatal(err)
	}
	for _, sec := range []int64{1, 2, 3} {
		b, _ := proto.Marshal(&timestamppb.Timestamp{Seconds: sec})
		if _, err := js.Publish(ctx, "events.clock", b); err != nil {
			log.Fatal(err)
		}
	}

	runCtx, stop := context.WithCancel(ctx)
	handle := func(_ context.Context, batch []ponixnats.Decoded[*timestamppb.Timestamp]) (ponixnats.Result, error) {
		var sum int64
		for _, d := range batch {
			sum += d.Value.GetSeconds()
		}
		fmt.Printf("batch of %d, sum %d\n", len(batch), sum)
		stop() // end the example after the first batch
		return ponixnats.AckAll(len(batch)), nil
	}
	c, err := ponixnats.NewConsumer(ctx, js, ponixnats.ConsumerConfig{
		Stream:    "events",
		Durable:   "example",
		BatchSize: 100,
		MaxWait:   200 * time.Millisecond,
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, ponixnats.ProtoProcessor(func() *timestamppb.Timestamp { return new(timestamppb.Timestamp) }, handle))
	if err != nil {
		log.Fatal(err)
	}
	if err := c.Run(runCtx); err != nil { // returns after the batch's acks are confirmed
		log.Fatal(err)
	}
	fmt.Println("acked:", c.Stats().Acked)
	// Output:
	// batch of 3, sum 6
	// acked: 3
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
