//go:build integration

package main_test

// Sink faults an operator can fix: disk full, a rotated password, a table dropped, renamed or
// swapped for one without a column, ClickHouse killed. Each test runs the real binary against
// real servers with 20,000 envelopes, injects the fault mid-stream and checks that the service
// holds (nothing dead-lettered, nothing redelivered, /readyz 503 naming the cause within 10 s,
// the hold in the metrics), resumes by itself once the fault is fixed (/readyz 200), and that
// every envelope is then stored exactly once (FINAL).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	envelopev1 "buf.build/gen/go/ponix/ponix/protocolbuffers/go/envelope/v1"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/ponix-go/ponix/ponixclickhouse"
	"github.com/ponix-go/ponix/ponixclickhouse/chserver"
	"github.com/ponix-go/ponix/ponixclickhouse/chtest"
	"github.com/ponix-go/ponix/ponixnats/natstest"
)

// readyEvent is one answer of /readyz.
type readyEvent struct {
	at      time.Time
	code    int
	body    readiness
	blocked map[string]float64 // ponix_sink_blocked by class, scraped when not ready
}

// readyWatch polls /readyz every 100 ms (and /metrics while not ready) and keeps every answer.
type readyWatch struct {
	mu     sync.Mutex
	events []readyEvent
	stop   chan struct{}
	done   chan struct{}
}

func watchReady(t *testing.T, base string) *readyWatch {
	t.Helper()
	w := &readyWatch{stop: make(chan struct{}), done: make(chan struct{})}
	client := &http.Client{Timeout: 2 * time.Second}
	get := func(path string) (int, []byte) {
		resp, err := client.Get(base + path)
		if err != nil {
			return 0, nil
		}
		defer resp.Body.Close()
		var b strings.Builder
		buf := make([]byte, 32<<10)
		for {
			n, err := resp.Body.Read(buf)
			b.Write(buf[:n])
			if err != nil {
				break
			}
		}
		return resp.StatusCode, []byte(b.String())
	}
	go func() {
		defer close(w.done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-tick.C:
			}
			code, body := get("/readyz")
			if code == 0 {
				continue
			}
			ev := readyEvent{at: time.Now(), code: code}
			_ = json.Unmarshal(body, &ev.body)
			if code != http.StatusOK {
				ev.blocked = map[string]float64{}
				if mcode, m := get("/metrics"); mcode == http.StatusOK {
					for _, line := range strings.Split(string(m), "\n") {
						if rest, ok := strings.CutPrefix(line, `ponix_sink_blocked{class="`); ok {
							class, val, _ := strings.Cut(rest, `"} `)
							v, _ := strconv.ParseFloat(val, 64)
							ev.blocked[class] = v
						}
					}
				}
			}
			w.mu.Lock()
			w.events = append(w.events, ev)
			w.mu.Unlock()
		}
	}()
	t.Cleanup(w.close)
	return w
}

func (w *readyWatch) close() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
}

// firstNotReady returns the first 503 since from whose check named check contains text.
func (w *readyWatch) firstNotReady(from time.Time, check, text string) (readyEvent, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, ev := range w.events {
		if ev.at.After(from) && ev.code == http.StatusServiceUnavailable && strings.Contains(ev.body.Checks[check], text) {
			return ev, true
		}
	}
	return readyEvent{}, false
}

// sinkRun is one sink-fault scenario in progress.
type sinkRun struct {
	t       *testing.T
	conn    driver.Conn // counts and reads rows, opened before the fault
	natsURL string
	want    []*envelopev1.ProcessedEnvelope
	seed    uint64
	svc     *service
	base    string
	watch   *readyWatch
	pub     *publisher
	f       figures
	start   time.Time // the fault's start
	logs0   int       // log length at the fault's start
	// stored, if set, counts the rows stored (default: rawCount on conn). A cluster run counts
	// each shard on its replicas: a read through the Distributed table may meet a replica
	// that lags behind another, which is no new insert.
	stored func() uint64
}

// storedRows counts the rows stored so far (see sinkRun.stored).
func (r *sinkRun) storedRows() uint64 {
	if r.stored != nil {
		return r.stored()
	}
	return rawCount(r.t, r.conn)
}

