package ponixnats

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ponix-go/ponix/runner/backoff"
)

// This file holds what an [AckPerBatch] consumer does beyond fetching and processing: one ack
// per batch, the ownership of the durable (owner.go holds the lease) and the rewinds that
// keep every ack from covering a message that was not processed.
//
// The rule that makes one ack per batch safe: an ack of stream sequence S acknowledges every
// message up to S delivered to the consumer, so S is acknowledged only when every such message
// is stored or dead-lettered. Batches are processed and acknowledged in order. A message that
// must be delivered again (a nak, a release) makes a hole: the batch is acknowledged up to it,
// and delivery rewinds to it (a consumer reset) before anything after it is processed. A new
// owner of the durable rewinds first too, to what the previous owner left unacknowledged.

// rewindTo is where delivery must start again, and when.
type rewindTo struct {
	needed bool
	seq    uint64        // the stream sequence to deliver from (a hole)
	delay  time.Duration // how long to wait first (the hole's nak or release delay)
	resume bool          // a takeover: from where ResumeAt (or the ack floor) says
}

// owned reports whether b is to be processed by this instance now: it was fetched after the
// latest rewind and — when it waited half of OwnerTTL or more (this process stalled, say) —
// this instance still owns the durable, as the owner bucket says. A batch it no longer owns
// is dropped: the owner has it delivered again.
func (c *Consumer) owned(ctx context.Context, b fetched) bool {
	if b.epoch != c.epoch.Load() {
		c.st.rewound.Add(uint64(len(b.msgs)))
		return false
	}
	if c.own == nil || c.clk.now().Sub(b.fetchedAt) < c.cfg.OwnerTTL/2 {
		return true
	}
	if owned, err := c.own.confirm(ctx); owned || err != nil {
		// Owned, or unknown: each ack covers only what this instance stored, in order, from
		// deliveries that continued its own (see fetchLoop) — a copy at worst, never a loss.
		return true
	}
	c.log.Warn("this instance lost the durable consumer while a batch waited: the batch is left to the owner",
		"batch", len(b.msgs), "waited", c.clk.now().Sub(b.fetchedAt))
	c.st.rewound.Add(uint64(len(b.msgs)))
	return false
}

// mayPull reports whether this instance may pull now ([AckPerBatch]): it owns the durable —
// it waits while it stands by —, it reset the durable since it came to own it, and the owner
// bucket still names it.
func (c *Consumer) mayPull(ctx context.Context, ch *chain, retry *backoff.Backoff) bool {
	owned, gen, changed := c.own.state()
	if !owned {
		select {
		case <-changed:
		case <-ctx.Done():
		}
		return false
	}
	if gen != ch.gen {
		// A new owner: what an earlier one left unacknowledged is delivered again, from the
		// table's end (ResumeAt) or the ack floor, and consumer sequences start again at 1.
		c.rewind(ctx, rewindTo{needed: true, resume: true})
		ch.gen = gen
		return false
	}
	owned, err := c.own.confirm(ctx)
	if err != nil {
		c.setHealth(fmt.Errorf("consumer %s on stream %s: %w", c.cfg.Durable, c.cfg.Stream, err), false)
		_ = retry.Wait(ctx)
		return false
	}
	retry.Reset()
	return owned
}

// chain is what an [AckPerBatch] owner's fetch loop knows of the consumer sequences
// delivered to it: a durable numbers its deliveries 1, 2, 3, … from its creation or its latest
// reset, so deliveries that continue this instance's own without a gap went to no one else.
type chain struct {
	gen   uint64 // the lease's acquisitions when this instance last reset the durable
	epoch uint64 // the consumer's rewinds when next was set
	next  uint64 // the consumer sequence the next delivery must carry (0: 1, after a reset)
}

// restart expects the next delivery to be the first of a durable created anew.
func (ch *chain) restart() { ch.next = 0 }

// continues reports whether msgs, pulled in the rewind epoch epoch, continue the chain without a
// gap, and extends it by them.
func (ch *chain) continues(epoch uint64, msgs []jetstream.Msg) bool {
	if epoch != ch.epoch {
		ch.epoch, ch.next = epoch, 0 // reset since: numbering starts again at 1
	}
	first, err1 := consumerSequence(msgs[0])
	last, err2 := consumerSequence(msgs[len(msgs)-1])
	if err1 != nil || err2 != nil {
		return false
	}
	// Each delivery has its own consumer sequence, so n messages from first to last are
	// every delivery in between when last-first+1 == n.
	if first != max(ch.next, 1) || last-first+1 != uint64(len(msgs)) {
		return false
	}
	ch.next = last + 1
	return true
}

