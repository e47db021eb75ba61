// Package runner runs the long-lived processes of a service and shuts them down
// cleanly.
//
// A Runner holds app processes and closers. Run starts every process in its own
// goroutine with a shared context. The context is cancelled when the process
// receives SIGINT or SIGTERM, when the parent context ends, or when the first
// process fails (returns an error or panics). Once every process has returned,
// the closers run concurrently, each bounded by the closer timeout; a closer
// that overruns is reported and abandoned, never waited for forever. A second
// signal during shutdown ends the program at once with a non-zero status (one
// that arrives within DuplicateSignalWindow of the first is taken as the same).
//
// Run returns the first process failure, or nil after a clean shutdown, so that
// main decides the exit status (see ExitCode).
//
// A process that returns nil before shutdown has simply finished its work: the
// others keep running. Processes must return promptly once their context is
// cancelled.
package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"sync"
	"syscall"
	"time"
)

// DefaultCloserTimeout bounds each closer unless WithCloserTimeout says otherwise.
const DefaultCloserTimeout = 10 * time.Second

// ForcedExitCode is the status the program exits with when a second signal
// arrives during shutdown (128 + SIGINT, as shells report an interrupt).
const ForcedExitCode = 130

// DuplicateSignalWindow is how soon after the first signal another one is
// taken as a duplicate of it rather than a request to exit at once: tools such
// as timeout(1) signal both the process and its process group, and a
// container runtime may do the same.
const DuplicateSignalWindow = 500 * time.Millisecond

// ErrCloserTimeout is wrapped by the error Run returns when a closer did not
// finish within the closer timeout.
var ErrCloserTimeout = errors.New("closer timed out")

// PanicError is the error a panicking process or closer is turned into. It
// carries the panic value and the goroutine's stack.
type PanicError struct {
	Name  string // process or closer name
	Value any    // the value passed to panic
	Stack []byte // stack of the panicking goroutine
}

func (e *PanicError) Error() string {
	return fmt.Sprintf("%s panicked: %v\n%s", e.Name, e.Value, e.Stack)
}

// Func is the shape of a process or closer.
type Func func(ctx context.Context) error

type named struct {
	name string
	fn   Func
}

// Runner runs app processes concurrently and closers after them. Build one
// with New; a Runner runs once.
type Runner struct {
	logger        *slog.Logger
	closerTimeout time.Duration
	signals       []os.Signal
	exit          func(code int)
	processes     []named
	closers       []named
}

// Option configures a Runner.
type Option func(*Runner)

// WithLogger sets the logger for lifecycle events (default: slog.Default()).
func WithLogger(l *slog.Logger) Option {
	return func(r *Runner) {
		if l != nil {
			r.logger = l
		}
	}
}

// WithCloserTimeout bounds how long each closer may run (default
// DefaultCloserTimeout). Closers run concurrently, so this is also the longest
// the whole cleanup phase takes.
func WithCloserTimeout(d time.Duration) Option {
	return func(r *Runner) {
		if d > 0 {
			r.closerTimeout = d
		}
	}
}

// WithSignals sets the signals that start a shutdown (default SIGINT and
// SIGTERM). With no signals, only the context and process failures stop Run.
func WithSignals(sigs ...os.Signal) Option {
	return func(r *Runner) { r.signals = sigs }
}

// WithForcedExit replaces os.Exit as the function called when a second signal
// arrives during shutdown. Tests use it; services keep the default.
func WithForcedExit(exit func(code int)) Option {
	return func(r *Runner) {
		if exit != nil {
			r.exit = exit
		}
	}
}

// New returns a Runner with the given options.
func New(opts ...Option) *Runner {
	r := &Runner{
		logger:        slog.Default(),
		closerTimeout: DefaultCloserTimeout,
		signals:       []os.Signal{os.Interrupt, syscall.SIGTERM},
		exit:          os.Exit,
	}
	for _, o := range opts {
		o(r)
	}
	return r
}

// AddProcess registers a long-lived process. It must return soon after ctx is
// cancelled; an error it returns (other than ctx's own cancellation) stops
// every other process and is returned by Run.
func (r *Runner) AddProcess(name string, fn Func) *Runner {
	r.processes = append(r.processes, named{name, fn})
	return r
}

