//go:build integration && !ponix_noenvelope

package integration

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/ponix-go/ponix/ponixclickhouse"
	"github.com/ponix-go/ponix/ponixclickhouse/chserver"
)

// ownServer starts a clickhouse-server of the test's own (the test stops, pauses or changes it)
// with user ponix/ponix, and returns it with its connection settings (database default) and a
// connection, the envelope table created.
func ownServer(t *testing.T) (*chserver.Server, ponixclickhouse.Config, driver.Conn) {
	t.Helper()
	srv, err := chserver.Start(t.Context(), chserver.Config{Dir: t.TempDir(), User: "ponix", Password: "ponix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = srv.Resume()
		_ = srv.Stop(context.Background())
	})
	cfg := ponixclickhouse.Config{Addr: srv.Addr(), Database: "default", Username: "ponix", Password: "ponix", DialTimeout: time.Second}
	conn, err := ponixclickhouse.Open(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	createEnvelopeTable(t, conn)
	return srv, cfg, conn
}

// A stopped server (SIGSTOP) keeps its connections open and its kernel accepts new ones:
// without a bound an insert waits for the driver's read timeout (minutes). With
// WithInsertTimeout it is cancelled within the bound and says so: class unresponsive, a sink
// fault. Once the server continues, the next Write stores.
func TestInsertTimeoutMakesAStoppedServerUnresponsive(t *testing.T) {
	srv, _, conn := ownServer(t)
	const bound = 2 * time.Second
	w, err := ponixclickhouse.NewEnvelopeWriter(t.Context(), conn, ponixclickhouse.Table{}, ponixclickhouse.WithInsertTimeout(bound))
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(t.Context(), rows(envelope(t, 0))); err != nil {
		t.Fatal(err)
	}
	if err := srv.Pause(); err != nil {
		t.Fatal(err)
	}
	for attempt := range 2 { // on the pooled connection, then on a new one
		start := time.Now()
		err = w.Write(t.Context(), rows(envelope(t, 1)))
		took := time.Since(start)
		if err == nil {
			t.Fatalf("attempt %d: Write succeeded against a stopped server", attempt)
		}
		if c := ponixclickhouse.Classify(err); c != ponixclickhouse.ClassUnresponsive || !c.SinkFault() {
			t.Errorf("attempt %d: a stopped server is class %q, want %q: %v", attempt, c, ponixclickhouse.ClassUnresponsive, err)
		}
		if took > bound+time.Second {
			t.Errorf("attempt %d: Write returned after %s, want within the %s bound", attempt, took.Round(time.Millisecond), bound)
		}
		t.Logf("attempt %d after %s: %v", attempt, took.Round(time.Millisecond), err)
	}
	if err := srv.Resume(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for err = w.Write(t.Context(), rows(envelope(t, 1))); err != nil; err = w.Write(t.Context(), rows(envelope(t, 1))) {
		if time.Now().After(deadline) {
			t.Fatalf("Write still failing 30 s after the server continued: %v", err)
		}
	}
	// A cancelled insert whose rows had reached the server may still commit once it continues
	// (nothing is known of it): the copies share their key and collapse under FINAL.
	got := readAll(t, conn)
	devices := map[string]bool{}
	for _, r := range got {
		devices[r.Device] = true
	}
	if len(devices) != 2 {
		t.Fatalf("rows of %d envelopes stored, want 2 (%d rows)", len(devices), len(got))
	}
	t.Logf("%d rows for 2 envelopes", len(got))
	// The caller's own deadline is not the server's fault: no ErrUnresponsive then.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := w.Write(ctx, rows(envelope(t, 2))); errors.Is(err, ponixclickhouse.ErrUnresponsive) {
		t.Errorf("a cancelled caller's Write blames the server: %v", err)
	}
}

// A user made read-only fails inserts with a permission fault; connections opened before the
// fix keep the read-only profile. The writer renews its connections after a permission fault,
// so the first Write after the fix stores.
func TestWriterRenewsConnectionsAfterAPermissionFault(t *testing.T) {
	srv, cfg, conn := ownServer(t)
	w, err := ponixclickhouse.NewEnvelopeWriter(t.Context(), conn, ponixclickhouse.Table{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(t.Context(), rows(envelope(t, 0))); err != nil {
		t.Fatal(err)
	}
	if err := srv.SetReadOnly(true); err != nil {
		t.Fatal(err)
	}
	// Wait until the server reloaded its users: a new connection is read-only.
	waitProfile(t, cfg, true)
	// The service reconnected while the user was read-only, and readiness probes keep several
	// connections of the pool logged in.
	conn.(*ponixclickhouse.Conn).Renew()
	fillPool(t, conn, 4)
	err = w.Write(t.Context(), rows(envelope(t, 1)))
	if c := ponixclickhouse.Classify(err); c != ponixclickhouse.ClassPermission {
		t.Fatalf("insert as a read-only user: class %q, want %q: %v", c, ponixclickhouse.ClassPermission, err)
	}
	fillPool(t, conn, 4) // more read-only connections while the fault lasts
	if err := srv.SetReadOnly(false); err != nil {
		t.Fatal(err)
	}
	waitProfile(t, cfg, false)
	// The first Write after the fix logs in anew and stores.
	if err := w.Write(t.Context(), rows(envelope(t, 1))); err != nil {
		t.Fatalf("first write after the fix: %v", err)
	}
	if got := readAll(t, conn); len(got) != 2 {
		t.Fatalf("%d rows stored, want 2", len(got))
	}
	if n := conn.(*ponixclickhouse.Conn).Renewals(); n != 2 {
		t.Errorf("the connection pool was renewed %d times, want 2 (by the test, then by the writer after the fault)", n)
	}
}

// fillPool leaves n connections of conn's pool idle, each logged in now: n queries held open
// together, then closed.
func fillPool(t *testing.T, conn driver.Conn, n int) {
	t.Helper()
	var open []driver.Rows
	for range n {
		r, err := conn.Query(t.Context(), "SELECT 1")
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, r)
	}
	for _, r := range open {
		for r.Next() {
		}
		_ = r.Close()
	}
}

// waitProfile waits until a new connection of cfg's user is read-only (or not): the server
// reloads its users file by itself within a few seconds.
func waitProfile(t *testing.T, cfg ponixclickhouse.Config, readOnly bool) {
	t.Helper()
	want := "0"
	if readOnly {
		want = "1"
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := ponixclickhouse.Open(t.Context(), cfg)
		if err == nil {
			var got string
			err = c.QueryRow(t.Context(), "SELECT value FROM system.settings WHERE name = 'readonly'").Scan(&got)
			c.Close()
			if err == nil && got == want {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server did not take readonly=%s within 20 s (last error %v)", want, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
