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

// Consumer defaults.
const (
	DefaultDurable       = "ponix-all-in-one"
	DefaultBatchSize     = 30
	DefaultMaxWait       = 5 * time.Second
	DefaultAckWait       = 30 * time.Second
	DefaultMaxDeliver    = 10
	DefaultNakDelay      = time.Second
	DefaultMaxNakDelay   = time.Minute
	DefaultDrainTimeout  = 30 * time.Second
	minFetchRetryBackoff = 100 * time.Millisecond
	maxFetchRetryBackoff = 5 * time.Second
	fetchErrLogEvery     = 10 * time.Second
)

// ConsumerConfig configures a [Consumer]. Zero values take the defaults noted
// per field.
type ConsumerConfig struct {
	// Stream to consume. Default [DefaultStream].
	Stream string
	// Durable consumer name. Default [DefaultDurable].
	Durable string
	// FilterSubjects restricts the consumer to these subjects (wildcards
	// allowed); empty means the whole stream.
	FilterSubjects []string
	// BatchSize is the most messages fetched (and handed to the processor) at
	// once. Default [DefaultBatchSize].
	BatchSize int
	// MaxWait is the longest a fetch waits for BatchSize messages before
	// handing over what it has. Default [DefaultMaxWait].
	MaxWait time.Duration
	// FetchMaxBytes bounds the bytes of one fetch (0: no byte bound), so the
	// memory held per batch is bounded whatever the message sizes.
	FetchMaxBytes int
	// MaxAckPending bounds messages delivered but not yet acknowledged.
	// Default: the larger of 1000 and 2*BatchSize.
	MaxAckPending int
	// AckWait is how long the server waits for an ack before redelivering.
	// It should exceed MaxWait plus the slowest processing; slow batches are
	// kept alive with in-progress acks every AckWait/3. Default
	// [DefaultAckWait].
	AckWait time.Duration
	// MaxDeliver is the most deliveries of one message; -1 means unlimited.
	// A Nak at the last delivery dead-letters the message instead (reason
	// [ReasonMaxDeliver]). Default [DefaultMaxDeliver].
	MaxDeliver int
	// BackOff is the server's redelivery schedule for messages whose AckWait
	// expired (it does not apply to Nak). Optional; needs MaxDeliver larger
	// than its length.
	BackOff []time.Duration
	// NakDelay is the base delay of a Nak without an explicit delay; it
	// doubles with every delivery of the message up to MaxNakDelay. Default
	// [DefaultNakDelay].
	NakDelay time.Duration
	// MaxNakDelay caps the growing Nak delay. Default [DefaultMaxNakDelay].
	MaxNakDelay time.Duration
	// DrainTimeout bounds how long the batch in hand may still be processed
	// and acknowledged after Run's context ended. Default
	// [DefaultDrainTimeout].
	DrainTimeout time.Duration
	// DeadLetter configures the dead-letter stream.
	DeadLetter DeadLetterConfig
	// Logger for anomalies and errors (never per message at info level).
	// Default slog.Default().
	Logger *slog.Logger
}

