package main

import (
	"fmt"
	"math/rand/v2"
	"time"

	envelopev1 "buf.build/gen/go/ponix/ponix/protocolbuffers/go/envelope/v1"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

const (
	benchOrgs    = 10
	benchDevices = 1000
)

// envelope returns benchmark envelope i: realistic IoT readings from one of
// 1,000 devices in 10 organizations, a few hundred bytes on the wire.
func envelope(i int, base time.Time, rnd *rand.Rand) *envelopev1.ProcessedEnvelope {
	dev := i % benchDevices
	occurred := base.Add(time.Duration(i) * time.Millisecond)
	return &envelopev1.ProcessedEnvelope{
		EndDeviceId:    fmt.Sprintf("device-%04d", dev),
		OrganizationId: fmt.Sprintf("org-%02d", dev%benchOrgs),
		OccurredAt:     timestamppb.New(occurred),
		ProcessedAt:    timestamppb.New(occurred.Add(time.Duration(20+rnd.IntN(200)) * time.Millisecond)),
		Data: &structpb.Struct{Fields: map[string]*structpb.Value{
			"temperature": structpb.NewNumberValue(float64(150+rnd.IntN(200)) / 10),
			"humidity":    structpb.NewNumberValue(float64(300+rnd.IntN(500)) / 10),
			"battery":     structpb.NewNumberValue(float64(rnd.IntN(101))),
			"rssi":        structpb.NewNumberValue(float64(-40 - rnd.IntN(80))),
			"status":      structpb.NewStringValue([...]string{"active", "idle", "maintenance"}[rnd.IntN(3)]),
			"firmware":    structpb.NewStringValue("v2.4.1"),
			"door_open":   structpb.NewBoolValue(rnd.IntN(10) == 0),
			"location": structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{
				"lat": structpb.NewNumberValue(52.52 + rnd.Float64()/100),
				"lon": structpb.NewNumberValue(13.40 + rnd.Float64()/100),
			}}),
		}},
	}
}
