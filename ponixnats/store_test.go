package ponixnats

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

var discard = slog.New(slog.DiscardHandler)

// msgBatch is a batch of msgs as a consumer hands it to a processor.
func msgBatch(msgs []jetstream.Msg) Batch[jetstream.Msg] {
	return Batch[jetstream.Msg]{Stream: StreamID{Name: "s"}, Consumer: "c", Items: msgs}
}

// stoppedBatch is a batch of msgs whose consumer has been asked to stop.
func stoppedBatch(msgs []jetstream.Msg) Batch[jetstream.Msg] {
	stop := make(chan struct{})
	close(stop)
	b := msgBatch(msgs)
	b.Stopping = stop
	return b
}

// seqMsg is a fake delivered message with a subject, a stream sequence and a delivery count.
type seqMsg struct {
	jetstream.Msg
	subject   string
	seq       uint64
	delivered uint64
}

func (m *seqMsg) Subject() string { return m.subject }
func (m *seqMsg) Data() []byte    { return []byte(m.subject) }
func (m *seqMsg) Reply() string {
	return "$JS.ACK.s.c." + strconv.FormatUint(m.delivered, 10) + "." + strconv.FormatUint(m.seq, 10) + ".1.1.0"
}
func (m *seqMsg) Metadata() (*jetstream.MsgMetadata, error) {
	return &jetstream.MsgMetadata{NumDelivered: m.delivered, Sequence: jetstream.SequencePair{Stream: m.seq}}, nil
}

func seqBatch(n int) []jetstream.Msg {
	b := make([]jetstream.Msg, n)
	for i := range b {
		b[i] = &seqMsg{subject: fmt.Sprintf("s.dev-%d", i), seq: uint64(100 + i), delivered: 1}
	}
	return b
}

// dataErr is a store error saying the sink refused the data (a RecordFault).
type dataErr struct{ msg string }

func (e dataErr) Error() string     { return e.msg }
func (e dataErr) RecordFault() bool { return true }

// recordingStore stores batches unless they contain a subject in bad (a record fault) or the
// sink is down (a sink fault), and records what it was called with and what it stored.
type recordingStore struct {
	mu     sync.Mutex
	bad    map[string]bool
	down   int // fail this many calls with a sink fault first
	calls  int
	stored []string
}

func (s *recordingStore) store(_ context.Context, in Batch[jetstream.Msg]) error {
	msgs := in.Items
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.down > 0 {
		s.down--
		return errors.New("connection refused")
	}
	for _, m := range msgs {
		if s.bad[m.Subject()] {
			return fmt.Errorf("insert %d rows: %w", len(msgs), dataErr{"code 6: cannot parse"})
		}
	}
	for _, m := range msgs {
		s.stored = append(s.stored, m.Subject())
	}
	return nil
}

func decisions(res Result, n int) []Action {
	out := make([]Action, n)
	for i := range out {
		d, _ := res.Decision(i)
		out[i] = d.Action
	}
	return out
}

func TestSinkFaultIsHeldInPlaceUntilTheSinkRecovers(t *testing.T) {
	var logs strings.Builder
	hold := NewHold(HoldConfig{MinBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)), Classify: func(error) string { return "unreachable" }})
	s := &recordingStore{down: 5}
	p := NewStoreProcessor(s.store, WithHold(hold))
	batch := seqBatch(10)
	res, err := p(context.Background(), msgBatch(batch))
	if err != nil {
		t.Fatal(err)
	}
	for i, a := range decisions(res, 10) {
		if a != ActionAck {
			t.Fatalf("index %d: %s, want ack after the sink recovered", i, a)
		}
	}
	if s.calls != 6 || len(s.stored) != 10 {
		t.Fatalf("%d calls, %d stored; want 6 calls (5 failures, then success), 10 stored", s.calls, len(s.stored))
	}
	st := hold.State()
	if st.Held || st.LastStored.IsZero() || st.Holds != 1 {
		t.Errorf("state after recovery = %+v", st)
	}
	// One line when the hold starts and one when it ends: nothing per attempt.
	out := logs.String()
	if n := strings.Count(out, "\n"); n != 2 {
		t.Errorf("%d log lines for a hold of 5 failures of one class, want 2:\n%s", n, out)
	}
	if !strings.Contains(out, "holding the batch") || !strings.Contains(out, "class=unreachable") || !strings.Contains(out, "sink recovered") {
		t.Errorf("logs do not say what happened:\n%s", out)
	}
}

