package dlqadmin

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ponix-go/ponix/ponixnats"
)

// Iteration tuning: messages buffered by the reading consumer, how long a read
// waits before it asks the server whether anything is left, and how long the
// server keeps the reading consumer after the client vanished.
const (
	scanBuffer            = 500
	scanIdleWait          = 2 * time.Second
	scanInactiveThreshold = 30 * time.Second
	scanMaxIdle           = 15 // idle waits in a row before a scan gives up
)

// DeadLetter is one message of a dead-letter stream.
type DeadLetter struct {
	// Sequence of the dead letter in the dead-letter stream.
	Sequence uint64
	// Subject in the dead-letter stream ("<prefix>.<original subject>").
	Subject string
	// Time the dead letter was stored, i.e. when the message was
	// dead-lettered.
	Time time.Time
	// Header holds every header of the dead letter: the original message's
	// (except Nats-*) and the Ponix-Dlq-* / Ponix-Original-* ones.
	Header nats.Header
	// Data are the original message bytes (empty when read headers-only).
	Data []byte
}

// Reason is the Ponix-Dlq-Reason header: why the message was dead-lettered.
func (d DeadLetter) Reason() ponixnats.Reason {
	return ponixnats.Reason(d.Header.Get(ponixnats.HeaderDLQReason))
}

// Cause is the Ponix-Dlq-Error header: the error that dead-lettered the
// message, if any.
func (d DeadLetter) Cause() string { return d.Header.Get(ponixnats.HeaderDLQError) }

// OriginalSubject is the Ponix-Original-Subject header: where the message was
// published, and where a replay returns it.
func (d DeadLetter) OriginalSubject() string { return d.Header.Get(ponixnats.HeaderOriginalSubject) }

// OriginalStream is the Ponix-Original-Stream header.
func (d DeadLetter) OriginalStream() string { return d.Header.Get(ponixnats.HeaderOriginalStream) }

// OriginalSequence is the Ponix-Original-Sequence header (0 when absent).
func (d DeadLetter) OriginalSequence() uint64 {
	n, _ := strconv.ParseUint(d.Header.Get(ponixnats.HeaderOriginalSequence), 10, 64)
	return n
}

// OriginalTime is the Ponix-Original-Timestamp header: when the original
// message was stored in its stream. It is the zero time when absent or
// malformed.
func (d DeadLetter) OriginalTime() time.Time {
	t, err := time.Parse(time.RFC3339Nano, d.Header.Get(ponixnats.HeaderOriginalTimestamp))
	if err != nil {
		return time.Time{}
	}
	return t
}

