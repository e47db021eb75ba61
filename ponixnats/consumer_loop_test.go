package ponixnats

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// The loop's waits, told apart on the fake clock by their durations.
const (
	loopAckWait = 30 * time.Second
	loopKeep    = loopAckWait / 3 // in-progress acks
	loopDrain   = 20 * time.Second
	loopMaxWait = 2 * time.Second
	loopNak     = 3 * time.Second
)

// loop is a Consumer on a fakeSource and a fakeClock, its Run in a goroutine, its processor
// answering as the test says.
type loop struct {
	t      *testing.T
	src    *fakeSource
	clk    *fakeClock
	acks   *ackLog
	logs   *logRecorder
	c      *Consumer
	calls  chan call
	cancel context.CancelFunc
	done   chan error
}

// call is one call of the processor, waiting for the test's answer.
type call struct {
	ctx   context.Context
	batch Batch[jetstream.Msg]
	reply chan outcome
}

type outcome struct {
	res Result
	err error
}

func (c call) answer(res Result, err error) { c.reply <- outcome{res, err} }

// seqs returns the stream sequences of the call's batch.
func (c call) seqs() []uint64 {
	var out []uint64
	for _, m := range c.batch.Items {
		out = append(out, m.(*liveMsg).seq)
	}
	return out
}

var streamCreated = time.Unix(1_700_000_000, 0)

func loopConfig() ConsumerConfig {
	return ConsumerConfig{Stream: "s", Durable: "d", BatchSize: 2, MaxWait: loopMaxWait, AckWait: loopAckWait,
		DrainTimeout: loopDrain, NakDelay: loopNak, DeadLetter: DeadLetterConfig{Disabled: true}}
}

