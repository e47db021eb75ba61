// Package sample builds the demonstration envelopes the ponix-all-in-one
// producer publishes, as upstream's producer does.
package sample

import (
	"math/rand/v2"
	"time"

	envelopev1 "buf.build/gen/go/ponix/ponix/protocolbuffers/go/envelope/v1"
	"github.com/rs/xid"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Organization is the organization id of sample envelopes.
const Organization = "example-org"

var statuses = []string{"active", "idle", "maintenance"}

// Envelope returns a sample ProcessedEnvelope: an xid end-device id, both
// timestamps at now, and temperature/humidity/status readings.
func Envelope(now time.Time, rnd *rand.Rand) *envelopev1.ProcessedEnvelope {
	ts := timestamppb.New(now)
	return &envelopev1.ProcessedEnvelope{
		EndDeviceId:    xid.NewWithTime(now).String(),
		OccurredAt:     ts,
		ProcessedAt:    ts,
		OrganizationId: Organization,
		Data: &structpb.Struct{Fields: map[string]*structpb.Value{
			"temperature": structpb.NewNumberValue(float64(int((15+rnd.Float64()*15)*10)) / 10),
			"humidity":    structpb.NewNumberValue(float64(int((30+rnd.Float64()*50)*10)) / 10),
			"status":      structpb.NewStringValue(statuses[rnd.IntN(len(statuses))]),
		}},
	}
}
