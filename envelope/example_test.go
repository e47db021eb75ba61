package envelope_test

import (
	"errors"
	"fmt"
	"time"

	envelopev1 "buf.build/gen/go/ponix/ponix/protocolbuffers/go/envelope/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ponix-go/ponix/envelope"
)

// Read an envelope's bytes once, without decoding them into a message: parse, validate, take
// the ids, and turn data into JSON.
func Example() {
	data, _ := structpb.NewStruct(map[string]any{"temperature": 21.5, "unit": "C"})
	ts := timestamppb.New(time.Unix(1_700_000_000, 0))
	b, _ := proto.Marshal(&envelopev1.ProcessedEnvelope{
		EndDeviceId: "sensor-1", OrganizationId: "acme", OccurredAt: ts, ProcessedAt: ts, Data: data,
	})

	var w envelope.Wire
	if err := w.Parse(b); err != nil { // not an envelope: a *FieldError wrapping ErrMalformed
		fmt.Println(err)
		return
	}
	if err := w.Validate(); err != nil { // the rules of Validate, without reading b again
		fmt.Println("invalid:", err)
		return
	}
	var j envelope.DataJSON
	out, err := j.AppendWire(nil, w.Data)
	fmt.Println(string(w.OrganizationID), string(w.EndDeviceID), w.OccurredAt.Seconds, string(out), err)

	bad, _ := proto.Marshal(&envelopev1.ProcessedEnvelope{EndDeviceId: "a.b", OrganizationId: "acme", OccurredAt: ts, ProcessedAt: ts})
	err = envelope.ValidateWire(bad)
	var ve *envelope.ValidationError
	fmt.Println(errors.As(err, &ve), ve.Field)
	// Output:
	// acme sensor-1 1700000000 {"temperature":21.5,"unit":"C"} <nil>
	// true end_device_id
}
