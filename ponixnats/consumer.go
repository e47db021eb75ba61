package ponixnats

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Consumer reads batches from a durable pull consumer and applies the decisions of its
// [Processor]. Create it with [NewConsumer]; call Run once.
type Consumer struct {
	src   source // the stream and the durable consumer
	clk   clock
	cfg   ConsumerConfig
	proc  Processor
	log   *slog.Logger
	dlq   *deadLetterer
	st    stats
	flush func(timeout time.Duration) error // waits until the server has what was sent

	// What changes when the consumer or the stream is created anew.
	mu            sync.Mutex
	cons          pullConsumer
	streamCreated time.Time
	keep          time.Duration // in-progress interval: AckWait/3
	lastCSeq      uint64        // the largest consumer sequence delivered by cons
	ackFloor      uint64        // the stream ack floor last read from cons
	health        Health

	verdicts verdicts // the processor's naks per message; used by Run's goroutine only

	// AckPerBatch only (see ackbatch.go).
	gate  sync.RWMutex  // read-held by a fetch in flight; a rewind holds it, so no pull overlaps a reset
	epoch atomic.Uint64 // rewinds so far: a batch fetched before the latest one is delivered again, not processed
	own   *lease        // this instance's claim on the durable (nil: owned whatever happens)
	dead  deadLettered  // dead-lettered, not yet covered by an ack; Run's goroutine only
}

// Health is what a [Consumer] knows about its ability to fetch.
type Health struct {
	// Err says why fetching fails (the server is unreachable, the stream or the durable
	// consumer is missing and being created again, ...); nil while fetching works.
	Err error
	// Since is when fetching started failing.
	Since time.Time
}

// fetched is one batch on its way from the fetch loop to Run, or a barrier: Run closes
// barrier once every batch handed over before it was processed.
type fetched struct {
	msgs          []jetstream.Msg
	streamCreated time.Time
	fetchedAt     time.Time // when the pull that delivered msgs began: their AckWait runs since
	// renewed is when msgs' AckWait last started again (unix nanoseconds on the consumer's
	// clock): the pull's start, then each round of in-progress acks sent for them.
	renewed *atomic.Int64
	epoch   uint64 // the rewinds done when msgs were pulled ([AckPerBatch])
	barrier chan struct{}
}

// NewConsumer creates or updates the durable pull consumer described by cfg (its Ack mode)
// and, unless disabled, ensures the dead-letter stream. The dead-letter subjects must not be
// captured by the source stream. When the durable consumer does not exist yet it is created
// where [ConsumerConfig].ResumeAt says.
func NewConsumer(ctx context.Context, js jetstream.JetStream, cfg ConsumerConfig, p Processor) (*Consumer, error) {
	if p == nil {
		return nil, fmt.Errorf("ponixnats: new consumer: %w: nil Processor", ErrInvalidConfig)
	}
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("ponixnats: new consumer %s on stream %s: %w", cfg.Durable, cfg.Stream, err)
	}
	c := newConsumer(cfg, p, newJetStreamSource(js, cfg), systemClock{})
	if nc := js.Conn(); nc != nil {
		c.flush = nc.FlushTimeout
		if v := nc.ConnectedServerVersion(); cfg.Ack == AckPerBatch && v != "" && !versionAtLeast(v, 2, 14) {
			return nil, fmt.Errorf("ponixnats: new consumer %s on stream %s: %w: Ack: AckPerBatch needs nats-server 2.14 or later (consumer reset); the server is %s: upgrade it or use AckPerMessage",
				cfg.Durable, cfg.Stream, ErrServerTooOld, v)
		}
	}
	openDLQ := func(ctx context.Context, subjects []string) (*deadLetterer, error) {
		return newDeadLetterer(ctx, js, cfg.DeadLetter, subjects)
	}
	if err := c.start(ctx, openDLQ); err != nil {
		return nil, err
	}
	if cfg.Ack == AckPerBatch {
		replicas := 1
		if st, err := js.Stream(ctx, cfg.Stream); err == nil {
			replicas = st.CachedInfo().Config.Replicas
		}
		kv, err := openOwnerKV(ctx, js, cfg, replicas)
		if err != nil {
			return nil, fmt.Errorf("ponixnats: new consumer %s on stream %s: %w", cfg.Durable, cfg.Stream, err)
		}
		c.own = newLease(kv, instanceID(), cfg.OwnerTTL, c.clk, c.log)
	}
	return c, nil
}

