//go:build !ponix_noenvelope

package ponixclickhouse_test

import (
	"context"
	"log"

	envelopev1 "buf.build/gen/go/ponix/ponix/protocolbuffers/go/envelope/v1"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ponix-go/ponix/ponixclickhouse"
)

// Connect, then write envelopes with one batch INSERT per call. Needs a ClickHouse server
// with the processed_envelopes table (see the migrations module).
func ExampleNewEnvelopeWriter() {
	ctx := context.Background()
	conn, err := ponixclickhouse.Open(ctx, ponixclickhouse.Config{
		Addr: "localhost:9000", Database: "ponix", Username: "ponix", Password: "ponix",
	})
	if err != nil {
		log.Fatal(err) // says whether Addr, Database or Username/Password is wrong
	}
	defer conn.Close()

	// The table's columns are checked here: a missing table or column is a *SchemaError.
	w, err := ponixclickhouse.NewEnvelopeWriter(ctx, conn, ponixclickhouse.Table{Name: "processed_envelopes"})
	if err != nil {
		log.Fatal(err)
	}
	data, _ := structpb.NewStruct(map[string]any{"temperature": 21.5})
	now := timestamppb.Now()
	err = w.Write(ctx, []ponixclickhouse.EnvelopeRow{{
		Envelope: &envelopev1.ProcessedEnvelope{
			OrganizationId: "acme", EndDeviceId: "sensor-1", OccurredAt: now, ProcessedAt: now, Data: data,
		},
		StreamSeq: 1, // the JetStream stream sequence: de-duplicates redeliveries
	}})
	switch c := ponixclickhouse.Classify(err); {
	case err == nil:
	case c.SinkFault():
		log.Printf("the sink failed (%s): keep the rows and try again later: %v", c, err)
	case c == ponixclickhouse.ClassRow:
		log.Printf("this one row can never be stored: %v", err)
	case c == ponixclickhouse.ClassData:
		log.Printf("the server refused some row's data: split the batch to find it: %v", err)
	}
}
