//go:build integration

package integration

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ponix-go/ponix/ponixnats"
)

// batchConfig is baseConfig acknowledging per batch.
func batchConfig(stream string) ponixnats.ConsumerConfig {
	cfg := baseConfig(stream)
	cfg.Ack = ponixnats.AckPerBatch
	cfg.BatchSize = 100
	return cfg
}

// ackAll is a processor that records every message it is handed and acks them all.
func ackAll(d *deliveries) ponixnats.Processor {
	return func(_ context.Context, b ponixnats.Batch[jetstream.Msg]) (ponixnats.Result, error) {
		d.add(b.Items)
		return ponixnats.AckAll(b.Len()), nil
	}
}

// ackCounter counts the acknowledgements the server receives for a stream's consumers (the
// "+ACK" replies on $JS.ACK.<stream>.>).
func ackCounter(t *testing.T, stream string) *atomic.Int64 {
	t.Helper()
	nc, _ := connectJS(t, testURL)
	var n atomic.Int64
	sub, err := nc.Subscribe("$JS.ACK."+stream+".>", func(m *nats.Msg) {
		if bytes.HasPrefix(m.Data, []byte("+ACK")) || len(m.Data) == 0 {
			n.Add(1)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return &n
}

// One ack per batch: 1,000 messages in batches of 100 are each processed once, and the server
// receives about one ack per batch, not one per message.
func TestIntegrationAckPerBatchAcknowledgesOncePerBatch(t *testing.T) {
	_, js := connectJS(t, testURL)
	stream := testStream(t, js)
	publishN(t, js, stream+".a", 1000, 0)
	acks := ackCounter(t, stream)
	var d deliveries
	c, err := ponixnats.NewConsumer(context.Background(), js, batchConfig(stream), ackAll(&d))
	if err != nil {
		t.Fatal(err)
	}
	if cfg := consumerInfo(t, c).Config; cfg.AckPolicy != jetstream.AckAllPolicy || cfg.PriorityPolicy != jetstream.PriorityPolicyOverflow || len(cfg.PriorityGroups) != 1 {
		t.Fatalf("durable consumer: ack policy %s, priority policy %v, groups %v; want AckAll, overflow (no pin), one group", cfg.AckPolicy, cfg.PriorityPolicy, cfg.PriorityGroups)
	}
	runConsumer(t, c)
	waitSettled(t, js, c)
	// The owner bucket names this process as the durable's owner.
	kv, err := js.KeyValue(context.Background(), ponixnats.DefaultOwnerBucket)
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(context.Background(), stream+"."+c.Config().Durable)
	if err != nil {
		t.Fatalf("owner key: %v", err)
	}
	if host, _ := os.Hostname(); !strings.HasPrefix(string(e.Value()), host+"/"+strconv.Itoa(os.Getpid())+"/") {
		t.Errorf("owner key %q does not name this process", e.Value())
	}
	if d.distinct() != 1000 {
		t.Fatalf("%d distinct messages processed, want 1000", d.distinct())
	}
	st := c.Stats()
	if st.Takeovers != 1 || st.Acked != uint64(d.total()) {
		t.Errorf("stats: %+v; want one takeover (the start) and every processed message counted acked", st)
	}
	if n := acks.Load(); n > 20 {
		t.Errorf("the server received %d acks for 1,000 messages in batches of 100; want about one per batch", n)
	}
	t.Logf("processed %d (distinct %d), acks %d, stats %+v", d.total(), d.distinct(), acks.Load(), st)
}

// A batch with a message to be delivered again in its middle (released once) and a record
// dead-lettered after it: the batch is acknowledged up to the released message, delivery
// rewinds to it, the dead-lettered record is published once, and every message ends
// acknowledged.
func TestIntegrationAckPerBatchHoleInTheMiddle(t *testing.T) {
	_, js := connectJS(t, testURL)
	stream := testStream(t, js)
	publishN(t, js, stream+".a", 100, 0)
	var (
		d        deliveries
		released atomic.Bool
	)
	proc := func(_ context.Context, b ponixnats.Batch[jetstream.Msg]) (ponixnats.Result, error) {
		d.add(b.Items)
		r := ponixnats.NewResult(b.Len())
		for i, m := range b.Items {
			switch string(m.Data()) {
			case "40":
				if released.CompareAndSwap(false, true) {
					r.Release(i, 0, nil)
					continue
				}
			case "60":
				r.DeadLetter(i, ponixnats.ReasonRejected, errBad)
				continue
			}
			r.Ack(i)
		}
		return r, nil
	}
	c, err := ponixnats.NewConsumer(context.Background(), js, batchConfig(stream), proc)
	if err != nil {
		t.Fatal(err)
	}
	runConsumer(t, c)
	waitSettled(t, js, c)
	st := c.Stats()
	if st.DeadLettered != 1 {
		t.Errorf("dead-lettered %d times, want once (the rewind delivers it again; it must not be published twice)", st.DeadLettered)
	}
	if n := dlqCount(t, js, stream+"_dlq"); n != 1 {
		t.Errorf("the dead-letter stream holds %d messages, want 1", n)
	}
	if st.Rewinds != 1 {
		t.Errorf("%d rewinds, want 1", st.Rewinds)
	}
	if d.get("40") != 2 || d.get("39") != 1 || d.get("41") != 2 {
		t.Errorf("deliveries: 39 %d, 40 %d, 41 %d; want 1, 2, 2 (acknowledged up to the hole, delivered again from it)", d.get("39"), d.get("40"), d.get("41"))
	}
}

var errBad = errorString("bad record")

type errorString string

func (e errorString) Error() string { return string(e) }

func dlqCount(t *testing.T, js jetstream.JetStream, name string) uint64 {
	t.Helper()
	st, err := js.Stream(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return st.CachedInfo().State.Msgs
}

// Two instances on one durable, both running: one owns it at a time, the other stands by. The
// owner dies in the middle of a batch (its connection closed without a word, as a SIGKILL
// would); the other takes over after OwnerTTL, gets what the dead one left unacknowledged
// delivered again, and every message ends stored and acknowledged.
//
// The messages are published once the two have settled who owns the durable: each takes the
// key at its start, and the first believes it owns the durable until its next renewal finds
// the key taken (within a third of OwnerTTL) — a moment in which both are owners by design
// (the chain check, not the lease, keeps that harmless), and in which the dying batch must not
// fall (it did, in a loaded CI run: "Owner() true and true").
func TestIntegrationAckPerBatchOwnerDiesStandbyTakesOver(t *testing.T) {
	_, js := connectJS(t, testURL)
	stream := testStream(t, js)
	cfg := batchConfig(stream)
	cfg.OwnerTTL = 2 * time.Second // a renewal every ~0.7 s: a loaded machine does not miss three
	cfg.DrainTimeout = time.Second // the dying owner's processor hangs until its context ends

	var (
		mu      sync.Mutex
		stored  = map[string]int{}
		batches atomic.Int32
		dying   = make(chan int, 1) // the instance that hangs in its batch
	)
	proc := func(id int) ponixnats.Processor {
		return func(ctx context.Context, b ponixnats.Batch[jetstream.Msg]) (ponixnats.Result, error) {
			if batches.Add(1) == 3 {
				dying <- id
				<-ctx.Done()
				return ponixnats.Result{}, ctx.Err()
			}
			mu.Lock()
			for _, m := range b.Items {
				stored[string(m.Data())]++
			}
			mu.Unlock()
			return ponixnats.AckAll(b.Len()), nil
		}
	}
	var (
		conns     [2]*nats.Conn
		consumers [2]*ponixnats.Consumer
		stops     [2]func()
	)
	for i := range 2 {
		nc, jsi := connectJS(t, testURL)
		c, err := ponixnats.NewConsumer(context.Background(), jsi, cfg, proc(i))
		if err != nil {
			t.Fatal(err)
		}
		conns[i], consumers[i] = nc, c
	}
	for i := range 2 {
		stops[i] = runConsumer(t, consumers[i])
	}
	// Settled: one owner, and no other, for OwnerTTL (both takes and the loser's renewal fall
	// well within it).
	var oneOwnerSince time.Time
	eventually(t, 20*time.Second, "one owner of the durable, alone for OwnerTTL", func() bool {
		if consumers[0].Owner() == consumers[1].Owner() {
			oneOwnerSince = time.Time{}
			return false
		}
		if oneOwnerSince.IsZero() {
			oneOwnerSince = time.Now()
		}
		return time.Since(oneOwnerSince) >= cfg.OwnerTTL
	})
	publishN(t, js, stream+".a", 2000, 0)
	dead := <-dying
	other := consumers[1-dead]
	if !consumers[dead].Owner() || other.Owner() {
		t.Errorf("while one instance processes a batch: Owner() %v and %v; want the processing one alone", consumers[dead].Owner(), other.Owner())
	}
	conns[dead].Close()
	waitSettled(t, js, other)
	stops[dead]()
	mu.Lock()
	defer mu.Unlock()
	for i := range 2000 {
		if stored[strconv.Itoa(i)] == 0 {
			t.Fatalf("message %d was acknowledged but never stored", i)
		}
	}
	if other.Stats().Takeovers < 1 || !other.Owner() {
		t.Errorf("the standby never took the durable over: Owner() %v, %+v", other.Owner(), other.Stats())
	}
	t.Logf("instance %d died; the other: %+v", dead, other.Stats())
}

// upgradeFrom is an upgrade from a durable of an earlier release, created with old on a stream
// of 500 messages: that release took 300 (with opts), acknowledged the first 100 and died
// holding the rest. The new consumer must create the durable anew (one log line) where it was
// acknowledged and process every message after the acknowledged ones, and none before. It
// returns the earlier release's consumer and the new one (settled).
func upgradeFrom(t *testing.T, old jetstream.ConsumerConfig, opts ...jetstream.FetchOpt) (jetstream.Consumer, *ponixnats.Consumer) {
	t.Helper()
	_, js := connectJS(t, testURL)
	stream := testStream(t, js)
	publishN(t, js, stream+".a", 500, 0)
	ctx := context.Background()
	old.Durable = "test"
	earlier, err := js.CreateConsumer(ctx, stream, old)
	if err != nil {
		t.Fatal(err)
	}
	b, err := earlier.Fetch(300, append(opts, jetstream.FetchMaxWait(5*time.Second))...)
	if err != nil {
		t.Fatal(err)
	}
	i := 0
	for m := range b.Messages() {
		if i < 100 {
			if err := m.DoubleAck(ctx); err != nil {
				t.Fatal(err)
			}
		}
		i++
	}
	if i != 300 {
		t.Fatalf("the earlier release's pull brought %d messages, want 300", i)
	}
	var d deliveries
	logs := &logRecorder{}
	cfg := batchConfig(stream)
	cfg.Logger = slog.New(logs)
	c, err := ponixnats.NewConsumer(ctx, js, cfg, ackAll(&d))
	if err != nil {
		t.Fatal(err)
	}
	if !logs.logged("durable consumer created anew to change how it acknowledges") {
		t.Errorf("the re-creation was not logged; logged: %v", logs.all())
	}
	runConsumer(t, c)
	waitSettled(t, js, c)
	for i := 100; i < 500; i++ {
		if d.get(strconv.Itoa(i)) == 0 {
			t.Fatalf("message %d never processed after the upgrade", i)
		}
	}
	if d.get("0") != 0 {
		t.Errorf("message 0, acknowledged before the upgrade, was delivered again")
	}
	return earlier, c
}

// An upgrade: a durable consumer of an earlier release (per-message acks) with unacknowledged
// messages is created anew with one ack per batch where the stream was acknowledged, and every
// message is processed.
func TestIntegrationAckPerBatchUpgradesAnAckExplicitDurable(t *testing.T) {
	_, c := upgradeFrom(t, jetstream.ConsumerConfig{AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Minute})
	if cfg := consumerInfo(t, c).Config; cfg.AckPolicy != jetstream.AckAllPolicy {
		t.Fatalf("after the upgrade the durable consumer has ack policy %s", cfg.AckPolicy)
	}
}

// logRecorder keeps the messages logged.
type logRecorder struct {
	mu   sync.Mutex
	msgs []string
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logRecorder) WithGroup(string) slog.Handler            { return l }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, r.Message)
	return nil
}

func (l *logRecorder) logged(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, m := range l.msgs {
		if strings.Contains(m, s) {
			return true
		}
	}
	return false
}

func (l *logRecorder) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.msgs...)
}