func (c ConsumerConfig) withDefaults() ConsumerConfig {
	if c.Stream == "" {
		c.Stream = DefaultStream
	}
	if c.Durable == "" {
		c.Durable = DefaultDurable
	}
	if c.BatchSize <= 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.MaxWait <= 0 {
		c.MaxWait = DefaultMaxWait
	}
	if c.MaxAckPending <= 0 {
		c.MaxAckPending = max(1000, 2*c.BatchSize)
	}
	if c.AckWait <= 0 {
		c.AckWait = DefaultAckWait
	}
	if c.MaxDeliver == 0 {
		c.MaxDeliver = DefaultMaxDeliver
	}
	if c.NakDelay <= 0 {
		c.NakDelay = DefaultNakDelay
	}
	if c.MaxNakDelay <= 0 {
		c.MaxNakDelay = DefaultMaxNakDelay
	}
	if c.MaxNakDelay < c.NakDelay {
		c.MaxNakDelay = c.NakDelay
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = DefaultDrainTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	c.DeadLetter = c.DeadLetter.withDefaults(c.Stream)
	return c
}

func (c ConsumerConfig) validate() error {
	if !ValidSubjectToken(c.Stream) {
		return fmt.Errorf("%w: consumer Stream %q is not a valid stream name", ErrInvalidConfig, c.Stream)
	}
	if !ValidSubjectToken(c.Durable) {
		return fmt.Errorf("%w: consumer Durable %q is not a valid consumer name", ErrInvalidConfig, c.Durable)
	}
	for _, s := range c.FilterSubjects {
		if err := validSubject(s); err != nil {
			return fmt.Errorf("%w: consumer FilterSubjects: %w", ErrInvalidConfig, err)
		}
	}
	if c.MaxAckPending < c.BatchSize {
		return fmt.Errorf("%w: MaxAckPending (%d) must be at least BatchSize (%d)", ErrInvalidConfig, c.MaxAckPending, c.BatchSize)
	}
	if c.MaxDeliver > 0 && len(c.BackOff) >= c.MaxDeliver {
		return fmt.Errorf("%w: MaxDeliver (%d) must be larger than the number of BackOff steps (%d)", ErrInvalidConfig, c.MaxDeliver, len(c.BackOff))
	}
	if c.AckWait <= c.MaxWait {
		return fmt.Errorf("%w: AckWait (%s) must be longer than MaxWait (%s)", ErrInvalidConfig, c.AckWait, c.MaxWait)
	}
	if c.FetchMaxBytes < 0 {
		return fmt.Errorf("%w: FetchMaxBytes must not be negative, got %d", ErrInvalidConfig, c.FetchMaxBytes)
	}
	return nil
}

// Stats are cumulative counters of a [Consumer].
type Stats struct {
	Batches          uint64 // batches handed to the processor
	Messages         uint64 // messages handed to the processor
	Acked            uint64
	Naked            uint64
	Termed           uint64 // terminated without dead-lettering
	DeadLettered     uint64 // published to the dead-letter stream, then terminated
	DeadLetterFailed uint64 // dead-letter publish failed; the message was nak'd
	MaxDelivered     uint64 // messages dead-lettered at MaxDeliver (a Nak at the last delivery, or an advisory)
	// MaxDeliverAdvisories counts MAX_DELIVERIES advisories handled: messages
	// whose AckWait expired at the last delivery (a crashed or stalled
	// processor), copied from the stream to the dead-letter stream.
	MaxDeliverAdvisories uint64
	Unmentioned          uint64 // indices the Result did not mention (nak'd)
	Conflicts            uint64 // indices the Result set more than once
	OutOfRange           uint64 // Result indices beyond the batch (ignored)
	ProcessorErrors      uint64 // batches nak'd because the processor failed or panicked
	FetchErrors          uint64
	AckErrors            uint64 // failed ack/nak/term sends
}

type stats struct {
	batches, messages, acked, naked, termed, deadLettered, deadLetterFailed, maxDelivered,
	unmentioned, conflicts, outOfRange, processorErrors, fetchErrors, ackErrors, maxDeliverAdvisories atomic.Uint64
}

// Consumer reads batches from a durable pull consumer and applies the
// decisions of its [Processor]. Create it with [NewConsumer]; call Run once.
type Consumer struct {
	js     jetstream.JetStream
	cons   jetstream.Consumer
	stream jetstream.Stream
	cfg    ConsumerConfig
	proc   Processor
	log    *slog.Logger
	dlq    *deadLetterer
	keep   time.Duration // in-progress interval
	fopts  []jetstream.FetchOpt
	st     stats
}

// NewConsumer creates or updates the durable pull consumer described by cfg
// (explicit acks) and, unless disabled, ensures the dead-letter stream. The
// dead-letter subjects must not be captured by the source stream.
func NewConsumer(ctx context.Context, js jetstream.JetStream, cfg ConsumerConfig, p Processor) (*Consumer, error) {
	if p == nil {
		return nil, fmt.Errorf("ponixnats: new consumer: %w: nil Processor", ErrInvalidConfig)
	}
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("ponixnats: new consumer %s on stream %s: %w", cfg.Durable, cfg.Stream, err)
	}
	st, err := js.Stream(ctx, cfg.Stream)
	if err != nil {
		return nil, fmt.Errorf("ponixnats: new consumer %s: looking up stream %s: %w", cfg.Durable, cfg.Stream, err)
	}
	c := &Consumer{js: js, stream: st, cfg: cfg, proc: p, log: cfg.Logger.With("stream", cfg.Stream, "consumer", cfg.Durable)}
	if !cfg.DeadLetter.Disabled {
		c.dlq, err = newDeadLetterer(ctx, js, cfg.DeadLetter, st.CachedInfo().Config.Subjects)
		if err != nil {
			return nil, fmt.Errorf("ponixnats: new consumer %s on stream %s: %w", cfg.Durable, cfg.Stream, err)
		}
	}
	cc := jetstream.ConsumerConfig{
		Durable:       cfg.Durable,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cfg.AckWait,
		MaxDeliver:    cfg.MaxDeliver,
		BackOff:       cfg.BackOff,
		MaxAckPending: cfg.MaxAckPending,
	}
	switch len(cfg.FilterSubjects) {
	case 0:
	case 1:
		cc.FilterSubject = cfg.FilterSubjects[0]
	default:
		cc.FilterSubjects = cfg.FilterSubjects
	}
	c.cons, err = js.CreateOrUpdateConsumer(ctx, cfg.Stream, cc)
	if err != nil {
		return nil, fmt.Errorf("ponixnats: creating or updating consumer %s on stream %s: %w", cfg.Durable, cfg.Stream, err)
	}
	ackWait := c.cons.CachedInfo().Config.AckWait
	if ackWait <= 0 {
		ackWait = cfg.AckWait
	}
	c.keep = ackWait / 3
	if cfg.FetchMaxBytes > 0 {
		c.fopts = append(c.fopts, jetstream.FetchMaxBytes(cfg.FetchMaxBytes))
	}
	return c, nil
}

