package ponixnats

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/nats-io/nats.go/jetstream"
)

// MsgStore stores a batch of messages (typically from their bytes, m.Data()) all or nothing:
// an error means none of them was stored. The batch is the fetched one or a part of it, with
// its stream incarnation (for de-duplication keys) and its Stopping channel.
type MsgStore func(ctx context.Context, batch Batch[jetstream.Msg]) error

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
	hold  *Hold
	check func(jetstream.Msg) error
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

// checkReason is the dead-letter reason of a message a WithCheck check refuses.
func checkReason(err error) Reason {
	if errors.Is(err, ErrDecode) {
		return ReasonDecode
	}
	return ReasonInvalid
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
// store must be all-or-nothing so that a batch can be stored again.
func NewStoreProcessor(store MsgStore, opts ...StoreOption) Processor {
	o := buildStoreOptions(opts)
	return func(ctx context.Context, batch Batch[jetstream.Msg]) (Result, error) {
		b := newStoreBatch(batch, func(m jetstream.Msg) jetstream.Msg { return m })
		if o.check != nil {
			for j, m := range batch.Items {
				if err := o.check(m); err != nil {
					b.setAside(j, checkReason(err), fmt.Errorf("%s: %w", msgLabel(m), err))
				}
			}
		}
		return b.store(ctx, store, o.hold), nil
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

// storeBatch is a batch on its way to a store: the decisions taken so far, by index into
// its items, and the indices still to store.
type storeBatch[T any] struct {
	batch Batch[T]
	all   []T // batch.Items
	msgOf func(T) jetstream.Msg
	res   Result
	todo  []int // indices into all still to store, ascending
}

func newStoreBatch[T any](batch Batch[T], msgOf func(T) jetstream.Msg) *storeBatch[T] {
	todo := make([]int, len(batch.Items))
	for i := range todo {
		todo[i] = i
	}
	return &storeBatch[T]{batch: batch, all: batch.Items, msgOf: msgOf, res: NewResult(len(batch.Items)), todo: todo}
}

// setAside dead-letters item j (not yet stored) before anything is stored.
func (b *storeBatch[T]) setAside(j int, reason Reason, err error) {
	b.res.DeadLetter(j, reason, err)
	if i, ok := slices.BinarySearch(b.todo, j); ok {
		b.todo = slices.Delete(b.todo, i, i+1)
	}
}

// store stores the items still to store and decides for each (see [NewStoreProcessor]): the
// hold (see [Hold]) runs the isolation's attempts until every item is decided, and releases
// what is left when it stops or gives up.
func (b *storeBatch[T]) store(ctx context.Context, store func(context.Context, Batch[T]) error, hold *Hold) Result {
	if len(b.todo) == 0 {
		return b.res
	}
	iso := newIsolation(b, store, hold.stored)
	if err := hold.do(ctx, b.batch.Stopping, len(b.todo), iso.attempt); err != nil {
		// Stopping, or the hold gave up: the sink failed, the messages did nothing wrong.
		// They are released, which never counts towards MaxDeliver.
		iso.release(err)
	}
	return b.res
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
