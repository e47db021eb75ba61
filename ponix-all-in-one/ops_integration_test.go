//go:build integration

package main_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ponix-go/ponix/ponixclickhouse"
	"github.com/ponix-go/ponix/ponixclickhouse/chserver"
	"github.com/ponix-go/ponix/ponixclickhouse/chtest"
	"github.com/ponix-go/ponix/ponixnats/natstest"
)

// httpGet fetches url and returns the status code and body.
func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// readiness is the /readyz body.
type readiness struct {
	Status string            `json:"status"`
	Checks map[string]string `json:"checks"`
}

// waitReady polls /readyz until its status code is want, and returns the body.
func waitReady(t *testing.T, s *service, base string, want int, within time.Duration) readiness {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		code, body := httpGet(t, base+"/readyz")
		var r readiness
		if err := json.Unmarshal([]byte(body), &r); err != nil {
			t.Fatalf("/readyz body %q is not JSON: %v", body, err)
		}
		if code == want {
			return r
		}
		select {
		case <-s.done:
			t.Fatalf("service exited (%v); logs:\n%s", s.err, s.logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz answered %d %s for %s, want %d", code, body, within, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// scrape fetches /metrics and returns every sample by its series
// (name{labels} as exposed) with its value.
func scrape(t *testing.T, base string) map[string]float64 {
	t.Helper()
	code, body := httpGet(t, base+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics answered %d: %s", code, body)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// metric returns the value of the one series whose name is name and whose
// labels include every label given as "k=v"; it fails when there is none.
func metric(t *testing.T, m map[string]float64, name string, labels ...string) float64 {
	t.Helper()
	var found []string
	for series := range m {
		n, rest, _ := strings.Cut(series, "{")
		if n != name {
			continue
		}
		ok := true
		for _, l := range labels {
			k, val, _ := strings.Cut(l, "=")
			if !strings.Contains(rest, fmt.Sprintf("%s=%q", k, val)) {
				ok = false
			}
		}
		if ok {
			found = append(found, series)
		}
	}
	if len(found) != 1 {
		t.Fatalf("metric %s%v: %d series match (%v)", name, labels, len(found), found)
	}
	return m[found[0]]
}

// boundAddr finds the listener's address in text or JSON logs.
var boundAddr = regexp.MustCompile(`HTTP listener started.*?\baddr"?[=:]"?([^\s",]+)`)

// httpBase waits for the service to log its HTTP listener and returns its
// base URL.
func httpBase(t *testing.T, s *service) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if m := boundAddr.FindStringSubmatch(s.logs.String()); m != nil {
			return "http://" + m[1]
		}
		select {
		case <-s.done:
			t.Fatalf("service exited (%v) before its HTTP listener started; logs:\n%s", s.err, s.logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no HTTP listener logged; logs:\n%s", s.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Metrics, /healthz and /readyz over real HTTP: counters follow what the
// pipeline did, readiness drops while NATS is down and comes back after it.
func TestMetricsHealthAndReadinessOverHTTP(t *testing.T) {
	db := chSrv.NewDatabase(t)
	nsrv := natstest.New(t)
	const external = 120
	publish(t, nsrv.URL(), envelopes(external, 3))
	// Two messages that are not protobuf: dead-lettered, never stored.
	nc, err := nats.Connect(nsrv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	for i := range 2 {
		if _, err := js.Publish(t.Context(), fmt.Sprintf("processed_envelopes.garbage-%d", i), []byte{0xff, 0xff, 0xff, 0xff}); err != nil {
			t.Fatal(err)
		}
	}

	env := baseEnv(t, db)
	env["PONIX_NATS_URL"] = nsrv.URL()
	env["PONIX_NATS_BATCH_SIZE"] = "50"
	port := freePort(t)
	env["PONIX_HTTP_ADDR"] = "127.0.0.1:" + strconv.Itoa(port)
	s := startService(t, env)
	base := httpBase(t, s)
	if base != "http://127.0.0.1:"+strconv.Itoa(port) {
		t.Errorf("listener at %s, want port %d", base, port)
	}
	if code, body := httpGet(t, base+"/healthz"); code != http.StatusOK || strings.TrimSpace(body) != "ok" {
		t.Errorf("/healthz = %d %q", code, body)
	}
	waitRows(t, db, s, external+2, 30*time.Second) // the external ones and a couple from the producer
	r := waitReady(t, s, base, http.StatusOK, 10*time.Second)
	for _, c := range []string{"nats", "clickhouse", "migrations"} {
		if r.Checks[c] != "ok" {
			t.Errorf("/readyz check %s = %q, want ok (%v)", c, r.Checks[c], r)
		}
	}

	// What was committed is counted: a row in ClickHouse was counted as
	// stored once the store returned (polled to cover that instant).
	rows, _ := count(t, db)
	deadline := time.Now().Add(5 * time.Second)
	var m map[string]float64
	for {
		m = scrape(t, base)
		if metric(t, m, "ponix_envelopes_stored_total") >= float64(rows) || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	cons := []string{"stream=processed_envelopes", "consumer=ponix-all-in-one"}
	stored := metric(t, m, "ponix_envelopes_stored_total")
	if stored < float64(rows) {
		t.Errorf("ponix_envelopes_stored_total = %v, but %d rows are in ClickHouse", stored, rows)
	}
	if got := metric(t, m, "ponix_envelopes_dead_lettered_total", cons...); got != 2 {
		t.Errorf("ponix_envelopes_dead_lettered_total = %v, want 2 (the garbage messages)", got)
	}
	if got := metric(t, m, "ponix_envelopes_consumed_total", cons...); got < stored+2 {
		t.Errorf("ponix_envelopes_consumed_total = %v, want >= stored %v + 2 dead-lettered", got, stored)
	}
	if got := metric(t, m, "ponix_envelopes_acked_total", cons...); got < float64(external) {
		t.Errorf("ponix_envelopes_acked_total = %v, want >= %d", got, external)
	}
	if got := metric(t, m, "ponix_envelopes_nakd_total", cons...); got != 0 {
		t.Errorf("ponix_envelopes_nakd_total = %v, want 0 in a healthy run", got)
	}
	if got := metric(t, m, "ponix_envelopes_published_total"); got < 2 {
		t.Errorf("ponix_envelopes_published_total = %v, want the producer's envelopes (>= 2)", got)
	}
	if got := metric(t, m, "ponix_insert_batch_size_sum"); got != stored {
		t.Errorf("ponix_insert_batch_size_sum = %v, want the stored count %v (no failed inserts)", got, stored)
	}
	if n, c := metric(t, m, "ponix_insert_batch_size_count"), metric(t, m, "ponix_insert_duration_seconds_count"); n < 3 || n != c {
		t.Errorf("insert histograms counted %v batches and %v durations; want the same, >= 3 (120 envelopes in batches of 50)", n, c)
	}
	if got := metric(t, m, "ponix_insert_batch_size_bucket", "le=100"); got < 3 {
		t.Errorf("fewer than 3 batches of <= 100 envelopes in the histogram (%v)", got)
	}
	if got := metric(t, m, "ponix_insert_duration_seconds_sum"); got <= 0 {
		t.Errorf("ponix_insert_duration_seconds_sum = %v", got)
	}
	if got := metric(t, m, "ponix_consumer_info_ok", cons...); got != 1 {
		t.Errorf("ponix_consumer_info_ok = %v", got)
	}
	if got := metric(t, m, "ponix_consumer_pending_messages", cons...); got > 2 {
		t.Errorf("ponix_consumer_pending_messages = %v after the backlog was drained", got)
	}
	metric(t, m, "ponix_consumer_ack_pending_messages", cons...)
	if got := metric(t, m, "ponix_build_info"); got != 1 {
		t.Errorf("ponix_build_info = %v", got)
	}
	for _, name := range []string{"go_goroutines", "process_cpu_seconds_total"} {
		metric(t, m, name)
	}

	// NATS down: not ready (naming NATS), still alive, scrapes still answer.
	nsrv.Stop()
	r = waitReady(t, s, base, http.StatusServiceUnavailable, 10*time.Second)
	if r.Status != "not ready" || r.Checks["nats"] == "ok" || r.Checks["clickhouse"] != "ok" || r.Checks["migrations"] != "ok" {
		t.Errorf("/readyz with NATS down = %+v; want nats not ok, the rest ok", r)
	}
	if code, _ := httpGet(t, base+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d with NATS down; liveness must not depend on NATS", code)
	}
	start := time.Now()
	m = scrape(t, base)
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("a scrape with NATS down took %s", d)
	}
	if got := metric(t, m, "ponix_consumer_info_ok", cons...); got != 0 {
		t.Errorf("ponix_consumer_info_ok = %v with NATS down", got)
	}

	if err := nsrv.Restart(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitReady(t, s, base, http.StatusOK, 20*time.Second)
	s.terminate()
}

// The real binary with an authenticated NATS user and a password-protected
// ClickHouse user: envelopes land; JSON logs never show either secret and
// carry no per-message lines at info level; wrong secrets fail the startup
// phase that uses them, without echoing the secret.
func TestAuthenticatedNATSAndPasswordClickHouse(t *testing.T) {
	const (
		natsUser = "ponix-svc"
		natsPass = "nats-s3cret-Pw"
		chUser   = "ponix_secure"
		chPass   = "ch-s3cret-Pw"
		dbName   = "ponix_secure_db"
	)
	ctx := t.Context()
	chs := startClickHouse(t, chserver.Config{Dir: t.TempDir(), User: chUser, Password: chPass}, dbName)
	// Without the password ClickHouse refuses: the user really is protected.
	if c, err := ponixclickhouse.Open(ctx, ponixclickhouse.Config{Addr: chs.Addr(), Username: chUser}); err == nil {
		c.Close()
		t.Fatal("ClickHouse accepted the user without its password")
	}

	nsrv := natstest.New(t, natstest.WithUserPassword(natsUser, natsPass))
	if nc, err := nats.Connect(nsrv.URL()); err == nil {
		nc.Close()
		t.Fatal("NATS accepted a client without credentials")
	}
	const n = 500
	want := envelopes(n, 4)
	publish(t, nsrv.URL(), want, nats.UserInfo(natsUser, natsPass))

	secureEnv := func() map[string]string {
		return map[string]string{
			"PONIX_DATA_DIR":              t.TempDir(),
			"PONIX_NATS_URL":              nsrv.URL(),
			"PONIX_NATS_USER":             natsUser,
			"PONIX_NATS_PASSWORD":         natsPass,
			"PONIX_CLICKHOUSE_NATIVE_URL": chs.Addr(),
			"PONIX_CLICKHOUSE_DATABASE":   dbName,
			"PONIX_CLICKHOUSE_USERNAME":   chUser,
			"PONIX_CLICKHOUSE_PASSWORD":   chPass,
			"PONIX_PRODUCER_ENABLED":      "false",
			"PONIX_NATS_BATCH_SIZE":       "100",
			"PONIX_NATS_BATCH_WAIT_SECS":  "1",
			"PONIX_STARTUP_TIMEOUT_SECS":  "10",
			"PONIX_LOG_FORMAT":            "json",
			"PONIX_LOG_LEVEL":             "info",
			"PONIX_HTTP_ADDR":             "127.0.0.1:0",
		}
	}
	s := startService(t, secureEnv())
	base := httpBase(t, s)
	db := &chtest.Database{Name: dbName, Conn: mustOpen(t, chs.Addr(), dbName, chUser, chPass)}
	waitRows(t, db, s, n, 60*time.Second)
	waitReady(t, s, base, http.StatusOK, 10*time.Second)
	s.terminate()
	checkStored(t, db, want)

	logs := s.logs.String()
	checkNoSecrets(t, logs, natsPass, chPass)
	lines := strings.Split(strings.TrimSpace(logs), "\n")
	if len(lines) > 60 {
		t.Errorf("%d log lines at info level for %d envelopes: per-message logging?", len(lines), n)
	}
	var batches int
	for _, l := range lines {
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("PONIX_LOG_FORMAT=json wrote a non-JSON line %q: %v", l, err)
		}
		for _, k := range []string{"time", "level", "msg"} {
			if _, ok := rec[k]; !ok {
				t.Errorf("log line lacks %q: %s", k, l)
			}
		}
		if rec["msg"] == "stored batch" {
			batches++
			if _, ok := rec["batch_size"].(float64); !ok {
				t.Errorf("stored batch line without a numeric batch_size: %s", l)
			}
			if _, ok := rec["duration"]; !ok {
				t.Errorf("stored batch line without duration: %s", l)
			}
		}
		if rec["level"] == "DEBUG" {
			t.Errorf("debug line at PONIX_LOG_LEVEL=info: %s", l)
		}
	}
	if batches == 0 {
		t.Errorf("no 'stored batch' line in the logs:\n%s", logs)
	}

	// Wrong secrets: the phase that uses them fails, the secret is not echoed.
	for _, tc := range []struct {
		name, variable, value, phase, want string
	}{
		{"wrong NATS password", "PONIX_NATS_PASSWORD", "wrong-nats-Pw", "startup phase nats failed", "authorization"},
		{"wrong ClickHouse password", "PONIX_CLICKHOUSE_PASSWORD", "wrong-ch-Pw", "startup phase migrations failed", "authentication failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := secureEnv()
			env[tc.variable] = tc.value
			env["PONIX_LOG_FORMAT"] = "text"
			s := startService(t, env)
			if code := s.wait(30 * time.Second); code != 1 {
				t.Fatalf("exit code %d, want 1", code)
			}
			out := s.logs.String()
			line := failureLine(t, out)
			for _, want := range []string{tc.phase, tc.variable, tc.want} {
				if !strings.Contains(line, want) {
					t.Errorf("the error does not name %q: %s", want, line)
				}
			}
			checkNoSecrets(t, out, natsPass, chPass, tc.value)
		})
	}
}

func checkNoSecrets(t *testing.T, logs string, secrets ...string) {
	t.Helper()
	for _, secret := range secrets {
		if strings.Contains(logs, secret) {
			t.Errorf("secret %q appears in the logs:\n%s", secret, logs)
		}
	}
}

func mustOpen(t *testing.T, addr, db, user, pass string) driver.Conn {
	t.Helper()
	c, err := ponixclickhouse.Open(t.Context(), ponixclickhouse.Config{Addr: addr, Database: db, Username: user, Password: pass})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}
