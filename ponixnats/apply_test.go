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
func (m *ackMsg) DoubleAck(context.Context) error    { return m.set("ack") }
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
	return &Consumer{js: js, cfg: cfg, log: cfg.Logger, dlq: &deadLetterer{js: js, cfg: cfg.DeadLetter}}
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
	c := testConsumer(t, js, &logs)
	msgs, fakes := ackBatch(6)
	fakes[4].delivered = 3 // its last delivery: a nak becomes a dead letter
	res := NewResult(6)
	res.Ack(0)
	res.Nak(1, 7*time.Second)
	res.Term(2, "done")
	res.DeadLetter(3, ReasonInvalid, errors.New("occurred_at is missing"))
	res.NakErr(4, 0, errors.New("sink down"))
	// index 5 unmentioned: nak'd with the default delay
	c.apply(context.Background(), msgs, res, nil, false)

	want := []string{"ack", "nak", "term", "term", "term", "nak"}
	for i, f := range fakes {
		if f.action != want[i] {
			t.Errorf("message %d: %s, want %s", i, f.action, want[i])
		}
	}
	if fakes[1].delay != 7*time.Second || fakes[5].delay != DefaultNakDelay {
		t.Errorf("nak delays %s and %s, want 7s and the default", fakes[1].delay, fakes[5].delay)
	}
	if len(js.published) != 2 {
		t.Fatalf("%d dead letters published, want 2 (the invalid one, and the nak at the last delivery)", len(js.published))
	}
	if r := js.published[0].Header.Get(HeaderDLQReason); r != string(ReasonInvalid) || js.published[0].Subject != "s_dlq.s.dev-d" {
		t.Errorf("dead letter 0: reason %q subject %q", r, js.published[0].Subject)
	}
	if r := js.published[1].Header.Get(HeaderDLQReason); r != string(ReasonMaxDeliver) ||
		!strings.Contains(js.published[1].Header.Get(HeaderDLQError), "sink down") {
		t.Errorf("dead letter 1: reason %q error %q", r, js.published[1].Header.Get(HeaderDLQError))
	}
	st := c.Stats()
	if st.Acked != 1 || st.Naked != 2 || st.DeadLettered != 2 || st.Termed != 1 || st.Unmentioned != 1 || st.MaxDelivered != 1 {
		t.Errorf("stats %+v", st)
	}
	// One line for the batch's dead letters, counted by reason; none per message.
	out := logs.String()
	if n := strings.Count(out, "messages dead-lettered"); n != 1 || !strings.Contains(out, `by_reason="invalid=1 max_deliver=1"`) {
		t.Errorf("dead-letter logging:\n%s", out)
	}
	if strings.Contains(out, "message dead-lettered") {
		t.Errorf("a line per dead-lettered message:\n%s", out)
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
	c.apply(context.Background(), msgs, res, nil, false)
	if fakes[0].action != "nak" || fakes[1].action != "ack" {
		t.Fatalf("actions %s, %s; want nak (nothing lost) and ack", fakes[0].action, fakes[1].action)
	}
	if st := c.Stats(); st.DeadLetterFailed != 1 || st.DeadLettered != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestApplyNaksTheWholeBatchWhenTheProcessorFails(t *testing.T) {
	var logs strings.Builder
	c := testConsumer(t, &fakeJS{}, &logs)
	msgs, fakes := ackBatch(3)
	c.apply(context.Background(), msgs, AckAll(3), errors.New("boom"), false)
	for i, f := range fakes {
		if f.action != "nak" {
			t.Errorf("message %d: %s, want nak", i, f.action)
		}
	}
	if c.Stats().ProcessorErrors != 1 {
		t.Error("processor error not counted")
	}
}

func TestCallProcessorTurnsAPanicIntoAnError(t *testing.T) {
	c := &Consumer{proc: func(context.Context, []jetstream.Msg) (Result, error) { panic("bad processor") }}
	_, err := c.callProcessor(context.Background(), nil)
	if err == nil || !strings.Contains(err.Error(), "bad processor") {
		t.Fatalf("err = %v", err)
	}
}