// Config returns the effective configuration (defaults applied).
func (c *Consumer) Config() ConsumerConfig { return c.cfg }

// Info returns the server's current view of the consumer.
func (c *Consumer) Info(ctx context.Context) (*jetstream.ConsumerInfo, error) {
	return c.cons.Info(ctx)
}

// Stats returns a snapshot of the counters.
func (c *Consumer) Stats() Stats {
	s := &c.st
	return Stats{
		Batches: s.batches.Load(), Messages: s.messages.Load(), Acked: s.acked.Load(), Naked: s.naked.Load(),
		Termed: s.termed.Load(), DeadLettered: s.deadLettered.Load(), DeadLetterFailed: s.deadLetterFailed.Load(),
		MaxDelivered: s.maxDelivered.Load(), Unmentioned: s.unmentioned.Load(), Conflicts: s.conflicts.Load(),
		OutOfRange: s.outOfRange.Load(), ProcessorErrors: s.processorErrors.Load(),
		FetchErrors: s.fetchErrors.Load(), AckErrors: s.ackErrors.Load(),
		MaxDeliverAdvisories: s.maxDeliverAdvisories.Load(),
	}
}

// Run fetches and processes batches until ctx ends. Transient errors (no
// messages, timeouts, lost connection) are logged (rate-limited) and retried
// with a short backoff; they never end Run. When ctx ends, Run stops
// fetching, lets the processor finish the batch in hand (with a context that
// is cancelled only after DrainTimeout), sends its acks and waits for the
// server to confirm them, then returns nil. A pull request already sent is
// not abandoned (the server may be delivering into it): Run waits for it to
// end, at most MaxWait, and processes what it brought too.
//
// While it runs, Run also listens to the consumer's MAX_DELIVERIES advisories
// and dead-letters messages whose AckWait expired at their last delivery (see
// [MaxDeliveriesAdvisorySubject]), so that a message JetStream gives up on is
// never silently lost. Run fails only if it cannot subscribe to them.
func (c *Consumer) Run(ctx context.Context) error {
	stopWatch, err := c.watchMaxDeliveries(ctx)
	if err != nil {
		return fmt.Errorf("ponixnats: consumer %s on stream %s: %w", c.cfg.Durable, c.cfg.Stream, err)
	}
	defer stopWatch()
	// One batch is fetched while the processor works on the previous one:
	// fetching costs the server and the network, processing costs this
	// process and the sink, so the two overlap. At shutdown the batch fetched
	// ahead is processed too: once fetched, a batch is in hand.
	fetchCtx, stopFetching := context.WithCancel(ctx)
	defer stopFetching()
	batches := make(chan []jetstream.Msg)
	go func() {
		defer close(batches)
		c.fetchLoop(fetchCtx, batches)
	}()
	for batch := range batches {
		c.handle(ctx, batch)
	}
	return nil
}