// chainBroken handles a batch whose consumer sequences do not continue this instance's own:
// another client pulled from the durable (an earlier owner that went on after a stall) or
// reset it (a new owner). The batch is not processed; if the owner bucket still names this
// instance, it resets the durable — what the other client took is delivered again —
// otherwise it stands by.
func (c *Consumer) chainBroken(ctx context.Context, msgs []jetstream.Msg) {
	c.st.rewound.Add(uint64(len(msgs)))
	first, _ := consumerSequence(msgs[0])
	c.log.Warn("the durable consumer delivered to another client too (or was reset by one): this batch is not processed, and delivery starts again after what is stored",
		"batch", len(msgs), "first_consumer_seq", first)
	if ctx.Err() != nil {
		return
	}
	if owned, err := c.own.confirm(ctx); !owned || err != nil {
		return // a standby now, or the key cannot be read: fetchLoop asks again before it pulls
	}
	c.rewind(ctx, rewindTo{needed: true, resume: true})
}

// rewind makes the server deliver again from rw's sequence, after rw's delay, with no pull
// in flight; the batches fetched before are dropped. It retries until it succeeds or ctx
// ends. When ctx ends first (the consumer stops), nothing after the hole may be acknowledged:
// the batches in hand are dropped, and the next owner's rewind delivers them again.
func (c *Consumer) rewind(ctx context.Context, rw rewindTo) {
	if rw.delay > 0 && ctx.Err() == nil {
		_ = c.clk.sleep(ctx, rw.delay)
	}
	if ctx.Err() != nil {
		c.epoch.Add(1)
		return
	}
	c.gate.Lock()
	defer c.gate.Unlock()
	retry, errLog := fetchRetry(c.clk.sleep), rateLimit{every: logEvery}
	for {
		err := c.resetOnce(ctx, rw)
		if err == nil {
			c.epoch.Add(1)
			c.setHealth(nil, false)
			return
		}
		c.setHealth(fmt.Errorf("rewinding the delivery of consumer %s on stream %s: %w", c.cfg.Durable, c.cfg.Stream, err), false)
		if n, ok := errLog.allow(c.clk.now()); ok {
			c.log.Warn("rewinding the delivery failed, retrying", "error", err, "retry_in", retry.Delay(), "suppressed_since_last_log", n)
		}
		if retry.Wait(ctx) != nil {
			c.epoch.Add(1)
			return
		}
	}
}

// resetOnce resets the durable consumer once as rw says.
func (c *Consumer) resetOnce(ctx context.Context, rw rewindTo) error {
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	seq := rw.seq
	var floor, pending uint64
	if rw.resume {
		info, start, err := c.resumeAfter(rctx, c.current())
		if err != nil {
			return err
		}
		floor, pending = info.AckFloor.Stream, uint64(info.NumAckPending)
		seq = 0 // the ack floor + 1, as the server has it then
		if start > floor+1 {
			seq = start
		}
	}
	at, err := c.src.resetConsumer(rctx, seq)
	if errors.Is(err, jetstream.ErrConsumerInvalidReset) && seq != 0 {
		// Not allowed by the consumer's deliver policy: from its ack floor, which is never past
		// a message that is not stored.
		at, err = c.src.resetConsumer(rctx, 0)
	}
	if err != nil {
		return fmt.Errorf("resetting the consumer to stream sequence %d: %w", seq, err)
	}
	c.mu.Lock()
	c.lastCSeq = 0 // consumer sequences may start again
	c.mu.Unlock()
	if rw.resume {
		c.st.takeovers.Add(1)
		c.log.Info("this instance owns the durable consumer now: delivery starts again after what is acknowledged or stored; what an earlier owner left unacknowledged is delivered again",
			"ack_floor", floor, "unacknowledged", pending, "start_sequence", at)
		return nil
	}
	c.st.rewinds.Add(1)
	c.log.Info("delivery rewound to a message that must be delivered again: the batch was acknowledged up to it, the messages after it are delivered again",
		"start_sequence", at, "waited", rw.delay)
	return nil
}

