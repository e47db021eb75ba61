//go:build integration

package main_test

// Sink faults that last across restarts, and faults that hide: only a record can spend a
// record's deliveries, whatever stops the service while its batches are held; a stopped
// (SIGSTOP) ClickHouse is a sink fault of its own class; a read-only user restored is picked
// up at the next attempt. Each test has servers and databases of its own and runs in parallel
// with the others of this file.

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/ponix-go/ponix/ponixclickhouse"
	"github.com/ponix-go/ponix/ponixnats/natstest"
)

// guardColumn makes ClickHouse refuse every row of every insert (code 395): an operator's
// MATERIALIZED column that throws. No part of any batch stores, so the batch is held.
const guardColumn = "ALTER TABLE processed_envelopes ADD COLUMN guard UInt8 MATERIALIZED throwIf(length(end_device_id) > 0)"

// The service is stopped and started 14 times while ClickHouse refuses every row: 12 times
// with SIGTERM, then twice with SIGKILL, as an orchestrator restarting on /readyz 503 or a
// crash loop would. Then the fault is fixed and the service started again (or, in the last
// case, fixed before the last start). Every envelope ends stored exactly once, nothing is
// dead-lettered, and each instance logs one line for the hold it enters, none per message.
func TestFaultRestartsDuringAHoldNeverDeadLetter(t *testing.T) {
	const n = 20_000
	for i, tc := range []struct {
		name       string
		maxDeliver string // PONIX_NATS_MAX_DELIVER, "" unset
		fixBefore  bool   // fix before the last restart instead of after it
	}{
		{name: "default"},
		{name: "max-deliver-2", maxDeliver: "2"},
		{name: "fixed-before-the-last-restart", maxDeliver: "2", fixBefore: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			seed := uint64(170 + i)
			db := chSrv.NewDatabase(t)
			nsrv := natstest.New(t)
			ensureStream(t, nsrv.URL(), 1)
			want := envelopes(n, seed)
			env := faultEnv(t, db, nsrv.URL())
			env["PONIX_NATS_BATCH_SIZE"] = "10000" // every message is delivered to each instance
			env["PONIX_NATS_BATCH_WAIT_SECS"] = "1"
			env["PONIX_SHUTDOWN_TIMEOUT_SECS"] = "5"
			if tc.maxDeliver != "" {
				env["PONIX_NATS_MAX_DELIVER"] = tc.maxDeliver
			}
			// A first start creates the table; then the operator's column refuses everything.
			s := startService(t, env)
			waitLog(t, s, "durable consumer created", 60*time.Second)
			stopService(t, s)
			if err := db.Conn.Exec(context.Background(), guardColumn); err != nil {
				t.Fatal(err)
			}
			publish(t, nsrv.URL(), want)

			const restarts = 14
			var logs []string
			for k := 1; k <= restarts; k++ {
				if tc.fixBefore && k == restarts {
					break
				}
				s := startService(t, env)
				waitLog(t, s, "holding the batch in place", 60*time.Second)
				if k <= 12 {
					s.signal(syscall.SIGTERM)
					if code := s.wait(20 * time.Second); code != 0 {
						t.Fatalf("restart %d: exit %d after SIGTERM; logs:\n%s", k, code, s.logs.String())
					}
				} else {
					s.signal(syscall.SIGKILL)
					s.wait(10 * time.Second)
				}
				logs = append(logs, s.logs.String())
			}
			if d := dlqMessages(t, nsrv.URL()); len(d) != 0 {
				t.Fatalf("%d envelopes dead-lettered by restarts during a hold", len(d))
			}
			info := consumerState(t, nsrv.URL())
			t.Logf("after the restarts: %d delivered and unacked, %d redelivered, max_deliver %d", info.NumAckPending, info.NumRedelivered, info.Config.MaxDeliver)
			if info.Config.MaxDeliver != -1 {
				t.Errorf("the durable's JetStream max_deliver is %d, want -1 (unlimited)", info.Config.MaxDeliver)
			}

			if err := db.Conn.Exec(context.Background(), "ALTER TABLE processed_envelopes DROP COLUMN guard"); err != nil {
				t.Fatal(err)
			}
			s = startService(t, env)
			f := figures{scenario: "restarts-during-a-hold/" + tc.name, published: n}
			f.recovery = waitFinal(t, db.Conn, n, 120*time.Second, s)
			finishExact(t, db.Conn, nsrv.URL(), want, seed, &f, "restarts during a hold", s)
			logs = append(logs, s.logs.String())

			for k, l := range logs {
				if c := strings.Count(l, "messages dead-lettered"); c != 0 {
					t.Errorf("instance %d logged %d dead-letter lines:\n%s", k+1, c, l)
				}
				// One line for the hold it entered; the batch fetched ahead is given back at the
				// stop without a hold of its own.
				if c := strings.Count(l, "holding the batch in place"); k < len(logs)-1 && c != 1 {
					t.Errorf("instance %d logged %d hold lines, want 1:\n%s", k+1, c, l)
				}
				if lines := strings.Count(l, "\n"); lines > 40 {
					t.Errorf("instance %d logged %d lines; want one per state change, none per message:\n%s", k+1, lines, l)
				}
				// Each restart gets the held batch again: as messages delivered before (one ack
				// per message), or delivered again by its takeover of the durable, which names what
				// the earlier instance left unacknowledged (one ack per batch).
				if k > 0 && !strings.Contains(l, "batch holds messages delivered before") && takenOverUnacked(l) == 0 {
					t.Errorf("instance %d did not say that its batches were delivered before:\n%s", k+1, l)
				}
			}
			if tc.maxDeliver != "" && !strings.Contains(logs[0], "PONIX_NATS_MAX_DELIVER") {
				t.Errorf("PONIX_NATS_MAX_DELIVER set but not reported as ignored:\n%s", logs[0])
			}
		})
	}
}

