package backoff

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

func TestDelayGrowsAndCaps(t *testing.T) {
	ms := time.Millisecond
	for _, c := range []struct {
		name string
		p    Policy
		want []time.Duration // Delay(0), Delay(1), ...
	}{
		{"doubling by default", Policy{Initial: 100 * ms, Max: time.Second}, []time.Duration{100 * ms, 200 * ms, 400 * ms, 800 * ms, time.Second, time.Second}},
		{"factor 1.5", Policy{Initial: 20 * ms, Max: 100 * ms, Factor: 1.5}, []time.Duration{20 * ms, 30 * ms, 45 * ms, 67500 * time.Microsecond, 100 * ms}},
		{"constant", Constant(2 * time.Second), []time.Duration{2 * time.Second, 2 * time.Second, 2 * time.Second}},
		{"factor below 1 is constant", Policy{Initial: 10 * ms, Factor: 0.5}, []time.Duration{10 * ms, 10 * ms}},
		{"initial above max", Policy{Initial: time.Second, Max: 100 * ms}, []time.Duration{100 * ms, 100 * ms}},
		{"no cap", Policy{Initial: ms}, []time.Duration{ms, 2 * ms, 4 * ms}},
		{"zero value waits nothing", Policy{}, []time.Duration{0, 0}},
	} {
		for i, want := range c.want {
			if got := c.p.Delay(i); got != want {
				t.Errorf("%s: Delay(%d) = %s, want %s", c.name, i, got, want)
			}
		}
	}
	p := Policy{Initial: 100 * time.Millisecond, Max: time.Second}
	if got := p.Delay(-3); got != p.Delay(0) {
		t.Errorf("Delay(-3) = %s, want Delay(0) = %s", got, p.Delay(0))
	}
}

func TestDelayNeverOverflows(t *testing.T) {
	for _, p := range []Policy{
		{Initial: time.Second},
		{Initial: time.Second, Factor: 10},
		{Initial: time.Second, Jitter: 1},
		{Initial: maxDuration / 2, Jitter: 1, Rand: func() float64 { return 0.99 }},
	} {
		prev := time.Duration(0)
		for _, n := range []int{0, 1, 10, 62, 63, 64, 100, 1000, math.MaxInt} {
			d := p.Delay(n)
			if d < prev || d <= 0 {
				t.Fatalf("%+v: Delay(%d) = %s after %s: want growing, positive", p, n, d, prev)
			}
			prev = d
		}
		if got := p.Delay(math.MaxInt); got != maxDuration {
			t.Errorf("%+v: Delay(MaxInt) = %s, want the longest duration", p, got)
		}
	}
}

func TestJitter(t *testing.T) {
	p := Policy{Initial: 100 * time.Millisecond, Max: time.Second, Jitter: 0.2, Rand: rand.New(rand.NewPCG(1, 2)).Float64}
	for n := range 20 {
		base := Policy{Initial: p.Initial, Max: p.Max}.Delay(n)
		d := p.Delay(n)
		if d < base || d >= base+base/5 {
			t.Fatalf("Delay(%d) = %s, want in [%s, %s)", n, d, base, base+base/5)
		}
	}
	// The same seed, the same waits.
	a := Policy{Initial: time.Second, Jitter: 0.5, Rand: rand.New(rand.NewPCG(7, 7)).Float64}
	b := Policy{Initial: time.Second, Jitter: 0.5, Rand: rand.New(rand.NewPCG(7, 7)).Float64}
	for n := range 10 {
		if da, db := a.Delay(n), b.Delay(n); da != db {
			t.Fatalf("seeded jitter differs at %d: %s vs %s", n, da, db)
		}
	}
	// Clamped: Jitter above 1 adds at most the wait itself; a random number out of [0, 1)
	// adds nothing.
	if got := (Policy{Initial: time.Second, Jitter: 5, Rand: func() float64 { return 0.5 }}).Delay(0); got != 1500*time.Millisecond {
		t.Errorf("Jitter 5 with r=0.5: %s, want 1.5s", got)
	}
	for _, r := range []float64{-1, 1, 2, math.NaN()} {
		if got := (Policy{Initial: time.Second, Jitter: 1, Rand: func() float64 { return r }}).Delay(0); got != time.Second {
			t.Errorf("r=%v: %s, want 1s", r, got)
		}
	}
	// Without Rand, the shared source is used; it is safe for concurrent use (run with -race).
	var wg sync.WaitGroup
	shared := Policy{Initial: time.Millisecond, Jitter: 1}
	for range 4 {
		wg.Go(func() {
			for n := range 100 {
				if d := shared.Delay(n % 5); d < time.Millisecond {
					t.Errorf("Delay = %s below Initial", d)
				}
			}
		})
	}
	wg.Wait()
}

// fakeClock records the waits of a Backoff instead of sleeping them.
type fakeClock struct {
	waits []time.Duration
}

func (c *fakeClock) sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.waits = append(c.waits, d)
	return nil
}

func TestBackoffWaitResetRetries(t *testing.T) {
	var clock fakeClock
	b := Policy{Initial: time.Second, Max: 4 * time.Second, Sleep: clock.sleep}.Start()
	ctx := context.Background()
	for range 4 {
		if err := b.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if b.Retries() != 4 {
		t.Fatalf("Retries = %d, want 4", b.Retries())
	}
	b.Reset()
	if b.Retries() != 0 || b.Delay() != time.Second {
		t.Fatalf("after Reset: Retries %d, Delay %s; want 0, 1s", b.Retries(), b.Delay())
	}
	_ = b.Wait(ctx)
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second, time.Second}
	if len(clock.waits) != len(want) {
		t.Fatalf("waits %v, want %v", clock.waits, want)
	}
	for i := range want {
		if clock.waits[i] != want[i] {
			t.Fatalf("waits %v, want %v", clock.waits, want)
		}
	}
}

func TestBackoffDelayIsWhatWaitSleeps(t *testing.T) {
	var clock fakeClock
	b := Policy{Initial: time.Second, Jitter: 1, Rand: rand.New(rand.NewPCG(3, 4)).Float64, Sleep: clock.sleep}.Start()
	for range 5 {
		d := b.Delay()
		if again := b.Delay(); again != d {
			t.Fatalf("Delay changed between calls: %s then %s", d, again)
		}
		_ = b.Wait(context.Background())
		if got := clock.waits[len(clock.waits)-1]; got != d {
			t.Fatalf("Wait slept %s, Delay said %s", got, d)
		}
	}
}

func TestBackoffWaitEndsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	b := Policy{Initial: time.Hour}.Start()
	go func() {
		time.Sleep(10 * time.Millisecond)
		cancel()
	}()
	start := time.Now()
	if err := b.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait = %v, want context.Canceled", err)
	}
	if el := time.Since(start); el > 10*time.Second {
		t.Fatalf("Wait took %s after cancel", el)
	}
	if b.Retries() != 1 {
		t.Fatalf("Retries = %d, want 1 (counted even when cut short)", b.Retries())
	}
}

func TestSleep(t *testing.T) {
	if err := Sleep(context.Background(), time.Millisecond); err != nil {
		t.Fatalf("Sleep = %v", err)
	}
	if err := Sleep(context.Background(), -time.Second); err != nil {
		t.Fatalf("Sleep(negative) = %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Sleep(ctx, 0); !errors.Is(err, context.Canceled) {
		t.Fatalf("Sleep on an ended context = %v, want context.Canceled", err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Millisecond)
	defer cancel()
	if err := Sleep(ctx, time.Hour); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Sleep past the deadline = %v, want DeadlineExceeded", err)
	}
}
