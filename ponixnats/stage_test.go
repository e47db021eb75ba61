package ponixnats

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// refusing is a Store of strings that refuses every part holding an item in bad (a record
// fault), fails its first down calls (a sink fault), and records what it stored.
type refusing struct {
	bad    map[string]bool
	down   int
	calls  int
	stored []string
}

func (s *refusing) Store(_ context.Context, b Batch[string]) error {
	s.calls++
	if s.down > 0 {
		s.down--
		return errors.New("connection refused")
	}
	for _, it := range b.Items {
		if s.bad[it] {
			return fmt.Errorf("insert: %w", dataErr{"cannot parse " + it})
		}
	}
	s.stored = append(s.stored, b.Items...)
	return nil
}

func items(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("r%d", i)
	}
	return out
}

func describe(it string) string { return "reading " + it }

// The isolating stage alone: a sink fault ends an attempt with the error and leaves the items
// not yet stored undecided; the next attempt goes on and decides them.
func TestIsolationLeavesUndecidedWhatASinkFaultInterrupts(t *testing.T) {
	s := &refusing{bad: map[string]bool{"r2": true}}
	calls := 0
	store := StoreFunc[string](func(ctx context.Context, b Batch[string]) error {
		calls++
		if calls == 3 { // whole batch refused, [r0 r1] stored, then the sink goes away
			return errors.New("connection reset")
		}
		return s.Store(ctx, b)
	})
	run := NewIsolateStage(store, describe).Begin(Batch[string]{Items: items(4)})
	if err := run.Attempt(context.Background()); err == nil || err.Error() != "connection reset" {
		t.Fatalf("first attempt: %v, want the sink fault", err)
	}
	res := run.Result()
	if d := decisions(res, 4); !slices.Equal(d, []Action{ActionAck, ActionAck, ActionNone, ActionNone}) {
		t.Fatalf("after the fault: %v, want [ack ack none none]: stored, then undecided", d)
	}
	if err := run.Attempt(context.Background()); err != nil {
		t.Fatalf("second attempt: %v", err)
	}
	res = run.Result()
	if d := decisions(res, 4); !slices.Equal(d, []Action{ActionAck, ActionAck, ActionDeadLetter, ActionAck}) {
		t.Fatalf("after the second attempt: %v", d)
	}
	if d, _ := res.Decision(2); d.Reason != ReasonRejected || !strings.Contains(d.Err.Error(), "reading r2: the sink refused this message alone") ||
		!strings.Contains(d.Err.Error(), "cannot parse r2") {
		t.Errorf("dead letter %+v", d)
	}
	if !slices.Equal(s.stored, []string{"r0", "r1", "r3"}) {
		t.Errorf("stored %v", s.stored)
	}
}

// The proof that the sink works survives a sink fault: a batch whose last part is one bad
// record is decided after the fault, not held forever.
func TestIsolationKeepsItsProofAcrossASinkFault(t *testing.T) {
	s := &refusing{bad: map[string]bool{"r1": true}}
	calls := 0
	store := StoreFunc[string](func(ctx context.Context, b Batch[string]) error {
		calls++
		if calls == 3 { // [r0 r1] refused, [r0] stored, then [r1] meets a sink fault
			return errors.New("connection reset")
		}
		return s.Store(ctx, b)
	})
	// MaxDuration only turns a batch held forever (the proof lost) into a failure of this test.
	hold := NewHold(HoldConfig{MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond, MaxDuration: 10 * time.Second, Logger: discard})
	held := NewHoldStage(NewIsolateStage(store, describe), hold)
	res := held.Store(context.Background(), Batch[string]{Items: items(2)})
	if d := decisions(res, 2); !slices.Equal(d, []Action{ActionAck, ActionDeadLetter}) {
		t.Fatalf("decisions %v, want [ack dead_letter]", d)
	}
	if calls != 4 {
		t.Errorf("%d store calls, want 4: the lone record is refused once after the fault, with the proof kept", calls)
	}
	if st := hold.State(); st.Held || st.Holds != 1 || st.LastStored.IsZero() {
		t.Errorf("hold state %+v, want one hold, ended, with a store", st)
	}
}

