// Package backoff is the one back-off implementation of Ponix: the waits between the attempts
// of a retry loop (capped exponential growth, optional jitter) and a context-aware sleep.
//
// A [Policy] is a value: it says how long to wait before each retry ([Policy.Delay]). A
// [Backoff], started from a policy, is one run of a retry loop: it counts the retries, sleeps
// the waits ([Backoff.Wait]) and starts again from the first wait after a success
// ([Backoff.Reset]):
//
//	b := backoff.Policy{Initial: 100 * time.Millisecond, Max: 5 * time.Second}.Start()
//	for {
//		if err := try(ctx); err == nil {
//			return nil
//		}
//		if err := b.Wait(ctx); err != nil {
//			return err // ctx ended
//		}
//	}
//
// The package has no global mutable state. Jitter is off unless [Policy.Jitter] is set, and
// its random numbers come from [Policy.Rand] when set, so waits can be made deterministic; the
// sleep itself is [Policy.Sleep] when set, so a test can run a retry loop with a fake clock,
// without real waits.
package backoff

import (
	"context"
	"math"
	"math/rand/v2"
	"time"
)

// maxDuration is the longest wait a policy returns.
const maxDuration = time.Duration(math.MaxInt64)

// Policy says how long a retry loop waits before each retry: Initial before the first,
// multiplied by Factor for each one after, capped at Max, plus up to Jitter of it at random.
// The zero value waits nothing. A Policy is safe for concurrent use when its Rand and Sleep
// are.
type Policy struct {
	// Initial is the wait before the first retry. Zero or negative: no wait at all.
	Initial time.Duration
	// Max caps the wait (before jitter is added). Zero or negative: no cap.
	Max time.Duration
	// Factor multiplies the wait from one retry to the next. Zero means 2 (doubling); a value
	// below 1 is taken as 1 (a constant wait, see [Constant]).
	Factor float64
	// Jitter, a fraction between 0 and 1, adds a random part of up to that fraction to each
	// wait: a wait d becomes d + r·Jitter·d, r uniform in [0, 1). Zero (the default) adds
	// nothing, and the waits are deterministic. Values outside [0, 1] are clamped.
	Jitter float64
	// Rand returns the uniform random numbers in [0, 1) that jitter uses. nil: the top-level
	// Float64 of math/rand/v2, which is safe for concurrent use. Tests pass a seeded source,
	// e.g. rand.New(rand.NewPCG(1, 2)).Float64 (not safe for concurrent use).
	Rand func() float64
	// Sleep waits d, or until ctx ends: it returns nil after the full wait and ctx's error
	// otherwise. nil: the package's [Sleep], a real timer. Tests pass a fake clock that
	// records the waits and returns at once.
	Sleep func(ctx context.Context, d time.Duration) error
}

// Constant returns the policy of a loop that waits d before every retry, without jitter.
func Constant(d time.Duration) Policy {
	return Policy{Initial: d, Max: d, Factor: 1}
}

// Delay returns the wait before retry number retry, counted from 0: Initial·Factor^retry,
// capped at Max, plus jitter. A negative retry counts as 0.
func (p Policy) Delay(retry int) time.Duration {
	return p.jitter(p.base(retry))
}

// base is Delay without the jitter.
func (p Policy) base(retry int) time.Duration {
	if p.Initial <= 0 {
		return 0
	}
	limit := maxDuration
	if p.Max > 0 {
		limit = p.Max
	}
	if p.Initial >= limit {
		return limit
	}
	factor := p.Factor
	switch {
	case factor == 0:
		factor = 2
	case factor < 1 || math.IsNaN(factor):
		factor = 1
	}
	d := float64(p.Initial) * math.Pow(factor, float64(max(retry, 0)))
	if d >= float64(limit) || math.IsInf(d, 0) {
		return limit
	}
	return time.Duration(d)
}

// jitter adds the random part of Jitter to d.
func (p Policy) jitter(d time.Duration) time.Duration {
	j := p.Jitter
	if d <= 0 || !(j > 0) { // !(j > 0): also NaN
		return d
	}
	j = min(j, 1)
	next := rand.Float64
	if p.Rand != nil {
		next = p.Rand
	}
	r := next()
	if !(r > 0) || r >= 1 { // out of [0, 1) or NaN: no jitter
		r = 0
	}
	x := float64(d) * (1 + j*r)
	if x >= float64(maxDuration) {
		return maxDuration
	}
	return time.Duration(x)
}

// sleep waits d with the policy's Sleep, or the package's.
func (p Policy) sleep(ctx context.Context, d time.Duration) error {
	if p.Sleep != nil {
		return p.Sleep(ctx, d)
	}
	return Sleep(ctx, d)
}

// Start returns a new run of a retry loop under p, before its first retry.
func (p Policy) Start() *Backoff {
	return &Backoff{policy: p}
}

// Backoff is one run of a retry loop under a [Policy]: it counts the retries and sleeps the
// wait before each. Create it with [Policy.Start]. A Backoff is not safe for concurrent use.
type Backoff struct {
	policy  Policy
	retries int
	next    time.Duration
	drawn   bool // next holds the wait of retry number retries (jitter drawn)
}

// Delay returns the wait that the next [Backoff.Wait] sleeps, for a log line before it. With
// jitter, the random part is drawn once: Delay returns the same value until Wait or Reset.
func (b *Backoff) Delay() time.Duration {
	if !b.drawn {
		b.next, b.drawn = b.policy.Delay(b.retries), true
	}
	return b.next
}

// Wait sleeps the wait before the next retry ([Backoff.Delay]), then counts the retry: the
// wait after it is the next one of the policy. It returns nil after the full wait, and ctx's
// error when ctx ended before (or had already ended: then it returns at once). The retry is
// counted in either case.
func (b *Backoff) Wait(ctx context.Context) error {
	d := b.Delay()
	b.retries++
	b.drawn = false
	return b.policy.sleep(ctx, d)
}

// Reset starts the run again, as after [Policy.Start]: the next wait is the policy's first.
// Call it after a success, so that the next failure waits the shortest time again.
func (b *Backoff) Reset() {
	b.retries, b.drawn = 0, false
}

// Retries returns how many waits [Backoff.Wait] began since [Policy.Start] or the last
// [Backoff.Reset].
func (b *Backoff) Retries() int {
	return b.retries
}

// Sleep waits d, or until ctx ends, with a real timer. It returns nil after the full wait and
// ctx.Err() when ctx ended first; when ctx has already ended it returns ctx.Err() at once,
// even for d <= 0.
func Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
