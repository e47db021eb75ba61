package pipeline

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ponix-go/ponix/ponixnats"
)

// checkErr runs p's check of that name.
func checkErr[T any](t *testing.T, p *Pipeline[T, testRow], name string) error {
	t.Helper()
	for _, c := range p.Checks() {
		if c.Name == name {
			return c.Func(t.Context())
		}
	}
	t.Fatalf("no check %q", name)
	return nil
}

func TestHealthBeforeStart(t *testing.T) {
	p, err := New(rawConfig(nil))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range p.Checks() {
		names = append(names, c.Name)
	}
	if got, want := strings.Join(names, ","), CheckSchema+","+CheckSink+","+CheckConsumer; got != want {
		t.Errorf("checks %s, want %s", got, want)
	}
	if err := checkErr(t, p, CheckConsumer); !errors.Is(err, ErrNotStarted) {
		t.Errorf("consumer check before Start: %v, want ErrNotStarted", err)
	}
	if p.Consumer() != nil {
		t.Error("Consumer() before Start is not nil")
	}

	err = p.Ready(t.Context())
	if !errors.Is(err, ErrNotStarted) || err.Error() != "consumer: not started yet" {
		t.Errorf("Ready before Start = %v, want only \"consumer: not started yet\"", err)
	}

	rec := httptest.NewRecorder()
	p.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("status %d, want 503", rec.Code)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	var body struct {
		Status string            `json:"status"`
		Checks map[string]string `json:"checks"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("body %q: %v", rec.Body, err)
	}
	want := map[string]string{CheckSchema: "ok", CheckSink: "ok", CheckConsumer: "not started yet"}
	if body.Status != "not ready" || len(body.Checks) != len(want) {
		t.Errorf("body %+v, want status \"not ready\" and checks %v", body, want)
	}
	for k, v := range want {
		if body.Checks[k] != v {
			t.Errorf("check %s: %q, want %q", k, body.Checks[k], v)
		}
	}
}

// A table that does not fit is named by the schema check until an insert succeeds.
func TestSchemaCheckNamesTheProblemUntilAnInsertSucceeds(t *testing.T) {
	p, proc := newTestPipeline(t, rawConfig(nil), func([]testRow) error { return nil })
	p.schema.set(errors.New(`table t: no column "value"`))
	if err := checkErr(t, p, CheckSchema); err == nil || !strings.Contains(err.Error(), `no column "value"`) {
		t.Errorf("schema check %v, want the problem", err)
	}
	rec := httptest.NewRecorder()
	p.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), `"schema":"table t: no column \"value\""`) {
		t.Errorf("readiness %d %s, want 503 naming the schema problem", rec.Code, rec.Body)
	}
	process(t, proc, newMsg(1, []byte("a")))
	if err := checkErr(t, p, CheckSchema); err != nil {
		t.Errorf("schema check after a stored batch: %v", err)
	}
}

func TestConsumerCheckFollowsTheLifecycle(t *testing.T) {
	p, err := New(rawConfig(nil))
	if err != nil {
		t.Fatal(err)
	}
	p.consumer.Store(new(ponixnats.Consumer)) // as Start leaves it
	if err := checkErr(t, p, CheckConsumer); !errors.Is(err, ErrNotConsuming) {
		t.Errorf("started, Run not consuming: %v, want ErrNotConsuming", err)
	}
	down := errors.New("dial tcp 127.0.0.1:9000: connection refused")
	p.schema.setUnchecked(down) // Run waits: ClickHouse does not answer
	if err := checkErr(t, p, CheckConsumer); !errors.Is(err, ErrNotConsuming) || !errors.Is(err, down) {
		t.Errorf("waiting for an unreachable ClickHouse: %v, want ErrNotConsuming naming the cause", err)
	}
	p.schema.fits()
	p.writer.Store(&writerRef[testRow]{})
	if err := checkErr(t, p, CheckConsumer); err != nil {
		t.Errorf("consuming: %v, want nil", err)
	}
	p.stopped.Store(true)
	if err := checkErr(t, p, CheckConsumer); !errors.Is(err, ErrStopped) {
		t.Errorf("after Run returned: %v, want ErrStopped", err)
	}
}
