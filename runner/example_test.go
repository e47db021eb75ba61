package runner_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ponix-go/ponix/runner"
)

// A service registers its long-lived processes and its cleanup. Here the
// "consumer" fails, which stops the "producer"; the closer still runs, and Run
// returns the failure for main to turn into an exit status.
func Example() {
	r := runner.New(
		runner.WithLogger(slog.New(slog.DiscardHandler)), // a real service passes its logger
		runner.WithCloserTimeout(5*time.Second),
	)
	r.AddProcess("producer", func(ctx context.Context) error {
		<-ctx.Done() // runs until shutdown
		fmt.Println("producer stopped")
		return nil
	})
	r.AddProcess("consumer", func(ctx context.Context) error {
		time.Sleep(10 * time.Millisecond)
		return errors.New("sink unreachable")
	})
	r.AddCloser("close connections", func(ctx context.Context) error {
		fmt.Println("connections closed")
		return nil
	})

	err := r.Run(context.Background())
	fmt.Println("error:", err)
	fmt.Println("exit status:", runner.ExitCode(err))
	// Output:
	// producer stopped
	// connections closed
	// error: process consumer: sink unreachable
	// exit status: 1
}
