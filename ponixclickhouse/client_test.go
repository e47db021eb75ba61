package ponixclickhouse

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// openAddrError opens cfg, which must fail, and returns the *ConfigError, checking that it
// names Addr with the address, matches ErrUnreachable and came within limit.
func openAddrError(t *testing.T, cfg Config, limit time.Duration) *ConfigError {
	t.Helper()
	start := time.Now()
	conn, err := Open(t.Context(), cfg)
	elapsed := time.Since(start)
	if err == nil {
		_ = conn.Close()
		t.Fatal("Open succeeded")
	}
	t.Logf("Open failed after %s: %v", elapsed.Round(time.Millisecond), err)
	var ce *ConfigError
	if !errors.As(err, &ce) || ce.Setting != "Addr" || ce.Value != cfg.addrLabel() || !errors.Is(err, ErrUnreachable) {
		t.Fatalf("err = %v; want a ConfigError for Addr %q wrapping ErrUnreachable", err, cfg.addrLabel())
	}
	if !strings.Contains(err.Error(), "Addr") || !strings.Contains(err.Error(), cfg.addrLabel()) {
		t.Errorf("the error does not name the setting and its value: %v", err)
	}
	if elapsed > limit {
		t.Errorf("Open took %s; want at most %s", elapsed, limit)
	}
	return ce
}

// wantHint checks that err says where the native protocol listens, and holds every one of
// the texts in want.
func wantHint(t *testing.T, err error, want ...string) {
	t.Helper()
	for _, w := range append(want, "is this the HTTP port?", "tcp_port (9000 by default, 9440 with TLS)", "8123 is the HTTP port") {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("the error lacks %q: %v", w, err)
		}
	}
}

// An HTTP server given as the native address (ClickHouse's 8123) never answers the native
// hello, which holds no line end: the handshake times out after DialTimeout, then Open asks
// the address over HTTP and says it is an HTTP port.
func TestOpenHTTPServerTimesOutAndIsNamed(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "Ok.\n")
	}))
	defer srv.Close()
	addr := srv.Listener.Addr().String()
	ce := openAddrError(t, Config{Addr: addr, DialTimeout: 300 * time.Millisecond}, 3*time.Second)
	wantHint(t, ce, "the server at "+addr+" answers HTTP")
	if !errors.Is(ce, os.ErrDeadlineExceeded) {
		t.Errorf("the error does not wrap the driver's timeout: %v", ce)
	}
	if c := Classify(ce); c != ClassUnreachable {
		t.Errorf("Classify = %q; want %q", c, ClassUnreachable)
	}
}

// serveTCP runs handle for every connection to a new local listener until the test ends (then
// the connections are closed), and returns the listener's address.
func serveTCP(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				stop := context.AfterFunc(t.Context(), func() { _ = c.Close() })
				defer stop()
				handle(c)
			})
		}
	})
	return ln.Addr().String()
}

// An HTTP server that answers the native hello at once (many answer a line they cannot parse
// with 400) gives an unexpected packet: Open says it is an HTTP port without waiting for
// DialTimeout.
func TestOpenHTTPServerThatAnswersIsNamedAtOnce(t *testing.T) {
	addr := serveTCP(t, func(c net.Conn) {
		buf := make([]byte, 4096)
		if _, err := c.Read(buf); err != nil {
			return
		}
		_, _ = io.WriteString(c, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
	})
	ce := openAddrError(t, Config{Addr: addr, DialTimeout: 5 * time.Second}, 2*time.Second)
	wantHint(t, ce, "the server at "+addr+" answers HTTP")
}

// Of several addresses, the hint names those that answer HTTP.
func TestOpenNamesTheHTTPAddressAmongSeveral(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	httpAddr := srv.Listener.Addr().String()
	silent := serveTCP(t, func(c net.Conn) { _, _ = io.Copy(io.Discard, c) })
	cfg := Config{Addrs: []string{silent, httpAddr}, DialTimeout: 200 * time.Millisecond}
	ce := openAddrError(t, cfg, 3*time.Second)
	wantHint(t, ce, "the server at "+httpAddr+" answers HTTP")
	if strings.Contains(ce.Error(), "server at "+silent) {
		t.Errorf("the hint names the silent address too: %v", ce)
	}
}

// A server that accepts the connection and never answers anything is not known to be HTTP;
// the timed-out handshake still gets the hint, as a question.
func TestOpenSilentServerGetsTheTimeoutHint(t *testing.T) {
	addr := serveTCP(t, func(c net.Conn) { _, _ = io.Copy(io.Discard, c) })
	ce := openAddrError(t, Config{Addr: addr, DialTimeout: 200 * time.Millisecond}, 3*time.Second)
	wantHint(t, ce, "did not answer the native protocol handshake within DialTimeout (200ms)")
	if strings.Contains(ce.Error(), "answers HTTP") {
		t.Errorf("a silent server is called an HTTP server: %v", ce)
	}
}

func TestClassifyOpenErrorHintsAtTheHTTPPort(t *testing.T) {
	timeout := fmt.Errorf("handshake: failed to read packet from 127.0.0.1:8123 (conn_id=1, auth_db=): read: %w",
		&net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded})
	for _, tc := range []struct {
		name string
		cfg  Config
		err  error
		want string // "" for no hint
	}{
		{"handshake timeout", Config{Addr: "db:9000"}, timeout, "did not answer the native protocol handshake"},
		{"unexpected reply", Config{Addr: "db:9000"}, errors.New("clickhouse: ping: [handshake] unexpected packet [72] from server"), "answer is not ClickHouse's native protocol"},
		{"refused on 8123", Config{Addr: "db:8123"}, fmt.Errorf("dial tcp: %w", syscall.ECONNREFUSED), "port 8123 is ClickHouse's usual HTTP port"},
		{"8443 among several", Config{Addrs: []string{"a:9000", "b:8443"}}, io.EOF, "port 8443"},
		{"refused on 9000", Config{Addr: "db:9000"}, fmt.Errorf("dial tcp: %w", syscall.ECONNREFUSED), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := classifyOpenError(tc.cfg, tc.err)
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Setting != "Addr" || !errors.Is(err, ErrUnreachable) || !errors.Is(err, tc.err) {
				t.Fatalf("err = %v; want a ConfigError for Addr wrapping ErrUnreachable and the driver's error", err)
			}
			if tc.want == "" {
				if strings.Contains(err.Error(), "HTTP port") {
					t.Errorf("unexpected hint: %v", err)
				}
				return
			}
			wantHint(t, err, tc.want)
		})
	}
	if err := ExplainConnectError(timeout); !strings.Contains(err.Error(), "is this the HTTP port?") {
		t.Errorf("ExplainConnectError gives no hint: %v", err)
	}
}
