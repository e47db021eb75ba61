package statuscmd

import (
	"bytes"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func TestServiceURL(t *testing.T) {
	for in, want := range map[string]string{
		"":                          "",
		":8080":                     "http://127.0.0.1:8080",
		"0.0.0.0:8080":              "http://127.0.0.1:8080",
		"ponix:8080":                "http://ponix:8080",
		"http://10.0.0.5:9000/":     "http://10.0.0.5:9000",
		"https://ponix.example:443": "https://ponix.example:443",
	} {
		got, err := serviceURL(in)
		if err != nil || got != want {
			t.Errorf("serviceURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := serviceURL("no-port"); err == nil {
		t.Error("serviceURL accepted an address without a port")
	}
}

func metricFamilies(t *testing.T, text string) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	return mfs
}

// The hold, the rate and the newest stored envelope come from the service's metrics; the
// rate needs two samples of one source; a held sink and a not-ready service are problems,
// dead letters and waiting messages with nothing stored are warnings.
func TestSnapshotFromMetricsAndJudgement(t *testing.T) {
	c := &collector{}
	t0 := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	metricsAt := func(stored int, held bool) map[string]*dto.MetricFamily {
		blocked := "0"
		if held {
			blocked = "1"
		}
		return metricFamilies(t, `# TYPE ponix_envelopes_stored_total counter
ponix_envelopes_stored_total `+itoa(stored)+`
# TYPE ponix_sink_blocked gauge
ponix_sink_blocked{class="unreachable"} `+blocked+`
ponix_sink_blocked{class="storage"} 0
# TYPE ponix_sink_blocked_seconds gauge
ponix_sink_blocked_seconds 75
# TYPE ponix_newest_stored_envelope_timestamp_seconds gauge
ponix_newest_stored_envelope_timestamp_seconds `+itoa(int(t0.Unix())-12)+`
`)
	}
	first := &Snapshot{Time: t0, Service: &ServiceStatus{Ready: true, Checks: map[string]string{"sink": "ok"}}, Table: &TableStatus{Rows: 5}}
	c.fillFromMetrics(first, metricsAt(100, false), time.Time{})
	first.judge(nil)
	if first.Stored.PerSecond != nil || !first.OK || !first.Hold.Known || first.Hold.Held {
		t.Fatalf("first snapshot: %+v", first)
	}
	if a := first.Stored.NewestAgeSeconds; a == nil || *a != 12 || first.Stored.NewestSource != "service" {
		t.Errorf("newest age %v from %q, want 12 s from the service", a, first.Stored.NewestSource)
	}

	second := &Snapshot{Time: t0.Add(2 * time.Second),
		Service:     &ServiceStatus{Ready: false, Checks: map[string]string{"sink": "batch held since ...: connection refused", "clickhouse": "connection refused", "nats": "ok"}},
		Consumer:    &ConsumerStatus{Pending: 7, AckPending: 3},
		DeadLetters: &DeadLetterStatus{Stream: "s_dlq", Total: 2, ByReason: map[string]int{"invalid": 2}},
	}
	c.fillFromMetrics(second, metricsAt(100, true), time.Time{})
	second.judge([]string{"ClickHouse: connection refused"})
	if r := second.Stored.PerSecond; r == nil || *r != 0 || second.Stored.WindowSeconds != 2 {
		t.Errorf("rate %v over %v, want 0 over 2 s", r, second.Stored.WindowSeconds)
	}
	if !second.Hold.Held || second.Hold.Class != "unreachable" || second.Hold.Seconds != 75 || !strings.Contains(second.Hold.Cause, "batch held") {
		t.Errorf("hold %+v", second.Hold)
	}
	if second.OK || len(second.Problems) != 3 {
		t.Errorf("problems %q: want ClickHouse, the hold, the clickhouse check (the sink check is the hold's)", second.Problems)
	}
	if len(second.Warnings) != 2 {
		t.Errorf("warnings %q: want dead letters and 10 waiting with nothing stored", second.Warnings)
	}

	var out bytes.Buffer
	if err := render(&out, second); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"PROBLEM\n", "HELD for 1m15s, class unreachable: batch held", "pending 7, ack pending 3",
		"dead letters 2: invalid 2", "0.0/s over 2.0s (service)", "NOT READY", "warning"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("screen lacks %q:\n%s", want, out.String())
		}
	}

	// A source change (the service unreachable: the table's rows) gives no rate.
	third := &Snapshot{Time: t0.Add(4 * time.Second), Table: &TableStatus{Rows: 9}}
	c.fillFromMetrics(third, nil, t0.Add(-time.Minute))
	if third.Stored.PerSecond != nil || third.Hold.Known || third.Stored.NewestSource != "table" {
		t.Errorf("third snapshot: %+v", third.Stored)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestFormats(t *testing.T) {
	for sec, want := range map[float64]string{0.4351: "435ms", 4.24: "4.2s", 185: "3m05s", 7385: "2h03m"} {
		if got := fmtDuration(sec); got != want {
			t.Errorf("fmtDuration(%v) = %q, want %q", sec, got, want)
		}
	}
	if got := thousands(1234567); got != "1,234,567" {
		t.Errorf("thousands = %q", got)
	}
	if got := bytesIEC(3 << 20); got != "3.0 MiB" {
		t.Errorf("bytesIEC = %q", got)
	}
}

func TestUsageAndBadFlags(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := Run(t.Context(), []string{"-h"}, nil, &stdout, &stderr); code != exitOK || !strings.Contains(stdout.String(), "-watch") {
		t.Errorf("-h: exit %d, %q", code, stdout.String())
	}
	for _, args := range [][]string{{"-interval", "0"}, {"-service", "no-port"}, {"extra"}, {"-nosuch"}} {
		if code := Run(t.Context(), args, nil, &stdout, &stderr); code != exitBadUsage {
			t.Errorf("%q: exit %d, want 2", args, code)
		}
	}
	if code := Run(t.Context(), nil, []string{"PONIX_NATS_BATCH_SIZE=x", "PONIX_CLICKHOUSE_NATIVE_URL=::bad"}, &stdout, &stderr); code != exitBadUsage ||
		!strings.Contains(stderr.String(), "PONIX_CLICKHOUSE_NATIVE_URL") || strings.Contains(stderr.String(), "PONIX_NATS_BATCH_SIZE") {
		t.Errorf("bad used variable: exit %d, stderr %q; want 2 naming it, and not the unused one", code, stderr.String())
	}
}

// In a terminal the screen is redrawn in place: from the top, each line cleared to its end,
// the rest of the screen cleared; otherwise screens are plain text, and -json one object a line.
func TestWriteInPlacePlainAndJSON(t *testing.T) {
	s := &Snapshot{Time: time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)}
	s.judge(nil)
	var plain, inPlace, js bytes.Buffer
	if err := write(&plain, s, false, ""); err != nil {
		t.Fatal(err)
	}
	if err := write(&inPlace, s, false, cursorHome); err != nil {
		t.Fatal(err)
	}
	if err := write(&js, s, true, ""); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(plain.String(), "\x1b") || !strings.HasPrefix(plain.String(), "ponix status  2026-12-04 10:00:00 UTC  OK\n") {
		t.Errorf("plain screen:\n%q", plain.String())
	}
	want := cursorHome + strings.ReplaceAll(plain.String(), "\n", clearLine+"\n") + clearBelow
	if inPlace.String() != want {
		t.Errorf("in-place screen:\n%q\nwant\n%q", inPlace.String(), want)
	}
	if n := strings.Count(js.String(), "\n"); n != 1 || !strings.HasPrefix(js.String(), `{"time":"2026-12-04T10:00:00Z","ok":true,"problems":[],"warnings":[]`) {
		t.Errorf("-json: %d lines: %s", n, js.String())
	}
	if isTerminal(&plain) {
		t.Error("a buffer is no terminal")
	}
}
