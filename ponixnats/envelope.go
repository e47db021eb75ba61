//go:build !ponix_noenvelope

package ponixnats

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"

	envelopev1 "buf.build/gen/go/ponix/ponix/protocolbuffers/go/envelope/v1"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/ponix-go/ponix/envelope"
)

// EnvelopeStream is the stream of the upstream schema (ponix-rs): envelopes are published to
// "processed_envelopes.<end_device_id>".
const EnvelopeStream = "processed_envelopes"

// EnvelopeProducer publishes ProcessedEnvelopes to "<base>.<end_device_id>"
// with a Nats-Msg-Id, so that JetStream drops a republish of the same envelope
// within the stream's duplicate window.
type EnvelopeProducer struct {
	js       jetstream.JetStream
	base     string
	msgID    func(env *envelopev1.ProcessedEnvelope, data []byte) string
	maxAsync int
}

// ProducerOption configures an [EnvelopeProducer].
type ProducerOption func(*EnvelopeProducer)

// WithMsgID replaces the default Nats-Msg-Id (envelope.MsgID); return "" to publish without
// an id.
func WithMsgID(f func(env *envelopev1.ProcessedEnvelope, data []byte) string) ProducerOption {
	return func(p *EnvelopeProducer) { p.msgID = f }
}

// defaultMaxPending stays below jetstream's default PublishAsyncMaxPending
// (4000), above which PublishMsgAsync stalls and then fails.
const defaultMaxPending = 2048

// WithMaxPending bounds the asynchronous publishes in flight in PublishBatch
// (default 2048; keep it below the JetStream context's PublishAsyncMaxPending,
// 4000 by default).
func WithMaxPending(n int) ProducerOption {
	return func(p *EnvelopeProducer) {
		if n > 0 {
			p.maxAsync = n
		}
	}
}

// NewEnvelopeProducer returns a producer publishing under baseSubject
// (usually the stream name, e.g. "processed_envelopes").
func NewEnvelopeProducer(js jetstream.JetStream, baseSubject string, opts ...ProducerOption) *EnvelopeProducer {
	p := &EnvelopeProducer{js: js, base: baseSubject, msgID: envelope.MsgID, maxAsync: defaultMaxPending}
	for _, o := range opts {
		o(p)
	}
	return p
}

// Subject returns the subject an envelope is published to, or an *envelope.ValidationError
// if its end_device_id is not a valid subject token.
func (p *EnvelopeProducer) Subject(env *envelopev1.ProcessedEnvelope) (string, error) {
	return envelope.Subject(p.base, env)
}

func (p *EnvelopeProducer) message(env *envelopev1.ProcessedEnvelope) (*nats.Msg, error) {
	subj, err := p.Subject(env)
	if err != nil {
		return nil, err
	}
	data, err := proto.MarshalOptions{Deterministic: true}.Marshal(env)
	if err != nil {
		return nil, fmt.Errorf("ponixnats: encoding envelope of %s: %w", env.GetEndDeviceId(), err)
	}
	m := &nats.Msg{Subject: subj, Data: data}
	if id := p.msgID(env, data); id != "" {
		m.Header = nats.Header{jetstream.MsgIDHeader: []string{id}}
	}
	return m, nil
}

// Publish publishes one envelope and waits for the stream's ack.
func (p *EnvelopeProducer) Publish(ctx context.Context, env *envelopev1.ProcessedEnvelope) error {
	m, err := p.message(env)
	if err != nil {
		return err
	}
	if _, err := p.js.PublishMsg(ctx, m); err != nil {
		return fmt.Errorf("ponixnats: publishing envelope to %s: %w", m.Subject, err)
	}
	return nil
}

// PublishBatch publishes envelopes asynchronously and waits for all acks. It
// validates every envelope first and publishes nothing if one is invalid. On a
// failed ack it returns the first error after all acks arrived; envelopes are
// safe to republish (duplicates are dropped by Nats-Msg-Id).
func (p *EnvelopeProducer) PublishBatch(ctx context.Context, envs []*envelopev1.ProcessedEnvelope) error {
	msgs := make([]*nats.Msg, len(envs))
	for i, env := range envs {
		m, err := p.message(env)
		if err != nil {
			return fmt.Errorf("ponixnats: envelope %d of batch: %w", i, err)
		}
		msgs[i] = m
	}
	futures := make([]jetstream.PubAckFuture, 0, min(len(msgs), p.maxAsync))
	var firstErr error
	wait := func() {
		for _, f := range futures {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				if firstErr == nil {
					firstErr = fmt.Errorf("ponixnats: publishing envelope to %s: %w", f.Msg().Subject, err)
				}
			case <-ctx.Done():
				if firstErr == nil {
					firstErr = fmt.Errorf("ponixnats: waiting for publish acks: %w", ctx.Err())
				}
				return
			}
		}
		futures = futures[:0]
	}
	for _, m := range msgs {
		if len(futures) == p.maxAsync {
			wait()
		}
		if ctx.Err() != nil {
			break
		}
		f, err := p.js.PublishMsgAsync(m)
		if errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
			// The connection's own in-flight limit was reached while the server
			// was slow to ack: wait for the acks in hand, then try once more.
			wait()
			f, err = p.js.PublishMsgAsync(m)
		}
		if err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("ponixnats: publishing envelope to %s: %w", m.Subject, err)
			}
			break
		}
		futures = append(futures, f)
	}
	wait()
	if firstErr == nil && ctx.Err() != nil {
		firstErr = fmt.Errorf("ponixnats: publishing batch: %w", ctx.Err())
	}
	return firstErr
}