// The holding stage releases what the isolation left undecided when the consumer stops, and
// keeps what it decided.
func TestHoldStageReleasesOnlyTheUndecided(t *testing.T) {
	s := &refusing{bad: map[string]bool{"r2": true}}
	calls := 0
	store := StoreFunc[string](func(ctx context.Context, b Batch[string]) error {
		calls++
		if calls >= 3 { // [r0..r3] refused, [r0 r1] stored, then the sink is down
			return errors.New("connection refused")
		}
		return s.Store(ctx, b)
	})
	stop := make(chan struct{})
	close(stop)
	held := NewHoldStage(NewIsolateStage(store, describe), NewHold(HoldConfig{MinBackoff: time.Hour, Logger: discard}))
	res := held.Store(context.Background(), Batch[string]{Items: items(4), Stopping: stop})
	if d := decisions(res, 4); !slices.Equal(d, []Action{ActionAck, ActionAck, ActionRelease, ActionRelease}) {
		t.Fatalf("decisions %v, want the stored acked and the rest released", d)
	}
	if d, _ := res.Decision(3); d.Err == nil || d.Err.Error() != "connection refused" {
		t.Errorf("release error %v, want the sink fault", d.Err)
	}
	if res.Conflicts() != 0 {
		t.Errorf("%d conflicts", res.Conflicts())
	}
}

// deadReasonErr names its own dead-letter reason.
type deadReasonErr struct{ reason string }

func (e deadReasonErr) Error() string            { return "value out of range" }
func (e deadReasonErr) DeadLetterReason() string { return e.reason }

// A refusal whose chain names a dead-letter reason (DeadLetterReason() string) dead-letters
// with that reason; without one, or with an empty one, the reason is ReasonRejected.
func TestDeadLetterReasonComesFromTheRefusal(t *testing.T) {
	batch := seqBatch(4)
	store := func(_ context.Context, in Batch[jetstream.Msg]) error {
		for i, m := range in.Items {
			switch m.Subject() {
			case "s.dev-1":
				return fmt.Errorf("write: %w", &rowLikeErr{index: i, err: deadReasonErr{"out_of_range"}})
			case "s.dev-2":
				return fmt.Errorf("write: %w", &rowLikeErr{index: i, err: deadReasonErr{""}})
			case "s.dev-3":
				return fmt.Errorf("write: %w", errors.Join(dataErr{"cannot parse"}, deadReasonErr{"schema"}))
			}
		}
		return nil
	}
	res, _ := NewStoreProcessor(store, WithHold(NewHold(HoldConfig{Logger: discard})))(context.Background(), msgBatch(batch))
	want := []struct {
		action Action
		reason Reason
	}{{ActionAck, ""}, {ActionDeadLetter, "out_of_range"}, {ActionDeadLetter, ReasonRejected}, {ActionDeadLetter, "schema"}}
	for i, w := range want {
		if d, _ := res.Decision(i); d.Action != w.action || d.Reason != w.reason {
			t.Errorf("index %d: %s %q, want %s %q", i, d.Action, d.Reason, w.action, w.reason)
		}
	}
	if got := deadLetterReason(errors.New("plain")); got != ReasonRejected {
		t.Errorf("a refusal that names no reason: %q, want %q", got, ReasonRejected)
	}
}

// WithObserver sees every store call: the whole batch, each part of the bisect, each retry of
// the hold, with what the call returned; the parts observed stored are exactly the messages
// acked.
func TestWithObserverSeesEveryAttempt(t *testing.T) {
	batch := seqBatch(8)
	s := &recordingStore{bad: map[string]bool{batch[6].Subject(): true}, down: 2}
	var seen []StoreAttempt[jetstream.Msg]
	observe := func(a StoreAttempt[jetstream.Msg]) { seen = append(seen, a) }
	hold := NewHold(HoldConfig{MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond, Logger: discard})
	res, err := NewStoreProcessor(s.store, WithHold(hold), WithObserver(observe))(context.Background(), msgBatch(batch))
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != s.calls {
		t.Fatalf("%d attempts observed, %d store calls", len(seen), s.calls)
	}
	var sinkFaults, refused int
	var stored []string
	for _, a := range seen {
		var rf RecordFault
		switch {
		case a.Err == nil:
			for _, m := range a.Batch.Items {
				stored = append(stored, m.Subject())
			}
		case errors.As(a.Err, &rf):
			refused++
		default:
			sinkFaults++
		}
		if a.Duration < 0 || a.Batch.Stream.Name != "s" || a.Batch.Consumer != "c" {
			t.Errorf("attempt %+v: want a duration and the batch's identity", a)
		}
	}
	if sinkFaults != 2 || refused == 0 {
		t.Errorf("%d sink faults, %d refusals observed; want 2 and the bisect's", sinkFaults, refused)
	}
	if !slices.Equal(stored, s.stored) {
		t.Errorf("observed stored %v, store stored %v", stored, s.stored)
	}
	for i, a := range decisions(res, 8) {
		if acked := a == ActionAck; acked != slices.Contains(stored, batch[i].Subject()) {
			t.Errorf("index %d: %s, observed stored %v", i, a, acked)
		}
	}
}

