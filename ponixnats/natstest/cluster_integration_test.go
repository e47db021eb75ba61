//go:build integration

package natstest_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ponix-go/ponix/ponixnats/natstest"
)

// A 3-node cluster keeps an R3 stream available when its leader node stops,
// and the node rejoins on Restart.
func TestNewClusterR3StreamSurvivesLeaderStop(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := natstest.NewCluster(t, 3)
	if len(c.Nodes) != 3 {
		t.Fatalf("%d nodes", len(c.Nodes))
	}
	nc, err := nats.Connect(c.URLs(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	st, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}, Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	publish := func(from, to int) {
		for i := from; i < to; i++ {
			for {
				pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
				_, err := js.Publish(pctx, "s."+strconv.Itoa(i), []byte(strconv.Itoa(i)), jetstream.WithMsgID(strconv.Itoa(i)))
				pcancel()
				if err == nil {
					break
				}
				if ctx.Err() != nil {
					t.Fatalf("publish %d: %v", i, err)
				}
			}
		}
	}
	publish(0, 100)
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	leader := c.Node(info.Cluster.Leader)
	if leader == nil {
		t.Fatalf("stream leader %q is not a node", info.Cluster.Leader)
	}
	leader.Stop()
	publish(100, 200)
	if err := leader.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	for {
		info, err = st.Info(ctx)
		if err == nil && info.State.Msgs == 200 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("stream after failover: %+v, %v", info, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if info.Cluster.Leader == "" {
		t.Fatal("no stream leader after failover")
	}
}