// newConsumer returns a consumer of cfg (defaults applied, valid) that reads from src and keeps
// time with clk; start binds it to its stream and durable consumer.
func newConsumer(cfg ConsumerConfig, p Processor, src source, clk clock) *Consumer {
	return &Consumer{src: src, clk: clk, cfg: cfg, proc: p, log: cfg.Logger.With("stream", cfg.Stream, "consumer", cfg.Durable)}
}

// start looks up the stream (creating it with EnsureStream), opens the dead-letter stream with
// openDLQ unless dead-lettering is disabled, then binds to or creates the durable consumer.
func (c *Consumer) start(ctx context.Context, openDLQ func(ctx context.Context, sourceSubjects []string) (*deadLetterer, error)) error {
	st, err := c.lookupStream(ctx)
	if err != nil {
		return fmt.Errorf("ponixnats: new consumer %s: %w", c.cfg.Durable, err)
	}
	c.setStream(st)
	if !c.cfg.DeadLetter.Disabled {
		c.dlq, err = openDLQ(ctx, st.subjects)
		if err != nil {
			return fmt.Errorf("ponixnats: new consumer %s on stream %s: %w", c.cfg.Durable, c.cfg.Stream, err)
		}
	}
	if err := c.ensureConsumer(ctx); err != nil {
		return fmt.Errorf("ponixnats: consumer %s on stream %s: %w", c.cfg.Durable, c.cfg.Stream, err)
	}
	return nil
}

// lookupStream returns the stream, creating it with EnsureStream when it is missing.
func (c *Consumer) lookupStream(ctx context.Context) (streamInfo, error) {
	st, err := c.src.stream(ctx)
	if errors.Is(err, jetstream.ErrStreamNotFound) && c.cfg.EnsureStream != nil {
		c.log.Warn("stream does not exist: creating it with the configured settings (its sequences start at 1)")
		st, err = c.src.ensureStream(ctx, *c.cfg.EnsureStream)
	}
	if err != nil {
		return streamInfo{}, fmt.Errorf("looking up stream %s: %w", c.cfg.Stream, err)
	}
	return st, nil
}

// setStream remembers the stream; a stream created anew (another creation time) starts its
// sequences again, so what was known of the old one's ack floor is forgotten.
func (c *Consumer) setStream(st streamInfo) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !st.created.Equal(c.streamCreated) {
		c.ackFloor = 0
	}
	c.streamCreated = st.created
}

