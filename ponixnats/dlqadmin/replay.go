package dlqadmin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ponix-go/ponix/ponixnats"
)

// Defaults of [ReplayOptions].
const (
	DefaultReplayPublishTimeout = 5 * time.Second
	DefaultReplayMaxFailures    = 10
)

const (
	maxRecordedFailures = 100                    // ReplayStats.Failures kept
	paceSlack           = 100 * time.Millisecond // lateness Rate pacing makes up for
)

// ErrReplayIncomplete: some dead letters matched by a replay could not be
// returned (or not removed from the dead-letter stream) and are still there.
// Replay errors wrap it; [ReplayStats].Failures says which and why.
var ErrReplayIncomplete = errors.New("replay incomplete: dead letters left in the dead-letter stream")

// ReplayOptions configure [Stream.Replay]. Zero values take the defaults
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
	// replayed into (see [Stream.Replay] for why it matters).
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
//     [ponixnats.HeaderReplayCount] (the dead letter's count + 1) and the Nats-Msg-Id
//     [Stream.ReplayMsgID] (never the original message's id, which the
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
func (d *Stream) Replay(ctx context.Context, f Filter, o ReplayOptions) (ReplayStats, error) {
	o = o.withDefaults()
	if o.Limit < 0 {
		return ReplayStats{}, fmt.Errorf("dlqadmin: replay: %w: negative limit %d", ponixnats.ErrInvalidConfig, o.Limit)
	}
	if o.Rate < 0 {
		return ReplayStats{}, fmt.Errorf("dlqadmin: replay: %w: negative rate %g", ponixnats.ErrInvalidConfig, o.Rate)
	}
	if o.Limit > 0 && (f.Limit == 0 || o.Limit < f.Limit) {
		f.Limit = o.Limit
	}
	if !o.DryRun && (d.cfg.DenyDelete || d.cfg.Sealed) {
		return ReplayStats{}, fmt.Errorf("dlqadmin: replay: dead-letter stream %s does not allow deleting messages (deny_delete or sealed): replayed dead letters could not be removed", d.name)
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
		return r.st, fmt.Errorf("dlqadmin: replay from %s: %w", d.name, err)
	}
	if r.st.Failed > 0 {
		first := r.st.Failures[0]
		return r.st, fmt.Errorf("dlqadmin: replay from %s: %w: %d of %d failed (first: seq %d: %w)",
			d.name, ErrReplayIncomplete, r.st.Failed, r.st.Matched, first.Sequence, first.Err)
	}
	return r.st, nil
}

// replayer is the state of one Replay call.
type replayer struct {
	d         *Stream
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
		return r.fail(dl, fmt.Errorf("no %s header: the original subject is unknown", ponixnats.HeaderOriginalSubject))
	}
	if err := ponixnats.ValidateSubject(subject); err != nil || strings.ContainsAny(subject, "*>") {
		return r.fail(dl, fmt.Errorf("%s %q is not a publishable subject", ponixnats.HeaderOriginalSubject, subject))
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
			return r.fail(dl, fmt.Errorf("no %s header, and no stream captures %s: %w", ponixnats.HeaderOriginalStream, subject, err))
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
// headers dead-lettering added ([ponixnats.IsDeadLetterHeader]), without
// Nats-* (they steer JetStream) and the old replay count, plus
// Ponix-Replay-Count=count.
func replayHeader(h nats.Header, count int) nats.Header {
	out := make(nats.Header, len(h)+1)
	for k, v := range h {
		if ponixnats.IsDeadLetterHeader(k) || strings.EqualFold(k, ponixnats.HeaderReplayCount) ||
			len(k) >= len(natsHeaderPrefix) && strings.EqualFold(k[:len(natsHeaderPrefix)], natsHeaderPrefix) {
			continue
		}
		out[k] = v
	}
	out.Set(ponixnats.HeaderReplayCount, strconv.Itoa(count))
	return out
}

// natsHeaderPrefix begins the headers that steer JetStream (Nats-Msg-Id,
// Nats-Expected-Stream, ...); a replay never copies them.
const natsHeaderPrefix = "Nats-"
