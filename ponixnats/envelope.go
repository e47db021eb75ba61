//go:build !ponixnats_noenvelope

package ponixnats

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"

	envelopev1 "buf.build/gen/go/ponix/ponix/protocolbuffers/go/envelope/v1"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
)

// ErrInvalidEnvelope matches every [*ValidationError].
var ErrInvalidEnvelope = errors.New("invalid envelope")

// ValidationError names the envelope field that is invalid and why.
type ValidationError struct {
	Field  string
	Value  string
	Reason string
}

// Error names the field, value and reason.
func (e *ValidationError) Error() string {
	return fmt.Sprintf("invalid envelope: %s %q: %s", e.Field, e.Value, e.Reason)
}

// Is matches ErrInvalidEnvelope, and ErrInvalidSubjectToken for ids that are
// not subject tokens.
func (e *ValidationError) Is(target error) bool {
	return target == ErrInvalidEnvelope || (target == ErrInvalidSubjectToken && e.Reason == reasonNotToken)
}

const reasonNotToken = "not a valid subject token (empty, or contains '.', '*', '>' or whitespace)"

// ValidateEnvelope checks what the pipeline needs of an envelope: both
// timestamps present and valid, organization_id non-empty, end_device_id a
// valid subject token. It returns a [*ValidationError] naming the field.
func ValidateEnvelope(env *envelopev1.ProcessedEnvelope) error {
	if env == nil {
		return &ValidationError{Field: "envelope", Reason: "is nil"}
	}
	if !ValidSubjectToken(env.GetEndDeviceId()) {
		return &ValidationError{Field: "end_device_id", Value: env.GetEndDeviceId(), Reason: reasonNotToken}
	}
	if env.GetOrganizationId() == "" {
		return &ValidationError{Field: "organization_id", Reason: "is empty"}
	}
	if env.GetOccurredAt() == nil {
		return &ValidationError{Field: "occurred_at", Reason: "is missing"}
	}
	if err := env.GetOccurredAt().CheckValid(); err != nil {
		return &ValidationError{Field: "occurred_at", Value: env.GetOccurredAt().String(), Reason: err.Error()}
	}
	if env.GetProcessedAt() == nil {
		return &ValidationError{Field: "processed_at", Reason: "is missing"}
	}
	if err := env.GetProcessedAt().CheckValid(); err != nil {
		return &ValidationError{Field: "processed_at", Value: env.GetProcessedAt().String(), Reason: err.Error()}
	}
	return nil
}

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

// WithMsgID replaces the default Nats-Msg-Id ([EnvelopeMsgID]); return "" to
// publish without an id.
func WithMsgID(f func(env *envelopev1.ProcessedEnvelope, data []byte) string) ProducerOption {
	return func(p *EnvelopeProducer) { p.msgID = f }
}

// WithMaxPending bounds the asynchronous publishes in flight in PublishBatch
// (default 4096).
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
	p := &EnvelopeProducer{js: js, base: baseSubject, msgID: EnvelopeMsgID, maxAsync: 4096}
	for _, o := range opts {
		o(p)
	}
	return p
}

// EnvelopeMsgID is the default Nats-Msg-Id of an envelope:
// "<organization_id>:<end_device_id>:<occurred_at unix nanos>:<fnv64a of the
// deterministic encoding>". The same envelope always gets the same id; two
// different readings of one device at the same instant get different ids.
func EnvelopeMsgID(env *envelopev1.ProcessedEnvelope, data []byte) string {
	h := fnv.New64a()
	h.Write(data)
	var sum [8]byte
	occurred := int64(0)
	if t := env.GetOccurredAt(); t != nil {
		occurred = t.GetSeconds()*1e9 + int64(t.GetNanos())
	}
	return env.GetOrganizationId() + ":" + env.GetEndDeviceId() + ":" + strconv.FormatInt(occurred, 10) + ":" +
		hex.EncodeToString(h.Sum(sum[:0]))
}

