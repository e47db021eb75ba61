//go:build integration

package main_test

import (
	"testing"
	"time"

	"github.com/ponix-go/ponix/ponixnats/natstest"
)

// A SIGTERM at any step of the startup stops the service cleanly (exit code 0): the
// signal handler is installed before the first phase and stays until the service
// returns, so a signal between the last phase and the runner cannot kill the process
// by the default action (exit code -1, what an orchestrator's rolling restart would
// have met).
func TestSignalDuringStartupStopsCleanly(t *testing.T) {
	t.Parallel()
	for _, step := range []string{
		`msg="startup phase" phase=migrations`,
		`msg="startup phase" phase=nats`,
		`msg="durable consumer created"`,
		`msg="producer disabled`,
		`msg="runner starting"`,
	} {
		t.Run(step, func(t *testing.T) {
			t.Parallel()
			db := chSrv.NewDatabase(t)
			nsrv := natstest.New(t)
			s := startService(t, faultEnv(t, db, nsrv.URL()))
			waitLog(t, s, step, 60*time.Second)
			stopService(t, s)
		})
	}
}