func TestHoldReportsItsStateWhileHolding(t *testing.T) {
	hold := NewHold(HoldConfig{MinBackoff: 5 * time.Millisecond, MaxBackoff: 5 * time.Millisecond, Logger: discard,
		Classify: func(err error) string { return "storage" }})
	release := make(chan struct{})
	var once sync.Once
	store := func(context.Context, Batch[jetstream.Msg]) error {
		select {
		case <-release:
			return nil
		default:
			return errors.New("disk full")
		}
	}
	done := make(chan Result)
	go func() {
		res, _ := NewStoreProcessor(store, WithHold(hold))(context.Background(), msgBatch(seqBatch(3)))
		done <- res
	}()
	deadline := time.Now().Add(5 * time.Second)
	for !hold.State().Held {
		if time.Now().After(deadline) {
			t.Fatal("the hold never started")
		}
		time.Sleep(time.Millisecond)
	}
	st := hold.State()
	if st.Class != "storage" || st.Err == nil || st.Since.IsZero() || st.Attempts < 1 {
		t.Errorf("state while held = %+v", st)
	}
	once.Do(func() { close(release) })
	res := <-done
	if d := decisions(res, 3); !slices.Equal(d, []Action{ActionAck, ActionAck, ActionAck}) {
		t.Fatalf("decisions %v", d)
	}
	if hold.State().Held {
		t.Error("still held after the store succeeded")
	}
}

func TestSinkFaultReleasesWhenTheConsumerStopsOrTheHoldGivesUp(t *testing.T) {
	down := func(context.Context, Batch[jetstream.Msg]) error { return errors.New("connection refused") }

	start := time.Now()
	res, _ := NewStoreProcessor(down, WithHold(NewHold(HoldConfig{MinBackoff: time.Hour, Logger: discard})))(context.Background(), stoppedBatch(seqBatch(4)))
	if time.Since(start) > time.Second {
		t.Errorf("a stopping consumer waited %s for the back-off", time.Since(start))
	}
	for i, a := range decisions(res, 4) {
		if a != ActionRelease {
			t.Fatalf("stopping: index %d: %s, want release", i, a)
		}
	}

	// Given up after MaxDuration: released, whatever the deliveries so far (a release never
	// spends them).
	hold := NewHold(HoldConfig{MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond, MaxDuration: 20 * time.Millisecond, Logger: discard})
	batch := seqBatch(2)
	batch[1].(*seqMsg).delivered = 50
	res, _ = NewStoreProcessor(down, WithHold(hold))(context.Background(), msgBatch(batch))
	for i := range 2 {
		if d, _ := res.Decision(i); d.Action != ActionRelease || !errors.Is(d.Err, ErrHoldGivenUp) {
			t.Fatalf("after MaxDuration: index %d: %+v, want a release wrapping ErrHoldGivenUp", i, d)
		}
	}
}

func TestRecordFaultBisectsToTheRecordsThatFailAlone(t *testing.T) {
	for _, bad := range [][]int{{0}, {7}, {3, 11}, {0, 1, 2, 3}, {5, 6, 9, 14, 15}} {
		t.Run(fmt.Sprint(bad), func(t *testing.T) {
			batch := seqBatch(16)
			s := &recordingStore{bad: map[string]bool{}}
			for _, i := range bad {
				s.bad[batch[i].Subject()] = true
			}
			res, err := NewStoreProcessor(s.store, WithHold(NewHold(HoldConfig{Logger: discard})))(context.Background(), msgBatch(batch))
			if err != nil {
				t.Fatal(err)
			}
			for i := range batch {
				d, _ := res.Decision(i)
				want := ActionAck
				if slices.Contains(bad, i) {
					want = ActionDeadLetter
					if d.Reason != ReasonRejected || !strings.Contains(d.Err.Error(), batch[i].Subject()+" (stream sequence "+strconv.Itoa(100+i)+")") ||
						!strings.Contains(d.Err.Error(), "cannot parse") {
						t.Errorf("index %d: reason %q, error %v; want rejected, naming the message and the cause", i, d.Reason, d.Err)
					}
				}
				if d.Action != want {
					t.Errorf("index %d: %s, want %s", i, d.Action, want)
				}
			}
			if len(s.stored) != 16-len(bad) {
				t.Errorf("stored %d, want %d", len(s.stored), 16-len(bad))
			}
			// Bisecting costs about 2*log2(n) stores per bad record.
			if limit := 1 + 2*4*len(bad) + 2; s.calls > limit {
				t.Errorf("%d store calls, want at most %d", s.calls, limit)
			}
		})
	}
}

