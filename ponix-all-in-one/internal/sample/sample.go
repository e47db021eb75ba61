// Package sample builds the demonstration envelopes the ponix-all-in-one
// producer publishes, as upstream's producer does.
package sample

import (
	"context"
	"log/slog"
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

// Producer publishes a sample envelope every Interval until its context ends. A failed publish
// is logged and the next tick tries again: a NATS outage must not stop the service.
type Producer struct {
	// Publish sends one envelope.
	Publish func(ctx context.Context, env *envelopev1.ProcessedEnvelope) error
	// Interval between two envelopes.
	Interval time.Duration
	// Published, if set, is told the outcome of each publish (metrics).
	Published func(err error)
	// Logger for failed publishes (error) and each envelope (debug).
	Logger *slog.Logger
}

// Run publishes until ctx ends; it returns nil then.
func (p Producer) Run(ctx context.Context) error {
	rnd := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0))
	ticker := time.NewTicker(p.Interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-ticker.C:
			env := Envelope(now, rnd)
			err := p.Publish(ctx, env)
			if err != nil && ctx.Err() != nil {
				return nil
			}
			if p.Published != nil {
				p.Published(err)
			}
			if err != nil {
				p.Logger.Error("publish sample envelope", "end_device_id", env.GetEndDeviceId(), "error", err)
				continue
			}
			p.Logger.Debug("published sample envelope", "end_device_id", env.GetEndDeviceId())
		}
	}
}
