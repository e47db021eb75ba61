package ponixnats

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ponix-go/ponix/runner/backoff"
)

// applied counts what apply did with one batch, for the stats and one log line per batch.
type applied struct {
	acked, naked, released, termed, unmentioned, ackErrs int
	deadLettered                                         map[Reason]int
	deadLetterFailed                                     int
	firstNakErr, firstReleaseErr, firstAckErr            error
	firstDLQErr                                          map[Reason]error
	termedNoDLQ                                          int   // terminated: dead-lettering is disabled
	firstNoDLQ                                           error // the first of those, named
}

func (a *applied) deadLetter(reason Reason, cause error) {
	if a.deadLettered == nil {
		a.deadLettered, a.firstDLQErr = map[Reason]int{}, map[Reason]error{}
	}
	a.deadLettered[reason]++
	if _, ok := a.firstDLQErr[reason]; !ok && cause != nil {
		a.firstDLQErr[reason] = cause
	}
}

// apply carries out the decisions of res (or a whole-batch release on perr) and logs one line
// per batch for what is not a plain ack: dead letters counted by reason, naks, releases,
// failures. created is the creation time of the stream the batch came from.
func (c *Consumer) apply(ctx context.Context, batch []jetstream.Msg, created time.Time, res Result, perr error, final bool) {
	if perr != nil {
		c.st.processorErrors.Add(1)
		c.log.Error("processor failed: releasing the whole batch for redelivery", "error", perr, "messages", len(batch))
		res = ReleaseAll(len(batch), 0, perr)
	}
	c.verdicts.forStream(created)
	var (
		a         applied
		confirmed []jetstream.Msg // acks confirmed by the server, at shutdown
	)
	for i, m := range batch {
		d, ok := res.Decision(i)
		if !ok {
			a.unmentioned++
			d = Decision{Action: ActionRelease}
		}
		var err error
		switch d.Action {
		case ActionAck:
			if final {
				confirmed = append(confirmed, m)
			} else {
				err = m.Ack()
			}
			a.acked++
		case ActionTerm:
			err = m.TermWithReason(string(d.Reason))
			a.termed++
		case ActionDeadLetter:
			err = c.deadLetter(ctx, m, d.Reason, d.Err, &a)
		case ActionNak:
			if d.Err != nil && a.firstNakErr == nil {
				a.firstNakErr = d.Err
			}
			err = c.nak(ctx, m, d, &a)
		default: // ActionRelease
			if d.Err != nil && a.firstReleaseErr == nil {
				a.firstReleaseErr = d.Err
			}
			a.released++
			delay := d.Delay
			if delay <= 0 {
				delay = c.cfg.NakDelay
			}
			err = m.NakWithDelay(delay)
		}
		if d.Action == ActionAck || d.Action == ActionTerm || d.Action == ActionDeadLetter {
			c.verdicts.forget(m) // done with: its naks no longer matter
		}
		if err != nil {
			a.ackErrs++
			if a.firstAckErr == nil {
				a.firstAckErr = err
			}
		}
	}
	if len(confirmed) > 0 {
		c.doubleAck(ctx, confirmed, &a)
	}
	if final && c.flush != nil {
		// Make sure everything sent reached the server before Run returns.
		if err := c.flush(c.cfg.DrainTimeout); err != nil {
			c.log.Warn("flushing acks at shutdown failed", "error", err)
		}
	}
	c.record(&a, res, len(batch))
}

// ackConfirmers is how many confirmed acks are in flight at once at shutdown: one at a time,
// a batch of thousands took longer than the drain deadline on a loaded machine, and its
// messages were redelivered after the restart.
const ackConfirmers = 64

// doubleAck acknowledges msgs and waits for the server to confirm each, ackConfirmers at a
// time, until ctx ends.
func (c *Consumer) doubleAck(ctx context.Context, msgs []jetstream.Msg, a *applied) {
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		next = make(chan jetstream.Msg)
	)
	for range min(ackConfirmers, len(msgs)) {
		wg.Go(func() {
			for m := range next {
				if err := m.DoubleAck(ctx); err != nil {
					mu.Lock()
					a.ackErrs++
					if a.firstAckErr == nil {
						a.firstAckErr = err
					}
					mu.Unlock()
				}
			}
		})
	}
	for _, m := range msgs {
		next <- m
	}
	close(next)
	wg.Wait()
}