// A ClickHouse that stops (SIGSTOP) keeps its connections open: the insert in flight makes no
// progress. Within PONIX_CLICKHOUSE_INSERT_TIMEOUT_SECS it is cancelled and the batch held as
// class unresponsive (/readyz 503 naming it, ponix_sink_blocked{class="unresponsive"} 1); after
// 60 s the server continues (SIGCONT) and every envelope is stored exactly once.
func TestSinkFaultClickHouseStopped(t *testing.T) {
	t.Parallel()
	srv, db, conn := ownClickHouse(t, t.TempDir(), 0)
	r := startSinkRun(t, 209, "clickhouse-sigstop", db, conn, func(env map[string]string) {
		env["PONIX_CLICKHOUSE_INSERT_TIMEOUT_SECS"] = "5"
	})
	r.fault()
	if err := srv.Pause(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Resume() })
	// The counts are read before the fault: conn cannot ask a stopped server.
	r.expectHold("sink", "unresponsive", "unresponsive", 0)
	// The configured 5 s bound, not the default 15 s, ends the insert (with room for a loaded
	// machine: the readiness poll, the classification, the race detector).
	if ev, _ := r.watch.firstNotReady(r.start, "sink", "unresponsive"); ev.at.Sub(r.start) > 5*time.Second+7*time.Second {
		t.Errorf("the hold was named %s after the fault, want within the 5 s bound (and a few seconds), before the default 15 s", ev.at.Sub(r.start).Round(time.Millisecond))
	}
	if code, body := httpGet(t, r.base+"/metrics"); code != http.StatusOK || !strings.Contains(body, `ponix_sink_blocked{class="unresponsive"} 1`) {
		t.Errorf("metrics during the hold lack ponix_sink_blocked{class=\"unresponsive\"} 1")
	}
	if d := time.Until(r.start.Add(60 * time.Second)); d > 0 {
		time.Sleep(d) // the server stays stopped for 60 s
	}
	logs := r.svc.logs.String()[r.logs0:]
	if c := strings.Count(logs, "holding the batch in place"); c != 1 {
		t.Errorf("%d hold lines during the stop, want 1:\n%s", c, logs)
	}
	if err := srv.Resume(); err != nil {
		t.Fatal(err)
	}
	if n := len(dlqMessages(t, r.natsURL)); n != 0 {
		t.Fatalf("%d messages dead-lettered while ClickHouse was stopped", n)
	}
	r.finish("ClickHouse stopped for 60 s", r.want)
}

// The ClickHouse user is made read-only, then restored. Connections opened meanwhile (inserts,
// readiness probes) keep the read-only profile; the service logs in anew after a permission
// fault, so the batch is stored at the first attempt after the fix: within one back-off step.
func TestSinkFaultReadOnlyUserRestored(t *testing.T) {
	t.Parallel()
	srv, db, conn := ownClickHouse(t, t.TempDir(), 0)
	proxy := startProxy(t, srv.Addr())
	r := startSinkRun(t, 210, "read-only-user", db, conn, func(env map[string]string) {
		env["PONIX_CLICKHOUSE_NATIVE_URL"] = proxy.addr()
	})
	r.fault()
	if err := srv.SetReadOnly(true); err != nil {
		t.Fatal(err)
	}
	waitReadOnly(t, conn, srv.Addr(), true)
	// Connections opened before keep their profile: drop them, as a restart of either side or
	// their age would, so that the service logs in as the read-only user.
	proxy.setDown(true)
	proxy.setDown(false)
	r.expectHoldAttempts("sink", "permission", "permission", 4)
	if err := srv.SetReadOnly(false); err != nil {
		t.Fatal(err)
	}
	waitReadOnly(t, conn, srv.Addr(), false)
	fixed := time.Now()
	before := rawCount(t, conn)
	// The hold's back-off doubles from 1 s to 30 s: the next attempt comes within 30 s.
	waitRaw(t, conn, before+1, 31*time.Second, r.svc)
	t.Logf("stored again %s after the fix", time.Since(fixed).Round(time.Millisecond))
	r.finish("a read-only user restored", r.want)
}

// waitReadOnly waits until a new connection as ponix to addr is read-only (or not): the server
// applies a changed users.xml a few seconds after it is written.
func waitReadOnly(t *testing.T, _ driver.Conn, addr string, readOnly bool) {
	t.Helper()
	want := map[bool]string{true: "1", false: "0"}[readOnly]
	waitFor(t, 30*time.Second, "readonly="+want+" for a new connection after users.xml changed", func() bool {
		got, err := readOnlySetting(addr)
		return err == nil && got == want
	})
}

// openPonix opens a new connection as ponix/ponix to the database ponix at addr.
func openPonix(addr string) (driver.Conn, error) {
	return ponixclickhouse.Open(context.Background(), ponixclickhouse.Config{Addr: addr, Database: "ponix", Username: "ponix", Password: "ponix"})
}

func readOnlySetting(addr string) (string, error) {
	c, err := openPonix(addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	var v string
	if err := c.QueryRow(context.Background(), "SELECT value FROM system.settings WHERE name = 'readonly'").Scan(&v); err != nil {
		return "", fmt.Errorf("reading the readonly setting: %w", err)
	}
	return v, nil
}
