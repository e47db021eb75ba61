package ponixnats

import (
	"context"
	"time"
)

// Store stores a batch all or nothing: an error means none of its items was stored. It is the
// one interface the store stages decorate (see [HoldStage]); [MsgStore] and [StoreFunc]
// implement it.
type Store[T any] interface {
	Store(ctx context.Context, batch Batch[T]) error
}

// StoreFunc adapts a function to [Store].
type StoreFunc[T any] func(ctx context.Context, batch Batch[T]) error

// Store calls f.
func (f StoreFunc[T]) Store(ctx context.Context, batch Batch[T]) error { return f(ctx, batch) }

// StoreAttempt is one call of a [Store] as an [ObserveStage] sees it: the batch or the part of
// it that was given to the store, how long the call took and what it returned. Err nil means
// the part is stored.
type StoreAttempt[T any] struct {
	// Batch is what the store was given: the whole batch, or a part of it while the sink's
	// refusals are isolated, with the batch's identity.
	Batch Batch[T]
	// Duration is how long the store call took.
	Duration time.Duration
	// Err is what the store returned: nil when the part is stored.
	Err error
}

// ObserveStage is the instrumenting stage: a [Store] that calls the store below it and then
// reports the call (a [StoreAttempt]) to its observer. Put it right above the sink's own store,
// below the [IsolateStage], so that it sees every insert attempt: each part tried while
// isolating refused records and each retry while a [Hold] holds the batch. The store
// processors install one with [WithObserver].
type ObserveStage[T any] struct {
	next    Store[T]
	observe func(StoreAttempt[T])
}

// NewObserveStage returns a stage that reports every call of next to observe, after the call,
// on the goroutine that made it. It panics if next or observe is nil.
func NewObserveStage[T any](next Store[T], observe func(StoreAttempt[T])) *ObserveStage[T] {
	if next == nil || observe == nil {
		panic("ponixnats: NewObserveStage needs a store and an observer")
	}
	return &ObserveStage[T]{next: next, observe: observe}
}

// Store stores batch with the store below and reports the attempt.
func (s *ObserveStage[T]) Store(ctx context.Context, batch Batch[T]) error {
	start := time.Now()
	err := s.next.Store(ctx, batch)
	s.observe(StoreAttempt[T]{Batch: batch, Duration: time.Since(start), Err: err})
	return err
}
