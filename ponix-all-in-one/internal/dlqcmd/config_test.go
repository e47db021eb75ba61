package dlqcmd

import (
	"slices"
	"strings"
	"testing"

	"github.com/ponix-go/ponix/ponix-all-in-one/internal/config"
	"github.com/ponix-go/ponix/ponixnats/natstest"
)

// unusedBad are bad values of variables the dlq commands do not read: each
// one alone makes config.Load, and so the service, refuse to start.
var unusedBad = []string{
	"PONIX_NATS_BATCH_SIZE=abc",
	"PONIX_NATS_BATCH_WAIT_SECS=soon",
	"PONIX_NATS_ACK_WAIT_SECS=0",
	"PONIX_NATS_MAX_ACK_PENDING=-5",
	"PONIX_NATS_SUBJECT=no-wildcard",
	"PONIX_NATS_CONSUMER=a.b",
	"PONIX_PRODUCER_ENABLED=perhaps",
	"PONIX_INTERVAL_SECS=0",
	"PONIX_DATA_DIR=",
	"PONIX_CLICKHOUSE_NATIVE_URL=http://ch:8123",
	"PONIX_CLICKHOUSE_USERNAME=",
	"PONIX_CLICKHOUSE_TLS=maybe",
	"PONIX_CLICKHOUSE_MIGRATIONS_DIR=/does/not/exist",
	"PONIX_HTTP_ADDR=nowhere",
}

func TestIgnoresBadValuesOfVariablesItDoesNotUse(t *testing.T) {
	for _, kv := range unusedBad {
		if _, err := config.Load([]string{kv}); err == nil {
			t.Fatalf("config.Load accepts %s: the test needs a bad value", kv)
		}
	}
	srv := natstest.New(t)
	environ := append([]string{"PONIX_NATS_URL=" + srv.URL()}, unusedBad...)
	code, out, errOut := run([]string{"list"}, environ...)
	if code != exitOK || !strings.Contains(out, "0 dead letters") {
		t.Fatalf("dlq list with bad values of unused variables: exit %d; want 0\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	for _, kv := range unusedBad {
		name, _, _ := strings.Cut(kv, "=")
		if strings.Contains(errOut, name) {
			t.Errorf("stderr mentions %s, which dlq does not use:\n%s", name, errOut)
		}
	}
}

func TestBadValueOfAUsedVariableExitsTwoNamingIt(t *testing.T) {
	const url = "PONIX_NATS_URL=nats://127.0.0.1:1"
	cases := []struct {
		env  []string
		name string // the variable the error names
	}{
		{[]string{"PONIX_LOG_LEVEL=loud"}, "PONIX_LOG_LEVEL"},
		{[]string{"PONIX_LOG_FORMAT=xml"}, "PONIX_LOG_FORMAT"},
		{[]string{"PONIX_STARTUP_TIMEOUT_SECS=abc"}, "PONIX_STARTUP_TIMEOUT_SECS"},
		{[]string{"PONIX_NATS_URL=ftp://x"}, "PONIX_NATS_URL"},
		{[]string{"PONIX_NATS_EMBEDDED_ADDR=nowhere"}, "PONIX_NATS_EMBEDDED_ADDR"},
		{[]string{"PONIX_NATS_STREAM=a.b"}, "PONIX_NATS_STREAM"},
		{[]string{url, "PONIX_NATS_USER=u"}, "PONIX_NATS_PASSWORD"},
		{[]string{url, "PONIX_NATS_PASSWORD=p"}, "PONIX_NATS_USER"},
		{[]string{url, "PONIX_NATS_TOKEN=t", "PONIX_NATS_USER=u", "PONIX_NATS_PASSWORD=p"}, "PONIX_NATS_TOKEN"},
		{[]string{url, "PONIX_NATS_NKEY_SEED_FILE=/does/not/exist"}, "PONIX_NATS_NKEY_SEED_FILE"},
		{[]string{url, "PONIX_NATS_CREDS_FILE=/does/not/exist"}, "PONIX_NATS_CREDS_FILE"},
		{[]string{url, "PONIX_NATS_TLS_CA_FILE=/does/not/exist"}, "PONIX_NATS_TLS_CA_FILE"},
		{[]string{url, "PONIX_NATS_TLS_KEY_FILE=/does/not/exist"}, "PONIX_NATS_TLS_CERT_FILE"},
		{[]string{url, "PONIX_NATS_TLS_CERT_FILE=/does/not/exist"}, "PONIX_NATS_TLS_KEY_FILE"},
	}
	tested := map[string]bool{}
	for _, c := range cases {
		for _, kv := range c.env {
			name, _, _ := strings.Cut(kv, "=")
			tested[name] = true
		}
		// The bad values of unused variables neither hide the error nor
		// join it.
		code, out, errOut := run([]string{"list"}, append(slices.Clone(unusedBad), c.env...)...)
		if code != exitBadUsage || !strings.Contains(errOut, c.name) || strings.Contains(errOut, "PONIX_NATS_BATCH_SIZE") {
			t.Errorf("dlq list with %v: exit %d; want 2 naming %s alone\nstdout: %s\nstderr: %s", c.env, code, c.name, out, errOut)
		}
	}
	for _, v := range usedVariables {
		if !tested[v] {
			t.Errorf("no case sets %s, a variable dlq uses", v)
		}
	}
}

// Against a server without JetStream, every command says so and names the
// server's URL without the credentials of PONIX_NATS_URL.
func TestWithoutJetStreamSaysSo(t *testing.T) {
	addr := natstest.NewWithoutJetStream(t)
	for _, args := range [][]string{{"list"}, {"show", "1"}, {"replay", "--dry-run"}} {
		code, out, errOut := run(args, "PONIX_NATS_URL=nats://ponix:s3cret@"+addr)
		want := "JetStream is not enabled on the NATS server at nats://" + addr
		if code != exitFailure || !strings.Contains(errOut, want) || strings.Contains(errOut+out, "s3cret") {
			t.Errorf("dlq %v: exit %d; want 1 with %q and no password\nstdout: %s\nstderr: %s", args, code, want, out, errOut)
		}
	}
	// With PONIX_NATS_URL empty, the server at PONIX_NATS_EMBEDDED_ADDR is
	// not a running service's.
	code, out, errOut := run([]string{"list"}, "PONIX_NATS_EMBEDDED_ADDR="+addr)
	if code != exitFailure || !strings.Contains(errOut, "JetStream is not enabled") || !strings.Contains(errOut, "PONIX_NATS_URL is empty") {
		t.Errorf("dlq list at PONIX_NATS_EMBEDDED_ADDR: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
}