func TestRecordFaultOnEveryRecordIsHeldNotDeadLettered(t *testing.T) {
	batch := seqBatch(64)
	s := &recordingStore{bad: map[string]bool{}}
	for _, m := range batch {
		s.bad[m.Subject()] = true
	}
	res, _ := NewStoreProcessor(s.store, WithHold(NewHold(HoldConfig{MinBackoff: time.Hour, Logger: discard})))(context.Background(), stoppedBatch(batch))
	for i, a := range decisions(res, 64) {
		if a != ActionRelease {
			t.Fatalf("index %d: %s; a batch no part of which the sink takes must be held (released at stop), never dead-lettered", i, a)
		}
	}
	if c := res.Conflicts(); c != 0 {
		t.Errorf("the result set %d indices twice; each must be decided once", c)
	}
	if s.calls > 10 {
		t.Errorf("%d store calls before deciding that the sink refuses everything; want about log2(64)+2", s.calls)
	}
	// The same for a batch of one: nothing proves the sink works.
	res, _ = NewStoreProcessor(s.store, WithHold(NewHold(HoldConfig{MinBackoff: time.Hour, Logger: discard})))(context.Background(), stoppedBatch(batch[:1]))
	if d, _ := res.Decision(0); d.Action != ActionRelease {
		t.Fatalf("a single refused record: %+v, want release (held)", d)
	}
}

func TestSinkFaultDuringBisectIsHeldAndBisectingGoesOn(t *testing.T) {
	batch := seqBatch(8)
	s := &recordingStore{bad: map[string]bool{batch[5].Subject(): true}}
	calls := 0
	store := func(ctx context.Context, in Batch[jetstream.Msg]) error {
		calls++
		if calls == 3 { // the server goes away in the middle of the search
			return errors.New("connection reset")
		}
		return s.store(ctx, in)
	}
	res, _ := NewStoreProcessor(store, WithHold(NewHold(HoldConfig{MinBackoff: time.Millisecond, Logger: discard})))(context.Background(), msgBatch(batch))
	for i, a := range decisions(res, 8) {
		want := ActionAck
		if i == 5 {
			want = ActionDeadLetter
		}
		if a != want {
			t.Fatalf("index %d: %s, want %s", i, a, want)
		}
	}
	slices.Sort(s.stored)
	if len(slices.Compact(s.stored)) != 7 || len(s.stored) != 7 {
		t.Fatalf("stored %v: want each of the 7 good ones once", s.stored)
	}
}

func TestRejectionNamesTheMessageNotTheRowOfTheBatch(t *testing.T) {
	batch := seqBatch(3)
	store := func(_ context.Context, in Batch[jetstream.Msg]) error {
		msgs := in.Items
		for i, m := range msgs {
			if m.Subject() == "s.dev-1" {
				return fmt.Errorf("write: %w", &rowLikeErr{index: i, err: errors.New("data.x: number is NaN")})
			}
		}
		return nil
	}
	res, _ := NewStoreProcessor(store, WithHold(NewHold(HoldConfig{Logger: discard})))(context.Background(), msgBatch(batch))
	d, _ := res.Decision(1)
	if d.Action != ActionDeadLetter || d.Reason != ReasonRejected {
		t.Fatalf("decision %+v", d)
	}
	if got := d.Err.Error(); got != "message on s.dev-1 (stream sequence 101): data.x: number is NaN" {
		t.Errorf("dead-letter error %q", got)
	}
}

// rowLikeErr is a Rejection framed with the row's index in the batch, as ponixclickhouse's
// RowError is.
type rowLikeErr struct {
	index int
	err   error
}

func (e *rowLikeErr) Error() string      { return "row " + strconv.Itoa(e.index) + ": " + e.err.Error() }
func (e *rowLikeErr) Unwrap() error      { return e.err }
func (e *rowLikeErr) RejectedIndex() int { return e.index }

func stringMsg(t *testing.T, subject, v string) jetstream.Msg {
	t.Helper()
	b, err := proto.Marshal(wrapperspb.String(v))
	if err != nil {
		t.Fatal(err)
	}
	return &fakeMsg{subject: subject, data: b}
}