// startLoop starts a consumer of cfg on a stream that exists with its durable consumer.
func startLoop(t *testing.T, cfg ConsumerConfig) *loop {
	t.Helper()
	l := &loop{t: t, src: newFakeSource(streamCreated), clk: newFakeClock(), acks: &ackLog{}, logs: &logRecorder{},
		calls: make(chan call), done: make(chan error, 1)}
	l.src.firstSeq, l.src.lastSeq = 1, 60
	existing := cfg.withDefaults().jetStreamConfig()
	l.src.consumerCfg = &existing
	cfg.Logger = slog.New(l.logs)
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	proc := func(ctx context.Context, b Batch[jetstream.Msg]) (Result, error) {
		c := call{ctx: ctx, batch: b, reply: make(chan outcome, 1)}
		l.calls <- c
		o := <-c.reply
		return o.res, o.err
	}
	l.c = newConsumer(cfg, proc, l.src, l.clk)
	if err := l.c.start(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	go func() { l.done <- l.c.Run(ctx) }()
	t.Cleanup(cancel)
	return l
}

// msgs returns n delivered messages from stream sequence first on (consumer sequences alike).
func (l *loop) msgs(first uint64, n int) []jetstream.Msg {
	out := make([]jetstream.Msg, n)
	for i := range out {
		seq := first + uint64(i)
		out[i] = &liveMsg{fakeMsg: fakeMsg{subject: "s.dev", data: []byte("x")}, seq: seq, cseq: seq, delivered: 1, log: l.acks}
	}
	return out
}

// nextPull returns the next pull request the consumer sends.
func (l *loop) nextPull() *fakePull {
	l.t.Helper()
	select {
	case p := <-l.src.pulls:
		return p
	case <-time.After(waitGuard):
		l.t.Fatal("no pull request came")
		return nil
	}
}

// noPull fails the test if a pull request is waiting to be sent.
func (l *loop) noPull(why string) {
	l.t.Helper()
	select {
	case p := <-l.src.pulls:
		l.t.Fatalf("a pull request for %d messages went out: %s", p.n, why)
	default:
	}
}

// nextCall returns the next call of the processor.
func (l *loop) nextCall() call {
	l.t.Helper()
	select {
	case c := <-l.calls:
		return c
	case <-time.After(waitGuard):
		l.t.Fatal("the processor was not called")
		return call{}
	}
}

// stop cancels Run's context, answers the pull requests in flight as expired, and waits for
// Run to return nil.
func (l *loop) stop(inFlight ...*fakePull) {
	l.t.Helper()
	l.cancel()
	for _, p := range inFlight {
		p.respond(nil, nil)
	}
	l.wait()
}

// wait waits for Run to return nil, answering any pull request as expired meanwhile.
func (l *loop) wait() {
	l.t.Helper()
	guard := time.After(waitGuard)
	for {
		select {
		case p := <-l.src.pulls:
			p.respond(nil, nil)
		case err := <-l.done:
			if err != nil {
				l.t.Fatalf("Run returned %v", err)
			}
			return
		case <-guard:
			l.t.Fatal("Run did not return")
		}
	}
}

// waitAcks waits until each message in seqs was done with as kind.
func (l *loop) waitAcks(kind string, n int, seqs ...uint64) {
	l.t.Helper()
	waitUntil(l.t, &l.acks.changes, kind+" of the batch", func() bool {
		for _, s := range seqs {
			if l.acks.count(s, kind) < n {
				return false
			}
		}
		return true
	})
}

// holdWithOneAhead has the processor hold the batch [1 2] (returned) while the batch [3 4],
// fetched ahead, waits to be handed over.
func (l *loop) holdWithOneAhead() call {
	l.t.Helper()
	l.nextPull().respond(l.msgs(1, 2), nil)
	a := l.nextCall()
	l.nextPull().respond(l.msgs(3, 2), nil)
	l.clk.waitFor(l.t, infoEvery, 1, "the batch fetched ahead waits to be handed over")
	return a
}

// fetchReadingAckFloor answers the next pull request with msgs once infoEvery passed, the
// server's ack floor being floor: the loop reads it before its next pull request.
func (l *loop) fetchReadingAckFloor(floor uint64, msgs []jetstream.Msg) {
	l.t.Helper()
	p := l.nextPull()
	l.src.setAckFloor(floor)
	l.clk.advance(infoEvery + time.Millisecond)
	p.respond(msgs, nil)
}

// resumeProbe is a ResumeAt that tells the test what it is told and answers what the test
// sends on start.
type resumeProbe struct {
	told  chan ResumeInfo
	start chan uint64
}

// askResumeAt sets cfg.ResumeAt to a probe.
func askResumeAt(cfg *ConsumerConfig) *resumeProbe {
	r := &resumeProbe{told: make(chan ResumeInfo), start: make(chan uint64)}
	cfg.ResumeAt = func(_ context.Context, ri ResumeInfo) (uint64, error) {
		r.told <- ri
		return <-r.start, nil
	}
	return r
}

// next returns what ResumeAt is told next.
func (r *resumeProbe) next(t *testing.T) ResumeInfo {
	t.Helper()
	select {
	case ri := <-r.told:
		return ri
	case <-time.After(waitGuard):
		t.Fatal("ResumeAt was not asked")
		return ResumeInfo{}
	}
}

// One batch is fetched while the processor works on the previous one, and no more: the batch
// fetched ahead waits (kept alive) until the processor takes it, and only then does the next
// pull request go out.
func TestConsumerFetchesOneBatchAhead(t *testing.T) {
	l := startLoop(t, loopConfig())
	l.nextPull().respond(l.msgs(1, 2), nil)
	a := l.nextCall()

	p2 := l.nextPull() // sent while the processor holds batch a
	if p2.n != 2 {
		t.Fatalf("the pull ahead asks for %d messages, want BatchSize 2", p2.n)
	}
	p2.respond(l.msgs(3, 2), nil)
	l.clk.waitFor(t, infoEvery, 1, "the batch fetched ahead waits to be handed over")
	l.noPull("a second batch ahead while the processor still holds the first")

	// Both batches are kept alive meanwhile, and still no pull request goes out.
	l.clk.waitFor(t, loopKeep, 2, "keep-alive of the batch in hand and of the batch ahead")
	l.clk.advance(loopKeep)
	l.waitAcks("in progress", 1, 1, 2, 3, 4)
	l.noPull("after the keep-alive ticks")

	a.answer(AckAll(2), nil)
	l.waitAcks("ack", 1, 1, 2)
	b := l.nextCall()
	if got := b.seqs(); !slices.Equal(got, []uint64{3, 4}) {
		t.Fatalf("second batch %v, want [3 4]", got)
	}
	p3 := l.nextPull() // the next batch ahead, now that b is taken
	b.answer(AckAll(2), nil)
	l.waitAcks("ack", 1, 3, 4)
	l.stop(p3)
	if s := l.c.Stats(); s.Batches != 2 || s.Messages != 4 || s.Acked != 4 {
		t.Fatalf("stats %+v; want 2 batches, 4 messages acked", s)
	}
}

// While the processor holds a batch, in-progress acks go out on every tick of the clock
// (AckWait/3), and none between ticks; they stop once the processor returned.
func TestConsumerKeepsAHeldBatchAlive(t *testing.T) {
	l := startLoop(t, loopConfig())
	l.nextPull().respond(l.msgs(1, 2), nil)
	a := l.nextCall()
	p2 := l.nextPull() // left in flight: only the batch in hand has a keep-alive

	l.clk.waitFor(t, loopKeep, 1, "keep-alive of the batch in hand")
	for tick := 1; tick <= 3; tick++ {
		l.clk.advance(loopKeep)
		l.waitAcks("in progress", tick, 1, 2)
	}
	l.clk.advance(loopKeep / 2) // between two ticks
	if n := l.acks.count(1, "in progress"); n != 3 {
		t.Fatalf("%d in-progress acks after 3.5 periods, want 3", n)
	}

	a.answer(AckAll(2), nil)
	l.waitAcks("ack", 1, 1, 2)
	if n := l.clk.waiting(loopKeep); n != 0 {
		t.Fatalf("%d keep-alive tickers left after the processor returned, want 0", n)
	}
	l.clk.advance(loopKeep)
	for _, seq := range []uint64{1, 2} {
		if got := l.acks.kinds(seq); !slices.Equal(got, []string{"in progress", "in progress", "in progress", "ack"}) {
			t.Fatalf("message %d: %v; want 3 in-progress acks, then the ack, then nothing", seq, got)
		}
	}
	l.stop(p2)
}

// A durable consumer deleted while a batch is in hand is created again once that batch is
// done: Health reports it meanwhile, ResumeAt is told the ack floor last read and the stream's
// incarnation, the consumer starts where ResumeAt says, and Health clears.
func TestConsumerRecreatesADeletedConsumer(t *testing.T) {
	cfg := loopConfig()
	resume := askResumeAt(&cfg)
	l := startLoop(t, cfg)

	l.fetchReadingAckFloor(39, l.msgs(40, 2))
	a := l.nextCall()
	p2 := l.nextPull() // after the ack floor was read

	l.src.deleteConsumer()
	p2.respond(nil, jetstream.ErrConsumerDeleted)
	waitUntil(t, &l.logs.changes, "the deletion noticed", func() bool { return l.logs.logged("durable consumer no longer exists") })
	select {
	case <-resume.told:
		t.Fatal("ResumeAt was asked while a batch was still in hand")
	default:
	}
	a.answer(AckAll(2), nil)

	ri := resume.next(t)
	if got := l.acks.kinds(41); !slices.Equal(got, []string{"ack"}) {
		t.Fatalf("ResumeAt asked before the batch in hand was acked (message 41: %v)", got)
	}
	want := ResumeInfo{Stream: "s", StreamCreated: streamCreated, FirstSeq: 1, LastSeq: 60, AckFloor: 39}
	if ri != want {
		t.Fatalf("ResumeAt told %+v, want %+v", ri, want)
	}
	if h := l.c.Health(); !errors.Is(h.Err, ErrConsumerMissing) || h.Since.IsZero() {
		t.Fatalf("Health while the consumer is missing: %+v; want ErrConsumerMissing", h)
	}
	resume.start <- 42

	p3 := l.nextPull() // from the consumer created anew
	if h := l.c.Health(); h.Err != nil {
		t.Fatalf("Health after the recovery: %v, want nil", h.Err)
	}
	created, n := l.src.lastCreated()
	if n != 1 || created.DeliverPolicy != jetstream.DeliverByStartSequencePolicy || created.OptStartSeq != 42 ||
		created.Durable != "d" || created.MaxDeliver != -1 || created.AckWait != loopAckWait {
		t.Fatalf("created %d consumers, the last %+v; want one starting at sequence 42", n, created)
	}
	p3.respond(l.msgs(42, 2), nil)
	b := l.nextCall()
	if !b.batch.Stream.Created.Equal(streamCreated) {
		t.Fatalf("batch from stream incarnation %s, want %s", b.batch.Stream.Created, streamCreated)
	}
	b.answer(AckAll(2), nil)
	l.waitAcks("ack", 1, 42, 43)
	l.stop()
	if s := l.c.Stats(); s.Recoveries != 1 || s.FetchErrors != 1 {
		t.Fatalf("stats %+v; want 1 recovery after 1 fetch error", s)
	}
}

// A batch fetched ahead that waits behind a held one looks every infoEvery whether the durable
// consumer still exists: Health names a deletion before any fetch fails.
func TestConsumerNoticesADeletionWhileABatchWaits(t *testing.T) {
	l := startLoop(t, loopConfig())
	a := l.holdWithOneAhead()
	before := l.src.consumerLookups()
	l.src.deleteConsumer()
	l.clk.advance(infoEvery)
	waitUntil(t, &l.src.changes, "the waiting batch's look-up", func() bool { return l.src.consumerLookups() > before })
	a.answer(AckAll(2), nil)
	b := l.nextCall() // handed over once the look-up was done with
	if h := l.c.Health(); !errors.Is(h.Err, ErrConsumerMissing) {
		t.Fatalf("Health after the waiting batch found the consumer deleted: %v; want ErrConsumerMissing", h.Err)
	}
	if s := l.c.Stats(); s.FetchErrors != 0 {
		t.Fatalf("stats %+v; want no fetch error: the look-up noticed the deletion", s)
	}
	b.answer(AckAll(2), nil)
	l.waitAcks("ack", 1, 3, 4)
	l.stop()
}

// Without ResumeAt, a deleted durable consumer resumes after the ack floor last read.
func TestConsumerResumesAfterTheAckFloorByDefault(t *testing.T) {
	l := startLoop(t, loopConfig())
	l.fetchReadingAckFloor(41, nil)
	p2 := l.nextPull()
	l.src.deleteConsumer()
	p2.respond(nil, jetstream.ErrConsumerDeleted)
	p3 := l.nextPull()
	if created, n := l.src.lastCreated(); n != 1 || created.OptStartSeq != 42 {
		t.Fatalf("created %d consumers, the last starting at %d; want one at 42 (ack floor 41 + 1)", n, created.OptStartSeq)
	}
	l.stop(p3)
}

// A deleted stream is created again (EnsureStream): Health reports the failed attempts
// meanwhile, the retries wait on the clock, ResumeAt is told the new incarnation and no ack
// floor (the old one's sequences are gone), and batches carry the new incarnation.
func TestConsumerRecreatesADeletedStream(t *testing.T) {
	cfg := loopConfig()
	cfg.EnsureStream = &StreamConfig{Name: "s"}
	resume := askResumeAt(&cfg)
	l := startLoop(t, cfg)
	l.fetchReadingAckFloor(41, nil)
	p2 := l.nextPull() // after the ack floor was read

	l.src.deleteStream()
	l.src.failNextEnsure(errors.New("insufficient resources"))
	p2.respond(nil, jetstream.ErrConsumerDeleted)
	l.clk.waitFor(t, 100*time.Millisecond, 1, "the first retry's back-off")
	h := l.c.Health()
	if !errors.Is(h.Err, ErrConsumerMissing) || !strings.Contains(h.Err.Error(), "insufficient resources") {
		t.Fatalf("Health while creating the stream fails: %v; want ErrConsumerMissing with the cause", h.Err)
	}
	l.clk.advance(100 * time.Millisecond)

	ri := resume.next(t)
	if ri.StreamCreated.Equal(streamCreated) || ri.StreamCreated.IsZero() || ri.AckFloor != 0 || ri.Stream != "s" {
		t.Fatalf("ResumeAt told %+v; want the new incarnation and no ack floor", ri)
	}
	if h := l.c.Health(); !errors.Is(h.Err, ErrConsumerMissing) {
		t.Fatalf("Health before the consumer exists again: %v; want ErrConsumerMissing", h.Err)
	}
	resume.start <- 0

	p3 := l.nextPull()
	if h := l.c.Health(); h.Err != nil {
		t.Fatalf("Health after the recovery: %v, want nil", h.Err)
	}
	if created, n := l.src.lastCreated(); n != 1 || created.DeliverPolicy != jetstream.DeliverAllPolicy || created.OptStartSeq != 0 {
		t.Fatalf("created %d consumers, the last %+v; want one from the start of the new stream", n, created)
	}
	p3.respond(l.msgs(1, 2), nil)
	b := l.nextCall()
	if !b.batch.Stream.Created.Equal(ri.StreamCreated) {
		t.Fatalf("batch from stream incarnation %s, want the new one %s", b.batch.Stream.Created, ri.StreamCreated)
	}
	b.answer(AckAll(2), nil)
	l.waitAcks("ack", 1, 1, 2)
	l.stop()
	if s := l.c.Stats(); s.Recoveries != 1 {
		t.Fatalf("stats %+v; want 1 recovery", s)
	}
}

// Fetch errors show in Health only once they lasted unhealthyAfter; the retries wait on the
// clock with growing back-off, and a fetch that works clears Health.
func TestConsumerHealthReportsLastingFetchFailures(t *testing.T) {
	l := startLoop(t, loopConfig())
	cause := errors.New("connection closed")
	l.nextPull().respond(nil, cause)
	l.clk.waitFor(t, 100*time.Millisecond, 1, "first back-off")
	if h := l.c.Health(); h.Err != nil {
		t.Fatalf("Health after one failed fetch: %v; want nil (not yet lasting)", h.Err)
	}
	l.clk.advance(unhealthyAfter)
	l.nextPull().respond(nil, cause)
	l.clk.waitFor(t, 200*time.Millisecond, 1, "second back-off")
	if h := l.c.Health(); !errors.Is(h.Err, cause) {
		t.Fatalf("Health after %s of failures: %v; want the fetch error", unhealthyAfter, h.Err)
	}
	l.clk.advance(200 * time.Millisecond)
	p3 := l.nextPull()
	l.clk.advance(loopMaxWait) // the fetch ends without messages, and without an error
	p3.respond(nil, nil)
	p := l.nextPull()
	if h := l.c.Health(); h.Err != nil {
		t.Fatalf("Health after a fetch worked: %v; want nil", h.Err)
	}
	l.stop(p)
	if s := l.c.Stats(); s.FetchErrors != 2 {
		t.Fatalf("stats %+v; want 2 fetch errors", s)
	}
}

// At shutdown the batch in hand is finished (Stopping closed, its context alive until
// DrainTimeout) and its acks are confirmed; the batch fetched ahead is handed over too, and
// the messages its processor gives back are released: nak'd with NakDelay, never counted
// towards MaxDeliver.
func TestConsumerDrainsAtShutdown(t *testing.T) {
	l := startLoop(t, loopConfig())
	a := l.holdWithOneAhead()

	l.cancel()
	select {
	case <-a.batch.Stopping:
	case <-time.After(waitGuard):
		t.Fatal("Stopping not closed after Run's context ended")
	}
	l.clk.waitFor(t, loopDrain, 1, "the drain deadline")
	if err := a.ctx.Err(); err != nil {
		t.Fatalf("the processor's context ended with Run's (%v); want it alive until DrainTimeout", err)
	}
	a.answer(AckAll(2), nil)

	b := l.nextCall()
	select {
	case <-b.batch.Stopping:
	default:
		t.Fatal("the batch fetched ahead was handed over without Stopping closed")
	}
	if got := b.seqs(); !slices.Equal(got, []uint64{3, 4}) || b.ctx.Err() != nil {
		t.Fatalf("batch ahead %v (context %v); want [3 4] with a live context", got, b.ctx.Err())
	}
	b.answer(ReleaseAll(2, 0, errors.New("stopping: given back")), nil)
	l.wait()

	for _, seq := range []uint64{1, 2} {
		if got := l.acks.kinds(seq); !slices.Equal(got, []string{"confirmed ack"}) {
			t.Errorf("message %d in hand: %v; want one confirmed ack", seq, got)
		}
	}
	for _, seq := range []uint64{3, 4} {
		if got := l.acks.of(seq); len(got) != 1 || got[0].kind != "nak" || got[0].delay != loopNak {
			t.Errorf("message %d fetched ahead: %v; want one nak after NakDelay (a release)", seq, got)
		}
	}
	if s := l.c.Stats(); s.Acked != 2 || s.Released != 2 || s.Naked != 0 || s.MaxDelivered != 0 || s.Termed != 0 {
		t.Errorf("stats %+v; want 2 acked, 2 released, none nak'd or terminated", s)
	}
	if n := len(l.c.verdicts.n); n != 0 {
		t.Errorf("%d messages counted towards MaxDeliver, want 0", n)
	}
}

// A processor that outlasts DrainTimeout has its context cancelled at the deadline, on the
// clock; its batch is released. A pull request in flight at the stop is not abandoned: what it
// brings is handed to the processor too.
func TestConsumerDrainDeadline(t *testing.T) {
	cfg := loopConfig()
	// The clock jumps past DrainTimeout at once: an AckWait that long keeps the batch fetched
	// at the stop from counting as one that waited most of its AckWait unrenewed (and its
	// keep-alive interval, AckWait/3, apart from DrainTimeout, which the test waits for).
	cfg.AckWait = 4 * loopDrain
	l := startLoop(t, cfg)
	l.nextPull().respond(l.msgs(1, 2), nil)
	a := l.nextCall()
	p2 := l.nextPull()

	l.cancel()
	l.clk.waitFor(t, loopDrain, 1, "the drain deadline")
	p2.respond(l.msgs(3, 1), nil) // the pull in flight brings a message after the stop
	l.clk.advance(loopDrain - time.Millisecond)
	if err := a.ctx.Err(); err != nil {
		t.Fatalf("the processor's context ended before DrainTimeout: %v", err)
	}
	l.clk.advance(time.Millisecond)
	select {
	case <-a.ctx.Done():
	case <-time.After(waitGuard):
		t.Fatal("the processor's context did not end at DrainTimeout")
	}
	a.answer(Result{}, a.ctx.Err())

	b := l.nextCall()
	if got := b.seqs(); !slices.Equal(got, []uint64{3}) {
		t.Fatalf("batch from the pull in flight %v, want [3]", got)
	}
	b.answer(Result{}, b.ctx.Err())
	l.wait()
	for _, seq := range []uint64{1, 2, 3} {
		got := slices.DeleteFunc(l.acks.kinds(seq), func(k string) bool { return k == "in progress" })
		if !slices.Equal(got, []string{"nak"}) {
			t.Errorf("message %d: %v; want one release (besides in-progress acks)", seq, got)
		}
	}
	if s := l.c.Stats(); s.ProcessorErrors != 2 || s.Released != 3 || s.Acked != 0 {
		t.Errorf("stats %+v; want both batches released", s)
	}
}

// A batch is filled by pull requests of at most pullExpiry each, bounded by what is left of
// BatchSize and FetchMaxBytes, until MaxWait passed on the clock: then what came is handed
// over; a fetch that brought nothing hands over nothing.
func TestConsumerFillsABatchUntilMaxWait(t *testing.T) {
	cfg := loopConfig()
	cfg.FetchMaxBytes = 10
	l := startLoop(t, cfg)
	p1 := l.nextPull()
	if p1.n != 2 || p1.maxBytes != 10 || p1.expiry != pullExpiry {
		t.Fatalf("first pull request %+v; want 2 messages, 10 bytes, expiring after %s", *p1, pullExpiry)
	}
	p1.respond(l.msgs(1, 1), nil) // 1 message of 1 byte
	p2 := l.nextPull()            // the batch is not handed over yet
	if p2.n != 1 || p2.maxBytes != 9 {
		t.Fatalf("second pull request %+v; want the rest: 1 message, 9 bytes", *p2)
	}
	l.clk.advance(loopMaxWait)
	p2.respond(nil, nil)
	a := l.nextCall()
	if got := a.seqs(); !slices.Equal(got, []uint64{1}) {
		t.Fatalf("batch %v, want [1] once MaxWait passed", got)
	}
	a.answer(AckAll(1), nil)

	p3 := l.nextPull() // a fetch on an idle stream
	l.clk.advance(loopMaxWait)
	p3.respond(nil, nil)
	l.nextPull().respond(l.msgs(2, 2), nil)
	b := l.nextCall() // an empty batch handed over before would come first
	if got := b.seqs(); !slices.Equal(got, []uint64{2, 3}) {
		t.Fatalf("batch after an idle fetch %v, want [2 3]", got)
	}
	b.answer(AckAll(2), nil)
	l.waitAcks("ack", 1, 1, 2, 3)
	l.stop()
}

// A pull that the server ended at its byte bound (the next message does not fit in the bytes
// left: the server counts subjects and headers, the consumer the bodies) hands the batch over at
// once, with no pull for the bytes left: that one would end the same way, again and again until
// MaxWait.
func TestConsumerHandsOverABatchAtItsByteBound(t *testing.T) {
	cfg := loopConfig()
	cfg.FetchMaxBytes = 10
	l := startLoop(t, cfg)
	l.nextPull().respond(l.msgs(1, 1), errByteBound) // 1 body byte, the next message too large
	a := l.nextCall()                                // no clock advance: MaxWait has not passed
	if got := a.seqs(); !slices.Equal(got, []uint64{1}) {
		t.Fatalf("batch %v, want [1] as soon as the byte bound ended the pull", got)
	}
	a.answer(AckAll(1), nil)
	l.waitAcks("ack", 1, 1)
	if s := l.c.Stats(); s.FetchErrors != 0 {
		t.Errorf("stats %+v; the byte bound is no fetch error", s)
	}
	l.stop()
}

// Acknowledging per message, a batch whose AckWait was last renewed 3/4 of an AckWait ago or
// more when Run takes it (the process stalled while the server delivered it) may be in another
// instance's hands already: it is dropped, neither processed nor acknowledged, and counted;
// its messages come again and are processed then.
func TestConsumerDropsABatchUnrenewedForMostOfItsAckWait(t *testing.T) {
	cfg := loopConfig()
	cfg.MaxWait = loopAckWait*3/4 + time.Second
	l := startLoop(t, cfg)
	p1 := l.nextPull()
	l.clk.advance(loopAckWait * 3 / 4) // stalled: no keep-alive runs before the hand-off
	p1.respond(l.msgs(1, 2), nil)
	waitUntil(t, &l.logs.changes, "the batch dropped", func() bool { return l.logs.logged("dropped unprocessed, they come again") })
	if s := l.c.Stats(); s.Expired != 2 || s.Batches != 0 {
		t.Fatalf("stats %+v; want 2 messages expired, no batch processed", s)
	}
	for _, seq := range []uint64{1, 2} {
		if got := l.acks.kinds(seq); len(got) != 0 {
			t.Fatalf("message %d: %v; want no ack of any kind for a dropped batch", seq, got)
		}
	}

	l.nextPull().respond(l.msgs(1, 2), nil) // delivered again
	a := l.nextCall()
	if got := a.seqs(); !slices.Equal(got, []uint64{1, 2}) {
		t.Fatalf("batch %v, want the messages delivered again", got)
	}
	a.answer(AckAll(2), nil)
	l.waitAcks("ack", 1, 1, 2)
	l.stop()
}

// A batch fetched ahead waits behind one in hand; the process stalls for 3/4 of an AckWait (the
// clock jumps; the keep-alive ticks come only after it). The tick does not renew the waiting
// batch (another instance may hold its messages now, and a renewal would extend that delivery),
// and Run drops it; the batch in hand is acknowledged once processed (its rows are stored).
func TestConsumerDoesNotRenewABatchAfterAStall(t *testing.T) {
	l := startLoop(t, loopConfig())
	l.nextPull().respond(l.msgs(1, 2), nil)
	a := l.nextCall()
	l.nextPull().respond(l.msgs(3, 2), nil) // fetched ahead, waiting in the hand-off
	l.clk.waitFor(t, loopKeep, 2, "keep-alives of the batch in hand and the one waiting")

	l.clk.advance(loopAckWait * 3 / 4) // the stall
	a.answer(AckAll(2), nil)
	waitUntil(t, &l.logs.changes, "the waiting batch dropped", func() bool { return l.logs.logged("dropped unprocessed, they come again") })
	for _, seq := range []uint64{3, 4} {
		if got := l.acks.kinds(seq); len(got) != 0 {
			t.Fatalf("message %d: %v; want nothing sent for a batch left unrenewed for most of its AckWait", seq, got)
		}
	}
	if s := l.c.Stats(); s.Expired != 2 || s.Batches != 1 {
		t.Fatalf("stats %+v; want the first batch processed, 2 messages expired", s)
	}
	l.waitAcks("ack", 1, 1, 2)
	l.stop()
}

// A batch handed over a keep-alive interval after its pull began (a slow pull, a busy machine)
// has its AckWait renewed at the hand-off, not a whole interval later.
func TestConsumerRenewsABatchThatWaitedAtTheHandOff(t *testing.T) {
	cfg := loopConfig()
	cfg.MaxWait = loopKeep + time.Second
	cfg.FetchMaxBytes = 10
	l := startLoop(t, cfg)
	l.nextPull().respond(l.msgs(1, 1), nil)
	p2 := l.nextPull()
	l.clk.advance(cfg.MaxWait) // the pull gathers until MaxWait, past a keep-alive interval
	p2.respond(nil, nil)
	a := l.nextCall()
	l.waitAcks("in progress", 1, 1)
	a.answer(AckAll(1), nil)
	l.waitAcks("ack", 1, 1)
	if got := l.acks.kinds(1); !slices.Equal(got, []string{"in progress", "ack"}) {
		t.Fatalf("message 1: %v; want an in-progress ack at the hand-off, then the ack", got)
	}
	l.stop()
}
