//go:build integration

package integration

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ponix-go/ponix/ponixnats"
	"github.com/ponix-go/ponix/ponixnats/natstest"
)

// An instance configured without Replicas must not shrink a clustered stream;
// an explicit value is applied.
func TestEnsureStreamLeavesReplicasUnlessSet(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := natstest.NewCluster(t, 3)
	nc, err := nats.Connect(c.URLs())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	replicas := func(cfg ponixnats.StreamConfig) int {
		t.Helper()
		for {
			st, err := ponixnats.EnsureStream(ctx, js, cfg)
			if err == nil {
				return st.CachedInfo().Config.Replicas
			}
			if ctx.Err() != nil { // the cluster may still be electing its meta leader
				t.Fatalf("EnsureStream(%+v): %v", cfg, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	if n := replicas(ponixnats.StreamConfig{Name: "R", Replicas: 3}); n != 3 {
		t.Fatalf("created with %d replicas, want 3", n)
	}
	if n := replicas(ponixnats.StreamConfig{Name: "R"}); n != 3 {
		t.Fatalf("Replicas unset changed the stream to %d replicas, want 3 kept", n)
	}
	if n := replicas(ponixnats.StreamConfig{Name: "R", Replicas: 1}); n != 1 {
		t.Fatalf("explicit Replicas 1 gave %d", n)
	}
	if n := replicas(ponixnats.StreamConfig{Name: "NEW"}); n != 1 {
		t.Fatalf("new stream without Replicas has %d replicas, want 1", n)
	}
}
