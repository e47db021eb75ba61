//go:build integration

package main_test

// Fault-injection tests: the real binary against real servers, a known set of
// envelopes, one fault injected at a seeded random point, and an exact check
// of the final table (FINAL) and of the dead-letter stream. Each test logs one
// "FIGURES" line: published, stored, raw duplicates, visible duplicates,
// dead-lettered, and the recovery time.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
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
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ponix-go/ponix/ponixclickhouse"
	"github.com/ponix-go/ponix/ponixclickhouse/chserver"
	"github.com/ponix-go/ponix/ponixclickhouse/chtest"
	"github.com/ponix-go/ponix/ponixnats"
	"github.com/ponix-go/ponix/ponixnats/natstest"
)

// faultN is the number of envelopes each fault test publishes.
const faultN = 20_000

const dlqStream = "processed_envelopes_dlq"

// figures are the guarantee figures of one scenario.
type figures struct {
	scenario      string
	published     int           // valid envelopes published
	stored        uint64        // rows of SELECT count() ... FINAL
	raw           uint64        // rows without FINAL (copies not merged yet included)
	visibleDups   uint64        // FINAL count - distinct end_device_ids
	deadLettered  int           // messages in the dead-letter stream
	resume        time.Duration // fault end -> first new row stored
	recovery      time.Duration // fault end -> every envelope stored
	faultDuration time.Duration
}

func (f figures) log(t *testing.T) {
	t.Helper()
	t.Logf("FIGURES scenario=%s published=%d stored_final=%d raw=%d raw_duplicates=%d visible_duplicates=%d dead_lettered=%d fault=%s resume=%s recovery=%s",
		f.scenario, f.published, f.stored, f.raw, f.raw-f.stored, f.visibleDups, f.deadLettered,
		f.faultDuration.Round(time.Millisecond), f.resume.Round(time.Millisecond), f.recovery.Round(time.Millisecond))
}

// faultSetup gives a fault test a fresh database, a NATS server holding the
// stream, the envelopes to publish (from seed) and the stored-row count at
// which to inject the fault.
func faultSetup(t *testing.T, seed uint64) (*chtest.Database, *natstest.Server, []*envelopev1.ProcessedEnvelope, uint64) {
	t.Helper()
	db := chSrv.NewDatabase(t)
	nsrv := natstest.New(t)
	ensureStream(t, nsrv.URL(), 1)
	return db, nsrv, envelopes(faultN, seed), faultPoint(t, seed)
}

// faultPoint draws the row count after which the fault is injected: 20-60 %
// of the set, from a PCG seeded with seed (logged, so a failure reproduces).
func faultPoint(t *testing.T, seed uint64) uint64 {
	t.Helper()
	rnd := rand.New(rand.NewPCG(seed, 0x5eed))
	at := uint64(faultN * (20 + rnd.IntN(41)) / 100)
	t.Logf("seed %d: fault after %d of %d rows", seed, at, faultN)
	return at
}

// faultEnv is the service configuration of the fault tests: an external NATS,
// no producer, batches of 500, and an AckWait of 6 s so that redeliveries of
// unacked messages come quickly.
func faultEnv(t *testing.T, db *chtest.Database, natsURL string) map[string]string {
	env := baseEnv(t, db)
	env["PONIX_NATS_URL"] = natsURL
	env["PONIX_PRODUCER_ENABLED"] = "false"
	env["PONIX_NATS_BATCH_SIZE"] = "500"
	env["PONIX_NATS_ACK_WAIT_SECS"] = "6"
	return env
}

// tableCounts returns the FINAL count, the distinct end_device_ids of FINAL,
// and the raw count of processed_envelopes (zeros before the table exists).
func tableCounts(t *testing.T, conn driver.Conn) (final, distinct, raw uint64) {
	t.Helper()
	ctx := context.Background()
	err := conn.QueryRow(ctx, "SELECT count(), uniqExact(end_device_id) FROM processed_envelopes FINAL").Scan(&final, &distinct)
	if err == nil {
		err = conn.QueryRow(ctx, "SELECT count() FROM processed_envelopes").Scan(&raw)
	}
	if err != nil && !strings.Contains(err.Error(), "doesn't exist") {
		t.Fatal(err)
	}
	return final, distinct, raw
}

func rawCount(t *testing.T, conn driver.Conn) uint64 {
	t.Helper()
	var raw uint64
	err := conn.QueryRow(context.Background(), "SELECT count() FROM processed_envelopes").Scan(&raw)
	if err != nil && !strings.Contains(err.Error(), "doesn't exist") {
		t.Fatal(err)
	}
	return raw
}

// waitRaw polls until the raw row count reaches n; it fails the test if every
// service given has exited or the time is up.
func waitRaw(t *testing.T, conn driver.Conn, n uint64, within time.Duration, svcs ...*service) uint64 {
	t.Helper()
	var got uint64
	waitFor(t, within, fmt.Sprintf("%d rows", n), func() bool {
		got = rawCount(t, conn)
		return got >= n
	}, svcs...)
	return got
}

// waitFinal polls until the FINAL count reaches n and returns the time it took.
func waitFinal(t *testing.T, conn driver.Conn, n uint64, within time.Duration, svcs ...*service) time.Duration {
	t.Helper()
	start := time.Now()
	var final uint64
	defer func() {
		if t.Failed() {
			t.Logf("the table held %d rows (FINAL) at the last count; want %d", final, n)
		}
	}()
	waitFor(t, within, fmt.Sprintf("%d rows (FINAL)", n), func() bool {
		final, _, _ = tableCounts(t, conn)
		return final >= n
	}, svcs...)
	return time.Since(start)
}

