package ponixnats

import (
	"context"
	"log/slog"
	"time"
)

// RetryOptions configure [RetryStore].
type RetryOptions struct {
	// Retryable reports which store errors are worth retrying in place (a sink
	// outage); other errors are returned at once. Nil retries nothing.
	Retryable func(error) bool
	// MinBackoff and MaxBackoff bound the wait between attempts, which doubles
	// from MinBackoff (default 1s) up to MaxBackoff (default 30s).
	MinBackoff, MaxBackoff time.Duration
	// MaxDuration gives up after this long and returns the last error, so that
	// the consumer naks the batch (a redelivery that counts toward
	// MaxDeliver). Zero retries until ctx ends.
	MaxDuration time.Duration
	// Logger for the first failure, a reminder every 30s while failing, and
	// the recovery. Default slog.Default().
	Logger *slog.Logger
}

// retryLogEvery bounds the log volume while a store keeps failing.
const retryLogEvery = 30 * time.Second

// RetryStore wraps a store so that a batch whose store fails with a retryable
// error is stored again in place, with growing backoff, until it succeeds, ctx
// ends or MaxDuration passes. The consumer keeps the batch alive with
// in-progress acks meanwhile and fetches nothing new, so a sink outage neither
// redelivers messages (which would use up MaxDeliver and dead-letter them
// during a long outage) nor spins: the backlog waits in the stream.
//
// The store must be all-or-nothing (as [EnvelopeStore] and [MsgStore] are), so
// that an attempt can be repeated with the same batch.
func RetryStore[T any](store func(context.Context, []T) error, o RetryOptions) func(context.Context, []T) error {
	if o.MinBackoff <= 0 {
		o.MinBackoff = time.Second
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = max(30*time.Second, o.MinBackoff)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return func(ctx context.Context, batch []T) error {
		err := store(ctx, batch)
		if err == nil || o.Retryable == nil || !o.Retryable(err) {
			return err
		}
		start := time.Now()
		o.Logger.Warn("store failed, retrying in place", "batch_size", len(batch), "error", err)
		lastLog, attempts, wait := start, 1, o.MinBackoff
		for {
			if o.MaxDuration > 0 && time.Since(start)+wait > o.MaxDuration {
				o.Logger.Warn("store still failing, giving the batch back for redelivery",
					"batch_size", len(batch), "attempts", attempts, "duration", time.Since(start), "error", err)
				return err
			}
			if !sleepCtx(ctx, wait) {
				return err
			}
			wait = min(2*wait, o.MaxBackoff)
			attempts++
			if err = store(ctx, batch); err == nil {
				o.Logger.Info("store recovered", "batch_size", len(batch), "attempts", attempts, "duration", time.Since(start))
				return nil
			}
			if !o.Retryable(err) {
				return err
			}
			if time.Since(lastLog) >= retryLogEvery {
				o.Logger.Warn("store still failing, retrying in place", "batch_size", len(batch),
					"attempts", attempts, "duration", time.Since(start), "error", err)
				lastLog = time.Now()
			}
		}
	}
}
