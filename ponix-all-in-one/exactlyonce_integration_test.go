//go:build integration

package main_test

// Exactly once into the table and into a materialized view on it (issue 19). Each test puts a
// SummingMergeTree view (a count per end_device_id) on processed_envelopes once the service has
// created the table, stops the table's merges (a copy inserted twice stays visible to a raw
// count()), injects one fault mid-stream and ends with raw count() = count() FINAL = the view's
// sum = the number published, and nothing dead-lettered. The faults are placed at the moment
// that used to store a copy: rows committed in ClickHouse whose acks never reached JetStream.

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	envelopev1 "buf.build/gen/go/ponix/ponix/protocolbuffers/go/envelope/v1"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ponix-go/ponix/ponixclickhouse/chtest"
	"github.com/ponix-go/ponix/ponixnats/natstest"
)

const (
	// exactN envelopes per test, published 500 every 100 ms.
	exactN = 10_000
	// exactAckWait is the services' PONIX_NATS_ACK_WAIT_SECS: a stall past it is quick to make.
	exactAckWait = 3 * time.Second
	// alreadyStored is the service's log line for a batch whose messages were found stored.
	alreadyStored = "messages delivered before are stored already"
)

// perMessage sets env to acknowledge each message on its own (PONIX_NATS_ACK=message), where
// instances share a durable side by side.
func perMessage(env map[string]string) map[string]string {
	env["PONIX_NATS_ACK"] = "message"
	return env
}

// exactEnv is faultEnv with a short AckWait.
func exactEnv(t *testing.T, db *chtest.Database, natsURL, chAddr string) map[string]string {
	env := faultEnv(t, db, natsURL)
	env["PONIX_NATS_ACK_WAIT_SECS"] = strconv.Itoa(int(exactAckWait / time.Second))
	env["PONIX_CLICKHOUSE_NATIVE_URL"] = chAddr
	return env
}

// startConsuming starts the service and waits until it consumes (the table exists and fits).
func startConsuming(t *testing.T, env map[string]string) *service {
	t.Helper()
	s := startService(t, env)
	waitLog(t, s, "fits the writer: consuming", 60*time.Second)
	return s
}