// startSinkRun starts NATS, the service (configured from db, then by mod) and a publisher of
// 20,000 envelopes, and returns once the table holds the seeded fault point's row count.
func startSinkRun(t *testing.T, seed uint64, scenario string, db *chtest.Database, conn driver.Conn, mod func(env map[string]string)) *sinkRun {
	t.Helper()
	nsrv := natstest.New(t)
	ensureStream(t, nsrv.URL(), 1)
	r := &sinkRun{t: t, conn: conn, natsURL: nsrv.URL(), want: envelopes(faultN, seed), seed: seed}
	r.f = figures{scenario: scenario, published: faultN}
	at := faultPoint(t, seed)
	env := faultEnv(t, db, nsrv.URL())
	env["PONIX_HTTP_ADDR"] = "127.0.0.1:0"
	if mod != nil {
		mod(env)
	}
	r.startService(env)
	// 500 envelopes every 250 ms: the stream is still being published when the fault starts.
	r.pub = startPublisher(t, nsrv.URL(), r.want, 500, 250*time.Millisecond)
	waitRaw(t, conn, at, 90*time.Second, r.svc)
	return r
}

func (r *sinkRun) startService(env map[string]string) {
	r.svc = startService(r.t, env)
	r.base = httpBase(r.t, r.svc)
	r.watch = watchReady(r.t, r.base)
}

// fault marks the start of the fault.
func (r *sinkRun) fault() {
	r.start = time.Now()
	r.logs0 = len(r.svc.logs.String())
}

// expectHold checks the hold: within 10 s /readyz is 503 with check naming text and the metric
// ponix_sink_blocked{class} is 1 (class "" skips the metric); then, for hold, no row is
// stored, nothing is dead-lettered or redelivered, the consumer fetches no new batch, and the
// log stays quiet (no line per message). A hold of 0 checks the first part only.
func (r *sinkRun) expectHold(check, text, class string, hold time.Duration) {
	r.t.Helper()
	r.expectNotReady(check, text, class)
	if hold > 0 {
		r.checkHeld(hold.String(), func() { time.Sleep(hold) }) // a fault window of the caller's (the cluster's ZooKeeper stop)
	}
}

// expectHoldAttempts is expectHold over the hold's own attempts rather than a time: after the
// first part it waits until /readyz reports that the held batch was tried attempts times (4:
// 1+2+4 s of back-off, past AckWait, 6 s, so a batch the in-progress acks did not keep alive
// would have been redelivered), then checks that the hold stored, dead-lettered and redelivered
// nothing meanwhile. The rows are counted from the second attempt on: an insert whose data
// reached ClickHouse before the fault cut the connection may still commit on the server a
// moment later (seen on a loaded machine), which is not a row stored during the hold.
func (r *sinkRun) expectHoldAttempts(check, text, class string, attempts int) {
	r.t.Helper()
	r.expectNotReady(check, text, class)
	r.waitAttempts(min(2, attempts), 90*time.Second)
	r.checkHeld(fmt.Sprintf("%d attempts", attempts), func() { r.waitAttempts(attempts, 90*time.Second) })
}

// expectNotReady waits until /readyz is 503 with check naming text, within 10 s of the fault,
// and the metric ponix_sink_blocked{class} is 1 (class "" skips the metric).
func (r *sinkRun) expectNotReady(check, text, class string) {
	t := r.t
	t.Helper()
	var ev readyEvent
	waitFor(t, 10*time.Second, fmt.Sprintf("/readyz naming %s %q after the fault", check, text), func() bool {
		var ok bool
		ev, ok = r.watch.firstNotReady(r.start, check, text)
		return ok
	}, r.svc)
	t.Logf("/readyz 503 after %s: %s: %s", ev.at.Sub(r.start).Round(time.Millisecond), check, ev.body.Checks[check])
	if class != "" {
		waitFor(t, 10*time.Second, fmt.Sprintf("ponix_sink_blocked{class=%q} 1 during the hold", class), func() bool {
			return r.lastNotReady().blocked[class] == 1
		}, r.svc)
	}
}

// waitAttempts waits until /readyz reports that the held batch was tried at least n times.
func (r *sinkRun) waitAttempts(n int, within time.Duration) {
	r.t.Helper()
	waitFor(r.t, within, fmt.Sprintf("/readyz reporting %d attempts of the held batch", n), func() bool {
		return holdAttempts(r.lastNotReady().body.Checks[pipelineCheckSink]) >= n
	}, r.svc)
}

// pipelineCheckSink is the readiness check of held batches.
const pipelineCheckSink = "sink"

