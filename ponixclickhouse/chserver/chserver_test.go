package chserver_test

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ponix-go/ponix/ponixclickhouse/chserver"
)

func TestStartWithoutBinaryNamesTheInstallCommand(t *testing.T) {
	_, err := chserver.Start(t.Context(), chserver.Config{Dir: t.TempDir(), Binary: "/nonexistent/clickhouse-server"})
	if !errors.Is(err, chserver.ErrBinaryNotFound) {
		t.Fatalf("err = %v, want ErrBinaryNotFound", err)
	}
	if !strings.Contains(err.Error(), "apt-get install -y clickhouse-server") {
		t.Errorf("error %q does not say how to install the binary", err)
	}
}

func TestStartRejectsBadUserName(t *testing.T) {
	_, err := chserver.Start(t.Context(), chserver.Config{Dir: t.TempDir(), User: "x><y"})
	if err == nil || !strings.Contains(err.Error(), "Config.User") {
		t.Fatalf("err = %v, want an error naming Config.User", err)
	}
}

// fakeServer writes an executable that stands in for clickhouse-server: it counts its runs in
// dir/runs, writes errLine to the error log the generated config names, and exits 70.
func fakeServer(t *testing.T, errLine string) (bin, runs string) {
	t.Helper()
	tools := t.TempDir()
	runs = filepath.Join(tools, "runs")
	bin = filepath.Join(tools, "clickhouse-server")
	script := `#!/bin/sh
cfg="${1#--config-file=}"
dir="$(dirname "$cfg")"
echo run >> "` + runs + `"
echo "` + errLine + `" >> "$dir/log/clickhouse-server.err.log"
exit 70
`
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin, runs
}

func countRuns(t *testing.T, runs string) int {
	t.Helper()
	data, err := os.ReadFile(runs)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(data), "run\n")
}

func TestStartRetriesWithNewPortsWhenAPickedPortIsTaken(t *testing.T) {
	bin, runs := fakeServer(t, "<Error> Application: Net Exception: Address already in use: 127.0.0.1:1")
	_, err := chserver.Start(t.Context(), chserver.Config{Dir: t.TempDir(), Binary: bin, StartTimeout: 10 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "Address already in use") {
		t.Fatalf("err = %v, want the port error from the log", err)
	}
	if n := countRuns(t, runs); n != 3 {
		t.Errorf("server started %d times, want 3 (a start that lost a picked port is retried)", n)
	}
}

func TestStartDoesNotRetryOtherFailures(t *testing.T) {
	bin, runs := fakeServer(t, "<Error> Application: DB::Exception: something else")
	_, err := chserver.Start(t.Context(), chserver.Config{Dir: t.TempDir(), Binary: bin, StartTimeout: 10 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "something else") {
		t.Fatalf("err = %v, want the failure from the log", err)
	}
	if n := countRuns(t, runs); n != 1 {
		t.Errorf("server started %d times, want 1", n)
	}
}

func TestStartDoesNotRetryPortsTheCallerChose(t *testing.T) {
	bin, runs := fakeServer(t, "<Error> Application: Net Exception: Address already in use: 127.0.0.1:1")
	_, err := chserver.Start(t.Context(), chserver.Config{
		Dir: t.TempDir(), Binary: bin, TCPPort: freePort(t), HTTPPort: freePort(t), StartTimeout: 10 * time.Second,
	})
	if err == nil {
		t.Fatal("Start succeeded, want the port error")
	}
	if n := countRuns(t, runs); n != 1 {
		t.Errorf("server started %d times, want 1: ports the caller chose are not replaced", n)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func TestStartRejectsIncompleteTLS(t *testing.T) {
	bin, runs := fakeServer(t, "unused")
	for name, tlsCfg := range map[string]*chserver.TLSConfig{
		"no key":       {CertFile: "/etc/hostname"},
		"missing file": {CertFile: "/nonexistent/server.pem", KeyFile: "/nonexistent/server-key.pem"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := chserver.Start(t.Context(), chserver.Config{Dir: t.TempDir(), Binary: bin, TLS: tlsCfg})
			if err == nil || !strings.Contains(err.Error(), "Config.TLS") {
				t.Fatalf("err = %v, want an error naming Config.TLS", err)
			}
		})
	}
	if _, err := os.Stat(runs); !os.IsNotExist(err) {
		t.Errorf("the server was started despite the bad TLS configuration")
	}
}