// ensureConsumer binds to the durable consumer, updating its settings, or creates it where
// ResumeAt says when it does not exist.
func (c *Consumer) ensureConsumer(ctx context.Context) error {
	cc := c.cfg.jetStreamConfig()
	cons, err := c.src.consumer(ctx)
	switch {
	case err == nil && !sameAckMode(cons.config(), cc):
		// JetStream cannot change a consumer's ack policy or priority groups in place.
		cons, err = c.recreate(ctx, cons, cc)
		if err != nil {
			return err
		}
	case err == nil:
		// Keep where it started: JetStream cannot change a consumer's deliver policy.
		old := cons.config()
		cc.DeliverPolicy, cc.OptStartSeq, cc.OptStartTime = old.DeliverPolicy, old.OptStartSeq, old.OptStartTime
		cons, err = c.src.updateConsumer(ctx, cc)
		if err != nil {
			return fmt.Errorf("updating consumer: %w", err)
		}
		if old.MaxDeliver > 0 {
			c.log.Info("durable consumer had a JetStream max_deliver, which counts deliveries ended by sink faults and restarts: set to unlimited; MaxDeliver now counts only the processor's naks",
				"old_max_deliver", old.MaxDeliver, "max_deliver", c.cfg.MaxDeliver)
		}
	case errors.Is(err, jetstream.ErrConsumerNotFound):
		start, rerr := c.resumeAt(ctx)
		if rerr != nil {
			return fmt.Errorf("consumer %s does not exist, and where to resume it is unknown: %w", c.cfg.Durable, rerr)
		}
		var created bool
		cons, created, err = c.createAt(ctx, cc, start)
		if err != nil {
			return fmt.Errorf("creating consumer: %w", err)
		}
		if created {
			c.log.Info("durable consumer created", "start_sequence", max(start, 1))
		}
	default:
		return fmt.Errorf("looking up consumer: %w", err)
	}
	keep := cons.config().AckWait / 3
	if keep <= 0 {
		keep = c.cfg.AckWait / 3
	}
	c.mu.Lock()
	c.cons, c.keep, c.lastCSeq = cons, keep, 0
	c.mu.Unlock()
	return nil
}

// createAt creates the durable consumer with cc, delivering from stream sequence start (0 or
// 1: the start of the stream), or binds to the one another instance created first; created
// says whether this call created it.
func (c *Consumer) createAt(ctx context.Context, cc jetstream.ConsumerConfig, start uint64) (cons pullConsumer, created bool, err error) {
	if start > 1 {
		cc.DeliverPolicy, cc.OptStartSeq = jetstream.DeliverByStartSequencePolicy, start
	}
	cons, err = c.src.createConsumer(ctx, cc)
	if errors.Is(err, jetstream.ErrConsumerExists) {
		cons, err = c.src.consumer(ctx) // another instance was faster
		return cons, false, err
	}
	return cons, err == nil, err
}

// resumeAfter reads cons's ack floor (remembered as the last one read) and asks where a
// delivery starting anew resumes after it (see resumeAt).
func (c *Consumer) resumeAfter(ctx context.Context, cons pullConsumer) (*jetstream.ConsumerInfo, uint64, error) {
	info, err := cons.info(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("reading the consumer: %w", err)
	}
	c.mu.Lock()
	c.ackFloor = info.AckFloor.Stream
	c.mu.Unlock()
	start, err := c.resumeAt(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("where to resume: %w", err)
	}
	return info, start, nil
}

// resumeAt asks ResumeAt (or the default: after the last known ack floor) where a new durable
// consumer starts.
func (c *Consumer) resumeAt(ctx context.Context) (uint64, error) {
	c.mu.Lock()
	ri := ResumeInfo{Stream: c.cfg.Stream, StreamCreated: c.streamCreated, AckFloor: c.ackFloor}
	c.mu.Unlock()
	if st, err := c.src.stream(ctx); err == nil {
		ri.FirstSeq, ri.LastSeq = st.firstSeq, st.lastSeq
	}
	if c.cfg.ResumeAt != nil {
		return c.cfg.ResumeAt(ctx, ri)
	}
	if ri.AckFloor > 0 {
		return ri.AckFloor + 1, nil
	}
	return 0, nil
}

// Owner reports whether this instance consumes the durable now: acknowledging per batch, whether
// it owns it (false while it stands by); acknowledging per message, always.
func (c *Consumer) Owner() bool {
	if c.own == nil {
		return true
	}
	owned, _, _ := c.own.state()
	return owned
}

// Config returns the effective configuration (defaults applied).
func (c *Consumer) Config() ConsumerConfig { return c.cfg }

// Info returns the server's current view of the consumer.
func (c *Consumer) Info(ctx context.Context) (*jetstream.ConsumerInfo, error) {
	return c.current().info(ctx)
}