// reportMissing logs, for a test that failed waiting for rows, how many envelopes of want the
// table lacks (read with FINAL), the stream sequences of the first few, and the durable
// consumer's state: whether the messages were never delivered, held, or acknowledged without
// a row.
func reportMissing(t *testing.T, conn driver.Conn, natsURL string, want []*envelopev1.ProcessedEnvelope) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ids, err := finalDeviceIDs(ctx, conn)
	if err != nil {
		t.Logf("reading the stored envelopes: %v", err)
		return
	}
	stored := make(map[string]bool, len(ids))
	for _, id := range ids {
		stored[id] = true
	}
	var missing []*envelopev1.ProcessedEnvelope
	for _, e := range want {
		if !stored[e.GetEndDeviceId()] {
			missing = append(missing, e)
		}
	}
	js := dlqJS(t, natsURL)
	prod := ponixnats.NewEnvelopeProducer(js, "processed_envelopes")
	stream, serr := js.Stream(ctx, "processed_envelopes")
	var seqs []string
	for _, e := range missing[:min(len(missing), 5)] {
		seq := "?"
		subj, err := prod.Subject(e)
		if err != nil {
			t.Logf("the subject of %s: %v", e.GetEndDeviceId(), err)
		} else if serr == nil {
			if msg, err := stream.GetLastMsgForSubject(ctx, subj); err == nil {
				seq = strconv.FormatUint(msg.Sequence, 10)
			}
		}
		seqs = append(seqs, e.GetEndDeviceId()+"@"+seq)
	}
	t.Logf("%d of %d envelopes have no row; the first (device@stream sequence): %s", len(missing), len(want), strings.Join(seqs, ", "))
	if c, err := js.Consumer(ctx, "processed_envelopes", "ponix-all-in-one"); err == nil {
		if info, err := c.Info(ctx); err == nil {
			t.Logf("the durable consumer: ack floor %d, delivered %d, %d pending, %d unacknowledged, %d redelivered",
				info.AckFloor.Stream, info.Delivered.Stream, info.NumPending, info.NumAckPending, info.NumRedelivered)
		}
	}
}

func checkAlive(t *testing.T, svcs ...*service) {
	t.Helper()
	if len(svcs) == 0 {
		return
	}
	for _, s := range svcs {
		select {
		case <-s.done:
		default:
			return
		}
	}
	t.Fatalf("every service exited%s", serviceLogs(svcs...))
}

func serviceLogs(svcs ...*service) string {
	var b strings.Builder
	for i, s := range svcs {
		fmt.Fprintf(&b, "\n--- service %d logs:\n%s", i, s.logs.String())
	}
	return b.String()
}

// waitResume polls until the raw count exceeds from and returns how long it
// took.
func waitResume(t *testing.T, conn driver.Conn, from uint64, within time.Duration, svcs ...*service) time.Duration {
	t.Helper()
	start := time.Now()
	waitRaw(t, conn, from+1, within, svcs...)
	return time.Since(start)
}

// checkExact asserts that the table, read with FINAL, holds exactly want:
// the count, the set of end_device_ids, and the content of a random sample.
// It fills f.stored, f.raw and f.visibleDups.
func checkExact(t *testing.T, conn driver.Conn, want []*envelopev1.ProcessedEnvelope, seed uint64, f *figures) {
	t.Helper()
	final, distinct, raw := tableCounts(t, conn)
	f.stored, f.raw, f.visibleDups = final, raw, final-distinct
	if final != uint64(len(want)) || distinct != uint64(len(want)) {
		t.Errorf("FINAL: %d rows, %d distinct end_device_ids; want exactly %d", final, distinct, len(want))
	}
	byID := make(map[string]*envelopev1.ProcessedEnvelope, len(want))
	for _, e := range want {
		byID[e.GetEndDeviceId()] = e
	}
	stored, err := finalDeviceIDs(context.Background(), conn)
	if err != nil {
		t.Fatal(err)
	}
	seen := make(map[string]bool, len(want))
	for _, id := range stored {
		if _, ok := byID[id]; !ok {
			t.Errorf("row %s was never published (or is poison)", id)
		}
		if seen[id] {
			t.Errorf("row %s visible twice with FINAL", id)
		}
		seen[id] = true
	}
	if len(seen) != len(want) {
		t.Errorf("%d distinct rows, want %d", len(seen), len(want))
	}
	// Content of a random sample.
	rnd := rand.New(rand.NewPCG(seed, 0xc0ffee))
	ids := make([]string, 0, 200)
	for range 200 {
		ids = append(ids, want[rnd.IntN(len(want))].GetEndDeviceId())
	}
	rows := readRowsFinal(t, conn, ids)
	for _, id := range ids {
		r, ok := rows[id]
		if !ok {
			t.Errorf("sampled envelope %s missing", id)
			continue
		}
		checkRow(t, r, byID[id])
	}
}

// finalDeviceIDs reads the end_device_id of every row of the table, with FINAL.
func finalDeviceIDs(ctx context.Context, conn driver.Conn) ([]string, error) {
	rs, err := conn.Query(ctx, "SELECT end_device_id FROM processed_envelopes FINAL")
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	var ids []string
	for rs.Next() {
		var id string
		if err := rs.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rs.Err()
}

// readRowsFinal reads the rows of the given end_device_ids with FINAL.
func readRowsFinal(t *testing.T, conn driver.Conn, ids []string) map[string]row {
	t.Helper()
	quoted := make([]string, len(ids))
	for i, id := range ids {
		quoted[i] = "'" + strings.ReplaceAll(id, "'", "\\'") + "'"
	}
	return queryRows(t, conn, "FINAL WHERE end_device_id IN ("+strings.Join(quoted, ",")+")")
}

// ensureStream creates the envelope stream as the service would (replicas
// for a cluster).
func ensureStream(t *testing.T, url string, replicas int) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		_, err = ponixnats.EnsureStream(ctx, js, ponixnats.StreamConfig{Name: ponixnats.EnvelopeStream, Replicas: replicas})
		if err == nil || ctx.Err() != nil {
			break
		}
		time.Sleep(200 * time.Millisecond) // a cluster may still elect its meta leader
	}
	if err != nil {
		t.Fatal(err)
	}
}

// publisher publishes envelopes in chunks at a steady pace from its own
// connection, retrying a chunk until the stream acked all of it (a retry is
// de-duplicated by Nats-Msg-Id). It survives a NATS restart.
type publisher struct {
	done    chan struct{}
	retries atomic.Int64
	err     error
}

func startPublisher(t *testing.T, url string, envs []*envelopev1.ProcessedEnvelope, chunk int, pace time.Duration) *publisher {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond), nats.RetryOnFailedConnect(true))
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	p := &publisher{done: make(chan struct{})}
	stop := make(chan struct{})
	prod := ponixnats.NewEnvelopeProducer(js, "processed_envelopes")
	go func() {
		defer close(p.done)
		defer nc.Close()
		for start := 0; start < len(envs); start += chunk {
			end := min(start+chunk, len(envs))
			for {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				err := prod.PublishBatch(ctx, envs[start:end])
				cancel()
				if err == nil {
					break
				}
				p.retries.Add(1)
				select {
				case <-stop:
					p.err = err
					return
				case <-time.After(200 * time.Millisecond):
				}
			}
			select {
			case <-stop:
				p.err = errors.New("stopped")
				return
			case <-time.After(pace):
			}
		}
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			close(stop)
			<-p.done
		}
	})
	return p
}

