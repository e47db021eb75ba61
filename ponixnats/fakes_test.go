package ponixnats

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// fakeMsg is a jetstream.Msg for unit tests of processors (no server).
type fakeMsg struct {
	jetstream.Msg // nil: calling anything not overridden panics
	subject       string
	data          []byte
}

func (m *fakeMsg) Data() []byte         { return m.data }
func (m *fakeMsg) Subject() string      { return m.subject }
func (m *fakeMsg) Headers() nats.Header { return nil }
func (m *fakeMsg) Reply() string        { return "" }

// replyMsg is a jetstream.Msg with only a reply subject.
type replyMsg struct {
	jetstream.Msg
	reply string
}

func (m replyMsg) Reply() string { return m.reply }

// changes wakes the tests that wait for a fake's state to change.
type changes struct {
	mu sync.Mutex
	ch chan struct{}
}

// next returns a channel that is closed at the next change.
func (c *changes) next() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ch == nil {
		c.ch = make(chan struct{})
	}
	return c.ch
}

func (c *changes) notify() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ch != nil {
		close(c.ch)
		c.ch = nil
	}
}

// waitGuard fails a test that waits for an event that does not come; it never paces one.
const waitGuard = 10 * time.Second

// waitUntil waits until cond holds, looking again at each change of c.
func waitUntil(t *testing.T, c *changes, what string, cond func() bool) {
	t.Helper()
	guard := time.NewTimer(waitGuard)
	defer guard.Stop()
	for {
		changed := c.next() // before cond: a change in between is not missed
		if cond() {
			return
		}
		select {
		case <-changed:
		case <-guard.C:
			t.Fatalf("waited %s in vain for %s", waitGuard, what)
		}
	}
}

// liveMsg is a delivered message (stream sequence, consumer sequence, delivery count in its
// ack subject) that records what the consumer does with it in an ackLog.
type liveMsg struct {
	fakeMsg
	seq, cseq, delivered uint64
	log                  *ackLog
}

func (m *liveMsg) Reply() string {
	return fmt.Sprintf("$JS.ACK.s.d.%d.%d.%d.1700000000000000000.0", m.delivered, m.seq, m.cseq)
}

func (m *liveMsg) Metadata() (*jetstream.MsgMetadata, error) {
	return &jetstream.MsgMetadata{NumDelivered: m.delivered, Sequence: jetstream.SequencePair{Stream: m.seq, Consumer: m.cseq}}, nil
}

func (m *liveMsg) Ack() error                         { return m.log.add(m.seq, "ack", 0) }
func (m *liveMsg) DoubleAck(context.Context) error    { return m.log.add(m.seq, "confirmed ack", 0) }
func (m *liveMsg) InProgress() error                  { return m.log.add(m.seq, "in progress", 0) }
func (m *liveMsg) NakWithDelay(d time.Duration) error { return m.log.add(m.seq, "nak", d) }
func (m *liveMsg) TermWithReason(string) error        { return m.log.add(m.seq, "term", 0) }

// ackLog records the acks, naks, terms and in-progress acks of liveMsgs.
type ackLog struct {
	changes
	mu     sync.Mutex
	events []ackEvent
}

type ackEvent struct {
	seq   uint64
	kind  string
	delay time.Duration
}

func (l *ackLog) add(seq uint64, kind string, delay time.Duration) error {
	l.mu.Lock()
	l.events = append(l.events, ackEvent{seq, kind, delay})
	l.mu.Unlock()
	l.notify()
	return nil
}

// of returns what was done with the message at seq, in order.
func (l *ackLog) of(seq uint64) []ackEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []ackEvent
	for _, e := range l.events {
		if e.seq == seq {
			out = append(out, e)
		}
	}
	return out
}

// count returns how many times kind was done with the message at seq.
func (l *ackLog) count(seq uint64, kind string) int {
	n := 0
	for _, e := range l.of(seq) {
		if e.kind == kind {
			n++
		}
	}
	return n
}

// kinds returns what was done with the message at seq, in order.
func (l *ackLog) kinds(seq uint64) []string {
	var out []string
	for _, e := range l.of(seq) {
		out = append(out, e.kind)
	}
	return out
}

// fakeClock is a clock that moves only when the test advances it. Its timers, tickers and
// sleeps are waiters; a test waits until the loop has set the waiter it means to fire
// (waitFor), then advances.
type fakeClock struct {
	changes
	mu      sync.Mutex
	current time.Time
	waiters []*waiter
}