// Another client pulls from the durable while its owner consumes it. One that names no priority
// group (another tool, an earlier release) is refused. One that names the owners' group — an
// earlier owner that went on pulling after a stall — takes 50 messages and dies without
// acknowledging them.
// Acknowledging per batch, the owner's next ack would cover those 50 had it not noticed: its
// deliveries no longer continue its own consumer sequences, so it resets the durable and the
// 50 are delivered to it again. Every message ends processed and acknowledged.
func TestIntegrationAckPerBatchAnotherClientsPullIsDeliveredAgain(t *testing.T) {
	ctx := context.Background()
	_, js := connectJS(t, testURL)
	stream := testStream(t, js)
	publishN(t, js, stream+".a", 3000, 0)
	cfg := batchConfig(stream)
	var (
		d       deliveries
		batches atomic.Int32
		intrude = make(chan struct{})
		done    = make(chan struct{})
	)
	proc := func(_ context.Context, b ponixnats.Batch[jetstream.Msg]) (ponixnats.Result, error) {
		if batches.Add(1) == 3 {
			close(intrude) // the owner is busy with this batch while the other client pulls
			<-done
		}
		d.add(b.Items)
		return ponixnats.AckAll(b.Len()), nil
	}
	c, err := ponixnats.NewConsumer(ctx, js, cfg, proc)
	if err != nil {
		t.Fatal(err)
	}
	stop := runConsumer(t, c)
	defer stop()
	<-intrude
	_, js2 := connectJS(t, testURL)
	other, err := js2.Consumer(ctx, stream, cfg.Durable)
	if err != nil {
		t.Fatal(err)
	}
	// A client of another release or tool names no priority group, or another: refused.
	plain, err := other.FetchNoWait(50)
	if err != nil {
		t.Fatal(err)
	}
	for m := range plain.Messages() {
		t.Fatalf("a pull naming no priority group was delivered %q", m.Data())
	}
	if plain.Error() == nil {
		t.Error("a pull naming no priority group was not refused")
	}
	// An earlier owner of this release names the group.
	taken, err := other.Fetch(50, jetstream.FetchMaxWait(time.Second), jetstream.FetchPriorityGroup("ponixnats-lease"))
	if err != nil {
		t.Fatal(err)
	}
	var grabbed []string
	for m := range taken.Messages() {
		grabbed = append(grabbed, string(m.Data())) // never acknowledged
	}
	close(done)
	if len(grabbed) == 0 {
		t.Fatal("the other client's pull brought nothing: the test did not interleave")
	}
	waitSettled(t, js, c)
	for i := range 3000 {
		if d.get(strconv.Itoa(i)) == 0 {
			t.Fatalf("message %d was acknowledged but never processed by the owner (the other client took %d: %v…)", i, len(grabbed), grabbed[0])
		}
	}
	if st := c.Stats(); st.Rewound == 0 {
		t.Errorf("the owner never dropped a batch whose deliveries skipped the other client's: %+v", st)
	}
}