// fetchLoop fetches batches and hands them to Run until ctx ends. Transient
// errors are logged (rate-limited) and retried with backoff.
func (c *Consumer) fetchLoop(ctx context.Context, out chan<- []jetstream.Msg) {
	var (
		retry      = minFetchRetryBackoff
		lastErrLog time.Time
		suppressed int
	)
	for ctx.Err() == nil {
		buf := make([]jetstream.Msg, 0, c.cfg.BatchSize)
		n, err := c.fetch(ctx, &buf)
		if err != nil && ctx.Err() == nil {
			c.st.fetchErrors.Add(1)
			if now := time.Now(); now.Sub(lastErrLog) >= fetchErrLogEvery {
				c.log.Warn("fetch failed, retrying", "error", err, "retry_in", retry, "suppressed_since_last_log", suppressed)
				lastErrLog, suppressed = now, 0
			} else {
				suppressed++
			}
			if n == 0 {
				if !sleepCtx(ctx, retry) {
					return
				}
				retry = min(retry*2, maxFetchRetryBackoff)
				continue
			}
		} else if err == nil {
			retry = minFetchRetryBackoff
		}
		if n == 0 {
			continue
		}
		if !c.handOff(ctx, out, buf) {
			return
		}
	}
}

// handOff waits until Run takes batch, keeping its messages alive with
// in-progress acks meanwhile. It reports whether fetching should go on: after
// ctx ended the batch is still handed over (Run processes it), then fetching
// stops.
func (c *Consumer) handOff(ctx context.Context, out chan<- []jetstream.Msg, batch []jetstream.Msg) bool {
	t := time.NewTicker(c.keep)
	defer t.Stop()
	for {
		select {
		case out <- batch:
			return ctx.Err() == nil
		case <-t.C:
			for _, m := range batch {
				if err := m.InProgress(); err != nil {
					break
				}
			}
		}
	}
}

// fetch pulls one batch into buf. A pull request in flight is never abandoned,
// not even when ctx ends: the server may already be delivering to it, and
// messages delivered to a dropped request sit unacked until AckWait. So the
// fetch runs to its end (at most MaxWait) and Run processes what it brought.
func (c *Consumer) fetch(ctx context.Context, buf *[]jetstream.Msg) (int, error) {
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.MaxWait)
	defer cancel()
	b, err := c.cons.Fetch(c.cfg.BatchSize, append(c.fopts[:len(c.fopts):len(c.fopts)], jetstream.FetchContext(fctx))...)
	if err != nil {
		return 0, err
	}
	for m := range b.Messages() {
		*buf = append(*buf, m)
	}
	err = b.Error()
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
		errors.Is(err, jetstream.ErrNoMessages) || errors.Is(err, nats.ErrTimeout) {
		err = nil
	}
	return len(*buf), err
}