// AddCloser registers a cleanup function that runs after every process has
// returned, whatever the outcome. Its context ends at the closer timeout.
func (r *Runner) AddCloser(name string, fn Func) *Runner {
	r.closers = append(r.closers, named{name, fn})
	return r
}

// Run starts the processes and blocks until they have all returned and the
// closers have run. It returns the first process failure joined with any
// closer failure, or nil after a clean shutdown (signal, parent context, or
// every process finished).
func (r *Runner) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	sigs := make(chan os.Signal, 2)
	if len(r.signals) > 0 {
		signal.Notify(sigs, r.signals...)
		defer signal.Stop(sigs)
	}
	stopWatching := make(chan struct{})
	watcherDone := make(chan struct{})
	go func() {
		defer close(watcherDone)
		r.watchSignals(sigs, cancel, stopWatching)
	}()
	// The watcher keeps watching through the closers, so that a second signal
	// can end a hung shutdown.
	defer func() { close(stopWatching); <-watcherDone }()

	r.logger.Info("runner starting", "processes", len(r.processes), "closers", len(r.closers))
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	for _, p := range r.processes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := call(ctx, "process "+p.name, p.fn)
			switch {
			case err == nil:
				r.logger.Info("process finished", "process", p.name)
			case ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)):
				r.logger.Info("process stopped", "process", p.name)
			default:
				err = fmt.Errorf("process %s: %w", p.name, err)
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
				r.logger.Error("process failed, stopping all", "process", p.name, "error", err)
				cancel(err)
			}
		}()
	}
	wg.Wait()
	cancel(nil)
	r.logger.Info("processes stopped, running closers", "closers", len(r.closers), "timeout", r.closerTimeout)

	return errors.Join(firstErr, r.runClosers())
}

// watchSignals cancels ctx on the first signal and forces an exit on the next.
func (r *Runner) watchSignals(sigs <-chan os.Signal, cancel context.CancelCauseFunc, stop <-chan struct{}) {
	var first time.Time
	for {
		select {
		case <-stop:
			return
		case s := <-sigs:
			if first.IsZero() {
				first = time.Now()
				r.logger.Info("signal received, shutting down", "signal", s.String())
				cancel(nil)
				continue
			}
			if time.Since(first) < DuplicateSignalWindow {
				r.logger.Debug("duplicate signal ignored", "signal", s.String())
				continue
			}
			r.logger.Error("second signal received during shutdown, exiting now", "signal", s.String(), "exit_code", ForcedExitCode)
			r.exit(ForcedExitCode)
			return
		}
	}
}

// runClosers runs every closer concurrently, each with its own deadline, and
// waits at most the closer timeout for each.
func (r *Runner) runClosers() error {
	errs := make([]error, len(r.closers))
	var wg sync.WaitGroup
	for i, c := range r.closers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), r.closerTimeout)
			defer cancel()
			done := make(chan error, 1)
			start := time.Now()
			go func() { done <- call(ctx, "closer "+c.name, c.fn) }()
			select {
			case err := <-done:
				if err != nil {
					errs[i] = fmt.Errorf("closer %s: %w", c.name, err)
					r.logger.Error("closer failed", "closer", c.name, "error", err)
					return
				}
				r.logger.Info("closer done", "closer", c.name, "duration", time.Since(start))
			case <-ctx.Done():
				// Abandon it: a closer that ignores its context must not hold the
				// program hostage.
				errs[i] = fmt.Errorf("closer %s: %w after %s", c.name, ErrCloserTimeout, r.closerTimeout)
				r.logger.Error("closer timed out, abandoning it", "closer", c.name, "timeout", r.closerTimeout)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// call runs fn and turns a panic into a *PanicError.
func call(ctx context.Context, name string, fn Func) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &PanicError{Name: name, Value: v, Stack: debug.Stack()}
		}
	}()
	return fn(ctx)
}

// ExitCode maps Run's result to a process exit status: 0 for nil, 1 for any
// error. main typically does os.Exit(runner.ExitCode(r.Run(ctx))).
func ExitCode(err error) int {
	if err == nil {
		return 0
	}
	return 1
}