// A handler's Result uses batch indices (Decoded.Index) even when a message before the others
// failed to decode.
func TestProtoProcessorDecisionsUseBatchIndices(t *testing.T) {
	batch := []jetstream.Msg{&fakeMsg{subject: "s.x", data: []byte{0xff, 0xff}}, stringMsg(t, "s.a", "a"), stringMsg(t, "s.b", "b")}
	newT := func() *wrapperspb.StringValue { return new(wrapperspb.StringValue) }
	var seen []int
	p := NewProtoStoreProcessor(newT, func(_ context.Context, in Batch[Decoded[*wrapperspb.StringValue]]) error {
		ds := in.Items
		for _, d := range ds {
			seen = append(seen, d.Index)
		}
		return nil
	}, nil, WithHold(NewHold(HoldConfig{Logger: discard})))
	res, err := p(context.Background(), msgBatch(batch))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(seen, []int{1, 2}) {
		t.Errorf("store saw indices %v, want [1 2]", seen)
	}
	if d := decisions(res, 3); !slices.Equal(d, []Action{ActionDeadLetter, ActionAck, ActionAck}) {
		t.Fatalf("decisions %v, want [dead_letter ack ack]", d)
	}
	// A hand-written handler acks by d.Index.
	h := ProtoProcessor(newT, func(_ context.Context, in Batch[Decoded[*wrapperspb.StringValue]]) (Result, error) {
		ds := in.Items
		res := NewResult(0)
		for _, d := range ds {
			res.Ack(d.Index)
		}
		return res, nil
	})
	res, _ = h(context.Background(), msgBatch(batch))
	if d := decisions(res, 3); !slices.Equal(d, []Action{ActionDeadLetter, ActionAck, ActionAck}) {
		t.Fatalf("handler decisions %v, want [dead_letter ack ack]", d)
	}
	// A validation failure of the second message: only it is dead-lettered.
	p = NewProtoStoreProcessor(newT, func(context.Context, Batch[Decoded[*wrapperspb.StringValue]]) error { return nil },
		func(v *wrapperspb.StringValue) error {
			if v.GetValue() == "a" {
				return errors.New("a is not allowed")
			}
			return nil
		}, WithHold(NewHold(HoldConfig{Logger: discard})))
	res, _ = p(context.Background(), msgBatch(batch))
	if d := decisions(res, 3); !slices.Equal(d, []Action{ActionDeadLetter, ActionDeadLetter, ActionAck}) {
		t.Fatalf("validated decisions %v, want [dead_letter dead_letter ack]", d)
	}
}

// WithCheck applies to the protobuf store processor too, before decoding.
func TestProtoStoreProcessorHonoursWithCheck(t *testing.T) {
	batch := []jetstream.Msg{stringMsg(t, "s.a", "a"), stringMsg(t, "s.blocked", "b"), stringMsg(t, "s.c", "c")}
	newT := func() *wrapperspb.StringValue { return new(wrapperspb.StringValue) }
	var stored []string
	p := NewProtoStoreProcessor(newT, func(_ context.Context, in Batch[Decoded[*wrapperspb.StringValue]]) error {
		ds := in.Items
		for _, d := range ds {
			stored = append(stored, d.Value.GetValue())
		}
		return nil
	}, nil, WithHold(NewHold(HoldConfig{Logger: discard})), WithCheck(func(m jetstream.Msg) error {
		if m.Subject() == "s.blocked" {
			return errors.New("blocked subject")
		}
		return nil
	}))
	res, err := p(context.Background(), msgBatch(batch))
	if err != nil {
		t.Fatal(err)
	}
	if d := decisions(res, 3); !slices.Equal(d, []Action{ActionAck, ActionDeadLetter, ActionAck}) {
		t.Fatalf("decisions %v", d)
	}
	if !slices.Equal(stored, []string{"a", "c"}) {
		t.Fatalf("stored %v", stored)
	}
	if d, _ := res.Decision(1); d.Reason != ReasonInvalid || !strings.Contains(d.Err.Error(), "blocked subject") {
		t.Errorf("decision %+v", d)
	}
}

// Every call of the store, for the whole batch or a part of it while bisecting, carries the
// batch's identity: its stream incarnation, consumer and Stopping channel.
func TestEveryPartCarriesTheBatchIdentity(t *testing.T) {
	s := &recordingStore{bad: map[string]bool{"s.dev-5": true}}
	created := time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)
	stop := make(chan struct{})
	batch := Batch[jetstream.Msg]{Stream: StreamID{Name: "events", Created: created}, Consumer: "sink", Items: seqBatch(8), Stopping: stop}
	var seen []Batch[jetstream.Msg]
	store := func(ctx context.Context, b Batch[jetstream.Msg]) error {
		seen = append(seen, b)
		return s.store(ctx, b)
	}
	res, err := NewStoreProcessor(store, WithHold(NewHold(HoldConfig{Logger: discard})))(context.Background(), batch)
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := res.Decision(5); d.Action != ActionDeadLetter {
		t.Fatalf("index 5: %s, want dead_letter", d.Action)
	}
	if len(seen) < 3 {
		t.Fatalf("%d store calls, want the bisect's parts", len(seen))
	}
	for i, b := range seen {
		if b.Stream != batch.Stream || b.Consumer != "sink" || b.Stopping != batch.Stopping {
			t.Errorf("call %d: stream %+v consumer %q stopping %v; want the batch's identity", i, b.Stream, b.Consumer, b.Stopping)
		}
	}
}
