package envelopev1_test

import (
	"fmt"
	"time"

	envelopev1 "buf.build/gen/go/ponix/ponix/protocolbuffers/go/envelope/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// An envelope is built like any protobuf message and travels as its wire bytes.
func Example() {
	at := time.Date(2025, 11, 1, 12, 0, 0, 0, time.UTC)
	data, _ := structpb.NewStruct(map[string]any{"temperature": 21.5, "status": "active"})
	env := &envelopev1.ProcessedEnvelope{
		EndDeviceId:    "sensor-1",
		OrganizationId: "acme",
		OccurredAt:     timestamppb.New(at),
		ProcessedAt:    timestamppb.New(at.Add(time.Second)),
		Data:           data,
	}
	b, err := proto.Marshal(env)
	if err != nil {
		panic(err)
	}

	var got envelopev1.ProcessedEnvelope
	if err := proto.Unmarshal(b, &got); err != nil {
		panic(err)
	}
	fmt.Println(got.GetEndDeviceId(), got.GetOrganizationId(), got.GetOccurredAt().AsTime().Format(time.RFC3339))
	fmt.Println(got.GetData().GetFields()["temperature"].GetNumberValue())
	// Output:
	// sensor-1 acme 2025-11-01T12:00:00Z
	// 21.5
}
