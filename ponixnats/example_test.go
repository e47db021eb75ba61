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
		res := ponixnats.NewResult(0)
		for _, d := range batch {
			sum += d.Value.GetSeconds()
			res.Ack(d.Index) // decisions name the message's position in the fetched batch
		}
		fmt.Printf("batch of %d, sum %d\n", len(batch), sum)
		stop() // end the example after the first batch
		return res, nil
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

// Dead letters have a way back: count them, look at them, and replay them to
// their original subjects. Replay republishes the original bytes with a
// Ponix-Replay-Count header and a Nats-Msg-Id derived from the dead letter,
// then deletes the dead letter; running it again is harmless.
func ExampleDeadLetters_Replay() {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	srv, err := embedded.Start(ctx, embedded.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Shutdown()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	nc, err := ponixnats.Connect(ctx, srv.URL(), ponixnats.WithName("example"), ponixnats.WithLogger(quiet))
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		log.Fatal(err)
	}
	events, err := ponixnats.EnsureStream(ctx, js, ponixnats.StreamConfig{Name: "events"})
	if err != nil {
		log.Fatal(err)
	}
	for _, m := range []struct{ subject, data string }{{"events.a", "ok"}, {"events.b", "bad-1"}, {"events.c", "bad-2"}} {
		if _, err := js.Publish(ctx, m.subject, []byte(m.data)); err != nil {
			log.Fatal(err)
		}
	}

	// A consumer that dead-letters what it cannot handle (to "events_dlq").
	runCtx, stop := context.WithCancel(ctx)
	seen := 0
	c, err := ponixnats.NewConsumer(ctx, js, ponixnats.ConsumerConfig{
		Stream: "events", Durable: "example", MaxWait: 200 * time.Millisecond, Logger: quiet,
	}, func(_ context.Context, batch []jetstream.Msg) (ponixnats.Result, error) {
		r := ponixnats.NewResult(len(batch))
		for i, m := range batch {
			if string(m.Data()) == "ok" {
				r.Ack(i)
			} else {
				r.DeadLetter(i, ponixnats.ReasonInvalid, fmt.Errorf("cannot handle %q", m.Data()))
			}
		}
		if seen += len(batch); seen == 3 {
			stop() // Run returns once this batch is applied
		}
		return r, nil
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := c.Run(runCtx); err != nil {
		log.Fatal(err)
	}

	dls, err := ponixnats.OpenDeadLetters(ctx, js, "events_dlq")
	if err != nil {
		log.Fatal(err)
	}
	sum, err := dls.Summary(ctx, ponixnats.Filter{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("dead letters:", sum.Total, "invalid:", sum.ByReason[ponixnats.ReasonInvalid])
	for dl, err := range dls.All(ctx, ponixnats.Filter{Subjects: []string{"events.*"}}) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(dl.Sequence, dl.OriginalSubject(), dl.Reason(), dl.Cause(), string(dl.Data))
	}

	// (Fix what made them fail, then) replay them.
	st, err := dls.Replay(ctx, ponixnats.Filter{Reasons: []ponixnats.Reason{ponixnats.ReasonInvalid}}, ponixnats.ReplayOptions{Logger: quiet})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("replayed %d, duplicates %d, deleted %d, failed %d\n", st.Replayed, st.Duplicates, st.Deleted, st.Failed)
	m, err := events.GetLastMsgForSubject(ctx, "events.b")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("events.b:", string(m.Data), ponixnats.HeaderReplayCount, m.Header.Get(ponixnats.HeaderReplayCount))
	// Output:
	// dead letters: 2 invalid: 2
	// 1 events.b invalid cannot handle "bad-1" bad-1
	// 2 events.c invalid cannot handle "bad-2" bad-2
	// replayed 2, duplicates 0, deleted 2, failed 0
	// events.b: bad-1 Ponix-Replay-Count 1
}
