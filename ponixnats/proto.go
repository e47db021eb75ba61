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

// ProtoHandler handles the decoded messages of one batch. The indices of its
// Result refer to positions in the decoded slice (not the fetched batch);
// [ProtoProcessor] maps them back.
type ProtoHandler[T proto.Message] func(ctx context.Context, batch []Decoded[T]) (Result, error)

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
	return func(ctx context.Context, batch []jetstream.Msg) (Result, error) {
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
		hres, err := handle(ctx, decoded)
		if len(decoded) == len(batch) {
			// Nothing failed to decode: indices are identical.
			return hres, err
		}
		if err != nil {
			for _, d := range decoded {
				res.NakErr(d.Index, 0, err)
			}
			return res, nil
		}
		for j, d := range decoded {
			if dec, ok := hres.Decision(j); ok {
				res.Set(d.Index, dec)
			}
		}
		res.conflicts += hres.conflicts
		res.extra += max(0, hres.Len()-len(decoded)) + hres.extra
		return res, nil
	}
}
