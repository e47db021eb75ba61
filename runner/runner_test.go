package runner_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ponix-go/ponix/runner"
)

func quiet() runner.Option { return runner.WithLogger(slog.New(slog.DiscardHandler)) }

// runWithin runs r and fails the test if Run does not return within d.
func runWithin(t *testing.T, ctx context.Context, r *runner.Runner, d time.Duration) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		t.Fatalf("Run did not return within %s", d)
		return nil
	}
}

func TestProcessesRunConcurrently(t *testing.T) {
	// Each process waits for the other: only concurrent execution finishes.
	a, b := make(chan struct{}), make(chan struct{})
	r := runner.New(quiet(), runner.WithSignals())
	r.AddProcess("a", func(ctx context.Context) error { close(a); <-b; return nil })
	r.AddProcess("b", func(ctx context.Context) error { close(b); <-a; return nil })
	if err := runWithin(t, context.Background(), r, 5*time.Second); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
}

func TestFirstErrorCancelsOthersAndIsReturned(t *testing.T) {
	boom := errors.New("boom")
	var otherCancelled atomic.Bool
	r := runner.New(quiet(), runner.WithSignals())
	r.AddProcess("failing", func(ctx context.Context) error { return boom })
	r.AddProcess("waiting", func(ctx context.Context) error {
		<-ctx.Done()
		otherCancelled.Store(true)
		return ctx.Err()
	})
	err := runWithin(t, context.Background(), r, 5*time.Second)
	if !errors.Is(err, boom) {
		t.Fatalf("Run = %v, want boom", err)
	}
	if !strings.Contains(err.Error(), "process failing") {
		t.Errorf("error %q does not name the process", err)
	}
	if !otherCancelled.Load() {
		t.Error("the other process was not cancelled")
	}
	if runner.ExitCode(err) != 1 {
		t.Errorf("ExitCode = %d, want 1", runner.ExitCode(err))
	}
}

func TestPanicBecomesErrorWithStack(t *testing.T) {
	var otherCancelled atomic.Bool
	r := runner.New(quiet(), runner.WithSignals())
	r.AddProcess("panicky", func(ctx context.Context) error { panic("kaboom") })
	r.AddProcess("waiting", func(ctx context.Context) error {
		<-ctx.Done()
		otherCancelled.Store(true)
		return nil
	})
	err := runWithin(t, context.Background(), r, 5*time.Second)
	var pe *runner.PanicError
	if !errors.As(err, &pe) {
		t.Fatalf("Run = %v, want a *PanicError", err)
	}
	if pe.Value != "kaboom" {
		t.Errorf("panic value = %v, want kaboom", pe.Value)
	}
	if !bytes.Contains(pe.Stack, []byte("runner_test.go")) {
		t.Errorf("stack does not show the panicking test function:\n%s", pe.Stack)
	}
	if !otherCancelled.Load() {
		t.Error("the other process was not cancelled after the panic")
	}
}

func TestParentContextCancelIsCleanShutdown(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{})
	r := runner.New(quiet(), runner.WithSignals())
	r.AddProcess("loop", func(ctx context.Context) error { close(started); <-ctx.Done(); return ctx.Err() })
	go func() { <-started; cancel() }()
	if err := runWithin(t, ctx, r, 5*time.Second); err != nil {
		t.Fatalf("Run = %v, want nil on a clean shutdown", err)
	}
}

func TestFinishedProcessDoesNotStopOthers(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	finished := make(chan struct{})
	var stillRunning atomic.Bool
	r := runner.New(quiet(), runner.WithSignals())
	r.AddProcess("one-shot", func(ctx context.Context) error { close(finished); return nil })
	r.AddProcess("long", func(ctx context.Context) error {
		<-finished
		select {
		case <-ctx.Done():
			return errors.New("cancelled because a sibling finished")
		case <-time.After(100 * time.Millisecond):
			stillRunning.Store(true)
		}
		cancel()
		return nil
	})
	if err := runWithin(t, ctx, r, 5*time.Second); err != nil {
		t.Fatalf("Run = %v", err)
	}
	if !stillRunning.Load() {
		t.Error("long process did not keep running after its sibling finished")
	}
}