type waiter struct {
	d      time.Duration // as asked for: tells the loop's waiters apart
	at     time.Time
	ticker bool
	tick   chan time.Time // tickers
	fire   func()         // timers and sleeps
}

func newFakeClock() *fakeClock { return &fakeClock{current: time.Unix(1_800_000_000, 0)} }

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.current
}

func (c *fakeClock) add(w *waiter) {
	c.mu.Lock()
	w.at = c.current.Add(w.d)
	c.waiters = append(c.waiters, w)
	c.mu.Unlock()
	c.notify()
}

// remove reports whether w was still waiting.
func (c *fakeClock) remove(w *waiter) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, x := range c.waiters {
		if x == w {
			c.waiters = append(c.waiters[:i], c.waiters[i+1:]...)
			return true
		}
	}
	return false
}

func (c *fakeClock) ticker(d time.Duration) (<-chan time.Time, func()) {
	w := &waiter{d: d, ticker: true, tick: make(chan time.Time, 1)}
	c.add(w)
	return w.tick, func() { c.remove(w) }
}

func (c *fakeClock) afterFunc(d time.Duration, f func()) func() bool {
	w := &waiter{d: d, fire: f}
	c.add(w)
	return func() bool { return c.remove(w) }
}

func (c *fakeClock) sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if d <= 0 {
		return nil
	}
	done := make(chan struct{})
	w := &waiter{d: d, fire: func() { close(done) }}
	c.add(w)
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		if !c.remove(w) {
			<-done // fired meanwhile
		}
		return ctx.Err()
	}
}

// waiting counts the waiters of duration d.
func (c *fakeClock) waiting(d time.Duration) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, w := range c.waiters {
		if w.d == d {
			n++
		}
	}
	return n
}

// waitFor waits until n waiters of duration d are set.
func (c *fakeClock) waitFor(t *testing.T, d time.Duration, n int, what string) {
	t.Helper()
	waitUntil(t, &c.changes, fmt.Sprintf("%d waiter(s) of %s: %s", n, d, what), func() bool { return c.waiting(d) >= n })
}

// advance moves the clock by d: tickers due tick (once, dropping what their reader did not
// take), timers and sleeps due fire, in the order of their times.
func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.current = c.current.Add(d)
	now := c.current
	var fire []func()
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		switch {
		case w.at.After(now):
			kept = append(kept, w)
		case w.ticker:
			select {
			case w.tick <- now:
			default:
			}
			for !w.at.After(now) {
				w.at = w.at.Add(w.d)
			}
			kept = append(kept, w)
		default:
			fire = append(fire, w.fire)
		}
	}
	c.waiters = kept
	c.mu.Unlock()
	for _, f := range fire {
		f()
	}
	c.notify()
}

// fakeSource is a JetStream stream with one durable consumer, in memory. Each pull request
// of the consumer is handed to the test (pulls), which answers it as the server would.
type fakeSource struct {
	changes // at each look-up of the durable consumer
	pulls   chan *fakePull

	mu            sync.Mutex
	streamCreated time.Time // zero: the stream does not exist
	firstSeq      uint64
	lastSeq       uint64
	consumerCfg   *jetstream.ConsumerConfig // nil: the durable consumer does not exist
	ackFloor      uint64
	created       []jetstream.ConsumerConfig // the consumers created, in order
	ensured       int                        // streams created by ensureStream
	failEnsure    error                      // the next ensureStream fails with it
	lookups       int                        // calls of consumer
	resets        []uint64                   // the sequences of resetConsumer calls
}

// fakePull is one pull request in flight.
type fakePull struct {
	n, maxBytes int
	expiry      time.Duration
	reply       chan fakeReply
}

type fakeReply struct {
	msgs []jetstream.Msg
	err  error
}

// respond ends the pull request with msgs (none: it expired) or err.
func (p *fakePull) respond(msgs []jetstream.Msg, err error) { p.reply <- fakeReply{msgs, err} }

func newFakeSource(created time.Time) *fakeSource {
	return &fakeSource{pulls: make(chan *fakePull), streamCreated: created}
}

func (s *fakeSource) close() {}

func (s *fakeSource) info() streamInfo {
	return streamInfo{created: s.streamCreated, subjects: []string{"s.>"}, firstSeq: s.firstSeq, lastSeq: s.lastSeq}
}

func (s *fakeSource) stream(context.Context) (streamInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.streamCreated.IsZero() {
		return streamInfo{}, jetstream.ErrStreamNotFound
	}
	return s.info(), nil
}