// EnvelopeStore stores a batch of decoded envelopes; each carries its original message
// (stream sequence, subject, headers), the batch its stream incarnation. It must store all or
// nothing: an error means none of the batch was stored.
type EnvelopeStore func(ctx context.Context, batch Batch[Decoded[*envelopev1.ProcessedEnvelope]]) error

// NewEnvelopeProcessor returns a [Processor] for ProcessedEnvelope messages: it decodes them
// (failures are dead-lettered with [ReasonDecode]), validates them with envelope.Validate
// (failures are dead-lettered with [ReasonInvalid], the error naming the message and the
// field), and hands the valid ones to store in one call, acking them on success. Store errors
// are handled as [NewStoreProcessor] says: a [Rejection] or a [RecordFault] dead-letters only
// the messages that fail alone, and a sink fault holds the batch in place (see [Hold]) — it
// never dead-letters.
func NewEnvelopeProcessor(store EnvelopeStore, opts ...StoreOption) Processor {
	return NewProtoStoreProcessor(func() *envelopev1.ProcessedEnvelope { return new(envelopev1.ProcessedEnvelope) },
		store, envelope.Validate, opts...)
}

// NewEnvelopeWireProcessor is [NewEnvelopeProcessor] for stores that read the envelopes' wire
// bytes themselves and validate them while they encode them, such as the ClickHouse writer's
// EnvelopeRow.Wire: the processor does not decode or check the messages, so each envelope's
// bytes are read once, by the store. The store refuses a message it cannot take with a
// [Rejection]; when the rejection's chain holds an error with a method DeadLetterReason() string
// (the envelope package's errors have one), the message is dead-lettered with that reason:
// [ReasonDecode] for bytes that are not an envelope, [ReasonInvalid] for an envelope that
// breaks envelope.Validate's rules; else with [ReasonRejected]. Otherwise it is
// [NewStoreProcessor].
//
// A store names one message per rejection, and the others are stored again: a batch with many
// bad envelopes would be encoded again for each. So when the store rejects an envelope for
// envelope.ValidateWire's rules, the processor checks the envelopes after it in that call with
// them too, and refuses those that fail without calling the store again (a batch without such
// an envelope, the hot path, is read once).
func NewEnvelopeWireProcessor(store MsgStore, opts ...StoreOption) Processor {
	// One Hold for every batch, as NewStoreProcessor has.
	opts = append(slices.Clip(opts), WithHold(buildStoreOptions(opts).hold))
	return func(ctx context.Context, batch Batch[jetstream.Msg]) (Result, error) {
		s := &envelopeScreen{store: store}
		return NewStoreProcessor(s.storeBatch, opts...)(ctx, batch)
	}
}

// envelopeScreen is a store wrapped for one batch: after the store rejected an envelope for the
// envelope package's rules, the envelopes after it that break them are known (bad) and refused
// in turn without calling the store.
type envelopeScreen struct {
	store MsgStore
	bad   []screenedMsg // in batch order, not yet refused
}

type screenedMsg struct {
	m   jetstream.Msg
	err error
}

func (s *envelopeScreen) storeBatch(ctx context.Context, part Batch[jetstream.Msg]) error {
	if len(s.bad) > 0 {
		// Parts keep the batch's order and lose only refused messages, so the next bad one is
		// found where it is; in a part that lacks it (a bisection's), the store decides.
		next := s.bad[0]
		for i, m := range part.Items {
			if m == next.m {
				s.bad = s.bad[1:]
				return &screenedError{index: i, err: next.err}
			}
		}
	}
	err := s.store(ctx, part)
	var rej Rejection
	if len(s.bad) == 0 && errors.As(err, &rej) && rej.RejectedIndex() >= 0 && rej.RejectedIndex() < len(part.Items) {
		if r := deadLetterReason(rej); r == ReasonDecode || r == ReasonInvalid {
			for _, m := range part.Items[rej.RejectedIndex()+1:] {
				if !reflect.TypeOf(m).Comparable() {
					break // found by ==, which would panic: the store decides
				}
				if err := envelope.ValidateWire(m.Data()); err != nil {
					s.bad = append(s.bad, screenedMsg{m: m, err: err})
				}
			}
		}
	}
	return err
}

// screenedError refuses the message at index of a part, for what envelope.ValidateWire says of
// it: the error the store gives for it.
type screenedError struct {
	index int
	err   error
}

// Error is the envelope's error.
func (e *screenedError) Error() string { return e.err.Error() }

// Unwrap returns the envelope's error.
func (e *screenedError) Unwrap() error { return e.err }

// RejectedIndex is the message's index in the part (a [Rejection]).
func (e *screenedError) RejectedIndex() int { return e.index }