// The owner bucket is deleted while the owner consumes (an operator's mistake): it is created
// again, the owner writes its key into it again, and consuming goes on.
func TestIntegrationAckPerBatchOwnerBucketDeletedIsCreatedAgain(t *testing.T) {
	ctx := context.Background()
	_, js := connectJS(t, testURL)
	stream := testStream(t, js)
	cfg := batchConfig(stream)
	cfg.OwnerBucket = "owners_" + stream
	cfg.OwnerTTL = time.Second
	publishN(t, js, stream+".a", 500, 0)
	var d deliveries
	c, err := ponixnats.NewConsumer(ctx, js, cfg, ackAll(&d))
	if err != nil {
		t.Fatal(err)
	}
	defer runConsumer(t, c)()
	waitSettled(t, js, c)
	if err := js.DeleteKeyValue(ctx, cfg.OwnerBucket); err != nil {
		t.Fatal(err)
	}
	publishN(t, js, stream+".a", 500, 500)
	waitSettled(t, js, c)
	for i := range 1000 {
		if d.get(strconv.Itoa(i)) == 0 {
			t.Fatalf("message %d was acknowledged but never processed", i)
		}
	}
	eventually(t, 10*time.Second, "the owner key written again into a bucket created again", func() bool {
		kv, err := js.KeyValue(ctx, cfg.OwnerBucket)
		if err != nil {
			return false
		}
		_, err = kv.Get(ctx, stream+"."+cfg.Durable)
		return err == nil
	})
}