// applyBatch carries out res (or a whole-batch release on perr) in [AckPerBatch] mode: dead
// letters are published (and confirmed) first, then one ack covers the batch up to its first
// hole — a message to be delivered again — and the returned rewind delivers again from the
// hole. A batch stored whole costs one ack.
func (c *Consumer) applyBatch(ctx context.Context, batch []jetstream.Msg, created time.Time, res Result, perr error, final bool) rewindTo {
	n := len(batch)
	if perr != nil {
		c.st.processorErrors.Add(1)
		c.log.Error("processor failed: releasing the whole batch for redelivery", "error", perr, "messages", n)
		res = ReleaseAll(n, 0, perr)
	}
	c.verdicts.forStream(created)
	c.dead.forStream(created)
	if res.ackedWhole(n) && c.dead.empty() {
		a := applied{acked: n}
		c.ack(ctx, batch[n-1], final, &a)
		c.record(&a, res, n)
		return rewindTo{}
	}
	var (
		a        applied
		seqs     = make([]uint64, n)
		done     = make([]bool, n) // stored, dead-lettered or terminated: covered by an ack
		hole     = uint64(math.MaxUint64)
		delay    time.Duration
		unparsed bool
	)
	for i, m := range batch {
		md, err := m.Metadata()
		if err != nil {
			unparsed = true // no sequence: nothing of the batch may be acknowledged
			continue
		}
		seqs[i] = md.Sequence.Stream
		d, ok := res.Decision(i)
		if !ok {
			a.unmentioned++
			d = Decision{Action: ActionRelease}
		}
		wait := time.Duration(0)
		switch d.Action {
		case ActionAck:
			a.acked++
			done[i] = true
		case ActionTerm:
			a.termed++
			done[i] = true
		case ActionDeadLetter:
			done[i] = c.deadLetterOnce(ctx, m, md, d.Reason, d.Err, &a)
		case ActionNak:
			if d.Err != nil && a.firstNakErr == nil {
				a.firstNakErr = d.Err
			}
			k := c.verdicts.count(md.Sequence.Stream)
			if c.spentDeliveries(k) {
				c.st.maxDelivered.Add(1)
				done[i] = c.deadLetterOnce(ctx, m, md, ReasonMaxDeliver, maxDeliverCause(k, d.Err), &a)
				break
			}
			a.naked++
			wait = c.nakDelay(uint64(k), d.Delay)
		default: // ActionRelease
			if d.Err != nil && a.firstReleaseErr == nil {
				a.firstReleaseErr = d.Err
			}
			a.released++
			wait = d.Delay
			if wait <= 0 {
				wait = c.cfg.NakDelay
			}
		}
		if done[i] {
			if d.Action != ActionDeadLetter && d.Action != ActionNak {
				c.verdicts.forget(m)
			}
			continue
		}
		if seqs[i] < hole {
			hole, delay = seqs[i], wait
		}
	}
	if !unparsed {
		// The ack: of the message done with the highest sequence below the hole.
		best := -1
		for i := range batch {
			if done[i] && seqs[i] < hole && (best < 0 || seqs[i] > seqs[best]) {
				best = i
			}
		}
		if best >= 0 {
			c.ack(ctx, batch[best], final, &a)
			c.dead.coveredThrough(seqs[best])
		}
	} else {
		hole = 0 // from the ack floor
	}
	c.record(&a, res, n)
	if hole == math.MaxUint64 {
		return rewindTo{}
	}
	return rewindTo{needed: true, seq: hole, delay: delay}
}

// ack acknowledges m and so every earlier message delivered; at a stop, it waits for the
// server to confirm it.
func (c *Consumer) ack(ctx context.Context, m jetstream.Msg, final bool, a *applied) {
	var err error
	if final {
		err = m.DoubleAck(ctx)
	} else {
		err = m.Ack()
	}
	if err != nil {
		a.ackErrs++
		if a.firstAckErr == nil {
			a.firstAckErr = err
		}
	}
	if final && c.flush != nil {
		if err := c.flush(c.cfg.DrainTimeout); err != nil {
			c.log.Warn("flushing acks at shutdown failed", "error", err)
		}
	}
}