// addCountView puts the view on the table the service created and stops the table's merges.
func addCountView(t *testing.T, conn driver.Conn) {
	t.Helper()
	ctx := context.Background()
	for _, q := range []string{
		"CREATE MATERIALIZED VIEW envelopes_per_device ENGINE = SummingMergeTree() ORDER BY end_device_id " +
			"AS SELECT end_device_id, count() AS envelopes FROM processed_envelopes GROUP BY end_device_id",
		"SYSTEM STOP MERGES processed_envelopes",
	} {
		if err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// exactCounts returns the table's raw count(), its count() FINAL, its distinct end_device_ids
// and the view's sum.
func exactCounts(t *testing.T, conn driver.Conn) (raw, final, distinct, view uint64) {
	t.Helper()
	final, distinct, raw = tableCounts(t, conn)
	if err := conn.QueryRow(context.Background(), "SELECT sum(envelopes) FROM envelopes_per_device").Scan(&view); err != nil {
		t.Fatal(err)
	}
	return raw, final, distinct, view
}

// sumStored adds the stored=N of the service's already-stored log lines.
func sumStored(logs string) int {
	total := 0
	for _, line := range strings.Split(logs, "\n") {
		if _, rest, ok := strings.Cut(line, alreadyStored); ok {
			if _, v, ok := strings.Cut(rest, " stored="); ok {
				n, _ := strconv.Atoi(strings.Fields(v)[0])
				total += n
			}
		}
	}
	return total
}

// finishExactlyOnce waits until every published envelope is stored and acknowledged (the
// durable has nothing pending nor unacknowledged: no copy can still come), stops svcs and
// checks raw = FINAL = view = len(want), every envelope stored, nothing dead-lettered. It
// returns how many envelopes the services found stored already.
func finishExactlyOnce(t *testing.T, conn driver.Conn, natsURL string, want []*envelopev1.ProcessedEnvelope, seed uint64, scenario string, svcs ...*service) int {
	t.Helper()
	n := uint64(len(want))
	waitFinal(t, conn, n, 90*time.Second, svcs...)
	deadline := time.Now().Add(60 * time.Second)
	for {
		info := consumerState(t, natsURL)
		if info.NumPending == 0 && info.NumAckPending == 0 && info.NumRedelivered == 0 {
			break
		}
		checkAlive(t, svcs...)
		if time.Now().After(deadline) {
			t.Fatalf("consumer still has %d pending, %d unacknowledged, %d redelivered%s", info.NumPending, info.NumAckPending, info.NumRedelivered, serviceLogs(svcs...))
		}
		time.Sleep(100 * time.Millisecond)
	}
	already := 0
	for _, s := range svcs {
		stopService(t, s)
		already += sumStored(s.logs.String())
	}
	raw, final, distinct, view := exactCounts(t, conn)
	dead := len(dlqMessages(t, natsURL))
	t.Logf("EXACTLY-ONCE scenario=%s published=%d raw=%d final=%d distinct=%d view_sum=%d dead_lettered=%d already_stored=%d",
		scenario, n, raw, final, distinct, view, dead, already)
	if raw != n || final != n || view != n {
		t.Errorf("raw count() %d, count() FINAL %d, view sum %d: want %d each (no copy in the table nor in the view)", raw, final, view, n)
	}
	if dead != 0 {
		t.Errorf("%d messages dead-lettered", dead)
	}
	var f figures
	checkExact(t, conn, want, seed, &f)
	return already
}

// exactRun is one scenario: a database (the view is added once a service consumes), a NATS
// server holding the stream, exactN envelopes to publish.
type exactRun struct {
	t       *testing.T
	db      *chtest.Database
	gate    *answerGate
	natsURL string
	want    []*envelopev1.ProcessedEnvelope
	seed    uint64
	at      uint64 // the raw row count after which the fault is injected
}

// newExactRun prepares a scenario on the NATS server at natsURL ("": an embedded one of its own).
func newExactRun(t *testing.T, seed uint64, natsURL string) *exactRun {
	t.Helper()
	if natsURL == "" {
		natsURL = natstest.New(t).URL()
	}
	ensureStream(t, natsURL, 1)
	db := chSrv.NewDatabase(t)
	r := &exactRun{t: t, db: db, gate: startAnswerGate(t, db.Config.Addr), natsURL: natsURL, want: envelopes(exactN, seed), seed: seed}
	r.at = uint64(exactN * (20 + rand.New(rand.NewPCG(seed, 0x5eed)).IntN(41)) / 100)
	t.Logf("seed %d: fault after %d of %d rows", seed, r.at, exactN)
	return r
}

// startExactRun prepares a scenario with one service writing through the gate, and
// publishes until the fault point.
func startExactRun(t *testing.T, seed uint64) (*exactRun, *service, *publisher) {
	t.Helper()
	r := newExactRun(t, seed, "")
	s := startConsuming(t, r.env(false))
	return r, s, r.publishAndWait(s)
}

// env is the configuration of a service writing through the gate (or, direct, to ClickHouse).
func (r *exactRun) env(direct bool) map[string]string {
	addr := r.gate.addr()
	if direct {
		addr = r.db.Config.Addr
	}
	return exactEnv(r.t, r.db, r.natsURL, addr)
}

// publishAndWait adds the view (the services given consume already), starts the publisher
// and returns once the fault point is stored.
func (r *exactRun) publishAndWait(svcs ...*service) *publisher {
	r.t.Helper()
	addCountView(r.t, r.db.Conn)
	pub := startPublisher(r.t, r.natsURL, r.want, 500, 100*time.Millisecond)
	waitRaw(r.t, r.db.Conn, r.at, 60*time.Second, svcs...)
	return pub
}

// waitRedelivered waits until the durable has delivered a message again: it has redelivered
// messages unacknowledged, or a service said it was handed some (they may have been found stored
// and acknowledged between two looks at the durable).
func (r *exactRun) waitRedelivered(svcs ...*service) {
	r.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	handed := func() bool {
		for _, s := range svcs {
			if strings.Contains(s.logs.String(), "batch holds messages delivered before") {
				return true
			}
		}
		return false
	}
	for consumerState(r.t, r.natsURL).NumRedelivered == 0 && !handed() {
		checkAlive(r.t, svcs...)
		if time.Now().After(deadline) {
			r.t.Fatalf("no message delivered again within 30 s%s", serviceLogs(svcs...))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// finish waits for the publisher (if any), then checks the outcome (see finishExactlyOnce).
func (r *exactRun) finish(pub *publisher, scenario string, svcs ...*service) int {
	r.t.Helper()
	if pub != nil {
		pub.wait(r.t, 60*time.Second)
	}
	return finishExactlyOnce(r.t, r.db.Conn, r.natsURL, r.want, r.seed, scenario, svcs...)
}

// holdInsertAnswer arms the gate and waits until it holds the answer to an insert.
func (r *exactRun) holdInsertAnswer(svcs ...*service) {
	r.t.Helper()
	r.gate.arm()
	r.waitHeld(svcs...)
}

// waitHeld waits until the armed gate holds the answer to an insert: its rows are committed,
// the service has not heard so, and its acks are not sent.
func (r *exactRun) waitHeld(svcs ...*service) {
	r.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !r.gate.holding() {
		checkAlive(r.t, svcs...)
		if time.Now().After(deadline) {
			r.t.Fatalf("no insert answer held within 30 s%s", serviceLogs(svcs...))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// (a) The service is SIGKILLed between an insert and its acks (ClickHouse committed the
// batch, its answer is held), then started again: the batch is delivered again after AckWait,
// found stored and acknowledged without a second insert.
func TestExactlyOnceSIGKILLBetweenInsertAndAcks(t *testing.T) {
	t.Parallel()
	r, s, pub := startExactRun(t, 401)

	r.holdInsertAnswer(s)
	s.signal(syscall.SIGKILL)
	s.wait(10 * time.Second)
	r.gate.release()
	info := consumerState(t, r.natsURL)
	t.Logf("killed with %d messages unacknowledged, %d rows stored", info.NumAckPending, rawCount(t, r.db.Conn))

	s2 := startService(t, r.env(false))
	if already := r.finish(pub, "sigkill-between-insert-and-acks", s2); already == 0 && skippedStored([]*service{s2}) == 0 {
		t.Error("the restarted service neither found a message stored already nor resumed after stored ones: the kill did not fall between an insert and its acks")
	}
}

// (c) An insert slower than AckWait because the service is stalled — the operator's probe of
// issue 19: SIGSTOP while the answer to an insert is held (its rows committed), for longer than
// AckWait, then SIGCONT. The service has caught up with the stream, so its pull is given the
// batch's messages again. Acknowledging per message, they are found stored and acknowledged
// without a second insert. Acknowledging per batch, the instance still owns the durable after
// the stall (no other instance took its key over): the messages delivered again come to its own
// pulls and are found stored, or the batch fetched before the stall is checked against the owner
// key (it waited past half its TTL) and processed.
func TestExactlyOnceServiceStalledPastAckWait(t *testing.T) {
	for _, mode := range []string{"batch", "message"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			r := newExactRun(t, 402, "")
			env := r.env(false)
			env["PONIX_NATS_ACK"] = mode
			s := startConsuming(t, env)
			addCountView(t, r.db.Conn)
			publish(t, r.natsURL, r.want[:r.at])
			waitRaw(t, r.db.Conn, r.at, 60*time.Second, s)

			r.gate.arm()
			publish(t, r.natsURL, r.want[r.at:r.at+500]) // one batch, the last one for now
			r.waitHeld(s)
			s.signal(syscall.SIGSTOP)
			time.Sleep(exactAckWait + 2*time.Second) // the fault: stalled past AckWait
			resumed := time.Now()
			s.signal(syscall.SIGCONT)
			r.waitRedelivered(s)
			r.gate.release()
			publish(t, r.natsURL, r.want[r.at+500:])
			already := r.finish(nil, "stalled-past-ackwait-"+mode, s)
			if already == 0 && skippedStored([]*service{s}) == 0 && (mode == "message" || loggedSince(s, ownsLine, resumed) == 0) {
				t.Error("the messages delivered again were neither found stored, nor skipped by a takeover that started after them")
			}
		})
	}
}

// (c') An instance stalled in the middle of an insert, past the moment its batch is handed to
// another instance: two instances on one durable, the rows of one's insert half sent (the gate
// holds the rest, as a paused process leaves it) when it is stopped (SIGSTOP). The other is
// given the batch — acknowledging per batch it takes the durable over once the stalled owner's
// key has gone unrenewed for its TTL; per message, the batch's AckWait expires — and stores it.
// ClickHouse gave the stalled insert up meanwhile (the writer's stall timeout, half the
// takeover time), so when the instance goes on and the rest of its rows reach the server, they
// are not stored: without the stall timeout the server waited for them and committed a second
// copy of the batch (raw count and view 500 over, in both modes).
func TestExactlyOnceInstanceStalledMidInsert(t *testing.T) {
	for _, mode := range []string{"batch", "message"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			r := newExactRun(t, 440, "")
			env := func() map[string]string {
				e := r.env(false)
				e["PONIX_NATS_ACK"] = mode
				return e
			}
			svcs := []*service{startConsuming(t, env()), startConsuming(t, env())}
			addCountView(t, r.db.Conn)
			publish(t, r.natsURL, r.want[:r.at])
			waitRaw(t, r.db.Conn, r.at, 60*time.Second, svcs...)

			r.gate.armStall()
			publish(t, r.natsURL, r.want[r.at:r.at+500])
			port := r.gate.waitStalled(t, svcs...)
			stalled := -1
			for i, s := range svcs {
				if slices.Contains(localTCPPorts(t, s.cmd.Process.Pid), uint16(port)) {
					stalled = i
				}
			}
			if stalled < 0 {
				t.Fatalf("no instance holds the connection of the stalled insert (port %d)", port)
			}
			svcs[stalled].signal(syscall.SIGSTOP)
			other := svcs[1-stalled]
			// The other instance is given the batch and stores it.
			waitRaw(t, r.db.Conn, r.at+500, 60*time.Second, other)
			svcs[stalled].signal(syscall.SIGCONT)
			r.gate.releaseStall()
			// The stalled insert is over (given up long ago, or — without a stall timeout —
			// committed now that the rest of its rows arrived).
			waitFor(t, 30*time.Second, "no insert of the stalled instance left in ClickHouse", func() bool {
				var n uint64
				if err := r.db.Conn.QueryRow(t.Context(), "SELECT count() FROM system.processes WHERE query LIKE 'INSERT INTO%' AND port = ?", uint16(port)).Scan(&n); err != nil {
					t.Fatal(err)
				}
				return n == 0
			}, svcs...)
			publish(t, r.natsURL, r.want[r.at+500:])
			r.finish(nil, "stalled-mid-insert-"+mode, svcs...)
		})
	}
}

// (b) NATS (a nats-server process with a file store) is SIGKILLed mid-stream while the answer
// to an insert is held, and started again on the same store and port. The service stores the
// batch, cannot acknowledge it while NATS is down, reconnects, and is usually given the batch
// again — often as first deliveries (delivery count 1): the killed server lost the consumer's
// latest state. Those must be found stored too, not inserted again.
func TestExactlyOnceNATSKilledAndRestarted(t *testing.T) {
	t.Parallel()
	ns := startNATSProcess(t)
	r := newExactRun(t, 405, ns.url)
	s := startConsuming(t, r.env(false))
	pub := r.publishAndWait(s)

	r.holdInsertAnswer(s)
	ns.kill()
	waitLog(t, s, "NATS disconnected", 30*time.Second)
	r.gate.release()
	ns.start()
	waitLog(t, s, "NATS reconnected", 30*time.Second)
	r.finish(pub, "nats-sigkill-restart", s)
	t.Logf("publisher retried %d chunks", pub.retries.Load())
}

// natsProcess is a nats-server process with JetStream and a file store, which a test can
// SIGKILL and start again on the same store and port.
type natsProcess struct {
	t        *testing.T
	bin, dir string
	port     int
	url      string
	cmd      *exec.Cmd
	done     chan struct{}
}

// startNATSProcess builds nats-server (the version the workspace uses) and starts it.
func startNATSProcess(t *testing.T) *natsProcess {
	t.Helper()
	tmp := t.TempDir()
	n := &natsProcess{t: t, bin: tmp + "/nats-server", dir: tmp + "/store", port: freePort(t)}
	n.url = fmt.Sprintf("nats://127.0.0.1:%d", n.port)
	if out, err := exec.Command("go", "build", "-o", n.bin, "github.com/nats-io/nats-server/v2").CombinedOutput(); err != nil {
		t.Fatalf("building nats-server: %v\n%s", err, out)
	}
	n.start()
	t.Cleanup(func() {
		if n.cmd != nil {
			_ = n.cmd.Process.Kill()
			<-n.done
		}
	})
	return n
}

// start runs the server and waits until JetStream answers.
func (n *natsProcess) start() {
	t := n.t
	t.Helper()
	n.cmd = exec.Command(n.bin, "-js", "-sd", n.dir, "-a", "127.0.0.1", "-p", strconv.Itoa(n.port))
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	n.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { _ = cmd.Wait(); close(done) }(n.cmd, n.done)
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := n.ping()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nats-server not ready within 30 s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (n *natsProcess) ping() error {
	nc, err := nats.Connect(n.url, nats.Timeout(time.Second))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err = js.AccountInfo(ctx)
	return err
}

// kill SIGKILLs the server and waits for it to exit.
func (n *natsProcess) kill() {
	n.t.Helper()
	if err := n.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		n.t.Fatal(err)
	}
	<-n.done
	n.cmd = nil
}

// (d) The durable consumer is deleted while the answer to an insert is held (its rows
// committed, its acks not sent): the acks fail, the service creates the consumer again and
// resumes after the stored messages (the Key's resume point; the default, after the last ack
// floor read, would deliver the batch again as first deliveries); nothing is stored twice.
func TestExactlyOnceConsumerDeletedWhileRunning(t *testing.T) {
	t.Parallel()
	r, s, pub := startExactRun(t, 403)

	r.holdInsertAnswer(s)
	if err := dlqJS(t, r.natsURL).DeleteConsumer(context.Background(), "processed_envelopes", "ponix-all-in-one"); err != nil {
		t.Fatal(err)
	}
	r.gate.release()
	waitLog(t, s, "the durable consumer no longer exists", 30*time.Second)
	waitLog(t, s, "resuming after the stored messages", 30*time.Second)
	r.finish(pub, "consumer-deleted", s)
}

// (e) Two instances on one durable; one is stalled (SIGSTOP) between an insert and its acks
// for longer than AckWait, so the other is given the stalled one's messages: it finds them
// stored and acknowledges them without a second insert. Then the stalled one continues
// (SIGCONT), its late acks are moot, and both share the rest. Both have caught up with the
// stream when the stalled one's insert is held, so it holds no other batch.
//
// A stall *before* the insert committed, with part of its rows sent, is (c'): ClickHouse gives
// that insert up. What remains possible (README, "Delivery guarantee"): the check and the
// insert are not one atomic step — an instance stalled in the instants before its insert
// starts starts it when it continues; two instances given the same message at the same moment
// may both find it unstored.
func TestExactlyOnceTwoInstancesOneStalledPastAckWait(t *testing.T) {
	t.Parallel()
	r := newExactRun(t, 404, "")
	// Instances side by side: one ack per message (with one per batch, one instance owns the
	// durable at a time: ackbatch_integration_test.go).
	stalled := startConsuming(t, perMessage(r.env(false)))
	other := startConsuming(t, perMessage(r.env(true)))
	addCountView(t, r.db.Conn)
	publish(t, r.natsURL, r.want[:r.at])
	waitRaw(t, r.db.Conn, r.at, 60*time.Second, stalled, other)

	// Chunks of 100 envelopes, each fetched by one instance, until the stalled one's insert
	// is held.
	r.gate.arm()
	next := int(r.at)
	for ; !r.gate.holding(); next += 100 {
		if next >= len(r.want)-100 {
			t.Fatalf("no insert of the first instance held%s", serviceLogs(stalled, other))
		}
		publish(t, r.natsURL, r.want[next:next+100])
		waitRaw(t, r.db.Conn, uint64(next), 30*time.Second, stalled, other) // the chunk before is stored
	}
	stalled.signal(syscall.SIGSTOP)
	// The stalled one's batches run out of AckWait in the order of their last renewal, so the one
	// it fetched ahead may come again first: wait until the held batch's messages were given to
	// the other and found stored (the stalled one pulls nothing).
	waitFor(t, 60*time.Second, "the other instance finding the stalled one's messages stored", func() bool {
		return sumStored(other.logs.String()) > 0
	}, other)
	stalled.signal(syscall.SIGCONT)
	r.gate.release()
	publish(t, r.natsURL, r.want[next:])
	if already := r.finish(nil, "two-instances-one-stalled", stalled, other); already == 0 {
		t.Error("no message was found stored already")
	}
	if n := sumStored(other.logs.String()); n == 0 {
		t.Error("the other instance found none of the stalled one's messages stored")
	}
	for i, s := range []*service{stalled, other} {
		if countLines(s.logs.String(), "stored batch") == 0 {
			t.Errorf("instance %d stored no batch: the work was not shared", i)
		}
	}
}

// Acknowledging per message, an instance fetches a batch ahead while the answer to its insert
// is held, then stalls (SIGSTOP) past AckWait. A second instance, started meanwhile, is given
// both batches again: it finds the first stored and stores the second. When the first instance
// continues (SIGCONT, the answer released) it must not store the batch it fetched ahead: left
// unrenewed for most of its AckWait, it is dropped (before that rule: 100 copies, every run).
func TestExactlyOnceBatchFetchedAheadByAStalledInstance(t *testing.T) {
	t.Parallel()
	r := newExactRun(t, 407, "")
	stalled := startConsuming(t, perMessage(r.env(false)))
	addCountView(t, r.db.Conn)
	publish(t, r.natsURL, r.want[:r.at])
	waitRaw(t, r.db.Conn, r.at, 60*time.Second, stalled)

	r.gate.arm()
	publish(t, r.natsURL, r.want[r.at:r.at+100])
	r.waitHeld(stalled)
	publish(t, r.natsURL, r.want[r.at+100:r.at+200]) // fetched ahead while the insert is held
	deadline := time.Now().Add(30 * time.Second)
	for consumerState(t, r.natsURL).NumAckPending < 200 {
		checkAlive(t, stalled)
		if time.Now().After(deadline) {
			t.Fatalf("the batch after the held one was not delivered within 30 s%s", serviceLogs(stalled))
		}
		time.Sleep(20 * time.Millisecond)
	}
	stalled.signal(syscall.SIGSTOP)
	other := startConsuming(t, perMessage(r.env(true)))
	waitRaw(t, r.db.Conn, r.at+200, 60*time.Second, other) // both batches given to the other
	stalled.signal(syscall.SIGCONT)
	r.gate.release()
	publish(t, r.natsURL, r.want[r.at+200:])
	r.finish(nil, "batch-fetched-ahead-by-a-stalled-instance", stalled, other)
	if !strings.Contains(stalled.logs.String(), "dropped unprocessed, they come again") {
		t.Errorf("the stalled instance did not drop the batch it fetched ahead%s", serviceLogs(stalled))
	}
}

// An insert whose answer comes later than PONIX_CLICKHOUSE_INSERT_TIMEOUT_SECS although its
// rows were committed: the service cancels it, holds the batch as unresponsive and stores it
// again in place. The rows must not be stored twice.
func TestExactlyOnceInsertTimedOutAfterCommit(t *testing.T) {
	t.Parallel()
	r := newExactRun(t, 406, "")
	env := r.env(false)
	env["PONIX_CLICKHOUSE_INSERT_TIMEOUT_SECS"] = "2"
	s := startConsuming(t, env)
	pub := r.publishAndWait(s)

	r.holdInsertAnswer(s)
	waitLog(t, s, "class=unresponsive", 30*time.Second)
	r.gate.release()
	r.finish(pub, "insert-timed-out-after-commit", s)
}

// ---- the answer gate ---------------------------------------------------------

// insertBytes is what a client sends before an answer that the gate holds: an insert's rows
// (a batch of a few dozen envelopes or more), not a query or a ping.
const insertBytes = 8 << 10

// answerGate is a TCP proxy between the service and ClickHouse that can hold the answer to an
// insert. Armed, it holds every chunk ClickHouse sends on a connection right after the client
// sent it at least insertBytes (an insert's rows) until released. ClickHouse answers an INSERT
// once its rows are committed: while the answer is held, the rows are stored and the service
// does not know it, so it has not acknowledged their messages.
type answerGate struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	armed bool
	held  bool          // an answer has been held since the gate was armed
	open  chan struct{} // closed when the gate is released
	conns map[net.Conn]struct{}

	// The other way (armStall): the rest of an insert's rows held, as a client stalled in the
	// middle of sending them would leave it.
	stallArmed bool
	stallHeld  chan struct{} // closed once the rows of an insert are held
	stallPort  int           // the client's port of the connection they are held on
	stallOpen  chan struct{} // closed when releaseStall lets them through
}

func startAnswerGate(t *testing.T, target string) *answerGate {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &answerGate{ln: ln, target: target, open: make(chan struct{}), conns: map[net.Conn]struct{}{},
		stallHeld: make(chan struct{}), stallOpen: make(chan struct{})}
	go g.serve()
	t.Cleanup(func() {
		ln.Close()
		g.release()
		g.releaseStall()
		g.mu.Lock()
		defer g.mu.Unlock()
		for c := range g.conns {
			c.Close()
		}
	})
	return g
}

func (g *answerGate) addr() string { return g.ln.Addr().String() }

func (g *answerGate) serve() {
	for {
		c, err := g.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.DialTimeout("tcp", g.target, 5*time.Second)
		if err != nil {
			c.Close()
			continue
		}
		g.mu.Lock()
		g.conns[c], g.conns[s] = struct{}{}, struct{}{}
		g.mu.Unlock()
		var sent atomic.Int64 // client bytes since ClickHouse last spoke
		port := c.RemoteAddr().(*net.TCPAddr).Port
		go g.pipe(s, c, func(n int) int { return g.stallAt(port, sent.Add(int64(n)), n) })
		go g.pipe(c, s, func(n int) int {
			if sent.Swap(0) >= insertBytes {
				g.wait()
			}
			return n
		})
	}
}

// pipe copies src to dst, calling before with the size of each chunk before writing it: before
// returns how many of its bytes to write at once, the rest is written once the stall is released.
func (g *answerGate) pipe(dst, src net.Conn, before func(n int) int) {
	defer func() {
		src.Close()
		dst.Close()
		g.mu.Lock()
		delete(g.conns, src)
		delete(g.conns, dst)
		g.mu.Unlock()
	}()
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			chunk := buf[:n]
			if pass := before(n); pass < n {
				if _, werr := dst.Write(chunk[:pass]); werr != nil {
					return
				}
				<-g.stallOpen
				chunk = chunk[pass:]
			}
			if _, werr := dst.Write(chunk); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// stallBytes is how much of an insert's rows the armed gate lets through before it holds the
// rest: the server has started reading the block and waits for its end.
const stallBytes = 16 << 10

// stallAt says how many of the n client bytes just read on the connection from port to pass
// when sent bytes have been sent since ClickHouse last spoke: all of them, or — armed with
// armStall, on the first connection whose insert rows pass stallBytes — those up to it.
func (g *answerGate) stallAt(port int, sent int64, n int) int {
	if sent < stallBytes {
		return n
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.stallArmed {
		return n
	}
	g.stallArmed, g.stallPort = false, port
	close(g.stallHeld)
	return max(0, n-int(sent-stallBytes))
}

// armStall makes the gate hold the rest of the next insert's rows past stallBytes, until
// releaseStall: what ClickHouse sees of a client stalled in the middle of an insert.
func (g *answerGate) armStall() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.stallArmed = true
}

// waitStalled waits until the armed gate holds an insert's rows and returns the port of the
// client's end of that connection.
func (g *answerGate) waitStalled(t *testing.T, svcs ...*service) int {
	t.Helper()
	waitFor(t, 30*time.Second, "an insert's rows held by the gate", func() bool {
		select {
		case <-g.stallHeld:
			return true
		default:
			return false
		}
	}, svcs...)
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.stallPort
}

// releaseStall lets the held rows through.
func (g *answerGate) releaseStall() {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.stallOpen:
	default:
		close(g.stallOpen)
	}
}

// wait holds an answer while the gate is armed.
func (g *answerGate) wait() {
	g.mu.Lock()
	if !g.armed {
		g.mu.Unlock()
		return
	}
	g.held = true
	open := g.open
	g.mu.Unlock()
	<-open
}

// arm makes the gate hold the next answers to inserts.
func (g *answerGate) arm() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.armed {
		g.armed, g.held, g.open = true, false, make(chan struct{})
	}
}

// holding reports whether an answer was held since the gate was armed.
func (g *answerGate) holding() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.armed && g.held
}

// release lets the held answers through and disarms the gate.
func (g *answerGate) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.armed {
		g.armed = false
		close(g.open)
	}
}
