package ponixnats

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Headers set on dead-lettered messages (the original headers are kept,
// except the Nats-* ones, which steer JetStream).
const (
	HeaderDLQReason         = "Ponix-Dlq-Reason"
	HeaderDLQError          = "Ponix-Dlq-Error"
	HeaderOriginalSubject   = "Ponix-Original-Subject"
	HeaderOriginalStream    = "Ponix-Original-Stream"
	HeaderOriginalSequence  = "Ponix-Original-Sequence"
	HeaderOriginalConsumer  = "Ponix-Original-Consumer"
	HeaderNumDelivered      = "Ponix-Num-Delivered"
	HeaderOriginalTimestamp = "Ponix-Original-Timestamp"
	HeaderOriginalMsgID     = "Ponix-Original-Msg-Id"
)

// HeaderReplayCount is set on every message a replay of dead letters (see
// package github.com/ponix-go/ponix/ponixnats/dlqadmin) returns to its
// original subject: the dead letter's own count plus one. Dead-lettering
// keeps the headers of a message (except Nats-*), so a replayed message that
// fails again lands in the dead-letter stream with its replay history.
const HeaderReplayCount = "Ponix-Replay-Count"

// IsDeadLetterHeader reports whether key (in any letter case) names a header
// dead-lettering adds to a message: Ponix-Dlq-*, Ponix-Original-* or
// Ponix-Num-Delivered. A message returned from the dead-letter stream to its
// original subject drops these.
func IsDeadLetterHeader(key string) bool {
	return hasPrefixFold(key, "Ponix-Dlq-") || hasPrefixFold(key, "Ponix-Original-") ||
		strings.EqualFold(key, HeaderNumDelivered)
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// DeadLetterConfig configures the dead-letter stream of a [Consumer]. A
// message is dead-lettered to "<SubjectPrefix>.<original subject>" in a
// stream of its own; that subject must not be captured by the source stream,
// or the message would be consumed again.
type DeadLetterConfig struct {
	// Disabled turns dead-lettering off: DeadLetter decisions then only
	// terminate the message (logged at error level).
	Disabled bool
	// Stream name. Default "<source stream>_dlq".
	Stream string
	// SubjectPrefix of dead-letter subjects. Default: the Stream name.
	SubjectPrefix string
	// MaxAge of dead letters; zero means unlimited.
	MaxAge time.Duration
	// Storage of the dead-letter stream (default file).
	Storage jetstream.StorageType
	// Replicas of the dead-letter stream (default 1).
	Replicas int
	// PublishTimeout bounds one dead-letter publish (default 5s).
	PublishTimeout time.Duration
}

func (d DeadLetterConfig) withDefaults(source string) DeadLetterConfig {
	if d.Stream == "" {
		d.Stream = source + "_dlq"
	}
	if d.SubjectPrefix == "" {
		d.SubjectPrefix = d.Stream
	}
	if d.PublishTimeout <= 0 {
		d.PublishTimeout = 5 * time.Second
	}
	return d
}

// DeadLetterSubject returns the subject a message of originalSubject is
// dead-lettered to under prefix ([DeadLetterConfig].SubjectPrefix):
// "<prefix>.<originalSubject>". originalSubject may be a wildcard filter; the
// result then filters the dead letters of the subjects it matches.
func DeadLetterSubject(prefix, originalSubject string) string {
	return prefix + "." + originalSubject
}

type deadLetterer struct {
	js  jetstream.JetStream
	cfg DeadLetterConfig
	// missing is set when the dead-letter stream may have been deleted: the next publish
	// ensures it first.
	missing atomic.Bool
}

func newDeadLetterer(ctx context.Context, js jetstream.JetStream, cfg DeadLetterConfig, sourceSubjects []string) (*deadLetterer, error) {
	if err := validSubject(cfg.SubjectPrefix); err != nil {
		return nil, fmt.Errorf("%w: dead-letter SubjectPrefix: %w", ErrInvalidConfig, err)
	}
	if strings.ContainsAny(cfg.SubjectPrefix, "*>") {
		return nil, fmt.Errorf("%w: dead-letter SubjectPrefix %q must not contain wildcards", ErrInvalidConfig, cfg.SubjectPrefix)
	}
	dlqSubjects := cfg.SubjectPrefix + ".>"
	for _, s := range sourceSubjects {
		if SubjectsOverlap(s, dlqSubjects) {
			return nil, fmt.Errorf("%w: dead-letter subjects %s overlap the source stream subject %s: dead letters would be consumed again; choose another DeadLetter.SubjectPrefix",
				ErrInvalidConfig, dlqSubjects, s)
		}
	}
	d := &deadLetterer{js: js, cfg: cfg}
	if err := d.ensure(ctx); err != nil {
		return nil, err
	}
	return d, nil
}

func (d *deadLetterer) ensure(ctx context.Context) error {
	if _, err := EnsureStream(ctx, d.js, StreamConfig{
		Name:     d.cfg.Stream,
		Subjects: []string{d.cfg.SubjectPrefix + ".>"},
		Storage:  d.cfg.Storage,
		MaxAge:   d.cfg.MaxAge,
		Replicas: d.cfg.Replicas,
	}); err != nil {
		return fmt.Errorf("dead-letter stream: %w", err)
	}
	return nil
}

// reset makes the next publish ensure the dead-letter stream first (it may have been deleted
// along with the source stream).
func (d *deadLetterer) reset() { d.missing.Store(true) }

// deadLetterSource describes the original message of a dead letter.
type deadLetterSource struct {
	subject      string
	data         []byte
	header       nats.Header
	stream       string
	consumer     string
	seq          uint64
	numDelivered uint64
	timestamp    time.Time
}

// publish copies m to the dead-letter stream and waits for the stream's ack.
func (d *deadLetterer) publish(ctx context.Context, m jetstream.Msg, md *jetstream.MsgMetadata, reason Reason, cause error) error {
	return d.publishSource(ctx, deadLetterSource{
		subject: m.Subject(), data: m.Data(), header: m.Headers(),
		stream: md.Stream, consumer: md.Consumer, seq: md.Sequence.Stream,
		numDelivered: md.NumDelivered, timestamp: md.Timestamp,
	}, reason, cause)
}

// publishSource publishes the dead letter of src and waits for the stream's
// ack.
func (d *deadLetterer) publishSource(ctx context.Context, src deadLetterSource, reason Reason, cause error) error {
	h := make(nats.Header, len(src.header)+8)
	for k, v := range src.header {
		if strings.HasPrefix(k, "Nats-") {
			if k == jetstream.MsgIDHeader && len(v) > 0 {
				h.Set(HeaderOriginalMsgID, v[0])
			}
			continue
		}
		h[k] = v
	}
	h.Set(HeaderDLQReason, string(reason))
	if cause != nil {
		h.Set(HeaderDLQError, sanitizeHeader(cause.Error()))
	}
	h.Set(HeaderOriginalSubject, src.subject)
	h.Set(HeaderOriginalStream, src.stream)
	h.Set(HeaderOriginalConsumer, src.consumer)
	h.Set(HeaderOriginalSequence, strconv.FormatUint(src.seq, 10))
	h.Set(HeaderNumDelivered, strconv.FormatUint(src.numDelivered, 10))
	h.Set(HeaderOriginalTimestamp, src.timestamp.UTC().Format(time.RFC3339Nano))
	// A repeated dead-letter of the same stream message (e.g. the Term got
	// lost and the message came back) is dropped by the dead-letter stream's
	// duplicate window.
	h.Set(jetstream.MsgIDHeader, "dlq:"+src.stream+":"+strconv.FormatUint(src.seq, 10))

	pctx, cancel := context.WithTimeout(ctx, d.cfg.PublishTimeout)
	defer cancel()
	msg := &nats.Msg{Subject: DeadLetterSubject(d.cfg.SubjectPrefix, src.subject), Data: src.data, Header: h}
	if d.missing.Load() {
		if err := d.ensure(pctx); err != nil {
			return fmt.Errorf("%w: %w", ErrDeadLetter, err)
		}
		d.missing.Store(false)
	}
	_, err := d.js.PublishMsg(pctx, msg)
	if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) {
		// No stream captures the subject: the dead-letter stream was deleted. Create it again.
		if err = d.ensure(pctx); err == nil {
			_, err = d.js.PublishMsg(pctx, msg)
		}
	}
	if err != nil {
		return fmt.Errorf("%w: to stream %s: %w", ErrDeadLetter, d.cfg.Stream, err)
	}
	return nil
}

// sanitizeHeader keeps a header value on one line and bounded in size.
func sanitizeHeader(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, s)
	const maxLen = 1024
	if len(s) > maxLen {
		s = s[:maxLen] + "..."
	}
	return s
}
