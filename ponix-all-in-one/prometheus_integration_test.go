//go:build integration

package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ponix-go/ponix/ponixnats/natstest"
)

// prometheus is a real Prometheus server (Debian's prometheus package) of the test's own.
type prometheus struct {
	t    *testing.T
	base string
}

// shortFor matches the for: durations of alert rules.
var shortFor = regexp.MustCompile(`(?m)^(\s+for:\s*)\S+\s*$`)

// startPrometheus starts Prometheus scraping target (host:port) every second as job "ponix",
// evaluating deploy/prometheus/ponix-alerts.yml every second with every for: duration set to
// forDuration (the expressions are the shipped ones, only the wait is shortened).
func startPrometheus(t *testing.T, target string, forDuration time.Duration) *prometheus {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatalf("prometheus is not installed (make deps installs Debian's prometheus package): %v", err)
	}
	rules, err := os.ReadFile(filepath.Join(deployDir, "prometheus", "ponix-alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if !shortFor.Match(rules) {
		t.Fatal("no for: in the alert rules: the shortening below would do nothing")
	}
	rules = shortFor.ReplaceAll(rules, []byte("${1}"+forDuration.String()))
	dir := t.TempDir()
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [ponix-alerts.yml]
scrape_configs:
  - job_name: ponix
    static_configs:
      - targets: [%q]
`, target)
	for name, content := range map[string][]byte{"ponix-alerts.yml": rules, "prometheus.yml": []byte(cfg)} {
		if err := os.WriteFile(filepath.Join(dir, name), content, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	logs := &syncBuffer{}
	cmd := exec.Command(bin, "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+addr, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("prometheus logs:\n%s", logs.String())
		}
	})
	p := &prometheus{t: t, base: "http://" + addr}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if resp, err := http.Get(p.base + "/-/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		select {
		case <-done:
			t.Fatalf("prometheus exited:\n%s", logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus not ready within 30 s:\n%s", logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// api GETs an /api/v1 path and decodes its data into v.
func (p *prometheus) api(path string, v any) {
	p.t.Helper()
	resp, err := http.Get(p.base + "/api/v1/" + path)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		p.t.Fatalf("%s: %v", path, err)
	}
	if body.Status != "success" {
		p.t.Fatalf("%s: %s %s", path, body.Status, body.Error)
	}
	if err := json.Unmarshal(body.Data, v); err != nil {
		p.t.Fatalf("%s: %v", path, err)
	}
}

// series is how many series query returns now.
func (p *prometheus) series(query string) int {
	p.t.Helper()
	var data struct {
		Result []json.RawMessage `json:"result"`
	}
	p.api("query?query="+url.QueryEscape(query), &data)
	return len(data.Result)
}

// alertState is the state of alert now: "pending", "firing" or "" (inactive).
func (p *prometheus) alertState(alert string) string {
	p.t.Helper()
	var data struct {
		Alerts []struct {
			Labels map[string]string `json:"labels"`
			State  string            `json:"state"`
		} `json:"alerts"`
	}
	p.api("alerts", &data)
	state := ""
	for _, a := range data.Alerts {
		if a.Labels["alertname"] == alert && (state == "" || a.State == "firing") {
			state = a.State
		}
	}
	return state
}

// waitAlert polls until alert is in state, failing after within.
func (p *prometheus) waitAlert(svc *service, alert, state string, within time.Duration) time.Duration {
	p.t.Helper()
	start := time.Now()
	for p.alertState(alert) != state {
		checkAlive(p.t, svc)
		if time.Since(start) > within {
			p.t.Fatalf("alert %s not %q within %s (it is %q)", alert, state, within, p.alertState(alert))
		}
		time.Sleep(200 * time.Millisecond)
	}
	return time.Since(start)
}

// Debian's real Prometheus scrapes a running service with the shipped alert rules (their for:
// shortened to 3 s): every dashboard query returns data; a hold (ClickHouse refuses every row)
// makes PonixSinkHeld fire, and fixing it resolves the alert.
func TestPrometheusAlertsAndDashboardQueries(t *testing.T) {
	t.Parallel()
	db := chSrv.NewDatabase(t)
	nsrv := natstest.New(t)
	env := baseEnv(t, db)
	env["PONIX_NATS_URL"] = nsrv.URL()
	svc := startService(t, env) // a sample envelope every second
	base := httpBase(t, svc)
	waitRows(t, db, svc, 1, 60*time.Second)
	prom := startPrometheus(t, strings.TrimPrefix(base, "http://"), 3*time.Second)

	queries := testedQueries(t)
	start := time.Now()
	for {
		var empty []string
		for name, q := range queries {
			if prom.series(q) == 0 {
				empty = append(empty, name)
			}
		}
		if len(empty) == 0 {
			break
		}
		checkAlive(t, svc)
		if time.Since(start) > 60*time.Second {
			sort.Strings(empty)
			t.Fatalf("dashboard queries without data after 60 s: %v", empty)
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("all %d dashboard queries return data %s after Prometheus started", len(queries), time.Since(start).Round(100*time.Millisecond))
	if s := prom.alertState("PonixSinkHeld"); s != "" {
		t.Fatalf("PonixSinkHeld is %q before any hold", s)
	}

	if err := db.Conn.Exec(context.Background(), guardColumn); err != nil {
		t.Fatal(err)
	}
	t.Logf("PonixSinkHeld firing %s after the fault", prom.waitAlert(svc, "PonixSinkHeld", "firing", 60*time.Second).Round(100*time.Millisecond))
	if err := db.Conn.Exec(context.Background(), "ALTER TABLE processed_envelopes DROP COLUMN guard"); err != nil {
		t.Fatal(err)
	}
	t.Logf("PonixSinkHeld resolved %s after the fix", prom.waitAlert(svc, "PonixSinkHeld", "", 90*time.Second).Round(100*time.Millisecond))
	for _, quiet := range []string{"PonixDown", "PonixDeadLetters", "PonixConsumerRecovered"} {
		if s := prom.alertState(quiet); s != "" {
			t.Errorf("%s is %q: nothing of the kind happened", quiet, s)
		}
	}
}
