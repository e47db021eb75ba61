package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// -healthcheck exits 0 when /readyz answers 200 and 1 otherwise, probing
// 127.0.0.1 for a wildcard PONIX_HTTP_ADDR.
func TestHealthcheckFlag(t *testing.T) {
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(status)
		_, _ = w.Write([]byte(`{"status":"x"}`))
	}))
	defer srv.Close()
	port := srv.Listener.Addr().String()[strings.LastIndexByte(srv.Listener.Addr().String(), ':'):]

	for _, tc := range []struct {
		status int
		want   int
	}{{http.StatusOK, 0}, {http.StatusServiceUnavailable, 1}} {
		status = tc.status
		var out, errOut bytes.Buffer
		code := run(context.Background(), []string{"-healthcheck"}, []string{"PONIX_HTTP_ADDR=" + port}, &out, &errOut)
		if code != tc.want {
			t.Errorf("/readyz %d: exit %d, want %d (%s%s)", tc.status, code, tc.want, out.String(), errOut.String())
		}
	}
	srv.Close()
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"-healthcheck"}, []string{"PONIX_HTTP_ADDR=" + port}, &out, &errOut); code != 1 {
		t.Errorf("nothing listening: exit %d, want 1", code)
	}
	if code := run(context.Background(), []string{"-healthcheck"}, []string{"PONIX_HTTP_ADDR=off"}, &out, &errOut); code != 1 {
		t.Errorf("PONIX_HTTP_ADDR=off: exit %d, want 1", code)
	}
}