// An upgrade from the release that owned an AckPerBatch durable through a pinned priority
// group: the durable (AckAll, pinned, 100 messages acknowledged and 200 held by the earlier
// release) is created anew without the pin where it was acknowledged, and every message after
// the acknowledged ones is processed. A pull of the earlier release (naming its group) is
// refused from then on.
func TestIntegrationAckPerBatchUpgradesAPinnedDurable(t *testing.T) {
	earlier, c := upgradeFrom(t, jetstream.ConsumerConfig{AckPolicy: jetstream.AckAllPolicy, AckWait: time.Minute,
		PriorityPolicy: jetstream.PriorityPolicyPinned, PriorityGroups: []string{"owner"}, PinnedTTL: time.Minute},
		jetstream.FetchPriorityGroup("owner"))
	if cfg := consumerInfo(t, c).Config; cfg.PriorityPolicy == jetstream.PriorityPolicyPinned {
		t.Fatalf("after the upgrade the durable is still pinned: %+v", cfg)
	}
	refused, err := earlier.Fetch(10, jetstream.FetchMaxWait(time.Second), jetstream.FetchPriorityGroup("owner"))
	if err != nil {
		t.Fatal(err)
	}
	for m := range refused.Messages() {
		t.Fatalf("a pull of the earlier release was delivered %q", m.Data())
	}
	if refused.Error() == nil {
		t.Error("a pull of the earlier release was not refused")
	}
}
