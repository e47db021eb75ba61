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
	p := &EnvelopeProducer{js: js, base: baseSubject, msgID: EnvelopeMsgID, maxAsync: defaultMaxPending}
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
		b := newStoreBatch(batch)
		for j := len(batch) - 1; j >= 0; j-- {
			if err := ValidateEnvelope(batch[j].Value); err != nil {
				b.setAside(j, ReasonInvalid, err)
			}
		}
		return b.store(ctx, store, o.permanent)
	}
	return ProtoProcessor(func() *envelopev1.ProcessedEnvelope { return new(envelopev1.ProcessedEnvelope) }, handle, o.proto...)
}

// storeBatch is a batch on its way to a store: the items still to store and
// the decisions taken for the ones set aside.
type storeBatch[T any] struct {
	all   []T
	valid []T   // items still to store
	pos   []int // positions of valid in all; nil while nothing was set aside
	res   Result
}

func newStoreBatch[T any](all []T) *storeBatch[T] {
	return &storeBatch[T]{all: all, valid: all}
}

// setAside dead-letters item j of all (once per item, in any order).
func (b *storeBatch[T]) setAside(j int, reason Reason, err error) {
	if b.pos == nil {
		b.res = NewResult(len(b.all))
		b.valid = slices.Clone(b.all)
		b.pos = make([]int, len(b.all))
		for k := range b.pos {
			b.pos[k] = k
		}
	}
	i, _ := slices.BinarySearch(b.pos, j)
	b.res.DeadLetter(j, reason, err)
	b.valid = slices.Delete(b.valid, i, i+1)
	b.pos = slices.Delete(b.pos, i, i+1)
}

// store hands the valid items to store in one call and decides for each: ack
// on success; a [Rejection] sets the item it names aside and stores the rest
// again; a permanent error dead-letters them; any other error naks them (the
// whole batch through the consumer's error path when nothing was set aside).
func (b *storeBatch[T]) store(ctx context.Context, store func(context.Context, []T) error, permanent func(error) bool) (Result, error) {
	for len(b.valid) > 0 {
		err := store(ctx, b.valid)
		if err == nil && b.pos == nil {
			return AckAll(len(b.all)), nil
		}
		var rej Rejection
		switch {
		case err == nil:
			for _, j := range b.pos {
				b.res.Ack(j)
			}
			return b.res, nil
		case errors.As(err, &rej) && rej.RejectedIndex() >= 0 && rej.RejectedIndex() < len(b.valid):
			j := rej.RejectedIndex() // an index into valid; the same index into all while nothing was set aside
			if b.pos != nil {
				j = b.pos[j]
			}
			b.setAside(j, ReasonRejected, err)
		case permanent != nil && permanent(err):
			if b.pos == nil {
				return deadLetterAll(len(b.all), ReasonPermanent, err), nil
			}
			for _, j := range b.pos {
				b.res.DeadLetter(j, ReasonPermanent, err)
			}
			return b.res, nil
		case b.pos == nil:
			return Result{}, fmt.Errorf("storing %d envelopes: %w", len(b.valid), err)
		default:
			for _, j := range b.pos {
				b.res.NakErr(j, 0, fmt.Errorf("storing %d envelopes: %w", len(b.valid), err))
			}
			return b.res, nil
		}
	}
	return b.res, nil
}

func deadLetterAll(n int, reason Reason, err error) Result {
	res := NewResult(n)
	for j := range n {
		res.DeadLetter(j, reason, err)
	}
	return res
}

// MsgStore stores a batch of envelope messages straight from their wire bytes
// (m.Data()), all or nothing, like [EnvelopeStore].
type MsgStore func(ctx context.Context, msgs []jetstream.Msg) error

// NewEnvelopeWireProcessor is [NewEnvelopeProcessor] for stores that read the
// envelopes' wire bytes themselves, such as the ClickHouse writer's
// EnvelopeRow.Wire: it validates each message with [ValidateEnvelopeWire]
// instead of decoding it into a message value, which saves most of the CPU
// and allocations per envelope. Undecodable messages are dead-lettered with
// [ReasonDecode], invalid ones with [ReasonInvalid]; a malformed data field is
// left to the store to reject (a [Rejection]). Results, rejections, permanent
// errors and naks work as in NewEnvelopeProcessor; the store's indices refer
// to the slice it was given.
func NewEnvelopeWireProcessor(store MsgStore, opts ...EnvelopeOption) Processor {
	var o envelopeOptions
	for _, opt := range opts {
		opt(&o)
	}
	return func(ctx context.Context, batch []jetstream.Msg) (Result, error) {
		b := newStoreBatch(batch)
		for j := len(batch) - 1; j >= 0; j-- {
			if err := ValidateEnvelopeWire(batch[j].Data()); err != nil {
				reason := ReasonInvalid
				if errors.Is(err, ErrDecode) {
					reason = ReasonDecode
					err = fmt.Errorf("%w (message on %s)", err, batch[j].Subject())
				}
				b.setAside(j, reason, err)
			}
		}
		return b.store(ctx, store, o.permanent)
	}
}