// Subject returns the subject an envelope is published to, or a
// [*ValidationError] if its end_device_id is not a valid subject token.
func (p *EnvelopeProducer) Subject(env *envelopev1.ProcessedEnvelope) (string, error) {
	if env == nil {
		return "", &ValidationError{Field: "envelope", Reason: "is nil"}
	}
	if !ValidSubjectToken(env.GetEndDeviceId()) {
		return "", &ValidationError{Field: "end_device_id", Value: env.GetEndDeviceId(), Reason: reasonNotToken}
	}
	return p.base + "." + env.GetEndDeviceId(), nil
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

// EnvelopeOption configures [NewEnvelopeProcessor].
type EnvelopeOption func(*envelopeOptions)

type envelopeOptions struct {
	permanent func(error) bool
	proto     []ProtoOption
}

// WithPermanentError classifies store errors: for an error where f returns
// true (e.g. a schema mismatch that no retry can fix) the envelopes are
// dead-lettered with [ReasonPermanent] instead of nak'd forever.
func WithPermanentError(f func(error) bool) EnvelopeOption {
	return func(o *envelopeOptions) { o.permanent = f }
}

// WithEnvelopeProtoOptions passes options to the underlying [ProtoProcessor].
func WithEnvelopeProtoOptions(opts ...ProtoOption) EnvelopeOption {
	return func(o *envelopeOptions) { o.proto = append(o.proto, opts...) }
}

// EnvelopeStore stores a batch of decoded envelopes; each carries its
// original message (stream sequence, subject, headers). It must store all or
// nothing: an error means none of the batch was stored.
type EnvelopeStore func(ctx context.Context, batch []Decoded[*envelopev1.ProcessedEnvelope]) error

// Rejection is implemented by store errors that name one envelope of the
// batch that can never be stored (e.g. a value the sink cannot represent),
// by its index in the slice given to the store. Such an envelope is
// dead-lettered with [ReasonRejected] and the rest of the batch is stored
// again without it, so one bad envelope never holds back the others.
type Rejection interface {
	error
	RejectedIndex() int
}

// NewEnvelopeProcessor returns a [Processor] for ProcessedEnvelope messages:
// it decodes them (failures are dead-lettered with [ReasonDecode]), validates
// them with [ValidateEnvelope] (failures are dead-lettered with
// [ReasonInvalid] and the field in the error), and hands the valid ones to
// store in one call. On success they are acked. A store error that is a
// [Rejection] dead-letters the envelope it names and retries the others; an
// error that [WithPermanentError] classifies as permanent dead-letters the
// batch with [ReasonPermanent]; any other error naks the batch with the
// default growing delay, so nothing is lost.
func NewEnvelopeProcessor(store EnvelopeStore, opts ...EnvelopeOption) Processor {
	var o envelopeOptions
	for _, opt := range opts {
		opt(&o)
	}
	handle := func(ctx context.Context, batch []Decoded[*envelopev1.ProcessedEnvelope]) (Result, error) {
		valid := batch
		var pos []int // positions of valid in batch, once some were set aside
		var res Result
		setAside := func() {
			if pos == nil {
				res = NewResult(len(batch))
				valid = slices.Clone(batch)
				pos = make([]int, len(batch))
				for j := range pos {
					pos[j] = j
				}
			}
		}
		for j := len(batch) - 1; j >= 0; j-- {
			if err := ValidateEnvelope(batch[j].Value); err != nil {
				setAside()
				res.DeadLetter(j, ReasonInvalid, err)
				valid = slices.Delete(valid, j, j+1)
				pos = slices.Delete(pos, j, j+1)
			}
		}
		for len(valid) > 0 {
			err := store(ctx, valid)
			if err == nil && pos == nil {
				return AckAll(len(batch)), nil
			}
			var rej Rejection
			switch {
			case err == nil:
				for _, j := range pos {
					res.Ack(j)
				}
				return res, nil
			case errors.As(err, &rej) && rej.RejectedIndex() >= 0 && rej.RejectedIndex() < len(valid):
				i := rej.RejectedIndex()
				setAside()
				res.DeadLetter(pos[i], ReasonRejected, err)
				valid = slices.Delete(valid, i, i+1)
				pos = slices.Delete(pos, i, i+1)
			case o.permanent != nil && o.permanent(err):
				setAside()
				for _, j := range pos {
					res.DeadLetter(j, ReasonPermanent, err)
				}
				return res, nil
			case pos == nil:
				return Result{}, fmt.Errorf("storing %d envelopes: %w", len(valid), err)
			default:
				for _, j := range pos {
					res.NakErr(j, 0, fmt.Errorf("storing %d envelopes: %w", len(valid), err))
				}
				return res, nil
			}
		}
		return res, nil
	}
	return ProtoProcessor(func() *envelopev1.ProcessedEnvelope { return new(envelopev1.ProcessedEnvelope) }, handle, o.proto...)
}
