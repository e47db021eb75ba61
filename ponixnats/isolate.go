package ponixnats

import (
	"context"
	"errors"
	"fmt"
	"math/bits"
	"slices"
)

// IsolateStage is the isolating stage: it stores a batch through the [Store] below it and,
// when the sink refuses records, finds the ones it refuses alone. It decides per item of the
// batch: stored, dead-lettered (with a reason), or undecided (the sink failed before the item
// was stored or refused). Its decisions are made batch by batch in an [Isolation], which a
// [HoldStage] runs again after each sink fault, going on where it stopped.
//
// What a store error decides:
//   - a [Rejection] names its record: that one is dead-lettered, the rest of its part is
//     stored again;
//   - a [RecordFault] splits the part in two, depth first, until the records the sink refuses
//     alone are found; those are dead-lettered once a part stored (proof that the sink works).
//     While nothing stored, more than log2(n)+2 refusals in one attempt, or records refused
//     alone, mean that the sink rather than the records may be at fault: the attempt fails
//     with the refusal, and the items stay undecided;
//   - any other error is a sink fault: the attempt fails with it, the parts not yet stored stay
//     undecided.
//
// A dead-lettered item's reason is [ReasonRejected], unless an error in the chain of the
// refusal (the [Rejection], or the [RecordFault] error) has a method DeadLetterReason() string
// that returns another.
type IsolateStage[T any] struct {
	next     Store[T]
	describe func(T) string
}

// NewIsolateStage returns an isolating stage over next. describe names an item in the error
// of its dead letter (the store processors use the message's subject and stream sequence). It
// panics if next or describe is nil.
func NewIsolateStage[T any](next Store[T], describe func(item T) string) *IsolateStage[T] {
	if next == nil || describe == nil {
		panic("ponixnats: NewIsolateStage needs a store and a describe function")
	}
	return &IsolateStage[T]{next: next, describe: describe}
}

// Begin starts the isolation of batch: call its Attempt until it returns nil (every item is
// decided) or you give up, then read its Result.
func (s *IsolateStage[T]) Begin(batch Batch[T]) *Isolation[T] {
	return &Isolation[T]{stage: s, batch: batch, res: NewResult(batch.Len())}
}

// Isolation is one batch's search for the records its sink refuses (see [IsolateStage]). A
// part that the sink refuses as data is split in two, left half on top of a stack of parts, so
// that the search goes depth-first and reaches a part that stores (proof that the sink works)
// after about log2(n) failures.
//
// An attempt that meets a sink fault returns it and leaves the parts not yet stored on the
// stack: the next attempt (after a hold's back-off) goes on where it stopped, with the proof it
// already has — so a batch whose last part is one bad record is decided, not held forever.
// An Isolation is not safe for concurrent use.
type Isolation[T any] struct {
	stage    *IsolateStage[T]
	batch    Batch[T]
	res      Result
	onStored func() // after every part stored, if set (the hold's LastStored)

	begun     bool    // the whole batch was tried
	stack     [][]int // parts still to store, indices into batch.Items, each ascending
	buf       []T
	storedAny bool // a part stored: the sink works, a record refused alone is at fault
	refusals  int  // refused parts in this attempt, while nothing stored
	// Records refused alone before anything stored: dead-lettered once a store succeeds (the
	// sink works), stored again if nothing does.
	alone       []int
	lastRefusal error
}

// Attempt stores the parts of the batch not decided yet until none is left (nil) or the sink
// fails (the error; the parts not stored stay undecided, for the next Attempt).
func (r *Isolation[T]) Attempt(ctx context.Context) error {
	r.refusals = 0
	if !r.begun {
		// The whole batch first, as it is: no copy, and one Ack for all when it stores.
		r.begun = true
		n := r.batch.Len()
		if n == 0 {
			return nil
		}
		err := r.stage.next.Store(ctx, withItems(r.batch, r.batch.Items[:n:n]))
		if err == nil {
			r.res = AckAll(n)
			r.storedAny = true
			r.stored()
			return nil
		}
		all := make([]int, n)
		for i := range all {
			all[i] = i
		}
		r.stack = [][]int{all}
		if err := r.settle(all, err); err != nil {
			return err
		}
	}
	for len(r.stack) > 0 {
		part := r.stack[len(r.stack)-1]
		if err := r.settle(part, r.stage.next.Store(ctx, withItems(r.batch, r.items(part)))); err != nil {
			return err
		}
	}
	if len(r.alone) > 0 {
		return r.refused(r.lastRefusal)
	}
	return nil
}

