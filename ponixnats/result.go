package ponixnats

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Processor handles one fetched batch and says, per index of batch, what to do
// with each message. The Result travels back to the [Consumer], which applies
// it. A non-nil error naks the whole batch with the default delay (the Result
// is then ignored); so does a panic.
//
// The batch carries where its messages come from (see [Batch]); ctx carries cancellation
// only. The batch's items and the messages are valid until the Processor returns; a
// Processor must not ack, nak or term the messages itself.
type Processor func(ctx context.Context, batch Batch[jetstream.Msg]) (Result, error)

// Action is what the consumer does with one message.
type Action uint8

// Actions, ordered from the least to the most conservative; when a Result
// mentions an index twice, the higher Action wins (see [Result]).
const (
	// ActionNone means the index was not mentioned.
	ActionNone Action = iota
	// ActionAck acknowledges the message: it is done.
	ActionAck
	// ActionTerm terminates the message: JetStream never redelivers it.
	ActionTerm
	// ActionDeadLetter publishes a copy to the dead-letter stream with the
	// reason in headers, then terminates the message. If the dead-letter
	// publish fails the message is nak'd instead, so nothing is lost.
	ActionDeadLetter
	// ActionNak asks for redelivery after a delay: a verdict on the message itself (it
	// failed for a reason of its own that may pass). It counts towards the consumer's
	// [ConsumerConfig].MaxDeliver; at the limit the message is dead-lettered instead.
	ActionNak
	// ActionRelease gives the message back for redelivery after a delay without any verdict
	// on it: the sink failed, the consumer stops, the processor failed as a whole. It never
	// counts towards MaxDeliver and never dead-letters: only a record can spend a record's
	// deliveries.
	ActionRelease
)

// String returns the lower-case name of the action.
func (a Action) String() string {
	switch a {
	case ActionNone:
		return "none"
	case ActionAck:
		return "ack"
	case ActionTerm:
		return "term"
	case ActionDeadLetter:
		return "dead_letter"
	case ActionNak:
		return "nak"
	case ActionRelease:
		return "release"
	}
	return "unknown"
}

// Decision is the action for one message with its parameters.
type Decision struct {
	// Action to apply.
	Action Action
	// Delay for ActionNak and ActionRelease; zero means the consumer's default
	// delay: for a Nak it grows with the number of deliveries (see
	// [ConsumerConfig.NakDelay]); a Release waits NakDelay.
	Delay time.Duration
	// Reason for ActionTerm and ActionDeadLetter (header Ponix-Dlq-Reason).
	Reason Reason
	// Err is the cause, if any: logged for ActionNak and ActionRelease, sent in the
	// Ponix-Dlq-Error header for ActionDeadLetter.
	Err error
}

// Result holds the per-index decisions for one batch. Build it with [AckAll],
// [NakAll] or [NewResult] and the setter methods; the zero Result mentions no
// index.
//
// Rules, applied by the [Consumer]:
//   - An index below Len that was never set is "unmentioned": it is released
//     (redelivered without counting against it), counted in
//     [Stats].Unmentioned and logged at warn level (once per batch). Nothing is
//     silently dropped.
//   - An index set twice keeps the most conservative decision: Release beats
//     Nak beats DeadLetter beats Term beats Ack; between two Naks (or two
//     Releases) the longer delay wins.
//     Every such conflict is counted in [Stats].Conflicts and logged.
//   - Indices at or beyond the batch length are ignored and logged.
type Result struct {
	n         int
	fillN     int      // fill applies to unset indices below fillN
	fill      Decision // applied to unset indices below fillN, if fill.Action != ActionNone
	set       []Decision
	conflicts int
	extra     int // indices mentioned beyond the batch (set by ProtoProcessor mapping)
}

// AckAll returns a Result that acknowledges indices 0..n-1.
func AckAll(n int) Result { return Result{n: n, fillN: n, fill: Decision{Action: ActionAck}} }

// NakAll returns a Result that naks indices 0..n-1 with delay (zero: the
// consumer's default, growing delay).
func NakAll(n int, delay time.Duration) Result {
	return Result{n: n, fillN: n, fill: Decision{Action: ActionNak, Delay: delay}}
}