// handle runs the processor on one batch and applies its result.
func (c *Consumer) handle(ctx context.Context, batch []jetstream.Msg) {
	c.st.batches.Add(1)
	c.st.messages.Add(uint64(len(batch)))

	// The processing context outlives ctx by at most DrainTimeout.
	pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stopDrain := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(c.cfg.DrainTimeout, cancel)
		context.AfterFunc(pctx, func() { t.Stop() })
	})
	defer stopDrain()

	stopKeep := c.keepAlive(batch)
	res, err := c.callProcessor(pctx, batch)
	stopKeep()

	final := ctx.Err() != nil
	c.apply(pctx, batch, res, err, final)
}

// keepAlive sends in-progress acks for batch every AckWait/3 until stopped.
func (c *Consumer) keepAlive(batch []jetstream.Msg) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(c.keep)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				for _, m := range batch {
					if err := m.InProgress(); err != nil {
						c.log.Warn("in-progress ack failed", "error", err)
						break
					}
				}
				c.log.Debug("batch still processing, sent in-progress acks", "messages", len(batch))
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

func (c *Consumer) callProcessor(ctx context.Context, batch []jetstream.Msg) (res Result, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("processor panicked: %v\n%s", r, debug.Stack())
		}
	}()
	return c.proc(ctx, batch)
}

// apply carries out the decisions of res (or a whole-batch Nak on err).
func (c *Consumer) apply(ctx context.Context, batch []jetstream.Msg, res Result, perr error, final bool) {
	if perr != nil {
		c.st.processorErrors.Add(1)
		c.log.Error("processor failed, nak'ing the whole batch", "error", perr, "messages", len(batch))
		res = NakAll(len(batch), 0)
	}
	var (
		unmentioned, ackErrs, acked, naked, termed int
		firstNakErr, firstAckErr                   error
	)
	for i, m := range batch {
		d, ok := res.Decision(i)
		if !ok {
			unmentioned++
			d = Decision{Action: ActionNak}
		}
		var err error
		switch d.Action {
		case ActionAck:
			if final {
				err = m.DoubleAck(ctx)
			} else {
				err = m.Ack()
			}
			acked++
		case ActionTerm:
			err = m.TermWithReason(string(d.Reason))
			termed++
		case ActionDeadLetter:
			err = c.deadLetter(ctx, m, d.Reason, d.Err)
		default: // ActionNak
			if d.Err != nil && firstNakErr == nil {
				firstNakErr = d.Err
			}
			var dl bool
			dl, err = c.nak(ctx, m, d)
			if !dl {
				naked++
			}
		}
		if err != nil {
			ackErrs++
			if firstAckErr == nil {
				firstAckErr = err
			}
		}
	}
	if final {
		// Make sure everything sent reached the server before Run returns.
		if err := c.js.Conn().FlushTimeout(c.cfg.DrainTimeout); err != nil {
			c.log.Warn("flushing acks at shutdown failed", "error", err)
		}
	}
	s := &c.st
	s.acked.Add(uint64(acked))
	s.naked.Add(uint64(naked))
	s.termed.Add(uint64(termed))
	s.unmentioned.Add(uint64(unmentioned))
	s.ackErrors.Add(uint64(ackErrs))
	extra := max(0, res.Len()-len(batch)) + res.extra
	s.outOfRange.Add(uint64(extra))
	s.conflicts.Add(uint64(res.conflicts))
	if unmentioned > 0 || res.conflicts > 0 || extra > 0 {
		c.log.Warn("processor result incomplete or inconsistent: unmentioned indices nak'd, duplicates resolved to the most conservative decision, out-of-range ignored",
			"batch", len(batch), "unmentioned", unmentioned, "duplicates", res.conflicts, "out_of_range", extra)
	}
	if firstNakErr != nil {
		c.log.Warn("messages nak'd for redelivery", "naked", naked, "error", firstNakErr)
	}
	if ackErrs > 0 {
		c.log.Warn("sending ack/nak/term failed; the server will redeliver after AckWait", "failed", ackErrs, "error", firstAckErr)
	}
}

