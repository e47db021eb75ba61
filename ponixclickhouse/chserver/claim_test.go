package chserver

import (
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
)

// A port held by another process (not a leftover server of this directory) is an error that
// marks the start as one that lost a port: Start retries with new ports when it picked them.
func TestClaimPortsMarksAPortTakenByAnotherProcess(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	freePort := free.Addr().(*net.TCPAddr).Port
	free.Close()
	cfg := Config{ListenHost: "127.0.0.1", TCPPort: l.Addr().(*net.TCPAddr).Port, HTTPPort: freePort, Logger: slog.New(slog.DiscardHandler)}
	err = claimPorts(cfg, t.TempDir())
	if !errors.Is(err, errPortTaken) {
		t.Fatalf("claimPorts with a port held by another process: %v, want an error wrapping errPortTaken", err)
	}
	if want := l.Addr().String(); !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not name the port %s", err, want)
	}
}
