package ponixnats

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// MsgStore stores a batch of messages (typically from their bytes, m.Data()) all or nothing:
// an error means none of them was stored. The batch is the fetched one or a part of it, with
// its stream incarnation (for de-duplication keys) and its Stopping channel.
type MsgStore func(ctx context.Context, batch Batch[jetstream.Msg]) error

// Store calls f: a MsgStore is a [Store] of messages.
func (f MsgStore) Store(ctx context.Context, batch Batch[jetstream.Msg]) error { return f(ctx, batch) }

// Rejection is implemented by store errors that name one item of the batch that can never be
// stored (e.g. a value the sink cannot represent), by its index in the batch given to the
// store. A store processor dead-letters that message alone (reason [ReasonRejected]) and
// stores the others again. ponixclickhouse.RowError is one.
type Rejection interface {
	error
	RejectedIndex() int
}

// RecordFault is implemented by store errors that say the sink refused the data of the batch
// (a parse, type or value error) rather than failed itself: one or more records may be at
// fault, and RecordFault reports true. A store processor then splits the batch (bisects) to
// find the messages that fail alone and dead-letters only those (reason [ReasonRejected]); if
// no part of the batch can be stored, it treats the error as a sink fault and holds the batch.
// ponixclickhouse.WriteError is one.
type RecordFault interface {
	error
	RecordFault() bool
}

// StoreOption configures the store processors: [NewStoreProcessor], [NewProtoStoreProcessor],
// [NewEnvelopeProcessor] and [NewEnvelopeWireProcessor]. Every option applies to each of them.
type StoreOption func(*storeOptions)

type storeOptions struct {
	hold    *Hold
	check   func(jetstream.Msg) error
	observe func(StoreAttempt[jetstream.Msg])
}

func buildStoreOptions(opts []StoreOption) storeOptions {
	var o storeOptions
	for _, opt := range opts {
		opt(&o)
	}
	if o.hold == nil {
		o.hold = NewHold(HoldConfig{})
	}
	return o
}

// WithHold sets the [Hold] that keeps a batch in place while its sink fails (default: a Hold
// with the default [HoldConfig], private to the processor). Pass your own to read its state
// (readiness, metrics) or to change the back-off and MaxDuration.
func WithHold(h *Hold) StoreOption {
	return func(o *storeOptions) { o.hold = h }
}

// WithCheck sets a check run on every message before anything else (before decoding, for the
// protobuf processors): a message it fails is dead-lettered alone, with reason [ReasonDecode]
// when the error wraps [ErrDecode] and [ReasonInvalid] otherwise.
func WithCheck(f func(m jetstream.Msg) error) StoreOption {
	return func(o *storeOptions) { o.check = f }
}

// WithObserver installs the instrumenting stage ([ObserveStage]): observe is told about every
// call of the store — the whole batch, each part tried while the records the sink refuses are
// isolated, each retry while the batch is held — with the messages given to the store, how long
// the call took and its error (nil: those messages are stored). For the protobuf processors
// the messages are those the decoded values come from. observe runs on the processor's
// goroutine, after each call; keep it short.
func WithObserver(observe func(StoreAttempt[jetstream.Msg])) StoreOption {
	return func(o *storeOptions) { o.observe = observe }
}

// checkMsg returns the WithCheck check as a screen (see [screen]), nil without one. A message it
// refuses is dead-lettered with reason [ReasonDecode] when the error wraps [ErrDecode], and
// [ReasonInvalid] otherwise.
func (o storeOptions) checkMsg() func(jetstream.Msg) (Reason, error) {
	if o.check == nil {
		return nil
	}
	return func(m jetstream.Msg) (Reason, error) {
		err := o.check(m)
		if err == nil {
			return "", nil
		}
		reason := ReasonInvalid
		if errors.Is(err, ErrDecode) {
			reason = ReasonDecode
		}
		return reason, fmt.Errorf("%s: %w", msgLabel(m), err)
	}
}

