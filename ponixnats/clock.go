package ponixnats

import (
	"context"
	"time"

	"github.com/ponix-go/ponix/runner/backoff"
)

// clock is the time a [Consumer]'s loop keeps: its deadlines, tickers and back-off waits.
// systemClock is the real one; the unit tests hand the loop a fake they advance themselves.
// (Timeouts of single server requests stay on the real clock: they bound a server's answer.)
type clock interface {
	now() time.Time
	// ticker ticks every d (dropping ticks nobody takes, like time.Ticker) until stopped.
	ticker(d time.Duration) (tick <-chan time.Time, stop func())
	// afterFunc calls f once d has passed, unless stopped first; stop reports whether it
	// stopped the call.
	afterFunc(d time.Duration, f func()) (stop func() bool)
	// sleep waits d or until ctx ends, as [backoff.Policy].Sleep.
	sleep(ctx context.Context, d time.Duration) error
}

// systemClock is the real clock.
type systemClock struct{}

func (systemClock) now() time.Time { return time.Now() }

func (systemClock) ticker(d time.Duration) (<-chan time.Time, func()) {
	t := time.NewTicker(d)
	return t.C, t.Stop
}

func (systemClock) afterFunc(d time.Duration, f func()) func() bool { return time.AfterFunc(d, f).Stop }

func (systemClock) sleep(ctx context.Context, d time.Duration) error { return backoff.Sleep(ctx, d) }