// ReleaseAll returns a Result that releases indices 0..n-1 (see [ActionRelease])
// after delay (zero: the consumer's NakDelay), with err as the cause.
func ReleaseAll(n int, delay time.Duration, err error) Result {
	return Result{n: n, fillN: n, fill: Decision{Action: ActionRelease, Delay: delay, Err: err}}
}

// ackedWhole reports whether the Result acknowledges every index of a batch of n and nothing
// else.
func (r *Result) ackedWhole(n int) bool {
	return r.n == n && r.fillN == n && r.fill.Action == ActionAck && r.set == nil && r.extra == 0
}

// NewResult returns an empty Result for a batch of n messages; set the
// decisions with its methods.
func NewResult(n int) Result { return Result{n: n} }

// Len returns the batch size the Result covers (the largest index set plus
// one, or the n it was created with).
func (r *Result) Len() int { return r.n }

// Conflicts returns how many times an index was set more than once.
func (r *Result) Conflicts() int { return r.conflicts }

// Decision returns the decision for index i and whether it was mentioned.
func (r *Result) Decision(i int) (Decision, bool) {
	if i < 0 || i >= r.n {
		return Decision{}, false
	}
	if i < len(r.set) && r.set[i].Action != ActionNone {
		return r.set[i], true
	}
	if i < r.fillN && r.fill.Action != ActionNone {
		return r.fill, true
	}
	return Decision{}, false
}

// Set records decision d for index i (negative indices are ignored).
func (r *Result) Set(i int, d Decision) {
	if i < 0 || d.Action == ActionNone {
		return
	}
	if i >= r.n {
		r.n = i + 1
	}
	if r.set == nil {
		r.set = make([]Decision, r.n)
	} else if i >= len(r.set) {
		r.set = append(r.set, make([]Decision, i+1-len(r.set))...)
	}
	prev := r.set[i]
	if prev.Action == ActionNone && i < r.fillN {
		prev = r.fill
	}
	if prev.Action != ActionNone {
		r.conflicts++
		d = moreConservative(prev, d)
	}
	r.set[i] = d
}

// Ack acknowledges index i.
func (r *Result) Ack(i int) { r.Set(i, Decision{Action: ActionAck}) }

// Nak asks for redelivery of index i after delay (zero: the consumer's
// default, growing delay).
func (r *Result) Nak(i int, delay time.Duration) { r.Set(i, Decision{Action: ActionNak, Delay: delay}) }

// NakErr is Nak with the cause, which the consumer logs.
func (r *Result) NakErr(i int, delay time.Duration, err error) {
	r.Set(i, Decision{Action: ActionNak, Delay: delay, Err: err})
}

// Release gives index i back for redelivery after delay without a verdict on
// it (see [ActionRelease]); err is the cause, which the consumer logs.
func (r *Result) Release(i int, delay time.Duration, err error) {
	r.Set(i, Decision{Action: ActionRelease, Delay: delay, Err: err})
}

// Term terminates index i: it is never redelivered and not dead-lettered.
func (r *Result) Term(i int, reason Reason) { r.Set(i, Decision{Action: ActionTerm, Reason: reason}) }

// DeadLetter sends index i to the dead-letter stream with reason and err in
// headers, then terminates it.
func (r *Result) DeadLetter(i int, reason Reason, err error) {
	r.Set(i, Decision{Action: ActionDeadLetter, Reason: reason, Err: err})
}

// Fill sets d for every index below Len that has no decision yet.
func (r *Result) Fill(d Decision) {
	if d.Action == ActionNone {
		return
	}
	if r.set == nil && r.fill.Action == ActionNone {
		// Nothing set yet: keep the compact representation.
		r.fill, r.fillN = d, r.n
		return
	}
	for i := 0; i < r.n; i++ {
		if _, ok := r.Decision(i); !ok {
			r.Set(i, d)
		}
	}
}

// AckRest acknowledges every index below Len that has no decision yet.
func (r *Result) AckRest() { r.Fill(Decision{Action: ActionAck}) }

// NakRest naks every index below Len that has no decision yet.
func (r *Result) NakRest(delay time.Duration, err error) {
	r.Fill(Decision{Action: ActionNak, Delay: delay, Err: err})
}

func moreConservative(a, b Decision) Decision {
	if b.Action > a.Action {
		return b
	}
	if a.Action == b.Action && (a.Action == ActionNak || a.Action == ActionRelease) && b.Delay > a.Delay {
		return b
	}
	return a
}
