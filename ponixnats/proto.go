package ponixnats

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
)

// Decoded is one message of a fetched batch decoded into T.
type Decoded[T proto.Message] struct {
	// Value is the decoded message.
	Value T
	// Msg is the original message (read-only: do not ack it yourself).
	Msg jetstream.Msg
	// Index is the position of Msg in the fetched batch.
	Index int
}

// ProtoHandler handles the decoded messages of one batch. The indices of its Result are the
// messages' positions in the fetched batch, [Decoded].Index — one index space for every
// Result — so decide with res.Ack(d.Index), never with the position in the decoded slice
// (the two differ once a message failed to decode). Decisions for indices of messages that
// did not decode are ignored: those are dead-lettered.
type ProtoHandler[T proto.Message] func(ctx context.Context, batch Batch[Decoded[T]]) (Result, error)

// ProtoOption configures [ProtoProcessor].
type ProtoOption func(*protoOptions)

type protoOptions struct {
	unmarshal proto.UnmarshalOptions
}

// WithUnmarshalOptions sets the protobuf unmarshal options.
func WithUnmarshalOptions(o proto.UnmarshalOptions) ProtoOption {
	return func(p *protoOptions) { p.unmarshal = o }
}

// ProtoProcessor returns a [Processor] that decodes every message of a batch
// with newT (which must return a fresh, empty message) and hands the decoded
// ones to handle. A message that fails to decode is never acked: it is
// dead-lettered with reason [ReasonDecode] and an error wrapping [ErrDecode],
// then terminated.
//
// If handle fails while some messages did not decode, the decoded messages are
// nak'd (with the error) and the others still dead-lettered; if all decoded,
// the error goes back to the Consumer, which naks the whole batch.
func ProtoProcessor[T proto.Message](newT func() T, handle ProtoHandler[T], opts ...ProtoOption) Processor {
	var o protoOptions
	for _, opt := range opts {
		opt(&o)
	}
	return func(ctx context.Context, msgs Batch[jetstream.Msg]) (Result, error) {
		batch := msgs.Items
		decoded := make([]Decoded[T], 0, len(batch))
		var res Result
		for i, m := range batch {
			v := newT()
			if err := o.unmarshal.Unmarshal(m.Data(), v); err != nil {
				if res.Len() == 0 {
					res = NewResult(len(batch))
				}
				res.DeadLetter(i, ReasonDecode, fmt.Errorf("%w: message on %s as %s: %w",
					ErrDecode, m.Subject(), v.ProtoReflect().Descriptor().FullName(), err))
				continue
			}
			decoded = append(decoded, Decoded[T]{Value: v, Msg: m, Index: i})
		}
		if len(decoded) == 0 {
			return res, nil
		}
		hres, err := handle(ctx, withItems(msgs, decoded))
		if len(decoded) == len(batch) {
			// Nothing failed to decode: the handler's Result is the batch's.
			return hres, err
		}
		if err != nil {
			for _, d := range decoded {
				res.Release(d.Index, 0, err)
			}
			return res, nil
		}
		for _, d := range decoded {
			if dec, ok := hres.Decision(d.Index); ok {
				res.Set(d.Index, dec)
			}
		}
		res.conflicts += hres.conflicts
		res.extra += max(0, hres.Len()-len(batch)) + hres.extra
		return res, nil
	}
}

// NewProtoStoreProcessor returns a [Processor] that decodes each message into a T made by newT
// (failures are dead-lettered with [ReasonDecode]; a [WithCheck] check runs on the raw message
// before), checks it with validate, if not nil
// (failures are dead-lettered with [ReasonInvalid]), and hands the valid ones to store in one
// call, acking them on success. Store errors are handled as [NewStoreProcessor] says: a
// [Rejection] (whose index is the position in the batch given to store) or a [RecordFault]
// dead-letters only the messages that fail alone, and a sink fault holds the batch in place
// (see [Hold]). store must be all-or-nothing.
func NewProtoStoreProcessor[T proto.Message](newT func() T, store func(context.Context, Batch[Decoded[T]]) error, validate func(T) error, opts ...StoreOption) Processor {
	o := buildStoreOptions(opts)
	var observe func(StoreAttempt[Decoded[T]])
	if o.observe != nil {
		observe = func(a StoreAttempt[Decoded[T]]) {
			msgs := make([]jetstream.Msg, a.Batch.Len())
			for i, d := range a.Batch.Items {
				msgs[i] = d.Msg
			}
			o.observe(StoreAttempt[jetstream.Msg]{Batch: withItems(a.Batch, msgs), Duration: a.Duration, Err: a.Err})
		}
	}
	held := storeStages(StoreFunc[Decoded[T]](store), o, func(d Decoded[T]) string { return msgLabel(d.Msg) }, observe)
	var valid func(Decoded[T]) (Reason, error)
	if validate != nil {
		valid = func(d Decoded[T]) (Reason, error) {
			if err := validate(d.Value); err != nil {
				return ReasonInvalid, fmt.Errorf("%s: %w", msgLabel(d.Msg), err)
			}
			return "", nil
		}
	}
	handle := func(ctx context.Context, batch Batch[Decoded[T]]) (Result, error) {
		decoded := batch.Items
		res := storeScreened(ctx, held, batch, valid)
		if last := len(decoded) - 1; last < 0 || decoded[last].Index == last {
			return res, nil // every message decoded: positions are batch indices
		}
		// The stages decide by position in decoded; the handler answers by batch index.
		out := NewResult(0)
		for j, d := range decoded {
			if dec, ok := res.Decision(j); ok {
				out.Set(d.Index, dec)
			}
		}
		return out, nil
	}
	decode := ProtoProcessor(newT, handle)
	check := o.checkMsg()
	if check == nil {
		return decode
	}
	// The check runs on the raw messages first; the others are decoded and stored.
	return func(ctx context.Context, msgs Batch[jetstream.Msg]) (Result, error) {
		res := NewResult(msgs.Len())
		pass, pos := screen(msgs, &res, check)
		if pos == nil {
			return decode(ctx, msgs)
		}
		if len(pos) == 0 {
			return res, nil
		}
		sub, err := decode(ctx, pass)
		if err != nil {
			for _, i := range pos {
				res.Release(i, 0, err)
			}
			return res, nil
		}
		merge(&res, sub, pos)
		return res, nil
	}
}