func TestClosersAlwaysRunAfterProcesses(t *testing.T) {
	for _, tc := range []struct {
		name    string
		process runner.Func
		wantErr bool
	}{
		{"after success", func(ctx context.Context) error { return nil }, false},
		{"after failure", func(ctx context.Context) error { return errors.New("failed") }, true},
		{"after panic", func(ctx context.Context) error { panic("p") }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var processDone, closerSawProcessDone, closerHadDeadline atomic.Bool
			r := runner.New(quiet(), runner.WithSignals(), runner.WithCloserTimeout(time.Second))
			r.AddProcess("p", func(ctx context.Context) error {
				defer processDone.Store(true)
				return tc.process(ctx)
			})
			r.AddCloser("c", func(ctx context.Context) error {
				closerSawProcessDone.Store(processDone.Load())
				_, ok := ctx.Deadline()
				closerHadDeadline.Store(ok)
				return nil
			})
			err := runWithin(t, context.Background(), r, 5*time.Second)
			if (err != nil) != tc.wantErr {
				t.Fatalf("Run = %v, want error: %v", err, tc.wantErr)
			}
			if !closerSawProcessDone.Load() {
				t.Error("closer did not run, or ran before the process returned")
			}
			if !closerHadDeadline.Load() {
				t.Error("closer context has no deadline")
			}
		})
	}
}

func TestClosersRunConcurrentlyAndErrorsAreReturned(t *testing.T) {
	a, b := make(chan struct{}), make(chan struct{})
	closeErr := errors.New("flush failed")
	r := runner.New(quiet(), runner.WithSignals(), runner.WithCloserTimeout(2*time.Second))
	r.AddCloser("a", func(ctx context.Context) error { close(a); <-b; return nil })
	r.AddCloser("b", func(ctx context.Context) error { close(b); <-a; return closeErr })
	err := runWithin(t, context.Background(), r, 5*time.Second)
	if !errors.Is(err, closeErr) {
		t.Fatalf("Run = %v, want the closer error", err)
	}
	if !strings.Contains(err.Error(), "closer b") {
		t.Errorf("error %q does not name the closer", err)
	}
}

func TestHungCloserIsAbandonedAfterTimeout(t *testing.T) {
	var logs bytes.Buffer
	var fastRan atomic.Bool
	release := make(chan struct{})
	defer close(release)
	r := runner.New(
		runner.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))),
		runner.WithSignals(),
		runner.WithCloserTimeout(200*time.Millisecond),
	)
	r.AddCloser("hung", func(ctx context.Context) error { <-release; return nil }) // ignores ctx
	r.AddCloser("fast", func(ctx context.Context) error { fastRan.Store(true); return nil })
	start := time.Now()
	err := runWithin(t, context.Background(), r, 5*time.Second)
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Errorf("Run took %s with a 200ms closer timeout", elapsed)
	}
	if !errors.Is(err, runner.ErrCloserTimeout) {
		t.Fatalf("Run = %v, want ErrCloserTimeout", err)
	}
	if !strings.Contains(err.Error(), "closer hung") {
		t.Errorf("error %q does not name the hung closer", err)
	}
	if !fastRan.Load() {
		t.Error("the other closer did not run")
	}
	if !strings.Contains(logs.String(), "closer timed out") {
		t.Errorf("timeout not logged; logs:\n%s", logs.String())
	}
}

func TestLogsGoToCallerLogger(t *testing.T) {
	var logs bytes.Buffer
	r := runner.New(runner.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))), runner.WithSignals())
	r.AddProcess("bad", func(ctx context.Context) error { return errors.New("nope") })
	_ = runWithin(t, context.Background(), r, 5*time.Second)
	for _, want := range []string{"runner starting", "process failed", "process=bad", "nope"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("logs lack %q:\n%s", want, logs.String())
		}
	}
}

func TestExitCode(t *testing.T) {
	if got := runner.ExitCode(nil); got != 0 {
		t.Errorf("ExitCode(nil) = %d", got)
	}
	if got := runner.ExitCode(errors.New("x")); got != 1 {
		t.Errorf("ExitCode(err) = %d", got)
	}
}
