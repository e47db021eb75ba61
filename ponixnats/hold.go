package ponixnats

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/ponix-go/ponix/runner/backoff"
)

// Hold defaults.
const (
	DefaultHoldMinBackoff = time.Second
	DefaultHoldMaxBackoff = 30 * time.Second
)

// ErrHoldGivenUp is wrapped by the error a store processor gives its batch back with when a
// sink fault outlasted [HoldConfig.MaxDuration]: the messages are released for a later
// redelivery.
var ErrHoldGivenUp = errors.New("sink still failing after the hold's MaxDuration")

// HoldConfig configures a [Hold].
type HoldConfig struct {
	// MinBackoff and MaxBackoff bound the wait between attempts, which doubles from MinBackoff
	// (default [DefaultHoldMinBackoff]) up to MaxBackoff (default [DefaultHoldMaxBackoff]).
	MinBackoff, MaxBackoff time.Duration
	// MaxDuration, if positive, gives a held batch back after this long: its messages are
	// released for a later redelivery ([ActionRelease], which never counts towards
	// MaxDeliver). Zero holds until the sink recovers or the consumer stops.
	MaxDuration time.Duration
	// Classify names the kind of a sink fault for logs, [HoldState] and metrics (for
	// ClickHouse: string(ponixclickhouse.Classify(err))). Default: "sink".
	Classify func(error) string
	// Logger receives one line when a hold starts, one when the class of the fault changes
	// while it lasts, and one when it ends. Default slog.Default().
	Logger *slog.Logger
}

// HoldState is a snapshot of a [Hold].
type HoldState struct {
	// Held is true while a batch is held because its sink fails.
	Held bool
	// Since is when the current hold started.
	Since time.Time
	// Attempts made in the current hold (the first failure included).
	Attempts int
	// Class is the kind of the last sink fault (see [HoldConfig.Classify]).
	Class string
	// Err is the last sink fault of the current hold.
	Err error
	// LastStored is when a store last succeeded (zero: never).
	LastStored time.Time
	// Holds counts the holds started so far.
	Holds uint64
}

// Hold keeps a batch in place while its sink fails. A store processor ([NewStoreProcessor],
// [NewEnvelopeProcessor], ...) given a Hold with [WithHold], or a [HoldStage], stores a batch; on a sink fault
// (any store error that is not a [Rejection] or a [RecordFault]) it waits and stores the same
// messages again, with growing back-off, until the store succeeds. Meanwhile the [Consumer]
// keeps the batch alive with in-progress acks and fetches nothing new, so the backlog waits in
// the stream, nothing is redelivered, and nothing is dead-lettered: a sink fault says nothing
// about the messages. The hold ends early when the consumer stops (the batch is nak'd, and
// stored after a restart) or after [HoldConfig.MaxDuration].
//
// State reports whether a batch is held and why, for readiness probes and metrics. A Hold may
// be shared by several processors; it is safe for concurrent use.
type Hold struct {
	cfg HoldConfig

	mu sync.Mutex
	st HoldState
}

// NewHold returns a Hold with cfg's defaults applied.
func NewHold(cfg HoldConfig) *Hold {
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = DefaultHoldMinBackoff
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(DefaultHoldMaxBackoff, cfg.MinBackoff)
	}
	if cfg.Classify == nil {
		cfg.Classify = func(error) string { return "sink" }
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Hold{cfg: cfg}
}

// State returns a snapshot of the hold.
func (h *Hold) State() HoldState {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.st
}

// stored records a successful store.
func (h *Hold) stored() {
	h.mu.Lock()
	h.st.LastStored = time.Now()
	h.mu.Unlock()
}