// checkHeld runs hold (named span in messages) and checks that meanwhile no row was stored,
// nothing dead-lettered or redelivered, at most the two batches in hand are unacked, /readyz
// stayed 503 and the log quiet.
func (r *sinkRun) checkHeld(span string, hold func()) {
	t := r.t
	t.Helper()
	rows := r.storedRows()
	hold()
	if now := r.storedRows(); now != rows {
		t.Errorf("rows went from %d to %d while the sink was failing", rows, now)
	}
	if n := len(dlqMessages(t, r.natsURL)); n != 0 {
		t.Fatalf("%d messages dead-lettered during a sink fault", n)
	}
	info := consumerState(t, r.natsURL)
	if info.NumRedelivered != 0 || info.NumAckPending > 1000 {
		t.Errorf("during the hold: %d redelivered, %d delivered and unacked; want 0 and at most two batches (500 each)",
			info.NumRedelivered, info.NumAckPending)
	}
	if code, body := httpGet(t, r.base+"/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz %d %s after %s of hold, want 503", code, body, span)
	}
	logs := r.svc.logs.String()[r.logs0:]
	if n := strings.Count(logs, "\n"); n > 25 {
		t.Errorf("%d log lines during a %s hold; want a few (one per back-off step):\n%s", n, span, logs)
	}
}

func (r *sinkRun) lastNotReady() readyEvent {
	r.watch.mu.Lock()
	defer r.watch.mu.Unlock()
	for i := len(r.watch.events) - 1; i >= 0; i-- {
		if r.watch.events[i].code != http.StatusOK {
			return r.watch.events[i]
		}
	}
	return readyEvent{}
}

// finish is called when the fault is fixed: the service resumes by itself, /readyz is 200
// again, and the table ends holding want exactly once, with nothing dead-lettered.
func (r *sinkRun) finish(fault string, want []*envelopev1.ProcessedEnvelope) {
	t := r.t
	t.Helper()
	fixed := time.Now()
	r.f.faultDuration = fixed.Sub(r.start)
	r.f.published = len(want)
	r.pub.wait(t, 120*time.Second)
	defer func() {
		if t.Failed() {
			reportMissing(t, r.conn, r.natsURL, want)
		}
	}()
	r.f.recovery = waitFinal(t, r.conn, uint64(len(want)), 120*time.Second, r.svc)
	waitReady(t, r.svc, r.base, http.StatusOK, 30*time.Second)
	t.Logf("resumed: /readyz 200 %s after the fix", time.Since(fixed).Round(time.Millisecond))
	finishExact(t, r.conn, r.natsURL, want, r.seed, &r.f, fault, r.svc)
}