// storeStages builds the store stages of a processor over store: observed (when observe is set),
// isolated (describe names an item), held by o.hold.
func storeStages[T any](store Store[T], o storeOptions, describe func(T) string, observe func(StoreAttempt[T])) *HoldStage[T] {
	if observe != nil {
		store = NewObserveStage(store, observe)
	}
	return NewHoldStage(NewIsolateStage(store, describe), o.hold)
}

// NewStoreProcessor returns a [Processor] that hands the messages of each batch to store in
// one call and acks them when it succeeds. What a failure does depends on what it says:
//   - a message the [WithCheck] check refuses, or that the store names in a [Rejection], is
//     dead-lettered alone (its error names the message: subject and stream sequence) and the
//     others are stored again;
//   - a [RecordFault] splits the batch until the messages that fail alone are found; those are
//     dead-lettered with [ReasonRejected], the rest is stored;
//   - any other error is a sink fault: the batch is held in place and stored again with
//     back-off (see [Hold]), never dead-lettered. When the consumer stops (or the hold gives
//     up) the messages not yet stored are released ([ActionRelease]): redelivered later,
//     never counted towards MaxDeliver.
//
// store must be all-or-nothing so that a batch can be stored again. The processor is the
// store stages ([HoldStage] over [IsolateStage] over store, observed with [WithObserver])
// after the check.
func NewStoreProcessor(store MsgStore, opts ...StoreOption) Processor {
	o := buildStoreOptions(opts)
	held := storeStages[jetstream.Msg](store, o, msgLabel, o.observe)
	check := o.checkMsg()
	return func(ctx context.Context, batch Batch[jetstream.Msg]) (Result, error) {
		return storeScreened(ctx, held, batch, check), nil
	}
}

// msgLabel names a message for errors and dead-letter headers: its subject and, for a
// JetStream message, its stream sequence.
func msgLabel(m jetstream.Msg) string {
	if seq, err := StreamSequence(m); err == nil {
		return fmt.Sprintf("message on %s (stream sequence %d)", m.Subject(), seq)
	}
	return "message on " + m.Subject()
}

// storeScreened stores through held the items of batch that check passes (all, when check is
// nil) and dead-letters the others; the Result is by index into batch.Items.
func storeScreened[T any](ctx context.Context, held *HoldStage[T], batch Batch[T], check func(T) (Reason, error)) Result {
	res := NewResult(batch.Len())
	pass, pos := screen(batch, &res, check)
	if pos == nil {
		return held.Store(ctx, batch)
	}
	if len(pos) > 0 {
		merge(&res, held.Store(ctx, pass), pos)
	}
	return res
}

// screen runs check on every item of batch: an item it refuses is dead-lettered in res, which
// covers batch, with the reason and error check returns. It returns the items that pass, as a
// batch with batch's identity, and their indices in batch; pos is nil when every item passes
// (or check is nil), and pass is then batch itself.
func screen[T any](batch Batch[T], res *Result, check func(T) (Reason, error)) (pass Batch[T], pos []int) {
	if check == nil {
		return batch, nil
	}
	var items []T
	for i, it := range batch.Items {
		reason, err := check(it)
		if err == nil {
			if pos != nil {
				items, pos = append(items, it), append(pos, i)
			}
			continue
		}
		if pos == nil { // the first refused: the items before it pass
			items, pos = make([]T, i, len(batch.Items)), make([]int, i, len(batch.Items))
			copy(items, batch.Items[:i])
			for k := range pos {
				pos[k] = k
			}
		}
		res.DeadLetter(i, reason, err)
	}
	if pos == nil {
		return batch, nil
	}
	return withItems(batch, items), pos
}

// merge sets in res the decisions of sub, whose index k is index pos[k] of res.
func merge(res *Result, sub Result, pos []int) {
	for k, i := range pos {
		if d, ok := sub.Decision(k); ok {
			res.Set(i, d)
		}
	}
}
