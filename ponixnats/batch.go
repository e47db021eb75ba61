package ponixnats

import "time"

// StreamID identifies one incarnation of a stream. A stream deleted and created again has the
// same name but a new creation time and starts its sequences again at 1: with a message's
// stream sequence ([StreamSequence]), a StreamID identifies the message (e.g. in a
// de-duplication key).
type StreamID struct {
	// Name is the stream's name.
	Name string
	// Created is when this incarnation of the stream was created.
	Created time.Time
}

// Batch is a batch of items from one incarnation of a stream, with everything a [Processor]
// or a store needs besides cancellation: where the items come from and whether the consumer
// is stopping. The [Consumer] hands a Batch[jetstream.Msg] to its Processor; the store
// processors hand parts of it (Batch[jetstream.Msg], or Batch[Decoded[T]] once decoded) to
// the store, each with the same Stream, Consumer and Stopping.
//
// Each message carries its own stream sequence and delivery count in its metadata (read them
// with [StreamSequence] or jetstream.Msg.Metadata).
type Batch[T any] struct {
	// Stream is the stream incarnation the items were fetched from.
	Stream StreamID
	// Consumer is the durable consumer's name.
	Consumer string
	// Items are the batch's items, in delivery order.
	Items []T
	// Stopping is closed when the consumer has been asked to stop. A processor or store that
	// waits (retries, back-off) should stop waiting then: its messages are released and come
	// back after a restart. The processing context itself stays alive a little longer (see
	// [ConsumerConfig].DrainTimeout) so that a store in flight can finish. Nil: never.
	Stopping <-chan struct{}
}

// Len returns the number of items.
func (b Batch[T]) Len() int { return len(b.Items) }

// withItems returns a batch of items with b's identity: a part of b, or b decoded.
func withItems[U, T any](b Batch[T], items []U) Batch[U] {
	return Batch[U]{Stream: b.Stream, Consumer: b.Consumer, Items: items, Stopping: b.Stopping}
}