// ownClickHouse starts a clickhouse-server of the test's own in dir (kept on Stop) with user
// ponix/ponix and database ponix, and returns it with an admin connection to that database.
func ownClickHouse(t *testing.T, dir string, port int) (*chserver.Server, *chtest.Database, driver.Conn) {
	t.Helper()
	ctx := context.Background()
	srv, err := chserver.Start(ctx, chserver.Config{Dir: dir, TCPPort: port, User: "ponix", Password: "ponix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop(context.Background()) })
	admin, err := ponixclickhouse.Open(ctx, ponixclickhouse.Config{Addr: srv.Addr(), Database: "default", Username: "ponix", Password: "ponix"})
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.Exec(ctx, "CREATE DATABASE IF NOT EXISTS ponix"); err != nil {
		t.Fatal(err)
	}
	admin.Close()
	conn, err := ponixclickhouse.Open(ctx, ponixclickhouse.Config{Addr: srv.Addr(), Database: "ponix", Username: "ponix", Password: "ponix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	db := &chtest.Database{Name: "ponix", Config: ponixclickhouse.Config{Addr: srv.Addr(), Username: "ponix", Password: "ponix"}}
	return srv, db, conn
}

func portOf(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// mountTmpfs mounts a tmpfs of size at dir (root only) and unmounts it at the end of the test.
func mountTmpfs(t *testing.T, dir, size string) {
	t.Helper()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs at %s (the disk-full test needs root): %v: %s", dir, err, out)
	}
	t.Cleanup(func() {
		for range 50 {
			if exec.Command("umount", dir).Run() == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
}

// fillDisk writes a file into dir until the filesystem is full and returns its path.
func fillDisk(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 1<<20)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			return path
		}
	}
}

// ClickHouse's disk fills up mid-stream (its data directory is a 300 MB tmpfs), then space is
// freed.
func TestSinkFaultDiskFull(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		t.Fatal(err)
	}
	mountTmpfs(t, data, "300m")
	_, db, conn := ownClickHouse(t, dir, 0)
	r := startSinkRun(t, 201, "disk-full", db, conn, nil)
	r.fault()
	filler := fillDisk(t, data)
	r.expectHoldAttempts("sink", "storage", "storage", 4)
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	r.finish("a full disk", r.want)
}

// The ClickHouse user's password is changed in users.xml (connections are dropped, so new ones
// must log in again), then restored.
func TestSinkFaultPasswordRotated(t *testing.T) {
	t.Parallel()
	srv, db, conn := ownClickHouse(t, t.TempDir(), 0)
	proxy := startProxy(t, srv.Addr())
	r := startSinkRun(t, 202, "password-rotated", db, conn, func(env map[string]string) {
		env["PONIX_CLICKHOUSE_NATIVE_URL"] = proxy.addr()
	})
	r.fault()
	if err := srv.SetPassword("rotated-elsewhere"); err != nil {
		t.Fatal(err)
	}
	// The server reloads users.xml by itself within a few seconds: wait until the old password
	// is refused, then drop the connections that logged in with it.
	waitPasswordTaken(t, srv.Addr(), false)
	proxy.setDown(true)
	proxy.setDown(false)
	r.expectHoldAttempts("sink", "authentication", "authentication", 4)
	if err := srv.SetPassword("ponix"); err != nil {
		t.Fatal(err)
	}
	// The fix is in place once the server has reloaded users.xml and takes the password again.
	waitPasswordTaken(t, srv.Addr(), true)
	r.finish("a rotated password", r.want)
}

// waitPasswordTaken waits until a new connection as ponix/ponix to addr succeeds (taken) or is
// refused (!taken): clickhouse-server applies a changed users.xml a few seconds after it is written.
func waitPasswordTaken(t *testing.T, addr string, taken bool) {
	t.Helper()
	waitFor(t, 30*time.Second, fmt.Sprintf("a login with the password ponix taken=%v after users.xml changed", taken), func() bool {
		c, err := openPonix(addr)
		if err == nil {
			c.Close()
		}
		return (err == nil) == taken
	})
}

// ClickHouse is killed (SIGKILL) mid-stream and started again on its data once the held batch
// was tried four times.
func TestSinkFaultClickHouseKilled(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv, db, conn := ownClickHouse(t, dir, 0)
	port := portOf(t, srv.Addr())
	r := startSinkRun(t, 203, "clickhouse-sigkill", db, conn, nil)
	r.fault()
	if err := srv.Kill(); err != nil {
		t.Fatal(err)
	}
	r.expectHold("sink", "unreachable", "unreachable", 0)
	// ClickHouse stays down while the held batch is tried again and again (1+2+4 s of
	// back-off, past AckWait).
	r.waitAttempts(4, 90*time.Second)
	if n := len(dlqMessages(t, r.natsURL)); n != 0 {
		t.Fatalf("%d messages dead-lettered while ClickHouse was down", n)
	}
	srv2, err := chserver.Start(context.Background(), chserver.Config{Dir: dir, TCPPort: port, User: "ponix", Password: "ponix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv2.Stop(context.Background()) })
	conn2, err := ponixclickhouse.Open(context.Background(), ponixclickhouse.Config{Addr: srv2.Addr(), Database: "ponix", Username: "ponix", Password: "ponix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn2.Close() })
	r.conn = conn2
	r.finish("ClickHouse killed", r.want)
}

// The table is renamed away (a mistaken RENAME) and renamed back 20 s later: the service holds
// (it must not create a second table while the first exists under another name) and resumes.
func TestSinkFaultTableRenamedAwayAndBack(t *testing.T) {
	t.Parallel()
	db := chSrv.NewDatabase(t)
	r := startSinkRun(t, 204, "table-renamed", db, db.Conn, nil)
	r.fault()
	exec := func(q string) {
		if err := db.Conn.Exec(context.Background(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	exec("RENAME TABLE processed_envelopes TO processed_envelopes_away")
	r.expectHoldAttempts("schema", "renamed?", "schema", 4)
	exec("RENAME TABLE processed_envelopes_away TO processed_envelopes")
	r.finish("a renamed table", r.want)
}

// A column is "renamed" as 18.16 allows: the table is swapped for a copy whose data column is
// called payload; 20 s later the original is swapped back.
func TestSinkFaultColumnRenamedByTableSwap(t *testing.T) {
	t.Parallel()
	db := chSrv.NewDatabase(t)
	r := startSinkRun(t, 205, "column-renamed", db, db.Conn, nil)
	exec := func(q string) {
		if err := db.Conn.Exec(context.Background(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	exec(`CREATE TABLE processed_envelopes_swap (organization_id String, end_device_id String, occurred_at DateTime,
		processed_at DateTime, payload String, stream_created_ns UInt64, stream_seq UInt64) ENGINE = ReplacingMergeTree()
		PARTITION BY toYYYYMM(occurred_at) ORDER BY (organization_id, occurred_at, end_device_id, stream_created_ns, stream_seq)`)
	r.fault()
	exec("RENAME TABLE processed_envelopes TO processed_envelopes_orig, processed_envelopes_swap TO processed_envelopes")
	r.expectHoldAttempts("schema", "has no column data", "schema", 4)
	exec("RENAME TABLE processed_envelopes TO processed_envelopes_swap, processed_envelopes_orig TO processed_envelopes")
	r.finish("a column renamed by a table swap", r.want)
}

// dropTable drops the table as an operator would, knowing exactly which rows went with it: it
// is renamed away atomically, the inserts that may still write to it are waited for, its device
// ids read, then it is dropped. It returns the envelopes of want whose rows were not dropped:
// those the table must hold in the end.
func dropTable(t *testing.T, conn driver.Conn, want []*envelopev1.ProcessedEnvelope) []*envelopev1.ProcessedEnvelope {
	t.Helper()
	ctx := context.Background()
	// The table is moved (atomically, so that the rows it held are known exactly) into another
	// database, where the service does not look for a renamed copy, and dropped there: in its own
	// database the service would see a rename while the rows are read, and rightly say so.
	var name string
	if err := conn.QueryRow(ctx, "SELECT currentDatabase()").Scan(&name); err != nil {
		t.Fatal(err)
	}
	graveyard := name + "_graveyard"
	if err := conn.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+graveyard); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+graveyard) }()
	dropped := graveyard + ".processed_envelopes_dropped"
	if err := conn.Exec(ctx, "RENAME TABLE processed_envelopes TO "+dropped); err != nil {
		t.Fatal(err)
	}
	// An INSERT that found the table by its name before the rename, and waited for its lock
	// behind the rename (behind a read, say), writes to it under its new name after the rename
	// returned; the service then acknowledges those rows, rightly. Read the table before that
	// INSERT returns and the drop takes rows the test still expects (CI saw 500 such rows). So
	// wait until no INSERT that started before the rename runs (in any database: seconds).
	renamed := time.Now()
	waitFor(t, 30*time.Second, "the INSERTs that started before the rename to return", func() bool {
		var n uint64
		err := conn.QueryRow(ctx, "SELECT count() FROM system.processes WHERE query LIKE 'INSERT%' AND elapsed > ?",
			max(0, time.Since(renamed).Seconds()-0.5)).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		return n == 0
	})
	rows, err := conn.Query(ctx, "SELECT DISTINCT end_device_id FROM "+dropped)
	if err != nil {
		t.Fatal(err)
	}
	gone := map[string]bool{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		gone[id] = true
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rows.Close()
	var raw uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM "+dropped).Scan(&raw); err != nil {
		t.Fatal(err)
	}
	if raw != uint64(len(gone)) {
		t.Errorf("the dropped table held %d rows of %d envelopes: some stored twice", raw, len(gone))
	}
	if err := conn.Exec(ctx, "DROP TABLE "+dropped); err != nil {
		t.Fatal(err)
	}
	var keep []*envelopev1.ProcessedEnvelope
	for _, e := range want {
		if !gone[e.GetEndDeviceId()] {
			keep = append(keep, e)
		}
	}
	t.Logf("dropped the table with %d rows; %d envelopes are still to be stored", len(gone), len(keep))
	return keep
}

// The table is dropped by mistake while the service runs: the migrations are recorded as
// applied, yet the service creates the table again by itself and goes on. Rows stored before
// the drop are gone with the table (the operator's doing); every other envelope is stored
// exactly once.
func TestSinkFaultTableDropped(t *testing.T) {
	t.Parallel()
	db := chSrv.NewDatabase(t)
	r := startSinkRun(t, 206, "table-dropped", db, db.Conn, nil)
	r.fault()
	want := dropTable(t, db.Conn, r.want)
	r.expectHold("schema", "does not exist", "schema", 0)
	r.finish("a dropped table", want)
	if !strings.Contains(r.svc.logs.String(), "applying the migrations again") {
		t.Error("the service did not say that it applied the migrations again")
	}
	// A table the service created again by itself is no error of the operator's to fix.
	if strings.Contains(r.svc.logs.String(), "level=ERROR") {
		t.Errorf("an ERROR line for a table the service created again:\n%s", r.svc.logs.String())
	}
}

// The table is dropped while the service is stopped; the restarted service finds the
// migrations recorded as applied and the table missing, creates it again and consumes the
// rest of the stream.
func TestSinkFaultTableDroppedThenRestart(t *testing.T) {
	t.Parallel()
	db := chSrv.NewDatabase(t)
	var env map[string]string
	r := startSinkRun(t, 207, "table-dropped+restart", db, db.Conn, func(e map[string]string) { env = e })
	stopService(t, r.svc)
	r.watch.close()
	want := dropTable(t, db.Conn, r.want)
	r.fault()
	r.startService(env)
	r.expectHold("schema", "does not exist", "", 0)
	r.finish("a table dropped while the service was stopped", want)
	if !strings.Contains(r.svc.logs.String(), "applying the migrations again") {
		t.Error("the restarted service did not say that it applied the migrations again")
	}
}

// SIGTERM while ClickHouse is down: the service exits 0 within PONIX_SHUTDOWN_TIMEOUT_SECS (the
// held batch is nak'd, never acked), and a restarted service stores every envelope exactly once
// once ClickHouse is back.
func TestSinkFaultSIGTERMDuringOutage(t *testing.T) {
	t.Parallel()
	db := chSrv.NewDatabase(t)
	proxy := startProxy(t, db.Config.Addr)
	var env map[string]string
	r := startSinkRun(t, 208, "sigterm-during-outage", db, db.Conn, func(e map[string]string) {
		e["PONIX_CLICKHOUSE_NATIVE_URL"] = proxy.addr()
		e["PONIX_SHUTDOWN_TIMEOUT_SECS"] = "6"
		env = e
	})
	r.fault()
	proxy.setDown(true)
	r.expectHoldAttempts("sink", "unreachable", "unreachable", 4)
	start := time.Now()
	r.svc.signal(syscall.SIGTERM)
	if code := r.svc.wait(30 * time.Second); code != 0 {
		t.Fatalf("exit %d after SIGTERM during the outage; logs:\n%s", code, r.svc.logs.String())
	}
	took := time.Since(start)
	t.Logf("exit 0 %s after SIGTERM, ClickHouse down", took.Round(time.Millisecond))
	if took > 6*time.Second {
		t.Errorf("exit took %s, more than PONIX_SHUTDOWN_TIMEOUT_SECS=6", took)
	}
	r.watch.close()
	proxy.setDown(false)
	r.startService(env)
	r.finish("SIGTERM during an outage", r.want)
}

// An idle service stops within about a second: the pull request in flight expires after a
// second at most, whatever PONIX_NATS_BATCH_WAIT_SECS says.
func TestIdleStopIsQuick(t *testing.T) {
	db := chSrv.NewDatabase(t)
	nsrv := natstest.New(t)
	env := faultEnv(t, db, nsrv.URL())
	env["PONIX_NATS_BATCH_WAIT_SECS"] = "5"
	s := startService(t, env)
	waitLog(t, s, "durable consumer created", 30*time.Second)
	// Idle, with a pull request in flight: the server holds it waiting for messages.
	waitFor(t, 30*time.Second, "a pull request waiting on the idle consumer", func() bool {
		return consumerState(t, nsrv.URL()).NumWaiting > 0
	}, s)
	start := time.Now()
	s.terminate()
	took := time.Since(start)
	t.Logf("idle stop took %s (batch wait 5 s)", took.Round(time.Millisecond))
	if took >= 3*time.Second {
		t.Errorf("idle stop took %s; a stop must not wait out the 5 s batch wait", took)
	}
}