func (c *Consumer) current() pullConsumer {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cons
}

// Health reports whether fetching works. A failure shows only once it lasted a few seconds
// (one failed pull request is retried at once), except a missing stream or consumer, which
// shows at once.
func (c *Consumer) Health() Health {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.health
}

func (c *Consumer) setHealth(err error, immediate bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err == nil {
		c.health = Health{}
		return
	}
	now := c.clk.now()
	if c.health.Since.IsZero() {
		c.health.Since = now
	}
	if immediate || now.Sub(c.health.Since) >= unhealthyAfter {
		c.health.Err = err
	}
}

// Run fetches and processes batches until ctx ends. Transient errors (no messages, timeouts,
// lost connection) are logged (rate-limited) and retried with a short backoff; they never end
// Run. A durable consumer found missing (deleted by an operator, or with its stream) is
// created again — and the stream too, with [ConsumerConfig].EnsureStream — after the batches
// in hand were processed, where [ConsumerConfig].ResumeAt says.
//
// When ctx ends, Run stops fetching, lets the processor finish the batches in hand (with a
// context that is cancelled only DrainTimeout later; [Batch].Stopping tells waiting
// processors to stop waiting), sends their acks and waits for the server to confirm them, then
// returns nil. A pull request already sent is not abandoned (the server may be delivering into
// it): Run waits for it to end, at most a second, and processes what it brought too.
func (c *Consumer) Run(ctx context.Context) error {
	// The processors' context outlives ctx by DrainTimeout: one deadline for every batch
	// still in hand when ctx ends.
	pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stopDrain := context.AfterFunc(ctx, func() {
		stop := c.clk.afterFunc(c.cfg.DrainTimeout, cancel)
		context.AfterFunc(pctx, func() { stop() })
	})
	defer stopDrain()
	// One batch is fetched while the processor works on the previous one: fetching costs the
	// server and the network, processing costs this process and the sink, so the two overlap.
	// At shutdown the batch fetched ahead is processed too: once fetched, a batch is in hand.
	fetchCtx, stopFetching := context.WithCancel(ctx)
	defer stopFetching()
	if c.own != nil {
		// The lease outlives ctx until the batches in hand are acknowledged, then is given up.
		leaseCtx, stopLease := context.WithCancel(context.WithoutCancel(ctx))
		var leaseDone sync.WaitGroup
		leaseDone.Go(func() { c.own.run(leaseCtx) })
		defer func() {
			stopLease()
			leaseDone.Wait()
			c.own.release(pctx)
		}()
	}
	batches := make(chan fetched)
	go func() {
		defer close(batches)
		defer c.src.close() // no fetch after the loop
		c.fetchLoop(fetchCtx, batches)
	}()
	for b := range batches {
		if b.barrier != nil {
			close(b.barrier)
			continue
		}
		if c.cfg.Ack == AckPerBatch && !c.owned(ctx, b) {
			continue
		}
		if c.cfg.Ack == AckPerMessage && c.expired(b) {
			continue
		}
		if rw := c.handle(ctx, pctx, b); rw.needed {
			c.rewind(ctx, rw)
		}
	}
	return nil
}

