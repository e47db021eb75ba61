package pipeline

import (
	"context"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/ponix-go/ponix/ponixnats"
)

// Decoder says how a message becomes a T, and which messages are dead-lettered before anything
// is stored. Make one with [Proto] or [Raw].
type Decoder[T any] struct {
	processor func(store storeFunc[T], opts ...ponixnats.StoreOption) ponixnats.Processor
}

// Proto decodes each message as the protobuf message newT returns. A message that does not
// decode is dead-lettered alone with reason "decode"; validate, if set, refuses a decoded
// value (reason "invalid", its error in the Ponix-Dlq-Error header).
func Proto[T proto.Message](newT func() T, validate func(T) error) Decoder[T] {
	return Decoder[T]{processor: func(store storeFunc[T], opts ...ponixnats.StoreOption) ponixnats.Processor {
		var recs []Record[T] // reused: the consumer stores one batch, or part, at a time
		return ponixnats.NewProtoStoreProcessor(newT, func(ctx context.Context, b ponixnats.Batch[ponixnats.Decoded[T]]) error {
			recs = recs[:0]
			for _, d := range b.Items {
				r, err := record(b.Stream, d.Value, d.Msg)
				if err != nil {
					return err
				}
				recs = append(recs, r)
			}
			return store(ctx, ponixnats.Batch[Record[T]]{Stream: b.Stream, Consumer: b.Consumer, Items: recs, Stopping: b.Stopping})
		}, validate, opts...)
	}}
}

// Raw hands each message's bytes to the row as they are (Record.Value is the message's data,
// valid while the batch is stored). check, if set, refuses a message before anything is
// stored: it is dead-lettered alone, with reason "decode" when the error wraps
// ponixnats.ErrDecode and "invalid" otherwise. Use Raw when the Encoder reads the bytes itself
// (one parse per message), and refuse a bad message there with a ponixclickhouse.RowError.
func Raw(check func(data []byte) error) Decoder[[]byte] {
	return RawProcessor(func(store ponixnats.MsgStore, opts ...ponixnats.StoreOption) ponixnats.Processor {
		if check != nil {
			opts = append([]ponixnats.StoreOption{ponixnats.WithCheck(func(m jetstream.Msg) error { return check(m.Data()) })}, opts...)
		}
		return ponixnats.NewStoreProcessor(store, opts...)
	})
}

// RawProcessor is [Raw] with a store processor of your own around the pipeline's store, such as
// ponixnats.NewEnvelopeWireProcessor (whose store, the envelope encoder, validates each
// envelope while it encodes it, read once). newProcessor is given the store and the
// pipeline's options (its Hold), which it must pass on.
func RawProcessor(newProcessor func(store ponixnats.MsgStore, opts ...ponixnats.StoreOption) ponixnats.Processor) Decoder[[]byte] {
	return Decoder[[]byte]{processor: func(store storeFunc[[]byte], opts ...ponixnats.StoreOption) ponixnats.Processor {
		var recs []Record[[]byte] // reused: the consumer stores one batch, or part, at a time
		return newProcessor(func(ctx context.Context, b ponixnats.Batch[jetstream.Msg]) error {
			recs = recs[:0]
			for _, m := range b.Items {
				r, err := record(b.Stream, m.Data(), m)
				if err != nil {
					return err
				}
				recs = append(recs, r)
			}
			return store(ctx, ponixnats.Batch[Record[[]byte]]{Stream: b.Stream, Consumer: b.Consumer, Items: recs, Stopping: b.Stopping})
		}, opts...)
	}}
}

// record makes a message's Record.
func record[T any](stream ponixnats.StreamID, v T, m jetstream.Msg) (Record[T], error) {
	d, err := ponixnats.DeliveryOf(m)
	if err != nil {
		return Record[T]{}, err
	}
	return Record[T]{Value: v, Stream: stream, Seq: d.StreamSeq, Delivered: d.Delivered, Msg: m}, nil
}
