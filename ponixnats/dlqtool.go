package ponixnats

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// HeaderReplayCount is set on every message [DeadLetters.Replay] returns to
// its original subject: the dead letter's own count plus one. Dead-lettering
// keeps the headers of a message (except Nats-*), so a replayed message that
// fails again lands in the dead-letter stream with its replay history.
const HeaderReplayCount = "Ponix-Replay-Count"

// Defaults of [ReplayOptions].
const (
	DefaultReplayPublishTimeout = 5 * time.Second
	DefaultReplayMaxFailures    = 10
)

// ErrReplayIncomplete: some dead letters matched by a replay could not be
// returned (or not removed from the dead-letter stream) and are still there.
// Replay errors wrap it; [ReplayStats].Failures says which and why.
var ErrReplayIncomplete = errors.New("replay incomplete: dead letters left in the dead-letter stream")

// Prefixes of the headers dead-lettering adds; [DeadLetters.Replay] removes
// them (and Nats-*, which steer JetStream) before republishing.
const (
	dlqHeaderPrefix      = "Ponix-Dlq-"
	originalHeaderPrefix = "Ponix-Original-"
	natsHeaderPrefix     = "Nats-"
)

// Iteration tuning: messages buffered by the reading consumer, how long a read
// waits before it asks the server whether anything is left, and how long the
// server keeps the reading consumer after the client vanished.
const (
	scanBuffer            = 500
	scanIdleWait          = 2 * time.Second
	scanInactiveThreshold = 30 * time.Second
	scanMaxIdle           = 15 // idle waits in a row before a scan gives up
	maxRecordedFailures   = 100
	paceSlack             = 100 * time.Millisecond // lateness Rate pacing makes up for
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

// Reason is the Ponix-Dlq-Reason header.
func (d DeadLetter) Reason() Reason { return Reason(d.Header.Get(HeaderDLQReason)) }

// Cause is the Ponix-Dlq-Error header: the error that dead-lettered the
// message, if any.
func (d DeadLetter) Cause() string { return d.Header.Get(HeaderDLQError) }

// OriginalSubject is the Ponix-Original-Subject header: where the message was
// published, and where a replay returns it.
func (d DeadLetter) OriginalSubject() string { return d.Header.Get(HeaderOriginalSubject) }

// OriginalStream is the Ponix-Original-Stream header.
func (d DeadLetter) OriginalStream() string { return d.Header.Get(HeaderOriginalStream) }

// OriginalSequence is the Ponix-Original-Sequence header (0 when absent).
func (d DeadLetter) OriginalSequence() uint64 {
	n, _ := strconv.ParseUint(d.Header.Get(HeaderOriginalSequence), 10, 64)
	return n
}

// OriginalTime is the Ponix-Original-Timestamp header: when the original
// message was stored in its stream. It is the zero time when absent or
// malformed.
func (d DeadLetter) OriginalTime() time.Time {
	t, err := time.Parse(time.RFC3339Nano, d.Header.Get(HeaderOriginalTimestamp))
	if err != nil {
		return time.Time{}
	}
	return t
}

// ReplayCount is the Ponix-Replay-Count header: how many times the message
// was replayed before it was dead-lettered this time (0 when absent).
func (d DeadLetter) ReplayCount() int {
	n, err := strconv.Atoi(d.Header.Get(HeaderReplayCount))
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// Filter selects dead letters. Every set criterion must hold; the zero Filter
// selects all.
type Filter struct {
	// Reasons selects dead letters with any of these Ponix-Dlq-Reason values.
	Reasons []Reason
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
// or sequence range, a negative limit. The error wraps [ErrInvalidConfig].
func (f Filter) Validate() error {
	for _, s := range f.Subjects {
		if err := validSubject(s); err != nil {
			return fmt.Errorf("%w: dead-letter filter: %w", ErrInvalidConfig, err)
		}
	}
	for _, r := range f.Reasons {
		if r == "" {
			return fmt.Errorf("%w: dead-letter filter: empty reason", ErrInvalidConfig)
		}
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Since.Before(f.Until) {
		return fmt.Errorf("%w: dead-letter filter: since (%s) must be before until (%s)", ErrInvalidConfig,
			f.Since.Format(time.RFC3339), f.Until.Format(time.RFC3339))
	}
	if !f.OriginalSince.IsZero() && !f.OriginalUntil.IsZero() && !f.OriginalSince.Before(f.OriginalUntil) {
		return fmt.Errorf("%w: dead-letter filter: original since (%s) must be before original until (%s)", ErrInvalidConfig,
			f.OriginalSince.Format(time.RFC3339), f.OriginalUntil.Format(time.RFC3339))
	}
	if f.ToSeq > 0 && f.FromSeq > f.ToSeq {
		return fmt.Errorf("%w: dead-letter filter: from-seq %d is after to-seq %d", ErrInvalidConfig, f.FromSeq, f.ToSeq)
	}
	if f.Limit < 0 {
		return fmt.Errorf("%w: dead-letter filter: negative limit %d", ErrInvalidConfig, f.Limit)
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
	ByReason map[Reason]int
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

// DeadLetters reads and replays an existing dead-letter stream, such as the
// one a [Consumer] writes (see [DeadLetterConfig]). It works on any stream
// whose messages carry the Ponix-Dlq-* and Ponix-Original-* headers.
//
// Reading (Get, All, Summary) is read-only: it uses direct message gets and
// ordered consumers (ephemeral, in memory, acknowledgement-free, deleted when
// done), so it creates no durable state and never disturbs the service's own
// consumers. Every scan covers the dead letters present when it starts;
// dead letters added meanwhile are left for the next call.
//
// A DeadLetters is safe for concurrent use.
type DeadLetters struct {
	js      jetstream.JetStream
	stream  jetstream.Stream
	name    string
	prefix  string // the subject prefix when the stream captures exactly "<prefix>.>"
	created time.Time
	cfg     jetstream.StreamConfig
}

// OpenDeadLetters opens the existing dead-letter stream named stream (e.g.
// "processed_envelopes_dlq"). It fails, matching jetstream.ErrStreamNotFound,
// when there is no such stream, and with a [*JetStreamNotEnabledError]
// (matching jetstream.ErrJetStreamNotEnabled) when the server does not have
// JetStream.
func OpenDeadLetters(ctx context.Context, js jetstream.JetStream, stream string) (*DeadLetters, error) {
	if !ValidName(stream) {
		return nil, fmt.Errorf("ponixnats: dead letters: %w: stream name %q is not a valid name", ErrInvalidConfig, stream)
	}
	st, err := js.Stream(ctx, stream)
	if err != nil {
		if jsErr := jetStreamNotEnabled(js.Conn(), err); jsErr != nil {
			return nil, jsErr
		}
		return nil, fmt.Errorf("ponixnats: dead letters: opening stream %s: %w", stream, err)
	}
	info := st.CachedInfo()
	d := &DeadLetters{js: js, stream: st, name: stream, created: info.Created, cfg: info.Config}
	if subs := info.Config.Subjects; len(subs) == 1 {
		if p, ok := strings.CutSuffix(subs[0], ".>"); ok && !strings.ContainsAny(p, "*>") {
			d.prefix = p
		}
	}
	return d, nil
}

// Stream returns the name of the dead-letter stream.
func (d *DeadLetters) Stream() string { return d.name }

// ReplayMsgID returns the Nats-Msg-Id [DeadLetters.Replay] gives the message
// it republishes for the dead letter at seq: derived from the dead-letter
// stream's name, its creation time and seq, so the same dead letter always
// gets the same id and two dead letters never share one (not even across a
// re-created dead-letter stream).
func (d *DeadLetters) ReplayMsgID(seq uint64) string {
	id := "ponix-replay:" + d.name + ":"
	if !d.created.IsZero() {
		id += strconv.FormatInt(d.created.UnixNano(), 10) + ":"
	}
	return id + strconv.FormatUint(seq, 10)
}

// Get returns the dead letter at sequence seq. It fails, matching
// jetstream.ErrMsgNotFound, when there is none (never stored, deleted or
// replayed).
func (d *DeadLetters) Get(ctx context.Context, seq uint64) (DeadLetter, error) {
	raw, err := d.stream.GetMsg(ctx, seq)
	if err != nil {
		return DeadLetter{}, fmt.Errorf("ponixnats: dead letter %d in stream %s: %w", seq, d.name, err)
	}
	return DeadLetter{Sequence: raw.Sequence, Subject: raw.Subject, Time: raw.Time, Header: raw.Header, Data: raw.Data}, nil
}

// All iterates over the dead letters f selects, in stream order, without
// consuming or changing anything. An error ends the iteration: it is yielded
// once, with a zero DeadLetter.
func (d *DeadLetters) All(ctx context.Context, f Filter) iter.Seq2[DeadLetter, error] {
	return func(yield func(DeadLetter, error) bool) {
		if err := d.scan(ctx, f, false, func(dl DeadLetter) (bool, error) { return yield(dl, nil), nil }); err != nil {
			yield(DeadLetter{}, err)
		}
	}
}

// Summary counts the dead letters f selects by reason and original subject,
// with their time and sequence span. It reads headers only.
func (d *DeadLetters) Summary(ctx context.Context, f Filter) (Summary, error) {
	s := Summary{ByReason: map[Reason]int{}, BySubject: map[string]int{}}
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
func (d *DeadLetters) scan(ctx context.Context, f Filter, headersOnly bool, fn func(DeadLetter) (bool, error)) error {
	if err := f.Validate(); err != nil {
		return fmt.Errorf("ponixnats: %w", err)
	}
	info, err := d.stream.Info(ctx)
	if err != nil {
		return fmt.Errorf("ponixnats: dead letters: stream %s info: %w", d.name, err)
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
		return fmt.Errorf("ponixnats: dead letters: reading stream %s: %w", d.name, err)
	}
	defer d.dropConsumer(ctx, cons)
	if ci := cons.CachedInfo(); ci != nil && ci.NumPending == 0 {
		return nil // nothing from the start position on matches the server-side filter
	}
	msgs, err := cons.Messages(jetstream.PullMaxMessages(scanBuffer))
	if err != nil {
		return fmt.Errorf("ponixnats: dead letters: reading stream %s: %w", d.name, err)
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
					return fmt.Errorf("ponixnats: dead letters: reading stream %s: no progress for %s (last consumer info error: %v)",
						d.name, scanMaxIdle*scanIdleWait, ierr)
				}
				continue
			}
			return fmt.Errorf("ponixnats: dead letters: reading stream %s: %w", d.name, err)
		}
		md, err := m.Metadata()
		if err != nil {
			return fmt.Errorf("ponixnats: dead letters: reading stream %s: %w", d.name, err)
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
func (d *DeadLetters) serverFilter(patterns []string) []string {
	if d.prefix == "" || len(patterns) == 0 {
		return nil
	}
	out := make([]string, 0, len(patterns))
	for i, p := range patterns {
		for _, q := range patterns[:i] {
			if subjectsOverlap(p, q) {
				return nil
			}
		}
		out = append(out, deadLetterSubject(d.prefix, p))
	}
	return out
}

// dropConsumer deletes the ordered consumer's current server-side consumer
// (it would otherwise linger until its inactive threshold).
func (d *DeadLetters) dropConsumer(ctx context.Context, cons jetstream.Consumer) {
	ci := cons.CachedInfo()
	if ci == nil {
		return
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	_ = d.js.DeleteConsumer(dctx, d.name, ci.Name)
}

// ReplayOptions configure [DeadLetters.Replay]. Zero values take the defaults
// noted per field.
type ReplayOptions struct {
	// DryRun selects and counts (Matched) and reports each dead letter to
	// Progress with [OutcomeDryRun], and changes nothing.
	DryRun bool
	// Limit is the most dead letters handled; 0 means the filter's Limit.
	// When both are set the smaller wins.
	Limit int
	// Rate bounds the dead letters handled per second (0: as fast as the
	// servers answer), so that a large replay does not flood the consumers
	// of the original stream.
	Rate float64
	// Progress, if set, is called after each dead letter, in the replaying
	// goroutine; keep it quick (e.g. print a line every second).
	Progress func(ReplayProgress)
	// PublishTimeout bounds each publish and each delete. Default
	// [DefaultReplayPublishTimeout].
	PublishTimeout time.Duration
	// MaxFailures stops the replay after this many failed dead letters.
	// Default [DefaultReplayMaxFailures]; negative means never stop.
	MaxFailures int
	// Logger receives one line per original stream with its duplicate window
	// (at warn level when the window is short) and one per failure. Default
	// slog.Default().
	Logger *slog.Logger
}

func (o ReplayOptions) withDefaults() ReplayOptions {
	if o.PublishTimeout <= 0 {
		o.PublishTimeout = DefaultReplayPublishTimeout
	}
	if o.MaxFailures == 0 {
		o.MaxFailures = DefaultReplayMaxFailures
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Outcome is what a replay did with one dead letter.
type Outcome uint8

// Outcomes of one dead letter.
const (
	// OutcomeReplayed: published to its original subject, stored as a new
	// message, and deleted from the dead-letter stream.
	OutcomeReplayed Outcome = iota + 1
	// OutcomeDuplicate: published, but the original stream already held
	// the message (its PubAck said duplicate: an earlier, interrupted replay
	// had published it), and deleted from the dead-letter stream.
	OutcomeDuplicate
	// OutcomeFailed: not published, or published but not deleted; the dead
	// letter is still in the dead-letter stream.
	OutcomeFailed
	// OutcomeDryRun: selected by a dry run; nothing was changed.
	OutcomeDryRun
)

// String returns the lower-case name of the outcome.
func (o Outcome) String() string {
	switch o {
	case OutcomeReplayed:
		return "replayed"
	case OutcomeDuplicate:
		return "duplicate"
	case OutcomeFailed:
		return "failed"
	case OutcomeDryRun:
		return "dry_run"
	}
	return "unknown"
}

// ReplayProgress reports one dead letter handled by a replay.
type ReplayProgress struct {
	// DeadLetter just handled.
	DeadLetter DeadLetter
	// Outcome for it.
	Outcome Outcome
	// Err is why it failed (OutcomeFailed only).
	Err error
	// Stats so far (including this dead letter).
	Stats ReplayStats
}

// ReplayFailure names a dead letter a replay left in place, and why.
type ReplayFailure struct {
	// Sequence of the dead letter in the dead-letter stream.
	Sequence uint64
	// Err says why it was not replayed (or not deleted).
	Err error
}

// ReplayStats count what a replay did. Every dead letter it selected counts
// in Matched. Unless it was a dry run, each one whose publish was
// acknowledged counts in Replayed or Duplicates; Deleted counts the ones then
// removed from the dead-letter stream; Failed counts the ones left there
// (not published, or published but not deleted). So Matched = Deleted +
// Failed, and Replayed + Duplicates = Deleted + (published but not deleted).
type ReplayStats struct {
	Matched    int // dead letters selected
	Replayed   int // published and stored as new messages in their original streams
	Duplicates int // published, but already stored by an earlier, interrupted replay (PubAck.Duplicate)
	Deleted    int // removed from the dead-letter stream after their publish was acknowledged
	Failed     int // left in the dead-letter stream
	// Failures lists the first failed dead letters (at most 100).
	Failures []ReplayFailure
	// DuplicateWindows holds the duplicate window of each original stream
	// replayed into (see [DeadLetters.Replay] for why it matters).
	DuplicateWindows map[string]time.Duration
	// Elapsed is the replay's duration.
	Elapsed time.Duration
}

// Replay returns the dead letters f selects to their original subjects, in
// dead-letter stream order, and deletes each from the dead-letter stream once
// its original stream has acknowledged it. For each dead letter it:
//
//  1. publishes the original bytes to the original subject
//     (Ponix-Original-Subject), expecting the original stream
//     (Ponix-Original-Stream), with the dead letter's headers minus
//     Ponix-Dlq-*, Ponix-Original-*, Ponix-Num-Delivered and Nats-*, plus
//     [HeaderReplayCount] (the dead letter's count + 1) and the Nats-Msg-Id
//     [DeadLetters.ReplayMsgID] (never the original message's id, which the
//     stream would drop as a duplicate of the original if it is still
//     within the duplicate window);
//  2. waits for the PubAck;
//  3. deletes the dead letter.
//
// # Idempotency
//
// The Nats-Msg-Id is a function of the dead letter, so publishing it again
// is dropped by the original stream as a duplicate (PubAck.Duplicate,
// counted in Duplicates) within the stream's duplicate window
// (StreamConfig.Duplicates, 2 minutes by default). A replay interrupted at
// any point, even killed between a publish and its delete, and run again
// within that window therefore stores each dead letter once; so do two
// replays running at the same time. Dead letters are handled one at a
// time, so an interruption leaves at most one dead letter published but not
// deleted; only if the next run comes after the window has passed is that one
// message stored twice. Replay logs each original stream's window (at warn
// level below one minute) and returns it in the stats.
//
// A dead letter that cannot be replayed (no original subject, a subject the
// dead-letter stream itself captures, a publish error or timeout, a failed
// delete) stays in the dead-letter stream and counts as Failed; the replay
// goes on up to MaxFailures and then returns an error wrapping
// [ErrReplayIncomplete], as it does at the end when anything failed. When ctx
// ends, the dead letter in hand is finished (its delete is not cancelled) and
// Replay returns ctx's error with the stats so far.
//
// Replay handles the dead letters present when it starts: a replayed message
// that fails and is dead-lettered again meanwhile is not replayed again by
// the same call.
func (d *DeadLetters) Replay(ctx context.Context, f Filter, o ReplayOptions) (ReplayStats, error) {
	o = o.withDefaults()
	if o.Limit < 0 {
		return ReplayStats{}, fmt.Errorf("ponixnats: replay: %w: negative limit %d", ErrInvalidConfig, o.Limit)
	}
	if o.Rate < 0 {
		return ReplayStats{}, fmt.Errorf("ponixnats: replay: %w: negative rate %g", ErrInvalidConfig, o.Rate)
	}
	if o.Limit > 0 && (f.Limit == 0 || o.Limit < f.Limit) {
		f.Limit = o.Limit
	}
	if !o.DryRun && (d.cfg.DenyDelete || d.cfg.Sealed) {
		return ReplayStats{}, fmt.Errorf("ponixnats: replay: dead-letter stream %s does not allow deleting messages (deny_delete or sealed): replayed dead letters could not be removed", d.name)
	}
	r := &replayer{d: d, o: o, st: ReplayStats{DuplicateWindows: map[string]time.Duration{}}, windowErr: map[string]error{}}
	if o.Rate > 0 {
		r.every = time.Duration(float64(time.Second) / o.Rate)
	}
	began := time.Now()
	err := d.scan(ctx, f, false, func(dl DeadLetter) (bool, error) {
		if err := r.pace(ctx); err != nil {
			return false, err
		}
		r.st.Matched++
		outcome, err := OutcomeDryRun, error(nil)
		if !o.DryRun {
			outcome, err = r.replayOne(ctx, dl)
		}
		r.st.Elapsed = time.Since(began)
		if o.Progress != nil {
			o.Progress(ReplayProgress{DeadLetter: dl, Outcome: outcome, Err: err, Stats: r.st})
		}
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		if o.MaxFailures > 0 && r.st.Failed >= o.MaxFailures {
			return false, fmt.Errorf("%w: stopped after %d failures; last: %w", ErrReplayIncomplete, r.st.Failed, err)
		}
		return true, nil
	})
	r.st.Elapsed = time.Since(began)
	if err != nil {
		return r.st, fmt.Errorf("ponixnats: replay from %s: %w", d.name, err)
	}
	if r.st.Failed > 0 {
		first := r.st.Failures[0]
		return r.st, fmt.Errorf("ponixnats: replay from %s: %w: %d of %d failed (first: seq %d: %w)",
			d.name, ErrReplayIncomplete, r.st.Failed, r.st.Matched, first.Sequence, first.Err)
	}
	return r.st, nil
}

// replayer is the state of one Replay call.
type replayer struct {
	d         *DeadLetters
	o         ReplayOptions
	st        ReplayStats
	windowErr map[string]error // original streams that could not be looked up
	every     time.Duration    // pacing interval (0: none)
	next      time.Time        // earliest start of the next dead letter
}

// pace waits until the next dead letter may start under Rate.
func (r *replayer) pace(ctx context.Context) error {
	if r.every == 0 {
		return nil
	}
	// Starts are spaced every r.every whatever the work in between took.
	// Lateness (timer overshoot, a slow publish) is made up for up to
	// paceSlack, so the average rate holds without long bursts.
	now := time.Now()
	if r.next.IsZero() {
		r.next = now
	} else if floor := now.Add(-paceSlack); r.next.Before(floor) {
		r.next = floor
	}
	if wait := time.Until(r.next); wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
	r.next = r.next.Add(r.every)
	return nil
}

func (r *replayer) fail(dl DeadLetter, err error) (Outcome, error) {
	r.st.Failed++
	if len(r.st.Failures) < maxRecordedFailures {
		r.st.Failures = append(r.st.Failures, ReplayFailure{Sequence: dl.Sequence, Err: err})
	}
	r.o.Logger.Warn("dead letter not replayed; it stays in the dead-letter stream",
		"dlq_stream", r.d.name, "dlq_seq", dl.Sequence, "subject", dl.OriginalSubject(), "error", err)
	return OutcomeFailed, err
}

// replayOne publishes dl to its original subject, then deletes it.
func (r *replayer) replayOne(ctx context.Context, dl DeadLetter) (Outcome, error) {
	subject := dl.OriginalSubject()
	if subject == "" {
		return r.fail(dl, fmt.Errorf("no %s header: the original subject is unknown", HeaderOriginalSubject))
	}
	if err := validSubject(subject); err != nil || strings.ContainsAny(subject, "*>") {
		return r.fail(dl, fmt.Errorf("%s %q is not a publishable subject", HeaderOriginalSubject, subject))
	}
	for _, s := range r.d.cfg.Subjects {
		if subjectMatches(s, subject) {
			return r.fail(dl, fmt.Errorf("original subject %s is captured by the dead-letter stream %s itself", subject, r.d.name))
		}
	}
	target := dl.OriginalStream()
	if target == "" {
		lctx, cancel := context.WithTimeout(ctx, r.o.PublishTimeout)
		name, err := r.d.js.StreamNameBySubject(lctx, subject)
		cancel()
		if err != nil {
			return r.fail(dl, fmt.Errorf("no %s header, and no stream captures %s: %w", HeaderOriginalStream, subject, err))
		}
		target = name
	}
	if err := r.checkWindow(ctx, target); err != nil {
		return r.fail(dl, err)
	}

	msg := &nats.Msg{Subject: subject, Data: dl.Data, Header: replayHeader(dl.Header, dl.ReplayCount()+1)}
	pctx, cancel := context.WithTimeout(ctx, r.o.PublishTimeout)
	ack, err := r.d.js.PublishMsg(pctx, msg, jetstream.WithMsgID(r.d.ReplayMsgID(dl.Sequence)), jetstream.WithExpectStream(target))
	cancel()
	if err != nil {
		return r.fail(dl, fmt.Errorf("publishing to %s (stream %s): %w", subject, target, err))
	}
	outcome := OutcomeReplayed
	if ack.Duplicate {
		outcome = OutcomeDuplicate
		r.st.Duplicates++
	} else {
		r.st.Replayed++
	}

	// The message is in its stream now: delete the dead letter even if ctx
	// ended meanwhile, so an interruption leaves as little as possible to the
	// duplicate window.
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.o.PublishTimeout)
	defer cancel()
	if err := r.d.stream.DeleteMsg(dctx, dl.Sequence); err != nil {
		// Deleted by someone else meanwhile (e.g. a concurrent replay)?
		if _, gerr := r.d.stream.GetMsg(dctx, dl.Sequence); !errors.Is(gerr, jetstream.ErrMsgNotFound) {
			return r.fail(dl, fmt.Errorf("published to %s (stream seq %d) but deleting the dead letter failed; a replay within the duplicate window will skip the publish and delete it: %w",
				subject, ack.Sequence, err))
		}
	}
	r.st.Deleted++
	return outcome, nil
}

// checkWindow looks up the duplicate window of the original stream once per
// replay, logs it, and records it in the stats.
func (r *replayer) checkWindow(ctx context.Context, stream string) error {
	if _, ok := r.st.DuplicateWindows[stream]; ok {
		return nil
	}
	if err, ok := r.windowErr[stream]; ok {
		return err
	}
	lctx, cancel := context.WithTimeout(ctx, r.o.PublishTimeout)
	defer cancel()
	st, err := r.d.js.Stream(lctx, stream)
	if err != nil {
		err = fmt.Errorf("original stream %s: %w", stream, err)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			r.windowErr[stream] = err
		}
		return err
	}
	w := st.CachedInfo().Config.Duplicates
	r.st.DuplicateWindows[stream] = w
	level, msg := slog.LevelInfo, "replay is idempotent within the duplicate window of the original stream: run an interrupted replay again within it"
	if w < time.Minute {
		level, msg = slog.LevelWarn, "short duplicate window on the original stream: an interrupted replay must be run again within it, or the one dead letter in flight may be stored twice"
	}
	r.o.Logger.Log(ctx, level, msg, "stream", stream, "duplicate_window", w.String())
	return nil
}

// replayHeader returns the headers of a replayed message: h without the
// headers dead-lettering added (Ponix-Dlq-*, Ponix-Original-*,
// Ponix-Num-Delivered) and without Nats-* and the old replay count, plus
// Ponix-Replay-Count=count.
func replayHeader(h nats.Header, count int) nats.Header {
	out := make(nats.Header, len(h)+1)
	for k, v := range h {
		if hasPrefixFold(k, dlqHeaderPrefix) || hasPrefixFold(k, originalHeaderPrefix) || hasPrefixFold(k, natsHeaderPrefix) ||
			strings.EqualFold(k, HeaderNumDelivered) || strings.EqualFold(k, HeaderReplayCount) {
			continue
		}
		out[k] = v
	}
	out.Set(HeaderReplayCount, strconv.Itoa(count))
	return out
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}
