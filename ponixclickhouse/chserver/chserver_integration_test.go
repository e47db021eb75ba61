//go:build integration

package chserver_test

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ponix-go/ponix/ponixclickhouse"
	"github.com/ponix-go/ponix/ponixclickhouse/chserver"
)

func TestStartServesWithPasswordAndStopKeepsData(t *testing.T) {
	dir := t.TempDir()
	ctx := t.Context()
	s, err := chserver.Start(ctx, chserver.Config{Dir: dir, User: "ponix", Password: "s3cret<&>"})
	if err != nil {
		t.Fatal(err)
	}
	cfg := ponixclickhouse.Config{Addr: s.Addr(), Username: "ponix", Password: "s3cret<&>"}
	conn, err := ponixclickhouse.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.Exec(ctx, "CREATE TABLE keep (x UInt8) ENGINE = TinyLog"); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	bad := cfg
	bad.Password = "nope"
	if _, err := ponixclickhouse.Open(ctx, bad); !errors.Is(err, ponixclickhouse.ErrAuthentication) {
		t.Fatalf("wrong password: %v", err)
	}
	addr := s.Addr()
	if err := s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatal("server still listening after Stop")
	}
	// Same dir, same port: the data is still there (a persistent dev server).
	_, port, _ := net.SplitHostPort(addr)
	var p int
	for _, ch := range port {
		p = p*10 + int(ch-'0')
	}
	s2, err := chserver.Start(ctx, chserver.Config{Dir: dir, TCPPort: p, User: "ponix", Password: "s3cret<&>"})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Stop(context.Background())
	conn, err = ponixclickhouse.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var n uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM system.tables WHERE database = 'default' AND name = 'keep'").Scan(&n); err != nil || n != 1 {
		t.Fatalf("table keep after restart: %d, %v", n, err)
	}
}

func TestStartRefusesAPortHeldByAnotherProcess(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	s, err := chserver.Start(t.Context(), chserver.Config{Dir: t.TempDir(), TCPPort: port})
	if err == nil {
		_ = s.Stop(context.Background())
		t.Fatal("Start succeeded on a port another process listens on")
	}
	if !strings.Contains(err.Error(), "already in use") || !strings.Contains(err.Error(), strconv.Itoa(port)) {
		t.Errorf("error %q does not say the port is in use", err)
	}
}

func TestStartStopsALeftoverServerOfTheSameDir(t *testing.T) {
	dir := t.TempDir()
	ctx := t.Context()
	first, err := chserver.Start(ctx, chserver.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer first.Stop(context.Background())
	_, portStr, _ := net.SplitHostPort(first.Addr())
	port, _ := strconv.Atoi(portStr)
	// As after a crash of the program that started it: the first server is
	// still running when the next run starts on the same directory and port.
	second, err := chserver.Start(ctx, chserver.Config{Dir: dir, TCPPort: port})
	if err != nil {
		t.Fatalf("Start over a leftover server: %v", err)
	}
	defer second.Stop(context.Background())
	select {
	case <-first.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the leftover server is still running")
	}
	conn, err := ponixclickhouse.Open(ctx, ponixclickhouse.Config{Addr: second.Addr()})
	if err != nil {
		t.Fatalf("the new server does not answer: %v", err)
	}
	conn.Close()
}

// Pause returns once the server answers nothing: a ping sent at once times out, every time,
// and after Resume the server answers again.
func TestPauseReturnsOnceTheServerAnswersNothing(t *testing.T) {
	s, err := chserver.Start(t.Context(), chserver.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = s.Resume()
		_ = s.Stop(context.Background())
	})
	conn, err := ponixclickhouse.Open(t.Context(), ponixclickhouse.Config{Addr: s.Addr(), DialTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for i := range 10 {
		if err := s.Pause(); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		err := conn.Ping(ctx)
		cancel()
		if err == nil {
			t.Fatalf("pause %d: the server answered a ping sent after Pause returned", i)
		}
		if err := s.Resume(); err != nil {
			t.Fatal(err)
		}
		if err := conn.Ping(t.Context()); err != nil {
			t.Fatalf("pause %d: no answer after Resume: %v", i, err)
		}
	}
}
