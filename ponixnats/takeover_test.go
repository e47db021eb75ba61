package ponixnats

import (
	"testing"
	"time"
)

// A stalled instance's batch can be handed over two thirds of the way through the lease that
// guards it (its renewals come every third): AckWait acknowledging per message, OwnerTTL per
// batch, the defaults applied.
func TestTakeoverAfter(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  ConsumerConfig
		want time.Duration
	}{
		{"per message, defaults", ConsumerConfig{}, DefaultAckWait * 2 / 3},
		{"per message, AckWait", ConsumerConfig{AckWait: 9 * time.Second, OwnerTTL: time.Minute}, 6 * time.Second},
		{"per batch, OwnerTTL defaults to AckWait", ConsumerConfig{Ack: AckPerBatch, AckWait: 3 * time.Second}, 2 * time.Second},
		{"per batch, OwnerTTL", ConsumerConfig{Ack: AckPerBatch, AckWait: 3 * time.Second, OwnerTTL: 45 * time.Second}, 30 * time.Second},
	} {
		if got := tc.cfg.TakeoverAfter(); got != tc.want {
			t.Errorf("%s: TakeoverAfter() = %s, want %s", tc.name, got, tc.want)
		}
	}
}