// record adds a batch's counts to the stats and logs what needs a person's attention.
func (c *Consumer) record(a *applied, res Result, n int) {
	s := &c.st
	s.acked.Add(uint64(a.acked))
	s.naked.Add(uint64(a.naked))
	s.released.Add(uint64(a.released))
	s.termed.Add(uint64(a.termed))
	s.unmentioned.Add(uint64(a.unmentioned))
	s.ackErrors.Add(uint64(a.ackErrs))
	extra := max(0, res.Len()-n) + res.extra
	s.outOfRange.Add(uint64(extra))
	s.conflicts.Add(uint64(res.conflicts))
	if a.unmentioned > 0 || res.conflicts > 0 || extra > 0 {
		c.log.Warn("processor result incomplete or inconsistent: unmentioned indices released for redelivery, duplicates resolved to the most conservative decision, out-of-range ignored",
			"batch", n, "unmentioned", a.unmentioned, "duplicates", res.conflicts, "out_of_range", extra)
	}
	if len(a.deadLettered) > 0 {
		reasons := make([]string, 0, len(a.deadLettered))
		for r := range a.deadLettered {
			reasons = append(reasons, string(r))
		}
		sort.Strings(reasons)
		var counts, examples strings.Builder
		total := 0
		for i, r := range reasons {
			if i > 0 {
				counts.WriteString(" ")
				examples.WriteString("; ")
			}
			k := a.deadLettered[Reason(r)]
			total += k
			counts.WriteString(r + "=" + strconv.Itoa(k))
			examples.WriteString(r + ": " + fmt.Sprint(a.firstDLQErr[Reason(r)]))
		}
		c.log.Warn("messages dead-lettered", "count", total, "by_reason", counts.String(), "batch", n,
			"first_error_by_reason", examples.String(), "dlq_stream", c.cfg.DeadLetter.Stream)
	}
	if a.termedNoDLQ > 0 {
		c.log.Error("dead-lettering disabled: messages that can never be stored were terminated", "count", a.termedNoDLQ,
			"batch", n, "first", a.firstNoDLQ)
	}
	if a.deadLetterFailed > 0 {
		c.log.Error("dead-letter publishes failed; those messages were nak'd instead", "count", a.deadLetterFailed)
	}
	if a.naked > 0 {
		c.log.Warn("messages nak'd by the processor for redelivery", "naked", a.naked, "error", a.firstNakErr)
	}
	if a.released > 0 && a.firstReleaseErr != nil {
		c.log.Info("messages released for redelivery without a verdict on them (the sink failed or the consumer stops); this never counts towards MaxDeliver",
			"released", a.released, "error", a.firstReleaseErr)
	}
	if a.ackErrs > 0 {
		c.log.Warn("sending ack/nak/term failed; the server will redeliver after AckWait", "failed", a.ackErrs, "error", a.firstAckErr)
	}
}

// nak naks m, a verdict of the processor on the message itself, with d.Delay or the growing
// default. At the MaxDeliver-th such verdict it dead-letters the message instead (reason
// [ReasonMaxDeliver]). Only these verdicts count: a release (sink fault, stop, processor
// failure) or a delivery that ended without any answer (a crash, an expired AckWait) never
// does.
func (c *Consumer) nak(ctx context.Context, m jetstream.Msg, d Decision, a *applied) error {
	md, err := m.Metadata()
	if err != nil {
		a.naked++
		return m.NakWithDelay(c.nakDelay(1, d.Delay))
	}
	n := c.verdicts.count(md.Sequence.Stream)
	if c.spentDeliveries(n) {
		c.st.maxDelivered.Add(1)
		c.verdicts.forget(m)
		return c.deadLetterMeta(ctx, m, md, ReasonMaxDeliver, maxDeliverCause(n, d.Err), a)
	}
	a.naked++
	return m.NakWithDelay(c.nakDelay(uint64(n), d.Delay))
}

// spentDeliveries reports whether a message nak'd n times by the processor is to be
// dead-lettered (reason [ReasonMaxDeliver]) rather than nak'd once more.
func (c *Consumer) spentDeliveries(n int) bool {
	return c.cfg.MaxDeliver > 0 && n >= c.cfg.MaxDeliver && c.dlq != nil
}