// fetchLoop fetches batches and hands them to Run until ctx ends.
func (c *Consumer) fetchLoop(ctx context.Context, out chan<- fetched) {
	var (
		retry    = fetchRetry(c.clk.sleep)
		errLog   = rateLimit{every: logEvery}
		nextInfo = c.clk.now().Add(infoEvery)
	)
	var ch chain
	for ctx.Err() == nil {
		if c.own != nil && !c.mayPull(ctx, &ch, retry) {
			continue
		}
		cons := c.current()
		began := c.clk.now()
		msgs, epoch, err := c.fetch(ctx, cons)
		if err == nil {
			// Before the hand-off: a batch that waits behind a held one may find the consumer
			// deleted meanwhile, which Health then keeps saying until a fetch works again.
			c.setHealth(nil, false)
		}
		if len(msgs) > 0 && c.own != nil && !ch.continues(epoch, msgs) {
			c.chainBroken(ctx, msgs)
			continue
		}
		if len(msgs) > 0 {
			created := c.checkIncarnation(ctx, msgs)
			renewed := new(atomic.Int64)
			renewed.Store(began.UnixNano())
			if !c.handOff(ctx, out, fetched{msgs: msgs, streamCreated: created, fetchedAt: began, renewed: renewed, epoch: epoch}) {
				return
			}
		}
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			retry.Reset()
			if now := c.clk.now(); now.After(nextInfo) {
				c.readAckFloor(ctx, cons)
				nextInfo = now.Add(infoEvery)
			}
			continue
		}
		c.st.fetchErrors.Add(1)
		if c.missing(ctx, err) {
			c.recover(ctx, out)
			ch.restart() // a consumer created anew delivers from consumer sequence 1
			continue
		}
		if c.cfg.Ack == AckPerBatch && errors.Is(err, jetstream.ErrBadRequest) && c.retakeMode(ctx) {
			ch.restart()
			continue
		}
		c.setHealth(fmt.Errorf("fetching from consumer %s on stream %s: %w", c.cfg.Durable, c.cfg.Stream, err), false)
		if n, ok := errLog.allow(c.clk.now()); ok {
			c.log.Warn("fetch failed, retrying", "error", err, "retry_in", retry.Delay(), "suppressed_since_last_log", n)
		}
		if retry.Wait(ctx) != nil {
			return
		}
	}
}

// fetch pulls one batch: up to BatchSize messages (and FetchMaxBytes), waiting at most MaxWait
// for them. Each pull request expires after a second at most and is re-issued for the rest
// until the batch is full or MaxWait is used up, so a stop waits at most a second. A pull
// request in flight is never abandoned, not even when ctx ends: the server may already be
// delivering to it, and messages delivered to a dropped request sit unacked until AckWait.
// It returns the rewinds done so far ([AckPerBatch]): none happens while it pulls.
func (c *Consumer) fetch(ctx context.Context, cons pullConsumer) ([]jetstream.Msg, uint64, error) {
	if c.cfg.Ack == AckPerBatch {
		c.gate.RLock()
		defer c.gate.RUnlock()
	}
	epoch := c.epoch.Load()
	buf := make([]jetstream.Msg, 0, c.cfg.BatchSize)
	deadline := c.clk.now().Add(c.cfg.MaxWait)
	bytes := 0
	for {
		wait := min(deadline.Sub(c.clk.now()), pullExpiry)
		if wait < 10*time.Millisecond {
			return buf, epoch, nil
		}
		maxBytes := 0
		if c.cfg.FetchMaxBytes > 0 {
			if bytes >= c.cfg.FetchMaxBytes {
				return buf, epoch, nil
			}
			maxBytes = c.cfg.FetchMaxBytes - bytes
		}
		had := len(buf)
		var err error
		buf, err = cons.fetch(buf, c.cfg.BatchSize-len(buf), maxBytes, wait)
		for _, m := range buf[had:] {
			bytes += len(m.Data())
		}
		if errors.Is(err, errByteBound) {
			// The next message does not fit in the bytes left (the server counts subjects and
			// headers too): the batch is as full as FetchMaxBytes lets it be.
			return buf, epoch, nil
		}
		if err != nil {
			return buf, epoch, err
		}
		if len(buf) == c.cfg.BatchSize || ctx.Err() != nil {
			return buf, epoch, nil
		}
	}
}

