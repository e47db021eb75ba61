//go:build integration

package main_test

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/ponix-go/ponix/ponixnats/natstest"
)

// TestDLQReadsOnlyTheVariablesItUses: the dlq commands ignore bad values of
// the service's consumer and ClickHouse variables, which they do not use, and
// still exit 2 naming a bad variable they do use; the service itself still
// refuses the bad values.
func TestDLQReadsOnlyTheVariablesItUses(t *testing.T) {
	srv := natstest.New(t)
	env := dlqEnvFor(srv.URL())
	unused := map[string]string{
		"PONIX_NATS_BATCH_SIZE":       "abc",
		"PONIX_NATS_ACK_WAIT_SECS":    "1",
		"PONIX_CLICKHOUSE_NATIVE_URL": "http://ch:8123",
		"PONIX_HTTP_ADDR":             "nowhere",
	}
	for k, v := range unused {
		env[k] = v
	}
	code, out, errOut := runDLQ(t, env, "list")
	if code != 0 || !strings.Contains(out, "0 dead letters") {
		t.Fatalf("dlq list with bad values of unused variables: exit %d, want 0\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	for k := range unused {
		if strings.Contains(errOut, k) {
			t.Errorf("dlq list mentions %s, which it does not use:\n%s", k, errOut)
		}
	}

	env["PONIX_LOG_LEVEL"] = "loud"
	code, out, errOut = runDLQ(t, env, "list")
	if code != 2 || !strings.Contains(errOut, "PONIX_LOG_LEVEL") || strings.Contains(errOut, "PONIX_NATS_BATCH_SIZE") {
		t.Errorf("dlq list with PONIX_LOG_LEVEL=loud: exit %d, want 2 naming PONIX_LOG_LEVEL alone\nstdout: %s\nstderr: %s", code, out, errOut)
	}

	// The service uses them all.
	cmd := exec.Command(binary)
	cmd.Env = []string{"PONIX_NATS_BATCH_SIZE=abc"}
	b, err := cmd.CombinedOutput()
	if cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != 2 || !strings.Contains(string(b), "PONIX_NATS_BATCH_SIZE") {
		t.Errorf("the service with PONIX_NATS_BATCH_SIZE=abc: %v, want exit 2 naming the variable\n%s", err, b)
	}
}

// TestDLQWithoutJetStream: against a NATS server without JetStream, dlq list
// says so and names the server's URL, without the password of PONIX_NATS_URL.
func TestDLQWithoutJetStream(t *testing.T) {
	addr := natstest.NewWithoutJetStream(t)
	code, out, errOut := runDLQ(t, dlqEnvFor("nats://ponix:s3cret@"+addr), "list")
	want := "JetStream is not enabled on the NATS server at nats://" + addr
	if code != 1 || !strings.Contains(errOut, want) || strings.Contains(out+errOut, "s3cret") {
		t.Errorf("dlq list without JetStream: exit %d, want 1 with %q and no password\nstdout: %s\nstderr: %s", code, want, out, errOut)
	}
}