// ReplayCount is the Ponix-Replay-Count header: how many times the message
// was replayed before it was dead-lettered this time (0 when absent).
func (d DeadLetter) ReplayCount() int {
	n, err := strconv.Atoi(d.Header.Get(ponixnats.HeaderReplayCount))
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// Filter selects dead letters. Every set criterion must hold; the zero Filter
// selects all.
type Filter struct {
	// Reasons selects dead letters with any of these Ponix-Dlq-Reason values.
	Reasons []ponixnats.Reason
	// Subjects selects dead letters whose original subject
	// (Ponix-Original-Subject) matches any of these patterns; the NATS
	// wildcards '*' (one token) and '>' (one or more trailing tokens) work.
	Subjects []string
	// Since and Until bound the dead-lettering time (when the dead letter was
	// stored in the dead-letter stream): Since <= time < Until. A zero value
	// is unbounded.
	Since, Until time.Time
	// OriginalSince and OriginalUntil bound the original message's time
	// (Ponix-Original-Timestamp, when it was stored in its own stream) the
	// same way. Dead letters without that header never match them.
	OriginalSince, OriginalUntil time.Time
	// FromSeq and ToSeq bound the sequence in the dead-letter stream,
	// inclusive; 0 is unbounded.
	FromSeq, ToSeq uint64
	// Limit is the most dead letters selected (the first ones in stream
	// order); 0 is unlimited.
	Limit int
}

// Validate reports a malformed filter: a bad subject pattern, an empty time
// or sequence range, a negative limit. The error wraps [ponixnats.ErrInvalidConfig].
func (f Filter) Validate() error {
	for _, s := range f.Subjects {
		if err := ponixnats.ValidateSubject(s); err != nil {
			return fmt.Errorf("%w: dead-letter filter: %w", ponixnats.ErrInvalidConfig, err)
		}
	}
	for _, r := range f.Reasons {
		if r == "" {
			return fmt.Errorf("%w: dead-letter filter: empty reason", ponixnats.ErrInvalidConfig)
		}
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Since.Before(f.Until) {
		return fmt.Errorf("%w: dead-letter filter: since (%s) must be before until (%s)", ponixnats.ErrInvalidConfig,
			f.Since.Format(time.RFC3339), f.Until.Format(time.RFC3339))
	}
	if !f.OriginalSince.IsZero() && !f.OriginalUntil.IsZero() && !f.OriginalSince.Before(f.OriginalUntil) {
		return fmt.Errorf("%w: dead-letter filter: original since (%s) must be before original until (%s)", ponixnats.ErrInvalidConfig,
			f.OriginalSince.Format(time.RFC3339), f.OriginalUntil.Format(time.RFC3339))
	}
	if f.ToSeq > 0 && f.FromSeq > f.ToSeq {
		return fmt.Errorf("%w: dead-letter filter: from-seq %d is after to-seq %d", ponixnats.ErrInvalidConfig, f.FromSeq, f.ToSeq)
	}
	if f.Limit < 0 {
		return fmt.Errorf("%w: dead-letter filter: negative limit %d", ponixnats.ErrInvalidConfig, f.Limit)
	}
	return nil
}

// Match reports whether d satisfies every criterion except Limit.
func (f Filter) Match(d DeadLetter) bool {
	if f.FromSeq > 0 && d.Sequence < f.FromSeq || f.ToSeq > 0 && d.Sequence > f.ToSeq {
		return false
	}
	if !f.Since.IsZero() && d.Time.Before(f.Since) || !f.Until.IsZero() && !d.Time.Before(f.Until) {
		return false
	}
	if len(f.Reasons) > 0 {
		r, ok := d.Reason(), false
		for _, want := range f.Reasons {
			if r == want {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	if len(f.Subjects) > 0 {
		s, ok := d.OriginalSubject(), false
		for _, p := range f.Subjects {
			if s != "" && subjectMatches(p, s) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	if !f.OriginalSince.IsZero() || !f.OriginalUntil.IsZero() {
		t := d.OriginalTime()
		if t.IsZero() || !f.OriginalSince.IsZero() && t.Before(f.OriginalSince) || !f.OriginalUntil.IsZero() && !t.Before(f.OriginalUntil) {
			return false
		}
	}
	return true
}

// subjectMatches reports whether subject matches pattern, where pattern may
// hold the NATS wildcards '*' (exactly one token) and '>' (one or more
// tokens, last token only).
func subjectMatches(pattern, subject string) bool {
	for {
		p, prest, pmore := strings.Cut(pattern, ".")
		if p == ">" {
			return subject != ""
		}
		s, srest, smore := strings.Cut(subject, ".")
		if s == "" || (p != "*" && p != s) {
			return false
		}
		if !pmore || !smore {
			return pmore == smore
		}
		pattern, subject = prest, srest
	}
}

// Summary counts the dead letters a [Filter] selects.
type Summary struct {
	// Total dead letters selected.
	Total int
	// ByReason counts them per Ponix-Dlq-Reason.
	ByReason map[ponixnats.Reason]int
	// BySubject counts them per original subject (Ponix-Original-Subject;
	// "" for dead letters without it).
	BySubject map[string]int
	// Oldest and Newest are the earliest and latest dead-lettering times
	// (zero when Total is 0).
	Oldest, Newest time.Time
	// FirstSeq and LastSeq are the lowest and highest dead-letter stream
	// sequences selected (0 when Total is 0).
	FirstSeq, LastSeq uint64
}

// Stream reads and replays an existing dead-letter stream, such as the one a
// [ponixnats.Consumer] writes (see [ponixnats.DeadLetterConfig]). It works on
// any stream whose messages carry the Ponix-Dlq-* and Ponix-Original-*
// headers.
//
// Reading (Get, All, Summary) is read-only: it uses direct message gets and
// ordered consumers (ephemeral, in memory, acknowledgement-free, deleted when
// done), so it creates no durable state and never disturbs the service's own
// consumers. Every scan covers the dead letters present when it starts;
// dead letters added meanwhile are left for the next call.
//
// A Stream is safe for concurrent use.
type Stream struct {
	js      jetstream.JetStream
	stream  jetstream.Stream
	name    string
	prefix  string // the subject prefix when the stream captures exactly "<prefix>.>"
	created time.Time
	cfg     jetstream.StreamConfig
}

// Open opens the existing dead-letter stream named stream (e.g.
// "processed_envelopes_dlq"). It fails, matching jetstream.ErrStreamNotFound,
// when there is no such stream, and with a [*ponixnats.JetStreamNotEnabledError]
// (matching jetstream.ErrJetStreamNotEnabled) when the server does not have
// JetStream.
func Open(ctx context.Context, js jetstream.JetStream, stream string) (*Stream, error) {
	if !ponixnats.ValidName(stream) {
		return nil, fmt.Errorf("dlqadmin: %w: dead-letter stream name %q is not a valid name", ponixnats.ErrInvalidConfig, stream)
	}
	st, err := js.Stream(ctx, stream)
	if err != nil {
		if jsErr := ponixnats.JetStreamNotEnabled(js.Conn(), err); jsErr != nil {
			return nil, jsErr
		}
		return nil, fmt.Errorf("dlqadmin: opening dead-letter stream %s: %w", stream, err)
	}
	info := st.CachedInfo()
	d := &Stream{js: js, stream: st, name: stream, created: info.Created, cfg: info.Config}
	if subs := info.Config.Subjects; len(subs) == 1 {
		if p, ok := strings.CutSuffix(subs[0], ".>"); ok && !strings.ContainsAny(p, "*>") {
			d.prefix = p
		}
	}
	return d, nil
}

// Name returns the name of the dead-letter stream.
func (d *Stream) Name() string { return d.name }

// ReplayMsgID returns the Nats-Msg-Id [Stream.Replay] gives the message
// it republishes for the dead letter at seq: derived from the dead-letter
// stream's name, its creation time and seq, so the same dead letter always
// gets the same id and two dead letters never share one (not even across a
// re-created dead-letter stream).
func (d *Stream) ReplayMsgID(seq uint64) string {
	id := "ponix-replay:" + d.name + ":"
	if !d.created.IsZero() {
		id += strconv.FormatInt(d.created.UnixNano(), 10) + ":"
	}
	return id + strconv.FormatUint(seq, 10)
}

// Get returns the dead letter at sequence seq. It fails, matching
// jetstream.ErrMsgNotFound, when there is none (never stored, deleted or
// replayed).
func (d *Stream) Get(ctx context.Context, seq uint64) (DeadLetter, error) {
	raw, err := d.stream.GetMsg(ctx, seq)
	if err != nil {
		return DeadLetter{}, fmt.Errorf("dlqadmin: dead letter %d in stream %s: %w", seq, d.name, err)
	}
	return DeadLetter{Sequence: raw.Sequence, Subject: raw.Subject, Time: raw.Time, Header: raw.Header, Data: raw.Data}, nil
}

// All iterates over the dead letters f selects, in stream order, without
// consuming or changing anything. An error ends the iteration: it is yielded
// once, with a zero DeadLetter.
func (d *Stream) All(ctx context.Context, f Filter) iter.Seq2[DeadLetter, error] {
	return func(yield func(DeadLetter, error) bool) {
		if err := d.scan(ctx, f, false, func(dl DeadLetter) (bool, error) { return yield(dl, nil), nil }); err != nil {
			yield(DeadLetter{}, err)
		}
	}
}

// Summary counts the dead letters f selects by reason and original subject,
// with their time and sequence span. It reads headers only.
func (d *Stream) Summary(ctx context.Context, f Filter) (Summary, error) {
	s := Summary{ByReason: map[ponixnats.Reason]int{}, BySubject: map[string]int{}}
	err := d.scan(ctx, f, true, func(dl DeadLetter) (bool, error) {
		s.Total++
		s.ByReason[dl.Reason()]++
		s.BySubject[dl.OriginalSubject()]++
		if s.Oldest.IsZero() || dl.Time.Before(s.Oldest) {
			s.Oldest = dl.Time
		}
		if dl.Time.After(s.Newest) {
			s.Newest = dl.Time
		}
		if s.FirstSeq == 0 {
			s.FirstSeq = dl.Sequence
		}
		s.LastSeq = dl.Sequence
		return true, nil
	})
	return s, err
}

// scan calls fn for each dead letter f selects, in stream order, until fn
// returns false or an error. It reads through an ordered consumer (ephemeral,
// memory storage, no acks) that it deletes when done, and stops at the last
// sequence the stream held when scan started.
func (d *Stream) scan(ctx context.Context, f Filter, headersOnly bool, fn func(DeadLetter) (bool, error)) error {
	if err := f.Validate(); err != nil {
		return fmt.Errorf("dlqadmin: %w", err)
	}
	info, err := d.stream.Info(ctx)
	if err != nil {
		return fmt.Errorf("dlqadmin: stream %s info: %w", d.name, err)
	}
	st := info.State
	if st.Msgs == 0 {
		return nil
	}
	end := st.LastSeq
	if f.ToSeq > 0 && f.ToSeq < end {
		end = f.ToSeq
	}
	start := max(f.FromSeq, st.FirstSeq, 1)
	if start > end {
		return nil
	}

	cfg := jetstream.OrderedConsumerConfig{
		FilterSubjects:    d.serverFilter(f.Subjects),
		HeadersOnly:       headersOnly,
		InactiveThreshold: scanInactiveThreshold,
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       start,
	}
	if f.FromSeq == 0 && !f.Since.IsZero() {
		t := f.Since
		cfg.DeliverPolicy, cfg.OptStartSeq, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, 0, &t
	}
	cons, err := d.js.OrderedConsumer(ctx, d.name, cfg)
	if err != nil {
		return fmt.Errorf("dlqadmin: reading stream %s: %w", d.name, err)
	}
	defer d.dropConsumer(ctx, cons)
	if ci := cons.CachedInfo(); ci != nil && ci.NumPending == 0 {
		return nil // nothing from the start position on matches the server-side filter
	}
	msgs, err := cons.Messages(jetstream.PullMaxMessages(scanBuffer))
	if err != nil {
		return fmt.Errorf("dlqadmin: reading stream %s: %w", d.name, err)
	}
	defer msgs.Stop()

	var lastSeen uint64
	selected, idle := 0, 0
	for {
		nctx, cancel := context.WithTimeout(ctx, scanIdleWait)
		m, err := msgs.Next(jetstream.NextContext(nctx))
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) {
				// Nothing arrived for a while: done if the server has nothing
				// left for us (matching messages may have been deleted or aged
				// out since the scan started).
				ci, ierr := cons.Info(ctx)
				if ierr == nil && ci.NumPending == 0 && ci.Delivered.Stream <= max(lastSeen, start-1) {
					return nil
				}
				if idle++; idle >= scanMaxIdle {
					return fmt.Errorf("dlqadmin: reading stream %s: no progress for %s (last consumer info error: %v)",
						d.name, scanMaxIdle*scanIdleWait, ierr)
				}
				continue
			}
			return fmt.Errorf("dlqadmin: reading stream %s: %w", d.name, err)
		}
		md, err := m.Metadata()
		if err != nil {
			return fmt.Errorf("dlqadmin: reading stream %s: %w", d.name, err)
		}
		idle = 0
		seq := md.Sequence.Stream
		if seq > end {
			return nil
		}
		lastSeen = seq
		dl := DeadLetter{Sequence: seq, Subject: m.Subject(), Time: md.Timestamp, Header: m.Headers(), Data: m.Data()}
		if headersOnly {
			dl.Data = nil
		}
		if f.Match(dl) {
			more, err := fn(dl)
			if err != nil {
				return err
			}
			selected++
			if !more || (f.Limit > 0 && selected >= f.Limit) {
				return nil
			}
		}
		if seq >= end || md.NumPending == 0 {
			return nil
		}
	}
}

// serverFilter turns original-subject patterns into filter subjects of the
// dead-letter stream, so that the server sends only candidates; nil (read
// everything, filter here) when the stream's subject prefix is unknown or
// the patterns overlap (JetStream refuses overlapping filters).
func (d *Stream) serverFilter(patterns []string) []string {
	if d.prefix == "" || len(patterns) == 0 {
		return nil
	}
	out := make([]string, 0, len(patterns))
	for i, p := range patterns {
		for _, q := range patterns[:i] {
			if ponixnats.SubjectsOverlap(p, q) {
				return nil
			}
		}
		out = append(out, ponixnats.DeadLetterSubject(d.prefix, p))
	}
	return out
}

// dropConsumer deletes the ordered consumer's current server-side consumer
// (it would otherwise linger until its inactive threshold).
func (d *Stream) dropConsumer(ctx context.Context, cons jetstream.Consumer) {
	ci := cons.CachedInfo()
	if ci == nil {
		return
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	_ = d.js.DeleteConsumer(dctx, d.name, ci.Name)
}
