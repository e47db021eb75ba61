package ponixnats

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ackMsg is a delivered message that records what the consumer did with it.
type ackMsg struct {
	seqMsg
	mu     sync.Mutex
	action string
	delay  time.Duration
	reason string
}

func (m *ackMsg) set(action string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.action != "" {
		return errors.New("already " + m.action)
	}
	m.action = action
	return nil
}
func (m *ackMsg) Ack() error                         { return m.set("ack") }
func (m *ackMsg) DoubleAck(context.Context) error    { return m.set("confirmed ack") }
func (m *ackMsg) Headers() nats.Header               { return nil }
func (m *ackMsg) InProgress() error                  { return nil }
func (m *ackMsg) TermWithReason(reason string) error { m.reason = reason; return m.set("term") }
func (m *ackMsg) NakWithDelay(d time.Duration) error { m.delay = d; return m.set("nak") }

// fakeJS records publishes (the dead-letter stream); failing makes them fail.
type fakeJS struct {
	jetstream.JetStream
	mu        sync.Mutex
	published []*nats.Msg
	failing   bool
}

func (f *fakeJS) PublishMsg(_ context.Context, m *nats.Msg, _ ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failing {
		return nil, nats.ErrTimeout
	}
	f.published = append(f.published, m)
	return &jetstream.PubAck{Stream: "s_dlq", Sequence: uint64(len(f.published))}, nil
}

// testConsumer is a Consumer around fakes: no server, its decisions observable.
func testConsumer(t *testing.T, js *fakeJS, logs *strings.Builder) *Consumer {
	t.Helper()
	cfg := ConsumerConfig{Stream: "s", Durable: "d", MaxDeliver: 3, Logger: slog.New(slog.NewTextHandler(logs, nil))}.withDefaults()
	return &Consumer{cfg: cfg, log: cfg.Logger, dlq: &deadLetterer{js: js, cfg: cfg.DeadLetter}}
}

func ackBatch(n int) ([]jetstream.Msg, []*ackMsg) {
	msgs := make([]jetstream.Msg, n)
	fakes := make([]*ackMsg, n)
	for i := range msgs {
		fakes[i] = &ackMsg{seqMsg: seqMsg{subject: "s.dev-" + string(rune('a'+i)), seq: uint64(10 + i), delivered: 1}}
		msgs[i] = fakes[i]
	}
	return msgs, fakes
}

func TestApplyCarriesOutEachDecision(t *testing.T) {
	var logs strings.Builder
	js := &fakeJS{}
	c := testConsumer(t, js, &logs) // MaxDeliver 3
	created := time.Unix(1700000000, 0)
	var (
		msgs  []jetstream.Msg
		fakes []*ackMsg
	)
	batchResult := func() Result {
		res := NewResult(7)
		res.Ack(0)
		res.Nak(1, 7*time.Second)
		res.Term(2, "done")
		res.DeadLetter(3, ReasonInvalid, errors.New("occurred_at is missing"))
		res.NakErr(4, 0, errors.New("bad reading"))
		// index 5 unmentioned: released with the default delay
		res.Release(6, 0, errors.New("sink down"))
		return res
	}
	// The processor naks index 4 for itself: the first two naks redeliver it, the third (its
	// MaxDeliver-th verdict) dead-letters it. Index 1 is acked at the third round.
	for round := 1; round <= 3; round++ {
		msgs, fakes = ackBatch(7) // the same messages, delivered again
		fakes[4].delivered = uint64(round)
		fakes[6].delivered = 50 // many deliveries ended by sink faults and restarts
		res := batchResult()
		if round == 3 {
			res = NewResult(7)
			res.Ack(0)
			res.Ack(1)
			res.Term(2, "done")
			res.DeadLetter(3, ReasonInvalid, errors.New("occurred_at is missing"))
			res.NakErr(4, 0, errors.New("bad reading"))
			res.Release(6, 0, errors.New("sink down"))
		}
		c.apply(context.Background(), msgs, created, res, nil, false)
		if round < 3 && fakes[4].action != "nak" {
			t.Fatalf("round %d: the processor's nak %d of 3 became %s", round, round, fakes[4].action)
		}
	}

	want := []string{"ack", "ack", "term", "term", "term", "nak", "nak"}
	for i, f := range fakes {
		if f.action != want[i] {
			t.Errorf("message %d: %s, want %s", i, f.action, want[i])
		}
	}
	if fakes[5].delay != DefaultNakDelay || fakes[6].delay != DefaultNakDelay {
		t.Errorf("release delays %s and %s, want the default %s (not growing with 50 deliveries)", fakes[5].delay, fakes[6].delay, DefaultNakDelay)
	}
	if len(js.published) != 4 {
		t.Fatalf("%d dead letters published, want 4 (the invalid one three times, and the third nak)", len(js.published))
	}
	last := js.published[3]
	if r := last.Header.Get(HeaderDLQReason); r != string(ReasonMaxDeliver) || !strings.Contains(last.Header.Get(HeaderDLQError), "bad reading") {
		t.Errorf("dead letter at MaxDeliver: reason %q error %q", r, last.Header.Get(HeaderDLQError))
	}
	for _, m := range js.published {
		if strings.HasSuffix(m.Subject, "dev-g") || strings.HasSuffix(m.Subject, "dev-f") {
			t.Errorf("a released message was dead-lettered: %s", m.Subject)
		}
	}
	st := c.Stats()
	if st.Acked != 4 || st.Naked != 4 || st.Released != 6 || st.DeadLettered != 4 || st.Termed != 3 || st.Unmentioned != 3 || st.MaxDelivered != 1 {
		t.Errorf("stats %+v", st)
	}
	// One line for the batch's dead letters, counted by reason; none per message.
	out := logs.String()
	if n := strings.Count(out, "messages dead-lettered"); n != 3 || !strings.Contains(out, `by_reason="invalid=1 max_deliver=1"`) {
		t.Errorf("dead-letter logging:\n%s", out)
	}
	if strings.Contains(out, "message dead-lettered") {
		t.Errorf("a line per dead-lettered message:\n%s", out)
	}
}

