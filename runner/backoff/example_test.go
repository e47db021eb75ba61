package backoff_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ponix-go/ponix/runner/backoff"
)

// A retry loop: try, and wait longer after each failure, until the attempt succeeds or ctx
// ends. Sleep is a fake clock here, so that the example prints the waits at once; a service
// leaves it nil (a real timer) and usually sets Jitter.
func Example() {
	p := backoff.Policy{
		Initial: 100 * time.Millisecond,
		Max:     time.Second,
		Factor:  2,
		Sleep: func(ctx context.Context, d time.Duration) error {
			fmt.Println("waiting", d)
			return ctx.Err()
		},
	}
	failures := 5
	connect := func(context.Context) error {
		if failures > 0 {
			failures--
			return errors.New("connection refused")
		}
		return nil
	}

	ctx := context.Background()
	b := p.Start()
	for {
		err := connect(ctx)
		if err == nil {
			break
		}
		if err := b.Wait(ctx); err != nil {
			fmt.Println("giving up:", err)
			return
		}
	}
	fmt.Println("connected after", b.Retries(), "retries")
	// Output:
	// waiting 100ms
	// waiting 200ms
	// waiting 400ms
	// waiting 800ms
	// waiting 1s
	// connected after 5 retries
}

// The waits of a policy, as a client library that sleeps by itself asks for them (for
// example nats.go's CustomReconnectDelay).
func ExamplePolicy_Delay() {
	p := backoff.Policy{Initial: 250 * time.Millisecond, Max: 2 * time.Second}
	for retry := range 6 {
		fmt.Println(retry, p.Delay(retry))
	}
	// Output:
	// 0 250ms
	// 1 500ms
	// 2 1s
	// 3 2s
	// 4 2s
	// 5 2s
}