// The protobuf processors report the messages the decoded values come from.
func TestWithObserverOnTheProtoProcessorReportsMessages(t *testing.T) {
	batch := []jetstream.Msg{stringMsg(t, "s.a", "a"), &fakeMsg{subject: "s.x", data: []byte{0xff}}, stringMsg(t, "s.b", "b")}
	var mu sync.Mutex
	var subjects []string
	p := NewProtoStoreProcessor(func() *wrapperspb.StringValue { return new(wrapperspb.StringValue) },
		func(context.Context, Batch[Decoded[*wrapperspb.StringValue]]) error { return nil }, nil,
		WithHold(NewHold(HoldConfig{Logger: discard})),
		WithObserver(func(a StoreAttempt[jetstream.Msg]) {
			mu.Lock()
			defer mu.Unlock()
			for _, m := range a.Batch.Items {
				subjects = append(subjects, m.Subject())
			}
		}))
	res, err := p(context.Background(), msgBatch(batch))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(subjects, []string{"s.a", "s.b"}) {
		t.Errorf("observed %v, want the decoded messages [s.a s.b]", subjects)
	}
	if d := decisions(res, 3); !slices.Equal(d, []Action{ActionAck, ActionDeadLetter, ActionAck}) {
		t.Errorf("decisions %v", d)
	}
}

// A stage built over nothing is an error at construction, not at the first batch.
func TestStagesRefuseNilAtConstruction(t *testing.T) {
	ok := StoreFunc[string](func(context.Context, Batch[string]) error { return nil })
	for name, build := range map[string]func(){
		"observe without store":    func() { NewObserveStage[string](nil, func(StoreAttempt[string]) {}) },
		"observe without observer": func() { NewObserveStage[string](ok, nil) },
		"isolate without store":    func() { NewIsolateStage[string](nil, describe) },
		"isolate without describe": func() { NewIsolateStage[string](ok, nil) },
		"hold without isolate":     func() { NewHoldStage[string](nil, NewHold(HoldConfig{})) },
		"hold without hold":        func() { NewHoldStage(NewIsolateStage[string](ok, describe), nil) },
	} {
		func() {
			defer func() {
				if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "ponixnats: New") {
					t.Errorf("%s: recovered %v, want a panic naming the constructor", name, r)
				}
			}()
			build()
		}()
	}
}

// The instrumenting stage reports each call after it: the batch given, the error returned (the
// same the caller gets) and a duration that covers the call.
func TestObserveStageReportsEachCall(t *testing.T) {
	boom := errors.New("disk full")
	var inside time.Duration
	store := StoreFunc[string](func(_ context.Context, b Batch[string]) error {
		start := time.Now()
		defer func() { inside = time.Since(start) }()
		if slices.Contains(b.Items, "fail") {
			return boom
		}
		return nil
	})
	var seen []StoreAttempt[string]
	s := NewObserveStage(store, func(a StoreAttempt[string]) { seen = append(seen, a) })
	batch := Batch[string]{Stream: StreamID{Name: "s"}, Consumer: "c", Items: []string{"a", "b"}}
	if err := s.Store(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	if err := s.Store(context.Background(), Batch[string]{Items: []string{"fail"}}); !errors.Is(err, boom) {
		t.Fatalf("error %v, want the store's", err)
	}
	if len(seen) != 2 {
		t.Fatalf("%d attempts observed, want 2", len(seen))
	}
	if a := seen[0]; a.Err != nil || !slices.Equal(a.Batch.Items, batch.Items) || a.Batch.Stream != batch.Stream || a.Batch.Consumer != "c" {
		t.Errorf("first attempt %+v, want the batch stored", a)
	}
	if a := seen[1]; !errors.Is(a.Err, boom) || a.Duration < inside {
		t.Errorf("second attempt %+v, want the store's error and a duration of at least %s", a, inside)
	}
}