// checkIncarnation notices a durable consumer that was created anew by someone else (its
// delivery sequences start again) and reads the stream's identity again, then returns the
// stream creation time that the batch belongs to.
func (c *Consumer) checkIncarnation(ctx context.Context, msgs []jetstream.Msg) time.Time {
	first, err1 := consumerSequence(msgs[0])
	last, err2 := consumerSequence(msgs[len(msgs)-1])
	c.mu.Lock()
	recreated := err1 == nil && c.lastCSeq > 0 && first < c.lastCSeq
	if err2 == nil {
		c.lastCSeq = max(c.lastCSeq, last)
		if recreated {
			c.lastCSeq = last
		}
	}
	created := c.streamCreated
	c.mu.Unlock()
	if !recreated {
		return created
	}
	ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := c.src.stream(ictx)
	if err != nil {
		c.log.Warn("the durable consumer was created anew by another instance; reading the stream's identity failed", "error", err)
		return created
	}
	c.setStream(st)
	if !st.created.Equal(created) {
		c.log.Warn("the stream and its durable consumer were created anew by another instance", "stream_created", st.created)
	}
	return st.created
}

// readAckFloor remembers the consumer's ack floor, where a consumer created anew resumes by
// default.
func (c *Consumer) readAckFloor(ctx context.Context, cons pullConsumer) {
	ictx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	info, err := cons.info(ictx)
	if err != nil {
		return
	}
	c.mu.Lock()
	c.ackFloor = info.AckFloor.Stream
	c.mu.Unlock()
}

// missing reports whether err of a fetch means that the durable consumer or its stream no
// longer exists (as opposed to a server or network failure).
func (c *Consumer) missing(ctx context.Context, err error) bool {
	if !errors.Is(err, nats.ErrNoResponders) && !errors.Is(err, jetstream.ErrConsumerDeleted) &&
		!errors.Is(err, jetstream.ErrConsumerNotFound) && !errors.Is(err, jetstream.ErrStreamNotFound) &&
		!errors.Is(err, jetstream.ErrNoHeartbeat) {
		return false
	}
	vctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, verr := c.src.consumer(vctx)
	return errors.Is(verr, jetstream.ErrConsumerNotFound) || errors.Is(verr, jetstream.ErrStreamNotFound)
}

// ErrConsumerMissing is wrapped by [Health].Err while the durable consumer or its stream is
// missing and being created again.
var ErrConsumerMissing = errors.New("durable consumer or stream missing")

// recover creates the stream (with EnsureStream) and the durable consumer again, retrying
// until it succeeds or ctx ends. The batches in hand are processed first, so that ResumeAt
// sees what they stored.
func (c *Consumer) recover(ctx context.Context, out chan<- fetched) {
	c.log.Warn("the durable consumer no longer exists (deleted, or its stream was): creating it again once the batches in hand are done")
	c.setHealth(fmt.Errorf("%w: consumer %s on stream %s was deleted; creating it again", ErrConsumerMissing, c.cfg.Durable, c.cfg.Stream), true)
	barrier := make(chan struct{})
	select {
	case out <- fetched{barrier: barrier}:
	case <-ctx.Done():
		return
	}
	select {
	case <-barrier:
	case <-ctx.Done():
		return
	}
	retry, errLog := fetchRetry(c.clk.sleep), rateLimit{every: logEvery}
	for ctx.Err() == nil {
		err := c.recoverOnce(ctx)
		if err == nil {
			c.st.recoveries.Add(1)
			c.setHealth(nil, false)
			return
		}
		c.setHealth(fmt.Errorf("%w: consumer %s on stream %s was deleted; creating it again failed (retrying): %w",
			ErrConsumerMissing, c.cfg.Durable, c.cfg.Stream, err), true)
		if n, ok := errLog.allow(c.clk.now()); ok {
			c.log.Warn("creating the durable consumer again failed, retrying", "error", err, "suppressed_since_last_log", n)
		}
		if retry.Wait(ctx) != nil {
			return
		}
	}
}

