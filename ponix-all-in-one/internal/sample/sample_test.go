package sample_test

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/rs/xid"

	"github.com/ponix-go/ponix/ponix-all-in-one/internal/sample"
)

func TestEnvelope(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	rnd := rand.New(rand.NewPCG(1, 2))
	a, b := sample.Envelope(now, rnd), sample.Envelope(now, rnd)
	if a.GetEndDeviceId() == b.GetEndDeviceId() {
		t.Error("two sample envelopes share an end_device_id")
	}
	if _, err := xid.FromString(a.GetEndDeviceId()); err != nil {
		t.Errorf("end_device_id %q is not an xid: %v", a.GetEndDeviceId(), err)
	}
	if a.GetOrganizationId() != "example-org" {
		t.Errorf("organization_id = %q", a.GetOrganizationId())
	}
	if !a.GetOccurredAt().AsTime().Equal(now) || !a.GetProcessedAt().AsTime().Equal(now) {
		t.Error("timestamps are not now")
	}
	f := a.GetData().GetFields()
	if temp := f["temperature"].GetNumberValue(); temp < 15 || temp > 30 {
		t.Errorf("temperature = %v", temp)
	}
	if h := f["humidity"].GetNumberValue(); h < 30 || h > 80 {
		t.Errorf("humidity = %v", h)
	}
	if f["status"].GetStringValue() == "" {
		t.Error("status missing")
	}
}
