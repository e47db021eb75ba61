package ponixnats

import (
	"context"
	"errors"
	"fmt"
	"math/bits"
	"slices"
)

// isolation is one batch's search for the records its sink refuses. A part that the sink
// refuses as data (a [RecordFault]) is split in two, left half on top of a stack of parts, so
// that the search goes depth-first and reaches a part that stores (proof that the sink works)
// after about log2(n) failures. Until that proof, the number of refused parts is bounded by
// log2(n)+2: beyond it the whole batch counts as refused by the sink, a sink fault. A
// [Rejection] names its record: that one is dead-lettered and the rest of its part stored
// again.
//
// An attempt that meets a sink fault returns it and leaves the parts not yet stored on the
// stack: the next attempt (after the hold's back-off) goes on where it stopped, with the proof
// it already has.
type isolation[T any] struct {
	b        *storeBatch[T]
	store    func(context.Context, Batch[T]) error
	onStored func() // after every part stored

	stack     [][]int // parts still to store, indices into b.all
	buf       []T
	storedAny bool // a part stored: the sink works, a record refused alone is at fault
	// Records refused alone before anything stored: dead-lettered once a store succeeds (the
	// sink works), stored again if nothing does.
	alone       []int
	lastRefusal error
}

func newIsolation[T any](b *storeBatch[T], store func(context.Context, Batch[T]) error, onStored func()) *isolation[T] {
	return &isolation[T]{b: b, store: store, onStored: onStored, stack: [][]int{b.todo}, buf: make([]T, 0, len(b.todo))}
}

// attempt stores the parts on the stack until none is left (nil) or the sink fails (the
// error; the parts not stored stay on the stack).
func (s *isolation[T]) attempt(ctx context.Context) error {
	b := s.b
	refusals, budget := 0, bits.Len(uint(len(b.todo)))+2
	for len(s.stack) > 0 {
		top := len(s.stack) - 1
		part := s.stack[top]
		s.buf = s.buf[:0]
		for _, j := range part {
			s.buf = append(s.buf, b.all[j])
		}
		err := s.store(ctx, withItems(b.batch, s.buf))
		var (
			rej Rejection
			rf  RecordFault
		)
		switch {
		case err == nil:
			for _, j := range part {
				b.res.Ack(j)
			}
			s.stack = s.stack[:top]
			if !s.storedAny {
				s.storedAny = true
				for _, j := range s.alone {
					s.refuseAlone(j, s.lastRefusal)
				}
				s.alone = nil
			}
			s.onStored()
		case errors.As(err, &rej) && rej.RejectedIndex() >= 0 && rej.RejectedIndex() < len(part):
			k := rej.RejectedIndex()
			j := part[k]
			b.res.DeadLetter(j, rejectionReason(rej), fmt.Errorf("%s: %w", msgLabel(b.msgOf(b.all[j])), causeOf(rej)))
			if rest := slices.Delete(slices.Clone(part), k, k+1); len(rest) > 0 {
				s.stack[top] = rest
			} else {
				s.stack = s.stack[:top]
			}
		case errors.As(err, &rf) && rf.RecordFault():
			s.stack = s.stack[:top]
			if s.storedAny {
				if len(part) == 1 {
					s.refuseAlone(part[0], err)
					continue
				}
			} else {
				s.lastRefusal = err
				refusals++
				if len(part) == 1 {
					s.alone = append(s.alone, part[0])
				}
				if refusals > budget {
					if len(part) > 1 {
						s.stack = append(s.stack, part) // a single one is in alone already
					}
					return s.refused(err)
				}
				if len(part) == 1 {
					continue
				}
			}
			half := len(part) / 2
			s.stack = append(s.stack, part[half:], part[:half])
		default:
			return err
		}
	}
	if len(s.alone) > 0 {
		return s.refused(s.lastRefusal)
	}
	return nil
}

// rejectionReason is the dead-letter reason of a record a [Rejection] names: that of an error in
// its chain with a method DeadLetterReason() string (envelope's errors: decode, invalid), else
// [ReasonRejected].
func rejectionReason(rej Rejection) Reason {
	var r interface{ DeadLetterReason() string }
	if errors.As(rej, &r) && r.DeadLetterReason() != "" {
		return Reason(r.DeadLetterReason())
	}
	return ReasonRejected
}

// refuseAlone dead-letters record j, which the sink refused alone while it stores others.
func (s *isolation[T]) refuseAlone(j int, err error) {
	s.b.res.DeadLetter(j, ReasonRejected, fmt.Errorf("%s: the sink refused this message alone: %w", msgLabel(s.b.msgOf(s.b.all[j])), err))
}

// refused puts the records refused alone back on the stack, to be stored again after the
// hold's back-off: no store succeeded, so the sink rather than these records may be at fault.
func (s *isolation[T]) refused(err error) error {
	for _, j := range s.alone {
		s.stack = append(s.stack, []int{j})
	}
	s.alone = nil
	return &refusedError{n: len(s.b.todo), err: err}
}

// release gives back every record not yet decided: the sink failed, they did nothing wrong.
// A release never counts towards MaxDeliver.
func (s *isolation[T]) release(err error) {
	for _, part := range s.stack {
		for _, j := range part {
			s.b.res.Release(j, 0, err)
		}
	}
}