func (c *Consumer) recoverOnce(ctx context.Context) error {
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := c.src.stream(rctx)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		if c.cfg.EnsureStream == nil {
			return fmt.Errorf("stream %s does not exist (deleted?) and no EnsureStream is configured: create it again", c.cfg.Stream)
		}
		c.log.Warn("the stream was deleted: creating it again with the configured settings; its sequences start again at 1, and publishers can publish again")
		st, err = c.src.ensureStream(rctx, *c.cfg.EnsureStream)
	}
	if err != nil {
		return fmt.Errorf("stream %s: %w", c.cfg.Stream, err)
	}
	c.setStream(st)
	if c.dlq != nil {
		c.dlq.reset()
	}
	return c.ensureConsumer(rctx)
}

// handOff waits until Run takes batch, keeping its messages alive with in-progress acks
// meanwhile, and looking every few seconds whether the durable consumer still exists (a batch
// can wait long behind one held by a failing sink; /readyz should name every cause). It reports
// whether fetching should go on: after ctx ended the batch is still handed over (Run processes
// it), then fetching stops.
func (c *Consumer) handOff(ctx context.Context, out chan<- fetched, b fetched) bool {
	stop := c.keepAlive(b.msgs, b.renewed, true)
	defer stop()
	tick, stopTicker := c.clk.ticker(infoEvery)
	defer stopTicker()
	for {
		select {
		case out <- b:
			return ctx.Err() == nil
		case <-tick:
			ictx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_, err := c.src.consumer(ictx)
			cancel()
			if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
				c.setHealth(fmt.Errorf("%w: consumer %s on stream %s was deleted; it is created again once the batches in hand are done",
					ErrConsumerMissing, c.cfg.Durable, c.cfg.Stream), true)
			}
		}
	}
}

// handle runs the processor on one batch and applies its result. pctx is the processing
// context (alive until the drain deadline); ctx ends when the consumer is asked to stop. It
// returns where delivery must rewind to ([AckPerBatch]).
func (c *Consumer) handle(ctx, pctx context.Context, b fetched) rewindTo {
	c.st.batches.Add(1)
	c.st.messages.Add(uint64(len(b.msgs)))
	c.noteRedeliveries(b.msgs)
	batch := Batch[jetstream.Msg]{
		Stream:   StreamID{Name: c.cfg.Stream, Created: b.streamCreated},
		Consumer: c.cfg.Durable,
		Items:    b.msgs,
		Stopping: ctx.Done(),
	}
	c.mu.Lock()
	every := c.keep
	c.mu.Unlock()
	if b.renewed != nil && c.clk.now().Sub(time.Unix(0, b.renewed.Load())) >= every {
		// The batch waited (a slow pull, a busy machine) a keep-alive interval already: renew its
		// AckWait now rather than a whole interval after the hand-off.
		b.renewed.Store(c.clk.now().UnixNano())
		inProgress(c.log, b.msgs)
	}
	stopKeep := c.keepAlive(b.msgs, b.renewed, false)
	res, err := c.callProcessor(pctx, batch)
	stopKeep()
	if c.cfg.Ack == AckPerBatch {
		return c.applyBatch(pctx, b.msgs, b.streamCreated, res, err, ctx.Err() != nil)
	}
	c.apply(pctx, b.msgs, b.streamCreated, res, err, ctx.Err() != nil)
	return rewindTo{}
}

// noteRedeliveries counts the messages of a batch that were delivered before (after a restart,
// a crash, an expired AckWait, a nak or a release) and logs one line per such batch: their
// rows may already be stored, and copies stored again are collapsed only by the table's
// de-duplication.
func (c *Consumer) noteRedeliveries(msgs []jetstream.Msg) {
	n, most := 0, uint64(0)
	for _, m := range msgs {
		if d, err := numDelivered(m); err == nil && d > 1 {
			n++
			most = max(most, d)
		}
	}
	if n == 0 {
		return
	}
	c.st.redelivered.Add(uint64(n))
	first, _ := StreamSequence(msgs[0])
	c.log.Info("batch holds messages delivered before", "redelivered", n, "batch", len(msgs),
		"most_deliveries", most, "first_stream_seq", first)
}