// maxDeliverCause is the dead-letter cause of a message the processor nak'd n times, the last
// time with last (nil: none given).
func maxDeliverCause(n int, last error) error {
	if last != nil {
		return fmt.Errorf("%w: the processor nak'd the message %d times; last error: %w", ErrMaxDeliver, n, last)
	}
	return fmt.Errorf("%w: the processor nak'd the message %d times", ErrMaxDeliver, n)
}

// verdicts counts, per stream sequence, the naks a processor gave a message (see
// [Consumer.nak]) in this process. It is used by Run's goroutine only. The counts are kept
// in memory: a restart starts them again, which errs on the side of delivering once more.
type verdicts struct {
	created time.Time
	n       map[uint64]int
}

// forStream forgets the counts of another incarnation of the stream.
func (v *verdicts) forStream(created time.Time) {
	if !created.Equal(v.created) {
		v.created, v.n = created, nil
	}
}

// maxVerdicts bounds the messages whose naks are counted: a nak'd message that another
// instance then acks is never forgotten here, so past the bound the counts start again (one
// more delivery, never one less).
const maxVerdicts = 1 << 16

// count records one more nak of the message at seq and returns how many it got.
func (v *verdicts) count(seq uint64) int {
	if v.n == nil || len(v.n) >= maxVerdicts {
		v.n = map[uint64]int{}
	}
	v.n[seq]++
	return v.n[seq]
}

// forget drops the count of m (acked, terminated or dead-lettered).
func (v *verdicts) forget(m jetstream.Msg) {
	if len(v.n) == 0 {
		return
	}
	if seq, err := StreamSequence(m); err == nil {
		delete(v.n, seq)
	}
}

// nakDelay returns explicit if set, else NakDelay doubled per previous delivery, capped at
// MaxNakDelay.
func (c *Consumer) nakDelay(numDelivered uint64, explicit time.Duration) time.Duration {
	if explicit > 0 {
		return explicit
	}
	return nakBackoff(numDelivered, c.cfg.NakDelay, c.cfg.MaxNakDelay)
}

// nakBackoff is the default Nak delay for a message delivered numDelivered times: base,
// 2*base, 4*base, ... capped at limit.
func nakBackoff(numDelivered uint64, base, limit time.Duration) time.Duration {
	retry := int(min(max(numDelivered, 1)-1, 62))
	return min(backoff.Policy{Initial: base, Max: limit}.Delay(retry), limit)
}

func (c *Consumer) deadLetter(ctx context.Context, m jetstream.Msg, reason Reason, cause error, a *applied) error {
	md, err := m.Metadata()
	if err != nil {
		c.st.deadLetterFailed.Add(1)
		a.deadLetterFailed++
		return fmt.Errorf("dead-letter: reading metadata: %w", err)
	}
	return c.deadLetterMeta(ctx, m, md, reason, cause, a)
}

// deadLetterMeta publishes m to the dead-letter stream and terms it; if the publish fails it
// naks m with the default delay instead.
func (c *Consumer) deadLetterMeta(ctx context.Context, m jetstream.Msg, md *jetstream.MsgMetadata, reason Reason, cause error, a *applied) error {
	if c.dlq == nil {
		a.termedNoDLQ++
		if a.firstNoDLQ == nil {
			a.firstNoDLQ = fmt.Errorf("%s (stream sequence %d): %s: %w", m.Subject(), md.Sequence.Stream, reason, cause)
		}
		c.st.termed.Add(1)
		return m.TermWithReason(string(reason))
	}
	if err := c.dlq.publish(ctx, m, md, reason, cause); err != nil {
		c.st.deadLetterFailed.Add(1)
		a.deadLetterFailed++
		c.log.Debug("dead-letter publish failed, nak'ing message", "reason", reason, "error", err,
			"subject", m.Subject(), "stream_seq", md.Sequence.Stream)
		return m.NakWithDelay(c.nakDelay(md.NumDelivered, 0))
	}
	c.st.deadLettered.Add(1)
	a.deadLetter(reason, cause)
	c.log.Debug("message dead-lettered", "reason", reason, "error", cause, "subject", m.Subject(),
		"stream_seq", md.Sequence.Stream, "dlq_stream", c.dlq.cfg.Stream)
	return m.TermWithReason(string(reason))
}