func (s *fakeSource) ensureStream(_ context.Context, cfg StreamConfig) (streamInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.failEnsure; err != nil {
		s.failEnsure = nil
		return streamInfo{}, err
	}
	if s.streamCreated.IsZero() {
		s.ensured++
		s.streamCreated = time.Unix(1_900_000_000+int64(s.ensured), 0)
	}
	return s.info(), nil
}

func (s *fakeSource) consumer(context.Context) (pullConsumer, error) {
	defer s.notify()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lookups++
	switch {
	case s.streamCreated.IsZero():
		return nil, jetstream.ErrStreamNotFound
	case s.consumerCfg == nil:
		return nil, jetstream.ErrConsumerNotFound
	}
	return &fakeConsumer{s, *s.consumerCfg}, nil
}

func (s *fakeSource) createConsumer(_ context.Context, cfg jetstream.ConsumerConfig) (pullConsumer, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.streamCreated.IsZero():
		return nil, jetstream.ErrStreamNotFound
	case s.consumerCfg != nil:
		return nil, jetstream.ErrConsumerExists
	}
	s.consumerCfg = &cfg
	s.created = append(s.created, cfg)
	return &fakeConsumer{s, cfg}, nil
}

func (s *fakeSource) updateConsumer(_ context.Context, cfg jetstream.ConsumerConfig) (pullConsumer, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.consumerCfg == nil {
		return nil, jetstream.ErrConsumerNotFound
	}
	s.consumerCfg = &cfg
	return &fakeConsumer{s, cfg}, nil
}

func (s *fakeSource) removeConsumer(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.consumerCfg == nil {
		return jetstream.ErrConsumerNotFound
	}
	s.consumerCfg, s.ackFloor = nil, 0
	return nil
}

func (s *fakeSource) resetConsumer(_ context.Context, seq uint64) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.consumerCfg == nil {
		return 0, jetstream.ErrConsumerNotFound
	}
	s.resets = append(s.resets, seq)
	if seq == 0 {
		return s.ackFloor + 1, nil
	}
	s.ackFloor = seq - 1
	return seq, nil
}

// deleteConsumer deletes the durable consumer (its ack floor goes with it).
func (s *fakeSource) deleteConsumer() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.consumerCfg, s.ackFloor = nil, 0
}

// deleteStream deletes the stream and its consumer.
func (s *fakeSource) deleteStream() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.streamCreated, s.firstSeq, s.lastSeq, s.consumerCfg, s.ackFloor = time.Time{}, 0, 0, nil, 0
}

// failNextEnsure makes the next ensureStream fail with err.
func (s *fakeSource) failNextEnsure(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failEnsure = err
}

func (s *fakeSource) setAckFloor(seq uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ackFloor = seq
}

// consumerLookups returns how many times the durable consumer was looked up.
func (s *fakeSource) consumerLookups() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lookups
}

// lastCreated returns the configuration the durable consumer was last created with.
func (s *fakeSource) lastCreated() (jetstream.ConsumerConfig, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.created) == 0 {
		return jetstream.ConsumerConfig{}, 0
	}
	return s.created[len(s.created)-1], len(s.created)
}

// fakeConsumer is a durable consumer of a fakeSource, as bound.
type fakeConsumer struct {
	s   *fakeSource
	cfg jetstream.ConsumerConfig
}

func (c *fakeConsumer) config() jetstream.ConsumerConfig { return c.cfg }

func (c *fakeConsumer) info(context.Context) (*jetstream.ConsumerInfo, error) {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	if c.s.consumerCfg == nil {
		return nil, jetstream.ErrConsumerNotFound
	}
	return &jetstream.ConsumerInfo{Config: *c.s.consumerCfg, AckFloor: jetstream.SequenceInfo{Stream: c.s.ackFloor}}, nil
}

func (c *fakeConsumer) fetch(buf []jetstream.Msg, n, maxBytes int, expiry time.Duration) ([]jetstream.Msg, error) {
	p := &fakePull{n: n, maxBytes: maxBytes, expiry: expiry, reply: make(chan fakeReply, 1)}
	c.s.pulls <- p
	r := <-p.reply
	return append(buf, r.msgs...), r.err
}

// logRecorder is a slog.Handler that keeps the messages logged, for tests that wait for a
// step the loop logs.
type logRecorder struct {
	changes
	mu   sync.Mutex
	msgs []string
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logRecorder) WithGroup(string) slog.Handler            { return l }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	l.msgs = append(l.msgs, r.Message)
	l.mu.Unlock()
	l.notify()
	return nil
}

// logged reports whether a message containing s was logged.
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