// deadLetterOnce publishes m to the dead-letter stream unless this process did already (the
// message came again after a rewind), and reports whether it is done with: published (and
// confirmed), or terminated with dead-lettering disabled. It sends no term: the batch's ack
// covers it.
func (c *Consumer) deadLetterOnce(ctx context.Context, m jetstream.Msg, md *jetstream.MsgMetadata, reason Reason, cause error, a *applied) bool {
	seq := md.Sequence.Stream
	if c.dead.has(seq) {
		return true
	}
	if c.dlq == nil {
		a.termedNoDLQ++
		if a.firstNoDLQ == nil {
			a.firstNoDLQ = fmt.Errorf("%s (stream sequence %d): %s: %w", m.Subject(), seq, reason, cause)
		}
		c.st.termed.Add(1)
		return true
	}
	if err := c.dlq.publish(ctx, m, md, reason, cause); err != nil {
		c.st.deadLetterFailed.Add(1)
		a.deadLetterFailed++
		c.log.Debug("dead-letter publish failed: the message is delivered again", "reason", reason, "error", err,
			"subject", m.Subject(), "stream_seq", seq)
		return false
	}
	c.st.deadLettered.Add(1)
	a.deadLetter(reason, cause)
	c.verdicts.forget(m)
	c.dead.add(seq)
	return true
}

// deadLettered are the stream sequences this process dead-lettered and no ack has covered
// yet: after a rewind they come again and must not be published twice.
type deadLettered struct {
	created time.Time
	seqs    map[uint64]struct{}
}

func (d *deadLettered) forStream(created time.Time) {
	if !created.Equal(d.created) {
		d.created, d.seqs = created, nil
	}
}

func (d *deadLettered) empty() bool { return len(d.seqs) == 0 }

func (d *deadLettered) has(seq uint64) bool {
	_, ok := d.seqs[seq]
	return ok
}

func (d *deadLettered) add(seq uint64) {
	if d.seqs == nil || len(d.seqs) >= maxVerdicts {
		d.seqs = map[uint64]struct{}{}
	}
	d.seqs[seq] = struct{}{}
}

// coveredThrough forgets the sequences up to seq: an ack covered them.
func (d *deadLettered) coveredThrough(seq uint64) {
	for s := range d.seqs {
		if s <= seq {
			delete(d.seqs, s)
		}
	}
}

// recreate deletes the durable consumer old and creates it with cc where ResumeAt says: the
// way to change its ack policy or priority groups, which JetStream cannot change in place.
func (c *Consumer) recreate(ctx context.Context, old pullConsumer, cc jetstream.ConsumerConfig) (pullConsumer, error) {
	info, start, err := c.resumeAfter(ctx, old)
	if err != nil {
		return nil, fmt.Errorf("consumer %s must be created anew to change its ack policy: %w", c.cfg.Durable, err)
	}
	if err := c.src.removeConsumer(ctx); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, fmt.Errorf("deleting consumer %s to create it anew with another ack policy: %w", c.cfg.Durable, err)
	}
	cons, _, err := c.createAt(ctx, cc, start)
	if err != nil {
		return nil, fmt.Errorf("creating consumer %s anew: %w", c.cfg.Durable, err)
	}
	c.log.Info("durable consumer created anew to change how it acknowledges (JetStream cannot change a consumer's ack policy in place): delivery resumes after what is acknowledged or stored",
		"from", old.config().AckPolicy.String(), "to", cc.AckPolicy.String(), "ack_mode", c.cfg.Ack,
		"ack_floor", info.AckFloor.Stream, "unacknowledged", info.NumAckPending, "start_sequence", max(start, 1))
	return cons, nil
}

// retakeMode creates the durable anew for [AckPerBatch] when a pull was refused because an
// instance of another release or mode created it its way meanwhile (its priority groups are
// not this release's), and reports whether it did.
func (c *Consumer) retakeMode(ctx context.Context) bool {
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cons, err := c.src.consumer(lctx)
	if err != nil || sameAckMode(cons.config(), c.cfg.jetStreamConfig()) {
		return false
	}
	c.log.Warn("the durable consumer was created anew by an instance of another release or ack mode, which refuses this release's pulls: creating it anew")
	if err := c.ensureConsumer(lctx); err != nil {
		c.log.Warn("creating the durable consumer anew failed", "error", err)
		return false
	}
	c.epoch.Add(1) // the batches fetched from the other incarnation are delivered again
	return true
}

// versionAtLeast reports whether the server version v ("2.14.1", "v2.15.0-beta.1") is at
// least major.minor; an unreadable version counts as new enough (the server's own answers
// then say what it lacks).
func versionAtLeast(v string, major, minor int) bool {
	parts := strings.SplitN(strings.TrimPrefix(v, "v"), ".", 3)
	if len(parts) < 2 {
		return true
	}
	ma, err1 := strconv.Atoi(parts[0])
	mi, err2 := strconv.Atoi(strings.SplitN(parts[1], "-", 2)[0])
	if err1 != nil || err2 != nil {
		return true
	}
	return ma > major || ma == major && mi >= minor
}