// Result returns the decisions so far, by index into the batch: [ActionAck] for the items
// stored, [ActionDeadLetter] for those refused; the items not mentioned are undecided.
func (r *Isolation[T]) Result() Result { return r.res }

// items returns the items of part: a slice of the batch's when the part is contiguous, else a
// copy in the isolation's buffer.
func (r *Isolation[T]) items(part []int) []T {
	if lo, hi := part[0], part[len(part)-1]; hi-lo == len(part)-1 {
		return r.batch.Items[lo : hi+1 : hi+1]
	}
	if r.buf == nil {
		r.buf = make([]T, 0, r.batch.Len())
	}
	r.buf = r.buf[:0]
	for _, j := range part {
		r.buf = append(r.buf, r.batch.Items[j])
	}
	return r.buf
}

func (r *Isolation[T]) stored() {
	if r.onStored != nil {
		r.onStored()
	}
}

// settle decides what a store of part, the top of the stack, returning err means: nil to go
// on with the next part, or the error that ends the attempt.
func (r *Isolation[T]) settle(part []int, err error) error {
	top := len(r.stack) - 1
	var (
		rej Rejection
		rf  RecordFault
	)
	switch {
	case err == nil:
		for _, j := range part {
			r.res.Ack(j)
		}
		r.stack = r.stack[:top]
		if !r.storedAny {
			r.storedAny = true
			for _, j := range r.alone {
				r.refuseAlone(j, r.lastRefusal)
			}
			r.alone = nil
		}
		r.stored()
	case errors.As(err, &rej) && rej.RejectedIndex() >= 0 && rej.RejectedIndex() < len(part):
		k := rej.RejectedIndex()
		j := part[k]
		r.res.DeadLetter(j, deadLetterReason(rej), fmt.Errorf("%s: %w", r.stage.describe(r.batch.Items[j]), causeOf(rej)))
		if rest := slices.Delete(slices.Clone(part), k, k+1); len(rest) > 0 {
			r.stack[top] = rest
		} else {
			r.stack = r.stack[:top]
		}
	case errors.As(err, &rf) && rf.RecordFault():
		r.stack = r.stack[:top]
		if r.storedAny {
			if len(part) == 1 {
				r.refuseAlone(part[0], err)
				return nil
			}
		} else {
			r.lastRefusal = err
			r.refusals++
			if len(part) == 1 {
				r.alone = append(r.alone, part[0])
			}
			if r.refusals > bits.Len(uint(r.batch.Len()))+2 {
				if len(part) > 1 {
					r.stack = append(r.stack, part) // a single one is in alone already
				}
				return r.refused(err)
			}
			if len(part) == 1 {
				return nil
			}
		}
		half := len(part) / 2
		r.stack = append(r.stack, part[half:], part[:half])
	default:
		return err
	}
	return nil
}

// refuseAlone dead-letters record j, which the sink refused alone while it stores others.
func (r *Isolation[T]) refuseAlone(j int, err error) {
	r.res.DeadLetter(j, deadLetterReason(err),
		fmt.Errorf("%s: the sink refused this message alone: %w", r.stage.describe(r.batch.Items[j]), err))
}

// refused puts the records refused alone back on the stack, to be stored again after the
// hold's back-off: no store succeeded, so the sink rather than these records may be at fault.
func (r *Isolation[T]) refused(err error) error {
	for _, j := range r.alone {
		r.stack = append(r.stack, []int{j})
	}
	r.alone = nil
	return &refusedError{n: r.batch.Len(), err: err}
}

// deadLetterReason is the reason a record the sink refuses is dead-lettered with: the one an
// error in err's chain gives with a method DeadLetterReason() string, else [ReasonRejected].
func deadLetterReason(err error) Reason {
	var named interface{ DeadLetterReason() string }
	if errors.As(err, &named) {
		if reason := named.DeadLetterReason(); reason != "" {
			return Reason(reason)
		}
	}
	return ReasonRejected
}

// causeOf returns what a rejection says about its item, without the store's own framing (such
// as the item's index in the batch, which means nothing outside the store call).
func causeOf(rej Rejection) error {
	if u, ok := rej.(interface{ Unwrap() error }); ok && u.Unwrap() != nil {
		return u.Unwrap()
	}
	return rej
}

// refusedError: every part of a batch tried was refused as data, and none stored, so there is
// no proof that the records rather than the sink are at fault. The batch is held.
type refusedError struct {
	n   int
	err error
}

func (e *refusedError) Error() string {
	return fmt.Sprintf("the sink refuses the data of every part tried of a batch of %d messages, so the sink rather than single records may be at fault: %v", e.n, e.err)
}

func (e *refusedError) Unwrap() error { return e.err }
