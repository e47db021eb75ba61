//go:build !ponix_noenvelope

package ponixnats_test

import (
	"context"
	"fmt"
	"log"
	"time"

	envelopev1 "buf.build/gen/go/ponix/ponix/protocolbuffers/go/envelope/v1"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ponix-go/ponix/ponixnats"
)

// The envelope use, as the ponix service wires it: a producer publishes ProcessedEnvelopes to
// processed_envelopes.<end_device_id>; the consumer validates them and hands the valid ones to
// a store function (the ClickHouse writer in the service) in one call per batch. Needs a NATS
// server with JetStream at 127.0.0.1:4222.
func ExampleNewEnvelopeProcessor() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	nc, err := ponixnats.Connect(ctx, "nats://127.0.0.1:4222")
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if _, err := ponixnats.EnsureStream(ctx, js, ponixnats.StreamConfig{Name: ponixnats.EnvelopeStream}); err != nil {
		log.Fatal(err) // subjects processed_envelopes.>
	}
	producer := ponixnats.NewEnvelopeProducer(js, ponixnats.EnvelopeStream)
	data, _ := structpb.NewStruct(map[string]any{"temperature": 21.5})
	now := timestamppb.Now()
	err = producer.Publish(ctx, &envelopev1.ProcessedEnvelope{
		EndDeviceId: "sensor-1", OrganizationId: "org-1", Data: data, OccurredAt: now, ProcessedAt: now,
	})
	if err != nil {
		log.Fatal(err) // an end_device_id that is not a subject token is refused here
	}

	store := func(_ context.Context, batch ponixnats.Batch[ponixnats.Decoded[*envelopev1.ProcessedEnvelope]]) error {
		for _, d := range batch.Items { // d.Value is the envelope, d.Msg the JetStream message
			fmt.Println("stored", d.Value.GetEndDeviceId())
		}
		return nil
	}
	c, err := ponixnats.NewConsumer(ctx, js, ponixnats.ConsumerConfig{Stream: ponixnats.EnvelopeStream, Durable: "envelope-example"},
		ponixnats.NewEnvelopeProcessor(store))
	if err != nil {
		log.Fatal(err)
	}
	if err := c.Run(ctx); err != nil {
		log.Fatal(err)
	}
}
