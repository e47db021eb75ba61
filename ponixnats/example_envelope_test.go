//go:build !ponix_noenvelope

package ponixnats_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"time"

	envelopev1 "buf.build/gen/go/ponix/ponix/protocolbuffers/go/envelope/v1"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/ponix-go/ponix/ponixnats"
	"github.com/ponix-go/ponix/ponixnats/embedded"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// The envelope use, as the ponix service wires it: a producer publishes
// ProcessedEnvelopes to processed_envelopes.<end_device_id>; the consumer
// validates them and hands the valid ones to a store function (the ClickHouse
// writer in the service) in one call per batch.
func ExampleNewEnvelopeProcessor() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv, err := embedded.Start(ctx, embedded.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Shutdown()

	nc, err := ponixnats.Connect(ctx, srv.URL())
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if _, err := ponixnats.EnsureStream(ctx, js, ponixnats.StreamConfig{Name: ponixnats.EnvelopeStream}); err != nil { // subjects processed_envelopes.>
		log.Fatal(err)
	}

	producer := ponixnats.NewEnvelopeProducer(js, ponixnats.EnvelopeStream)
	data, _ := structpb.NewStruct(map[string]any{"temperature": 21.5})
	now := time.Now()
	for _, dev := range []string{"sensor-1", "sensor-2"} {
		env := &envelopev1.ProcessedEnvelope{
			EndDeviceId: dev, OrganizationId: "org-1", Data: data,
			OccurredAt: timestamppb.New(now), ProcessedAt: timestamppb.New(now),
		}
		if err := producer.Publish(ctx, env); err != nil {
			log.Fatal(err)
		}
	}
	err = producer.Publish(ctx, &envelopev1.ProcessedEnvelope{EndDeviceId: "bad.id"})
	fmt.Println("invalid id:", err)

	runCtx, stop := context.WithCancel(ctx)
	store := func(_ context.Context, batch []ponixnats.Decoded[*envelopev1.ProcessedEnvelope]) error {
		for _, d := range batch { // d.Value is the envelope, d.Msg the JetStream message
			fmt.Println("stored", d.Value.GetEndDeviceId())
		}
		stop()
		return nil
	}
	c, err := ponixnats.NewConsumer(ctx, js, ponixnats.ConsumerConfig{
		Stream:    ponixnats.EnvelopeStream,
		Durable:   "envelope-example",
		BatchSize: 30,
		MaxWait:   200 * time.Millisecond,
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, ponixnats.NewEnvelopeProcessor(store))
	if err != nil {
		log.Fatal(err)
	}
	if err := c.Run(runCtx); err != nil {
		log.Fatal(err)
	}
	// Output:
	// invalid id: invalid envelope: end_device_id "bad.id": not a valid subject token (empty, or contains '.', '*', '>' or whitespace)
	// stored sensor-1
	// stored sensor-2
}