// A message released over and over (a sink fault across restarts) is never dead-lettered, and
// its count of naks starts again in another incarnation of the stream.
func TestApplyReleasesNeverSpendMaxDeliver(t *testing.T) {
	var logs strings.Builder
	js := &fakeJS{}
	c := testConsumer(t, js, &logs)
	msgs, fakes := ackBatch(1)
	for i := range 20 {
		fakes[0].delivered = uint64(i + 1)
		c.apply(context.Background(), msgs, time.Unix(1, 0), ReleaseAll(1, 0, errors.New("sink down")), nil, false)
	}
	c.apply(context.Background(), msgs, time.Unix(1, 0), NakAll(1, 0), nil, false)
	c.apply(context.Background(), msgs, time.Unix(1, 0), NakAll(1, 0), nil, false)
	c.apply(context.Background(), msgs, time.Unix(2, 0), NakAll(1, 0), nil, false) // the stream was created anew
	if len(js.published) != 0 || fakes[0].action != "nak" {
		t.Fatalf("%d dead letters, last action %s; want none: 20 releases and 2 naks in one incarnation, 1 in another", len(js.published), fakes[0].action)
	}
	if st := c.Stats(); st.Released != 20 || st.Naked != 3 {
		t.Errorf("stats %+v", st)
	}
}

// At shutdown every ack of the batches in hand is confirmed by the server, many at a time.
func TestApplyConfirmsEveryAckAtShutdown(t *testing.T) {
	var logs strings.Builder
	c := testConsumer(t, &fakeJS{}, &logs)
	msgs, fakes := ackBatch(500)
	res := AckAll(500)
	res.DeadLetter(7, ReasonInvalid, errors.New("bad"))
	c.apply(context.Background(), msgs, time.Time{}, res, nil, true)
	for i, f := range fakes {
		if want := "confirmed ack"; i != 7 && f.action != want {
			t.Fatalf("message %d: %q, want %q", i, f.action, want)
		}
	}
	if st := c.Stats(); st.Acked != 499 || st.AckErrors != 0 {
		t.Errorf("stats %+v", st)
	}
}

// With dead-lettering disabled, records that can never be stored are terminated, and the batch
// logs one line for them all, never one per message.
func TestApplyWithoutDeadLetterStreamLogsOncePerBatch(t *testing.T) {
	var logs strings.Builder
	c := testConsumer(t, &fakeJS{}, &logs)
	c.dlq = nil
	msgs, fakes := ackBatch(5)
	res := NewResult(5)
	for i := range 4 {
		res.DeadLetter(i, ReasonInvalid, errors.New("occurred_at is missing"))
	}
	res.Ack(4)
	c.apply(context.Background(), msgs, time.Time{}, res, nil, false)
	for i, f := range fakes[:4] {
		if f.action != "term" {
			t.Errorf("message %d: %s, want term", i, f.action)
		}
	}
	out := logs.String()
	if n := strings.Count(out, "\n"); n != 1 || !strings.Contains(out, "count=4") || !strings.Contains(out, "dev-a") {
		t.Errorf("want one line counting 4 and naming the first message:\n%s", out)
	}
}

func TestApplyNaksWhenTheDeadLetterPublishFails(t *testing.T) {
	var logs strings.Builder
	js := &fakeJS{failing: true}
	c := testConsumer(t, js, &logs)
	msgs, fakes := ackBatch(2)
	res := NewResult(2)
	res.DeadLetter(0, ReasonDecode, errors.New("garbage"))
	res.Ack(1)
	c.apply(context.Background(), msgs, time.Time{}, res, nil, false)
	if fakes[0].action != "nak" || fakes[1].action != "ack" {
		t.Fatalf("actions %s, %s; want nak (nothing lost) and ack", fakes[0].action, fakes[1].action)
	}
	if st := c.Stats(); st.DeadLetterFailed != 1 || st.DeadLettered != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestApplyReleasesTheWholeBatchWhenTheProcessorFails(t *testing.T) {
	var logs strings.Builder
	c := testConsumer(t, &fakeJS{}, &logs)
	msgs, fakes := ackBatch(3)
	c.apply(context.Background(), msgs, time.Time{}, AckAll(3), errors.New("boom"), false)
	for i, f := range fakes {
		if f.action != "nak" {
			t.Errorf("message %d: %s, want a nak (a release)", i, f.action)
		}
	}
	if st := c.Stats(); st.ProcessorErrors != 1 || st.Released != 3 || st.Naked != 0 {
		t.Errorf("stats %+v; want the processor error counted and 3 released", st)
	}
}

func TestCallProcessorTurnsAPanicIntoAnError(t *testing.T) {
	c := &Consumer{proc: func(context.Context, Batch[jetstream.Msg]) (Result, error) { panic("bad processor") }}
	_, err := c.callProcessor(context.Background(), msgBatch(nil))
	if err == nil || !strings.Contains(err.Error(), "bad processor") {
		t.Fatalf("err = %v", err)
	}
}