// nak naks m with d.Delay or the growing default; at the last delivery it
// dead-letters instead. It reports whether the message was dead-lettered.
func (c *Consumer) nak(ctx context.Context, m jetstream.Msg, d Decision) (bool, error) {
	md, err := m.Metadata()
	if err != nil {
		return false, m.NakWithDelay(c.nakDelay(1, d.Delay))
	}
	if c.cfg.MaxDeliver > 0 && md.NumDelivered >= uint64(c.cfg.MaxDeliver) && c.dlq != nil {
		cause := ErrMaxDeliver
		if d.Err != nil {
			cause = fmt.Errorf("%w (%d deliveries); last error: %w", ErrMaxDeliver, md.NumDelivered, d.Err)
		}
		c.st.maxDelivered.Add(1)
		if err := c.deadLetterMeta(ctx, m, md, ReasonMaxDeliver, cause); err != nil {
			return false, err
		}
		return true, nil
	}
	return false, m.NakWithDelay(c.nakDelay(md.NumDelivered, d.Delay))
}

// nakDelay returns explicit if set, else NakDelay doubled per previous
// delivery, capped at MaxNakDelay.
func (c *Consumer) nakDelay(numDelivered uint64, explicit time.Duration) time.Duration {
	if explicit > 0 {
		return explicit
	}
	return NakBackoff(numDelivered, c.cfg.NakDelay, c.cfg.MaxNakDelay)
}

// NakBackoff is the default Nak delay for a message delivered numDelivered
// times: base, 2*base, 4*base, ... capped at max.
func NakBackoff(numDelivered uint64, base, max time.Duration) time.Duration {
	d := base
	for i := uint64(1); i < numDelivered && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	return d
}

func (c *Consumer) deadLetter(ctx context.Context, m jetstream.Msg, reason Reason, cause error) error {
	md, err := m.Metadata()
	if err != nil {
		c.st.deadLetterFailed.Add(1)
		return fmt.Errorf("dead-letter: reading metadata: %w", err)
	}
	return c.deadLetterMeta(ctx, m, md, reason, cause)
}

// deadLetterMeta publishes m to the dead-letter stream and terms it; if the
// publish fails it naks m with the default delay instead.
func (c *Consumer) deadLetterMeta(ctx context.Context, m jetstream.Msg, md *jetstream.MsgMetadata, reason Reason, cause error) error {
	if c.dlq == nil {
		c.log.Error("dead-lettering disabled: terminating message", "reason", reason, "error", cause,
			"subject", m.Subject(), "stream_seq", md.Sequence.Stream)
		c.st.termed.Add(1)
		return m.TermWithReason(string(reason))
	}
	if err := c.dlq.publish(ctx, m, md, reason, cause); err != nil {
		c.st.deadLetterFailed.Add(1)
		c.log.Error("dead-letter publish failed, nak'ing message", "reason", reason, "error", err,
			"subject", m.Subject(), "stream_seq", md.Sequence.Stream)
		return m.NakWithDelay(c.nakDelay(md.NumDelivered, 0))
	}
	c.st.deadLettered.Add(1)
	c.log.Warn("message dead-lettered", "reason", reason, "error", cause, "subject", m.Subject(),
		"stream_seq", md.Sequence.Stream, "dlq_stream", c.dlq.cfg.Stream)
	return m.TermWithReason(string(reason))
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
