//go:build integration

package main_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/ponix-go/ponix/ponixnats/natstest"
)

// clientNames are the names of the clients connected to srv.
func clientNames(t *testing.T, srv *server.Server) []string {
	t.Helper()
	cz, err := srv.Connz(&server.ConnzOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range cz.Conns {
		names = append(names, c.Name)
	}
	return names
}

// The service pulls on a connection of its own, named after its main one, unless
// PONIX_NATS_SHARED_PULL_CONNECTION=true; either way every envelope is stored once and
// acknowledged.
func TestPullConnectionOwnOrShared(t *testing.T) {
	for _, shared := range []bool{false, true} {
		name := "own"
		if shared {
			name = "shared"
		}
		t.Run(name, func(t *testing.T) {
			db := chSrv.NewDatabase(t)
			nsrv := natstest.New(t)
			want := envelopes(3_000, 7)
			publish(t, nsrv.URL(), want)
			env := baseEnv(t, db)
			env["PONIX_NATS_URL"] = nsrv.URL()
			env["PONIX_PRODUCER_ENABLED"] = "false"
			env["PONIX_NATS_BATCH_SIZE"] = "500"
			if shared {
				env["PONIX_NATS_SHARED_PULL_CONNECTION"] = "true"
			}
			s := startService(t, env)
			waitRows(t, db, s, uint64(len(want)), 60*time.Second)
			waitSettled(t, nsrv.URL(), 60*time.Second, s)
			names := clientNames(t, nsrv.NATSServer())
			s.terminate()

			pulls := slices.ContainsFunc(names, func(n string) bool { return strings.HasSuffix(n, " (pulls)") })
			if pulls == shared || (!shared && !slices.Contains(names, "ponix-all-in-one (pulls)")) {
				t.Errorf("clients %q while the service ran; want a ponix-all-in-one (pulls) connection: %v", names, !shared)
			}
			checkStored(t, db, want)
		})
	}
}