// do runs attempt until it returns nil, holding on every error: it waits (back-off) and tries
// again. It returns attempt's last error when ctx ends, when stopping is closed (the
// consumer stops, see [Batch].Stopping), or after MaxDuration (wrapped with
// [ErrHoldGivenUp]). n is the number of messages held, for the logs.
func (h *Hold) do(ctx context.Context, stopping <-chan struct{}, n int, attempt func(context.Context) error) error {
	err := attempt(ctx)
	if err == nil || ctx.Err() != nil {
		return err
	}
	select {
	case <-stopping:
		// A batch tried once while the consumer stops (the one fetched ahead): it is given
		// back at once, no hold starts.
		return err
	default:
	}
	// The waits end at ctx's end or when the consumer stops, whichever comes first.
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-stopping:
			cancel()
		case <-wctx.Done():
		}
	}()
	start, retry := time.Now(), backoff.Policy{Initial: h.cfg.MinBackoff, Max: h.cfg.MaxBackoff}.Start()
	h.begin(start, err)
	h.cfg.Logger.Warn("sink failing: holding the batch in place (nothing is fetched, redelivered or dead-lettered meanwhile)",
		"class", h.cfg.Classify(err), "error", err, "batch_size", n, "retry_in", retry.Delay())
	for attempts := 1; ; attempts++ {
		if h.cfg.MaxDuration > 0 && time.Since(start)+retry.Delay() > h.cfg.MaxDuration {
			h.end()
			h.cfg.Logger.Warn("sink still failing: giving the batch back for a delayed redelivery",
				"class", h.cfg.Classify(err), "error", err, "batch_size", n, "attempts", attempts,
				"duration", time.Since(start).Round(time.Millisecond), "max_duration", h.cfg.MaxDuration)
			return errors.Join(ErrHoldGivenUp, err)
		}
		if retry.Wait(wctx) != nil {
			h.end()
			if ctx.Err() == nil {
				h.cfg.Logger.Info("stopping while the sink fails: the held batch is released and will be stored after a restart",
					"class", h.cfg.Classify(err), "batch_size", n, "attempts", attempts)
			}
			return err
		}
		if err = attempt(ctx); err == nil {
			h.end()
			h.cfg.Logger.Info("sink recovered: the held batch is stored", "batch_size", n,
				"attempts", attempts+1, "duration", time.Since(start).Round(time.Millisecond))
			return nil
		}
		if ctx.Err() != nil {
			h.end()
			return err
		}
		if prev := h.failed(err); prev != h.cfg.Classify(err) {
			// One line per state change: a new class of fault, not every attempt.
			h.cfg.Logger.Warn("sink still failing, for another cause: the batch stays held", "class", h.cfg.Classify(err),
				"previous_class", prev, "error", err, "batch_size", n, "attempts", attempts+1,
				"held_for", time.Since(start).Round(time.Millisecond), "retry_in", retry.Delay())
		}
	}
}

func (h *Hold) begin(start time.Time, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.st.Held, h.st.Since, h.st.Attempts = true, start, 1
	h.st.Err, h.st.Class = err, h.cfg.Classify(err)
	h.st.Holds++
}

// failed records one more failed attempt and returns the class of the previous one.
func (h *Hold) failed(err error) (prevClass string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	prevClass = h.st.Class
	h.st.Attempts++
	h.st.Err, h.st.Class = err, h.cfg.Classify(err)
	return prevClass
}

func (h *Hold) end() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.st.Held, h.st.Since, h.st.Attempts, h.st.Err, h.st.Class = false, time.Time{}, 0, nil, ""
}

// HoldStage is the holding stage, the top of the store stages: it runs an [IsolateStage]'s
// attempts on a batch under a [Hold]. A sink fault (an attempt's error) holds the batch: the
// isolation is tried again with the hold's back-off, going on where it stopped, until every
// item is decided, the consumer stops ([Batch].Stopping) or ctx ends, or the hold's
// MaxDuration passes. The Hold reports its state ([Hold.State]) meanwhile.
//
// The stages compose in one order, which their types enforce:
//
//	NewHoldStage(NewIsolateStage(store, describe), hold)
//
// where store is a [Store] — the sink's own, or decorated by [ObserveStage] or stages of
// your own that are Stores too. A HoldStage is safe for concurrent use if its store is: each
// batch has its own [Isolation].
type HoldStage[T any] struct {
	next *IsolateStage[T]
	hold *Hold
}

// NewHoldStage returns a holding stage over next with hold (which may be shared with other
// stages and processors). It panics if next or hold is nil.
func NewHoldStage[T any](next *IsolateStage[T], hold *Hold) *HoldStage[T] {
	if next == nil || hold == nil {
		panic("ponixnats: NewHoldStage needs an isolating stage and a Hold")
	}
	return &HoldStage[T]{next: next, hold: hold}
}

// Store stores batch and returns a decision for each of its items, by index into batch.Items:
// [ActionAck] for those stored, [ActionDeadLetter] for those the sink refuses (see
// [IsolateStage]), and [ActionRelease] for the rest when the hold ends before they are
// stored (the consumer stops, ctx ends, or MaxDuration passed: the error then wraps
// [ErrHoldGivenUp]). A release never counts towards MaxDeliver: the sink failed, the items
// did nothing wrong.
func (s *HoldStage[T]) Store(ctx context.Context, batch Batch[T]) Result {
	run := s.next.Begin(batch)
	run.onStored = s.hold.stored
	err := s.hold.do(ctx, batch.Stopping, batch.Len(), run.Attempt)
	res := run.Result()
	if err != nil {
		res.Fill(Decision{Action: ActionRelease, Err: err})
	}
	return res
}