// inProgress sends an in-progress ack for each message of batch (stopping at the first failure).
func inProgress(log *slog.Logger, batch []jetstream.Msg) {
	for _, m := range batch {
		if err := m.InProgress(); err != nil {
			log.Debug("in-progress ack failed", "error", err)
			return
		}
	}
}

// stale reports whether a batch's AckWait may run out before a renewal sent now reaches the
// server: it was last renewed three quarters of an AckWait ago or more. In-progress acks renew
// it every third of AckWait, so only a stalled process (stopped, starved, a long GC pause)
// leaves a batch that long.
func (c *Consumer) stale(renewed *atomic.Int64) (time.Duration, bool) {
	if renewed == nil {
		return 0, false
	}
	waited := c.clk.now().Sub(time.Unix(0, renewed.Load()))
	return waited, waited >= c.cfg.AckWait*3/4
}

// expired reports (and counts, and logs) a batch acknowledged per message that went
// [Consumer.stale] before it was processed. The server may have delivered its messages again
// to another instance sharing the durable, which stores them too if this one went on: two
// copies. It is dropped unprocessed and unacknowledged instead; its messages come again, to
// whichever instance pulls (here too, where the table check finds the stored ones). A batch
// that passes is renewed at once and every third of AckWait while it is processed.
func (c *Consumer) expired(b fetched) bool {
	waited, stale := c.stale(b.renewed)
	if !stale {
		return false
	}
	c.st.expired.Add(uint64(len(b.msgs)))
	first, _ := StreamSequence(b.msgs[0])
	c.log.Warn("a batch waited unrenewed for most of its AckWait (this process stalled): its messages may be delivered to another instance already; dropped unprocessed, they come again",
		"batch", len(b.msgs), "first_stream_seq", first, "unrenewed_for", waited, "ack_wait", c.cfg.AckWait)
	return true
}

// keepAlive sends in-progress acks for batch every AckWait/3 until stopped, so that the server
// does not redeliver messages that are waiting or being processed, and stores when each round
// began in renewed (if not nil). Acknowledging per message, a round that finds the batch
// [Consumer.stale] (this process stalled) leaves renewed as it is, so that Run drops a batch
// still waiting (see expired); it renews only a batch being processed (waiting is false),
// whose rows are being stored whatever happens.
func (c *Consumer) keepAlive(batch []jetstream.Msg, renewed *atomic.Int64, waiting bool) (stop func()) {
	c.mu.Lock()
	every := c.keep
	c.mu.Unlock()
	done := make(chan struct{})
	var wg sync.WaitGroup
	tick, stopTicker := c.clk.ticker(every)
	wg.Go(func() {
		defer stopTicker()
		for {
			select {
			case <-done:
				return
			case <-tick:
				if _, stale := c.stale(renewed); stale && c.cfg.Ack == AckPerMessage {
					if waiting {
						// The messages may be another instance's now: renewing would extend
						// that delivery, and Run drops this batch (see expired).
						continue
					}
				} else if renewed != nil {
					renewed.Store(c.clk.now().UnixNano())
				}
				inProgress(c.log, batch)
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

func (c *Consumer) callProcessor(ctx context.Context, batch Batch[jetstream.Msg]) (res Result, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("processor panicked: %v\n%s", r, debug.Stack())
		}
	}()
	return c.proc(ctx, batch)
}

// rateLimit lets a repeated log line through at most once per period and counts the lines it
// held back.
type rateLimit struct {
	every      time.Duration
	last       time.Time
	suppressed int
}

func (r *rateLimit) allow(now time.Time) (suppressed int, ok bool) {
	if now.Sub(r.last) >= r.every {
		n := r.suppressed
		r.last, r.suppressed = now, 0
		return n, true
	}
	r.suppressed++
	return 0, false
}