func (p *publisher) wait(t *testing.T, within time.Duration) {
	t.Helper()
	select {
	case <-p.done:
		if p.err != nil {
			t.Fatalf("publisher: %v", p.err)
		}
	case <-time.After(within):
		t.Fatalf("publisher not done within %s", within)
	}
}

// dlqMessages returns the messages of the dead-letter stream (none if it does
// not exist).
func dlqMessages(t *testing.T, url string) []*jetstream.RawStreamMsg {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	st, err := js.Stream(ctx, dlqStream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

// consumerState returns the durable consumer's info from the server.
func consumerState(t *testing.T, url string) *jetstream.ConsumerInfo {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		cons, err := js.Consumer(ctx, "processed_envelopes", "ponix-all-in-one")
		if err == nil {
			var info *jetstream.ConsumerInfo
			if info, err = cons.Info(ctx); err == nil {
				return info
			}
		}
		if ctx.Err() != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// stopService sends SIGTERM and expects exit code 0.
func stopService(t *testing.T, s *service) {
	t.Helper()
	select {
	case <-s.done:
		return
	default:
	}
	s.signal(syscall.SIGTERM)
	if code := s.wait(20 * time.Second); code != 0 {
		t.Errorf("exit code %d after SIGTERM; logs:\n%s", code, s.logs.String())
	}
}

// finishExact waits until every message is acknowledged (nothing can be
// redelivered and stored again), stops svcs, checks that the table holds want
// exactly once and that nothing was dead-lettered (by fault), and logs the
// figures.
func finishExact(t *testing.T, conn driver.Conn, natsURL string, want []*envelopev1.ProcessedEnvelope, seed uint64, f *figures, fault string, svcs ...*service) {
	t.Helper()
	waitSettled(t, natsURL, 60*time.Second, svcs...)
	for _, s := range svcs {
		stopService(t, s)
	}
	checkExact(t, conn, want, seed, f)
	if f.deadLettered = len(dlqMessages(t, natsURL)); f.deadLettered != 0 {
		t.Errorf("%d messages dead-lettered by %s", f.deadLettered, fault)
	}
	f.log(t)
}

func countLines(s, substr string) int { return strings.Count(s, substr) }

// ---- the ClickHouse proxy -------------------------------------------------

// chProxy is a TCP proxy between the service and ClickHouse. It can cut
// ClickHouse off (every connection closed, new ones closed at once) and
// delay every server->client chunk (a slow link) or only the answers to
// inserts' rows (a ClickHouse slow to commit).
type chProxy struct {
	ln     net.Listener
	target string

	mu          sync.Mutex
	down        bool
	delay       time.Duration
	answersOnly bool // delay only a chunk that follows an insert's rows
	conns       map[net.Conn]struct{}

	delayed atomic.Int64 // server->client chunks held back by a delay so far
}

func startProxy(t *testing.T, target string) *chProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &chProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	go p.serve()
	t.Cleanup(func() {
		ln.Close()
		p.setDown(true)
	})
	return p
}

func (p *chProxy) addr() string { return p.ln.Addr().String() }

func (p *chProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		down := p.down
		p.mu.Unlock()
		if down {
			c.Close()
			continue
		}
		s, err := net.DialTimeout("tcp", p.target, 5*time.Second)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		if p.down { // cut off while dialling: setDown did not see this connection
			p.mu.Unlock()
			c.Close()
			s.Close()
			continue
		}
		p.conns[c], p.conns[s] = struct{}{}, struct{}{}
		p.mu.Unlock()
		sent := new(atomic.Int64) // client bytes since ClickHouse last spoke
		go p.pipe(s, c, false, sent)
		go p.pipe(c, s, true, sent)
	}
}

// pipe copies src to dst (delaying the chunks of ClickHouse, slow, as set) and
// closes both at the end.
func (p *chProxy) pipe(dst, src net.Conn, slow bool, sent *atomic.Int64) {
	defer func() {
		src.Close()
		dst.Close()
		p.mu.Lock()
		delete(p.conns, src)
		delete(p.conns, dst)
		p.mu.Unlock()
	}()
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !slow {
				sent.Add(int64(n))
			} else {
				afterRows := sent.Swap(0) >= insertBytes
				p.mu.Lock()
				d, answersOnly := p.delay, p.answersOnly
				p.mu.Unlock()
				if d > 0 && (afterRows || !answersOnly) {
					p.delayed.Add(1)
					time.Sleep(d) // the injected fault: a slow ClickHouse link
				}
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// setDown cuts ClickHouse off (true) or lets connections through again.
func (p *chProxy) setDown(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
	if down {
		for c := range p.conns {
			c.Close()
		}
	}
}

// waitDelayed waits until the proxy holds back a server->client chunk, that is
// until a query (an insert, as the service sends nothing else while it stores)
// is in flight on the slowed link.
func (p *chProxy) waitDelayed(t *testing.T, within time.Duration, svcs ...*service) {
	t.Helper()
	from := p.delayed.Load()
	waitFor(t, within, "a ClickHouse answer held back by the proxy", func() bool { return p.delayed.Load() > from }, svcs...)
}

// open returns the number of connections the proxy holds open (each side counted).
func (p *chProxy) open() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// setDelay delays every chunk ClickHouse sends by d (0: none).
func (p *chProxy) setDelay(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.delay, p.answersOnly = d, false
}

// setAnswerDelay delays by d only the answers to inserts' rows: ClickHouse takes d longer to
// commit, while the insert's start (the server waiting for the rows) goes at the link's pace.
func (p *chProxy) setAnswerDelay(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.delay, p.answersOnly = d, true
}

// ---- scenarios ---------------------------------------------------------------

// Sink outage: ClickHouse unreachable for 30 s mid-stream. The batch is held in
// place with a growing back-off (bounded log volume, no tight loop, nothing
// redelivered), the service resumes by itself and the table ends exact.
func TestFaultClickHouseOutage(t *testing.T) {
	t.Parallel()
	const seed = 101
	db, nsrv, want, at := faultSetup(t, seed)
	proxy := startProxy(t, db.Config.Addr)

	env := faultEnv(t, db, nsrv.URL())
	env["PONIX_CLICKHOUSE_NATIVE_URL"] = proxy.addr()
	s := startService(t, env)
	pub := startPublisher(t, nsrv.URL(), want, 500, 100*time.Millisecond)
	waitRaw(t, db.Conn, at, 60*time.Second, s)

	const outage = 30 * time.Second
	proxy.setDown(true)
	logsBefore := len(strings.Split(s.logs.String(), "\n"))
	time.Sleep(outage)
	outageLogs := len(strings.Split(s.logs.String(), "\n")) - logsBefore
	failedBatches := countLines(s.logs.String(), "processor failed")
	stuck := rawCount(t, db.Conn)
	proxy.setDown(false)

	f := figures{scenario: "clickhouse-outage-30s", published: faultN, faultDuration: outage}
	f.resume = waitResume(t, db.Conn, stuck, 90*time.Second, s)
	pub.wait(t, 30*time.Second)
	f.recovery = f.resume + waitFinal(t, db.Conn, faultN, 90*time.Second, s)
	waitSettled(t, nsrv.URL(), 60*time.Second, s) // every message acked: no late redelivery can come
	stopService(t, s)

	t.Logf("during the %s outage: %d log lines, %d failed batches", outage, outageLogs, failedBatches)
	// The failing batch is retried in place: the outage redelivers nothing, so
	// it uses up none of the messages' MaxDeliver budget.
	if info := consumerState(t, nsrv.URL()); info.NumRedelivered != 0 {
		t.Errorf("%d messages redelivered by the outage; want the batch retried in place", info.NumRedelivered)
	}
	if !strings.Contains(s.logs.String(), "holding the batch in place") || !strings.Contains(s.logs.String(), "sink recovered") {
		t.Errorf("the hold and the recovery are not logged")
	}
	if outageLogs > 100 {
		t.Errorf("%d log lines during a %s outage: retries are not backing off", outageLogs, outage)
	}
	if failedBatches > 30 {
		t.Errorf("%d failed insert batches during a %s outage: a tight retry loop", failedBatches, outage)
	}
	checkExact(t, db.Conn, want, seed, &f)
	f.deadLettered = len(dlqMessages(t, nsrv.URL()))
	if f.deadLettered != 0 {
		t.Errorf("%d messages dead-lettered by a 30 s outage", f.deadLettered)
	}
	f.log(t)
}

// Sink restart: a dedicated clickhouse-server stopped and started again on
// the same directory and port mid-stream.
func TestFaultClickHouseRestart(t *testing.T) {
	t.Parallel()
	const seed = 102
	ctx := context.Background()
	dir := t.TempDir()
	srv, db, conn := ownClickHouse(t, dir, 0)
	port := portOf(t, srv.Addr())
	connect := func() driver.Conn {
		conn, err := ponixclickhouse.Open(ctx, ponixclickhouse.Config{Addr: srv.Addr(), Database: "ponix", Username: "ponix", Password: "ponix"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}

	nsrv := natstest.New(t)
	ensureStream(t, nsrv.URL(), 1)
	want := envelopes(faultN, seed)
	at := faultPoint(t, seed)
	env := faultEnv(t, db, nsrv.URL())
	s := startService(t, env)
	pub := startPublisher(t, nsrv.URL(), want, 500, 100*time.Millisecond)
	waitRaw(t, conn, at, 60*time.Second, s)

	start := time.Now()
	if err := srv.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	srv2, err := chserver.Start(ctx, chserver.Config{Dir: dir, TCPPort: port, User: "ponix", Password: "ponix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv2.Stop(context.Background()) })
	f := figures{scenario: "clickhouse-restart", published: faultN, faultDuration: time.Since(start)}
	conn = connect()
	stuck := rawCount(t, conn)
	f.resume = waitResume(t, conn, stuck, 90*time.Second, s)
	pub.wait(t, 30*time.Second)
	f.recovery = f.resume + waitFinal(t, conn, faultN, 90*time.Second, s)
	finishExact(t, conn, nsrv.URL(), want, seed, &f, "a ClickHouse restart", s)
}

// Slow insert: every insert takes longer than AckWait for a while, with two
// instances pulling from the durable. In-progress acks keep each batch alive:
// no message is redelivered (consumer deliveries = stream messages) and no
// copy is stored.
func TestFaultSlowInsertLongerThanAckWait(t *testing.T) {
	t.Parallel()
	const seed = 103
	db, nsrv, want, at := faultSetup(t, seed)
	proxy := startProxy(t, db.Config.Addr)

	var svcs []*service
	for range 2 {
		env := faultEnv(t, db, nsrv.URL())
		env["PONIX_CLICKHOUSE_NATIVE_URL"] = proxy.addr()
		env["PONIX_NATS_ACK_WAIT_SECS"] = "3"
		svcs = append(svcs, startService(t, env))
	}
	pub := startPublisher(t, nsrv.URL(), want, 500, 100*time.Millisecond)
	waitRaw(t, db.Conn, at, 60*time.Second, svcs...)

	// Inserts stay slow until two batches took longer than AckWait: each was kept alive by
	// in-progress acks past the point where JetStream would have redelivered it. ClickHouse is
	// slow to answer the rows, not the link slow: a server kept waiting for an insert's rows
	// for the stall timeout (a third of AckWait: 1 s) gives the insert up.
	proxy.setAnswerDelay(4 * time.Second) // an insert takes >= 4 s > AckWait 3 s
	slowStart := time.Now()
	waitFor(t, 90*time.Second, "two inserts slower than AckWait (3s)", func() bool { return len(slowBatches(svcs, 3*time.Second)) >= 2 }, svcs...)
	proxy.setDelay(0)
	slowEnd := time.Now()
	f := figures{scenario: "slow-insert>AckWait", published: faultN, faultDuration: time.Since(slowStart)}
	f.recovery = waitFinal(t, db.Conn, faultN, 90*time.Second, svcs...)
	pub.wait(t, 30*time.Second)
	waitSettled(t, nsrv.URL(), 60*time.Second, svcs...)
	// Nothing came again once the inserts were slow: no batch of messages delivered before, and
	// (one ack per batch) no takeover of the durable — its owner keeps renewing its key while it
	// works. Counted from the first slow insert until the last one ended (at most one insert
	// time after the delay was lifted) and three AckWaits more, when a batch let go would come
	// again: later, on a loaded machine, an owner of a 3 s key may miss its renewals, which is
	// not what this test is about (the copies it checks below would show a harm).
	slowWindow := slowEnd.Add(5*time.Second + 3*3*time.Second)
	for i, s := range svcs {
		for _, line := range []string{"batch holds messages delivered before", ownsLine} {
			if n := loggedBetween(s, line, slowStart, slowWindow); n != 0 {
				t.Errorf("instance %d logged %q %d times while inserts were slower than AckWait: in-progress acks did not keep the batches alive", i, line, n)
			}
		}
	}
	for _, s := range svcs {
		stopService(t, s)
	}
	slow := slowBatches(svcs, 3*time.Second)
	if len(slow) == 0 {
		t.Fatal("no batch took longer than AckWait: the test did not slow the inserts")
	}
	t.Logf("batches slower than AckWait (3s): %v", slow)
	checkExact(t, db.Conn, want, seed, &f)
	if f.raw != f.stored {
		t.Errorf("%d copies stored: a slow batch was redelivered", f.raw-f.stored)
	}
	f.deadLettered = len(dlqMessages(t, nsrv.URL()))
	f.log(t)
}

// slowBatches returns the durations of the batches svcs logged as stored that
// took longer than d.
func slowBatches(svcs []*service, d time.Duration) []string {
	var slow []string
	for _, s := range svcs {
		for _, line := range strings.Split(s.logs.String(), "\n") {
			if !strings.Contains(line, "stored batch") {
				continue
			}
			if _, rest, ok := strings.Cut(line, " duration="); ok {
				if took, err := time.ParseDuration(strings.Fields(rest)[0]); err == nil && took > d {
					slow = append(slow, took.String())
				}
			}
		}
	}
	return slow
}

// Broker restart: the NATS server (same store, same port) stopped for a few
// seconds mid-stream. The service reconnects by itself and loses nothing.
func TestFaultNATSRestart(t *testing.T) {
	t.Parallel()
	const seed = 104
	db, nsrv, want, at := faultSetup(t, seed)

	s := startService(t, faultEnv(t, db, nsrv.URL()))
	pub := startPublisher(t, nsrv.URL(), want, 500, 100*time.Millisecond)
	waitRaw(t, db.Conn, at, 60*time.Second, s)

	const down = 3 * time.Second
	nsrv.Stop()
	time.Sleep(down)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := nsrv.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	f := figures{scenario: "nats-restart", published: faultN, faultDuration: down}
	stuck := rawCount(t, db.Conn)
	f.resume = waitResume(t, db.Conn, stuck, 60*time.Second, s)
	pub.wait(t, 60*time.Second)
	f.recovery = f.resume + waitFinal(t, db.Conn, faultN, 90*time.Second, s)
	t.Logf("publisher retried %d chunks", pub.retries.Load())
	finishExact(t, db.Conn, nsrv.URL(), want, seed, &f, "a NATS restart", s)
	if !strings.Contains(s.logs.String(), "NATS reconnected") {
		t.Errorf("no reconnect logged")
	}
}

// Process fault: SIGKILL while a batch is being inserted (the insert is held
// in flight by a slowed ClickHouse link), then a restart. Nothing is lost; the
// batch that may have been stored without its ack comes again and collapses
// with FINAL.
func TestFaultSIGKILLMidBatchThenRestart(t *testing.T) {
	t.Parallel()
	const seed = 105
	db, nsrv, want, at := faultSetup(t, seed)
	proxy := startProxy(t, db.Config.Addr)

	env := faultEnv(t, db, nsrv.URL())
	env["PONIX_CLICKHOUSE_NATIVE_URL"] = proxy.addr()
	s := startService(t, env)
	pub := startPublisher(t, nsrv.URL(), want, 500, 100*time.Millisecond)
	waitRaw(t, db.Conn, at, 60*time.Second, s)

	// The next insert is in flight for seconds; the delay of the server's first answer stays
	// under the stall timeout (a third of AckWait 6 s: 2 s), after which ClickHouse would give
	// up waiting for the rows.
	proxy.setDelay(time.Second)
	proxy.waitDelayed(t, 30*time.Second, s)
	if err := s.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	s.wait(10 * time.Second)
	killedAt := time.Now()
	// The killed service's connections end; once the proxy has closed its side towards the
	// server, an insert the server received in full has been committed by it.
	waitFor(t, 30*time.Second, "the killed service's ClickHouse connections closed", func() bool { return proxy.open() == 0 })
	proxy.setDelay(0)
	stuck := rawCount(t, db.Conn)
	info := consumerState(t, nsrv.URL())
	t.Logf("killed with %d messages unacked, %d rows stored", info.NumAckPending, stuck)
	if info.NumAckPending == 0 {
		t.Errorf("no message in flight at the kill: the test did not kill mid-batch")
	}

	s2 := startService(t, env)
	f := figures{scenario: "sigkill-mid-batch+restart", published: faultN}
	f.resume = time.Since(killedAt) + waitResume(t, db.Conn, stuck, 60*time.Second, s2)
	pub.wait(t, 60*time.Second)
	f.recovery = time.Since(killedAt) + waitFinal(t, db.Conn, faultN, 90*time.Second, s2)
	finishExact(t, db.Conn, nsrv.URL(), want, seed, &f, "a SIGKILL", s2)
}

// Process fault: SIGTERM while a batch is being inserted. The batch in hand is
// stored and acked before the exit (0); nothing is left unacked, nothing is
// stored twice, and a restart completes the set.
func TestFaultSIGTERMMidBatchStoresAndAcks(t *testing.T) {
	const seed = 106
	db := chSrv.NewDatabase(t)
	nsrv := natstest.New(t)
	want := envelopes(faultN, seed)
	publish(t, nsrv.URL(), want)
	proxy := startProxy(t, db.Config.Addr)
	at := faultPoint(t, seed)

	env := faultEnv(t, db, nsrv.URL())
	env["PONIX_CLICKHOUSE_NATIVE_URL"] = proxy.addr()
	env["PONIX_NATS_BATCH_SIZE"] = "200"
	env["PONIX_NATS_ACK_WAIT_SECS"] = "30" // a message left unacked would hold the restart up visibly
	s := startService(t, env)
	waitRaw(t, db.Conn, at, 60*time.Second, s)
	proxy.setDelay(time.Second) // the batch in hand takes seconds
	proxy.waitDelayed(t, 30*time.Second, s)
	before := rawCount(t, db.Conn)
	s.signal(syscall.SIGTERM)
	start := time.Now()
	if code := s.wait(20 * time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM; logs:\n%s", code, s.logs.String())
	}
	stopTook := time.Since(start)
	proxy.setDelay(0)
	_, _, raw := tableCounts(t, db.Conn)
	info := consumerState(t, nsrv.URL())
	t.Logf("SIGTERM with %d rows stored; exit after %s with %d rows stored, delivered %d, ack floor %d, ack pending %d",
		before, stopTook, raw, info.Delivered.Stream, info.AckFloor.Stream, info.NumAckPending)
	logs := s.logs.String()
	if i := strings.Index(logs, "signal received"); i < 0 || !strings.Contains(logs[i:], "stored batch") {
		t.Errorf("no batch stored after SIGTERM: the batch in hand was not finished")
	}
	// The consumer prefetches one batch while it stores the previous one; at
	// SIGTERM that batch is released with a Nak (JetStream still counts it as
	// pending until it is redelivered), so at most one batch may be pending,
	// and it must come back at once after the restart, not after AckWait.
	if info.NumAckPending > 200 {
		t.Errorf("%d messages left unacked after SIGTERM, more than the one prefetched batch", info.NumAckPending)
	}
	if info.AckFloor.Stream != raw {
		t.Errorf("ack floor %d, but %d rows stored: stored and acked differ", info.AckFloor.Stream, raw)
	}
	if final, _, _ := tableCounts(t, db.Conn); final != raw {
		t.Errorf("%d rows, %d with FINAL: a copy was stored", raw, final)
	}

	s2 := startService(t, env)
	restarted := time.Now()
	f := figures{scenario: "sigterm-mid-batch+restart", published: faultN, faultDuration: stopTook}
	f.resume = waitResume(t, db.Conn, raw, 60*time.Second, s2)
	// What the stop left unacknowledged (the batch fetched ahead, released) comes first after the
	// restart, not after AckWait (30 s): every message delivered before the stop is stored well
	// before that, however slow the rest is.
	if through := info.Delivered.Stream; through > raw {
		waitFor(t, 20*time.Second, fmt.Sprintf("the messages delivered before the stop (through %d) stored after the restart", through), func() bool {
			var n uint64
			err := db.Conn.QueryRow(context.Background(), "SELECT count() FROM processed_envelopes FINAL WHERE stream_seq <= ?", through).Scan(&n)
			return err == nil && n == through
		}, s2)
		t.Logf("the messages released at the stop were stored %s after the restart", time.Since(restarted).Round(time.Millisecond))
	}
	f.recovery = f.resume + waitFinal(t, db.Conn, faultN, 90*time.Second, s2)
	waitSettled(t, nsrv.URL(), 60*time.Second, s2)
	stopService(t, s2)
	checkExact(t, db.Conn, want, seed, &f)
	if f.raw != f.stored {
		t.Errorf("%d copies stored across a clean SIGTERM", f.raw-f.stored)
	}
	f.deadLettered = len(dlqMessages(t, nsrv.URL()))
	f.log(t)
}

// nested returns a Struct nested depth levels deep: {"n": {"n": ... {"leaf": depth}}}.
func nested(depth int) *structpb.Struct {
	s := &structpb.Struct{Fields: map[string]*structpb.Value{"leaf": structpb.NewNumberValue(float64(depth))}}
	for range depth - 1 {
		s = &structpb.Struct{Fields: map[string]*structpb.Value{"n": structpb.NewStructValue(s)}}
	}
	return s
}

// poison is one bad message and what must happen to it.
type poison struct {
	name    string
	subject string
	data    []byte
	reasons []string // acceptable Ponix-Dlq-Reason values
}

// Poison and bad input, interleaved with 20,000 valid envelopes: each poison
// message is dead-lettered with its reason and counted, never blocks the
// messages behind it; valid extremes (100-deep data, ~900 KiB data) are
// stored; an envelope over NATS's max_payload is refused at publish time.
func TestFaultPoisonAndBadInput(t *testing.T) {
	t.Parallel()
	const seed = 107
	db := chSrv.NewDatabase(t)
	nsrv := natstest.New(t)
	ensureStream(t, nsrv.URL(), 1)
	want := envelopes(faultN, seed)

	// Valid extremes, stored like any envelope.
	deep := proto.Clone(want[0]).(*envelopev1.ProcessedEnvelope)
	deep.EndDeviceId, deep.Data = "dev-deep-100", nested(100)
	big := proto.Clone(want[0]).(*envelopev1.ProcessedEnvelope)
	big.EndDeviceId = "dev-big-900k"
	big.Data, _ = structpb.NewStruct(map[string]any{"blob": strings.Repeat("x", 900<<10)})
	want = append(want, deep, big)

	ts := timestamppb.New(time.Date(2026, 10, 2, 0, 0, 0, 0, time.UTC))
	mustMarshal := func(m proto.Message) []byte {
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	noTimestamps := &envelopev1.ProcessedEnvelope{EndDeviceId: "dev-no-ts", OrganizationId: "org-1", Data: nested(2)}
	badID := &envelopev1.ProcessedEnvelope{EndDeviceId: "dev bad.id*", OrganizationId: "org-1", OccurredAt: ts, ProcessedAt: ts}
	tooDeep := &envelopev1.ProcessedEnvelope{EndDeviceId: "dev-too-deep", OrganizationId: "org-1", OccurredAt: ts, ProcessedAt: ts, Data: nested(6000)}
	poisons := []poison{
		{"garbage bytes", "processed_envelopes.garbage", []byte{0xff, 0xfe, 0xfd, 0x00, 0x13, 0x37, 0xde, 0xad, 0xbe, 0xef}, []string{"decode"}},
		{"wrong message type", "processed_envelopes.wrongtype", mustMarshal(ts), []string{"decode", "invalid"}},
		{"no timestamps", "processed_envelopes.dev-no-ts", mustMarshal(noTimestamps), []string{"invalid"}},
		{"id not a subject token", "processed_envelopes.badid", mustMarshal(badID), []string{"invalid"}},
		{"empty payload", "processed_envelopes.empty", nil, []string{"invalid"}},
		{"nested beyond the protobuf recursion limit", "processed_envelopes.dev-too-deep", mustMarshal(tooDeep), []string{"decode", "rejected"}}, // the wire path finds it while encoding data: the row is rejected
	}

	// Publish: valid envelopes in chunks, a poison message after a random chunk.
	nc, err := nats.Connect(nsrv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	prod := ponixnats.NewEnvelopeProducer(js, "processed_envelopes")

	// Over max_payload: refused at publish time, a clear error, not a loss.
	huge := proto.Clone(want[1]).(*envelopev1.ProcessedEnvelope)
	huge.EndDeviceId = "dev-huge-1m"
	huge.Data, _ = structpb.NewStruct(map[string]any{"blob": strings.Repeat("x", 1<<20)})
	if err := prod.Publish(ctx, huge); !errors.Is(err, nats.ErrMaxPayload) {
		t.Errorf("publishing a 1 MiB data struct: err = %v, want nats.ErrMaxPayload", err)
	} else {
		t.Logf("1 MiB data struct refused at publish: %v", err)
	}

	rnd := rand.New(rand.NewPCG(seed, 1))
	chunks := (len(want) + 499) / 500
	poisonAfter := map[int][]int{}
	for i := range poisons {
		c := rnd.IntN(chunks)
		poisonAfter[c] = append(poisonAfter[c], i)
	}
	env := faultEnv(t, db, nsrv.URL())
	env["PONIX_HTTP_ADDR"] = "127.0.0.1:0"
	s := startService(t, env)
	metricsBase := httpBase(t, s)
	wantDLQ := map[uint64]poison{}
	for c := range chunks {
		if err := prod.PublishBatch(ctx, want[c*500:min((c+1)*500, len(want))]); err != nil {
			t.Fatal(err)
		}
		for _, i := range poisonAfter[c] {
			p := poisons[i]
			ack, err := js.PublishMsg(ctx, &nats.Msg{Subject: p.subject, Data: p.data})
			if err != nil {
				t.Fatalf("publishing poison %q: %v", p.name, err)
			}
			wantDLQ[ack.Sequence] = p
			t.Logf("poison %q at stream sequence %d", p.name, ack.Sequence)
		}
		time.Sleep(50 * time.Millisecond)
	}

	f := figures{scenario: "poison+bad-input", published: len(want)}
	f.recovery = waitFinal(t, db.Conn, uint64(len(want)), 60*time.Second, s)
	// Every message acked or, once dead-lettered, terminated: the dead-letter stream and the
	// counter (counted before the term) hold all they will.
	waitSettled(t, nsrv.URL(), 60*time.Second, s)
	deadLetterMetric := metricSum(scrape(t, metricsBase), "ponix_envelopes_dead_lettered_total")
	stopService(t, s)

	checkExact(t, db.Conn, want, seed, &f)
	extremes := readRowsFinal(t, db.Conn, []string{deep.GetEndDeviceId(), big.GetEndDeviceId()})
	for _, e := range []*envelopev1.ProcessedEnvelope{deep, big} {
		if r, ok := extremes[e.GetEndDeviceId()]; !ok {
			t.Errorf("valid extreme %s not stored", e.GetEndDeviceId())
		} else {
			checkRow(t, r, e)
		}
	}
	dlq := dlqMessages(t, nsrv.URL())
	f.deadLettered = len(dlq)
	if len(dlq) != len(poisons) {
		t.Errorf("dead-letter stream holds %d messages, want exactly the %d poison messages", len(dlq), len(poisons))
	}
	for _, m := range dlq {
		seq, _ := strconv.ParseUint(m.Header.Get(ponixnats.HeaderOriginalSequence), 10, 64)
		p, ok := wantDLQ[seq]
		if !ok {
			t.Errorf("dead letter of stream sequence %d (%s) is not a poison message", seq, m.Header.Get(ponixnats.HeaderOriginalSubject))
			continue
		}
		delete(wantDLQ, seq)
		reason := m.Header.Get(ponixnats.HeaderDLQReason)
		t.Logf("dead-lettered %-45q reason=%s error=%.120s", p.name, reason, m.Header.Get(ponixnats.HeaderDLQError))
		if !slices.Contains(p.reasons, reason) {
			t.Errorf("%s: reason %q, want one of %v", p.name, reason, p.reasons)
		}
		if string(m.Data) != string(p.data) || m.Header.Get(ponixnats.HeaderOriginalSubject) != p.subject {
			t.Errorf("%s: dead letter does not carry the original message", p.name)
		}
		if m.Header.Get(ponixnats.HeaderDLQError) == "" {
			t.Errorf("%s: no %s header", p.name, ponixnats.HeaderDLQError)
		}
	}
	for seq, p := range wantDLQ {
		t.Errorf("poison %q (sequence %d) not dead-lettered", p.name, seq)
	}
	if n := countLines(s.logs.String(), "message dead-lettered"); n != 0 {
		t.Errorf("%d log lines per dead-lettered message; want one line per batch", n)
	}
	if n := sumField(s.logs.String(), "messages dead-lettered", "count"); n != len(poisons) {
		t.Errorf("the per-batch dead-letter lines count %d messages, want %d", n, len(poisons))
	}
	if deadLetterMetric != float64(len(poisons)) {
		t.Errorf("ponix_envelopes_dead_lettered_total = %v, want %d", deadLetterMetric, len(poisons))
	}
	f.log(t)
}

// metricSum sums every series of the metric name in a scrape.
func metricSum(samples map[string]float64, name string) float64 {
	var sum float64
	for series, v := range samples {
		if series == name || strings.HasPrefix(series, name+"{") {
			sum += v
		}
	}
	return sum
}

// A bounded hold (PONIX_CLICKHOUSE_RETRY_SECS=1) with ClickHouse down: the held batches are
// given back (released) again and again, their deliveries pass the MaxDeliver of older
// releases (PONIX_NATS_MAX_DELIVER=3 is set, and ignored), and nothing is dead-lettered — a
// sink fault says nothing about the messages. Once ClickHouse is back, every envelope is
// stored exactly once.
func TestFaultBoundedHoldNeverDeadLettersASinkFault(t *testing.T) {
	t.Parallel()
	const n = 1000
	db := chSrv.NewDatabase(t)
	nsrv := natstest.New(t)
	want := envelopes(n, 108)
	proxy := startProxy(t, db.Config.Addr)
	env := faultEnv(t, db, nsrv.URL())
	env["PONIX_CLICKHOUSE_NATIVE_URL"] = proxy.addr()
	env["PONIX_NATS_MAX_DELIVER"] = "3" // maxDeliver below
	env["PONIX_CLICKHOUSE_RETRY_SECS"] = "1"
	s := startService(t, env)                                   // migrations run through the proxy while it is up
	waitLog(t, s, "fits the writer: consuming", 60*time.Second) // the table was checked through the proxy
	proxy.setDown(true)
	publish(t, nsrv.URL(), want)

	// Every message is in one of the two batches in hand (500 each), given back and delivered
	// again round after round. Wait until the batches given back add up to maxDeliver+2
	// deliveries of every message: each was delivered and given back past MaxDeliver (3), where
	// a hold that spent a record's deliveries would have dead-lettered it.
	const maxDeliver = 3
	waitFor(t, 120*time.Second, "every message given back past MaxDeliver", func() bool {
		return sumField(s.logs.String(), "giving the batch back", "batch_size") >= (maxDeliver+2)*n
	}, s)
	if dlq := dlqMessages(t, nsrv.URL()); len(dlq) != 0 {
		t.Fatalf("%d messages dead-lettered for a sink fault", len(dlq))
	}
	info := consumerState(t, nsrv.URL())
	t.Logf("while held at the last delivery: %d delivered and unacked, %d redelivered", info.NumAckPending, info.NumRedelivered)
	// Given back: redelivered one by one (one ack per message), or by rewinding the delivery to
	// the batch (one ack per batch; a consumer reset starts the delivery counts again).
	if info.NumRedelivered == 0 && countLines(s.logs.String(), "delivery rewound") == 0 {
		t.Error("no message was redelivered: the bounded hold did not give batches back")
	}
	start := time.Now()
	proxy.setDown(false)
	f := figures{scenario: "bounded-hold-at-max-deliver", published: n}
	f.recovery = waitFinal(t, db.Conn, n, 90*time.Second, s)
	f.faultDuration = time.Since(start)
	finishExact(t, db.Conn, nsrv.URL(), want, 108, &f, "a bounded hold at MaxDeliver", s)
}

// Scale-out: instances sharing the durable consumer with one ack per message split the work (each
// stores batches) and the table ends exact; with three, one is SIGKILLed
// mid-stream and the others take over its unacked messages.
func TestFaultScaleOut(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		instances int
		kill      bool
		seed      uint64
	}{
		{2, false, 109},
		{3, true, 110},
	} {
		name := fmt.Sprintf("%d-instances", tc.instances)
		if tc.kill {
			name += "-one-killed"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel() // servers of its own
			db := chSrv.NewDatabase(t)
			nsrv := natstest.New(t)
			ensureStream(t, nsrv.URL(), 1)
			want := envelopes(faultN, tc.seed)
			at := faultPoint(t, tc.seed)
			var svcs []*service
			for range tc.instances {
				env := perMessage(faultEnv(t, db, nsrv.URL())) // side by side (one per batch: ackbatch_integration_test.go)
				env["PONIX_NATS_BATCH_SIZE"] = "250"
				svcs = append(svcs, startService(t, env))
			}
			pub := startPublisher(t, nsrv.URL(), want, 500, 100*time.Millisecond)
			waitRaw(t, db.Conn, at, 60*time.Second, svcs...)
			f := figures{scenario: "scale-out-" + name, published: faultN}
			var killedAt time.Time
			if tc.kill {
				if err := svcs[0].cmd.Process.Signal(syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
				svcs[0].wait(10 * time.Second)
				killedAt = time.Now()
			}
			pub.wait(t, 60*time.Second)
			alive := svcs
			if tc.kill {
				alive = svcs[1:]
			}
			took := waitFinal(t, db.Conn, faultN, 90*time.Second, alive...)
			if tc.kill {
				f.recovery = time.Since(killedAt)
			} else {
				f.recovery = took
			}
			finishExact(t, db.Conn, nsrv.URL(), want, tc.seed, &f, "a scale-out", alive...)
			for i, s := range svcs {
				n := countLines(s.logs.String(), "stored batch")
				t.Logf("instance %d stored %d batches", i, n)
				if n == 0 {
					t.Errorf("instance %d stored no batch: the work was not split", i)
				}
			}
		})
	}
}

// Broker failover: a 3-node JetStream cluster with an R3 stream; the node
// leading the service's durable consumer is stopped mid-stream. The service
// (given all three URLs) carries on through the new leader and the table ends
// exact.
func TestFaultClusterConsumerLeaderKilled(t *testing.T) {
	t.Parallel()
	const seed = 111
	db := chSrv.NewDatabase(t)
	cluster := natstest.NewCluster(t, 3)
	urls := cluster.URLs()
	ensureStream(t, urls, 3)
	want := envelopes(faultN, seed)
	at := faultPoint(t, seed)

	env := faultEnv(t, db, urls)
	env["PONIX_NATS_REPLICAS"] = "3"
	s := startService(t, env)
	pub := startPublisher(t, urls, want, 500, 100*time.Millisecond)
	waitRaw(t, db.Conn, at, 60*time.Second, s)

	info := consumerState(t, urls)
	if info.Cluster == nil || info.Cluster.Leader == "" || len(info.Cluster.Replicas) != 2 {
		t.Fatalf("consumer is not an R3 consumer with a leader: %+v", info.Cluster)
	}
	// Make the node the service is connected to the consumer's leader too,
	// then stop it: the service loses its connection and the consumer its
	// leader at once.
	var leader *natstest.Server
	for _, line := range strings.Split(s.logs.String(), "\n") {
		if strings.Contains(line, "connected to NATS") {
			for _, n := range cluster.Nodes {
				if strings.Contains(line, "url="+n.URL()+" ") {
					leader = n
				}
			}
		}
	}
	if leader == nil {
		t.Fatalf("cannot tell which node the service is connected to:\n%s", s.logs.String())
	}
	moveConsumerLeader(t, urls, leader.Name())
	t.Logf("stopping %s (%s): the consumer leader and the node the service is connected to", leader.Name(), leader.URL())
	leader.Stop()
	killedAt := time.Now()
	stuck := rawCount(t, db.Conn)
	f := figures{scenario: "cluster-consumer-leader-killed", published: faultN}
	f.resume = waitResume(t, db.Conn, stuck, 60*time.Second, s)
	pub.wait(t, 60*time.Second)
	waitFinal(t, db.Conn, faultN, 90*time.Second, s)
	f.recovery = time.Since(killedAt)
	after := consumerState(t, urls)
	t.Logf("new consumer leader %s", after.Cluster.Leader)
	if after.Cluster.Leader == leader.Name() {
		t.Errorf("consumer leader still %s after its stop", leader.Name())
	}
	finishExact(t, db.Conn, urls, want, seed, &f, "a failover", s)
}

// moveConsumerLeader asks the service's consumer to step down until node
// leads it.
func moveConsumerLeader(t *testing.T, url, node string) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	subj := "$JS.API.CONSUMER.LEADER.STEPDOWN.processed_envelopes.ponix-all-in-one"
	for attempt := range 10 {
		if consumerState(t, url).Cluster.Leader == node {
			return
		}
		_, err := nc.Request(subj, []byte(`{"placement":{"preferred":"`+node+`"}}`), 5*time.Second)
		if err != nil {
			t.Logf("stepdown attempt %d: %v", attempt, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("consumer leader did not move to %s", node)
}
