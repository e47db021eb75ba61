package httpserver_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ponix-go/ponix/ponix-all-in-one/internal/httpserver"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// Over a real listener: /healthz always 200; /readyz 200 only when every check
// passes, else 503 naming the failing check; a hanging check is cut at the
// deadline; /metrics is the given handler; Run shuts down when ctx ends.
func TestServerOverHTTP(t *testing.T) {
	failing := errors.New("clickhouse ping: connection refused")
	var ckErr error
	srv, err := httpserver.Start(httpserver.Config{
		Addr:         "127.0.0.1:0",
		CheckTimeout: 200 * time.Millisecond,
		Metrics: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			_, _ = io.WriteString(w, "ponix_test 1\n")
		}),
		Checks: []httpserver.Check{
			{Name: "nats", Func: func(context.Context) error { return nil }},
			{Name: "clickhouse", Func: func(context.Context) error { return ckErr }},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	base := "http://" + srv.Addr().String()

	if code, body := get(t, base+"/healthz"); code != 200 || strings.TrimSpace(body) != "ok" {
		t.Errorf("/healthz = %d %q", code, body)
	}
	if code, body := get(t, base+"/metrics"); code != 200 || body != "ponix_test 1\n" {
		t.Errorf("/metrics = %d %q", code, body)
	}
	code, body := get(t, base+"/readyz")
	var r httpserver.Readiness
	if err := json.Unmarshal([]byte(body), &r); err != nil || code != 200 || r.Status != "ready" || r.Checks["nats"] != "ok" || r.Checks["clickhouse"] != "ok" {
		t.Errorf("/readyz = %d %s (%v)", code, body, err)
	}
	ckErr = failing
	code, body = get(t, base+"/readyz")
	r = httpserver.Readiness{}
	if err := json.Unmarshal([]byte(body), &r); err != nil || code != 503 || r.Status != "not ready" || r.Checks["clickhouse"] != failing.Error() || r.Checks["nats"] != "ok" {
		t.Errorf("/readyz with a failing check = %d %s (%v)", code, body, err)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v after ctx end", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after ctx ended")
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Error("listener still answers after shutdown")
	}
}

func TestReadyCutsHangingCheckAtDeadline(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	start := time.Now()
	r := httpserver.Ready(context.Background(), []httpserver.Check{
		{Name: "stuck", Func: func(context.Context) error { <-block; return nil }}, // ignores ctx
	}, 100*time.Millisecond)
	if d := time.Since(start); d > time.Second {
		t.Errorf("Ready took %s with a 100ms deadline", d)
	}
	if r.Status != httpserver.StatusNotReady || !strings.Contains(r.Checks["stuck"], "deadline") {
		t.Errorf("Ready = %+v", r)
	}
}

func TestStartNamesTheAddressInUse(t *testing.T) {
	first, err := httpserver.Start(httpserver.Config{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer first.Shutdown(context.Background())
	addr := first.Addr().String()
	if _, err := httpserver.Start(httpserver.Config{Addr: addr}); err == nil || !strings.Contains(err.Error(), addr) {
		t.Errorf("second Start on %s = %v, want an error naming the address", addr, err)
	}
}
