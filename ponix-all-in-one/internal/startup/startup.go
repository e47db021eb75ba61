// Package startup runs a service's startup as named phases, each bounded by a timeout, so that
// a failure says where it happened and which settings explain it.
package startup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// PhaseError is a startup failure, naming the phase it happened in and, when a setting explains
// it, the environment variables to check.
type PhaseError struct {
	Phase string
	// Check lists the environment variables that explain the failure, if known.
	Check []string
	Err   error
}

func (e *PhaseError) Error() string {
	if len(e.Check) > 0 {
		return "startup phase " + e.Phase + " failed (check " + strings.Join(e.Check, ", ") + "): " + e.Err.Error()
	}
	return "startup phase " + e.Phase + " failed: " + e.Err.Error()
}

// Unwrap returns the phase's error.
func (e *PhaseError) Unwrap() error { return e.Err }

// Phases runs startup phases.
type Phases struct {
	// Timeout bounds each phase; TimeoutSetting names it in the error of a phase that ran out
	// of time (e.g. "PONIX_STARTUP_TIMEOUT_SECS=60").
	Timeout        time.Duration
	TimeoutSetting string
	// Explain, if set, names the variables that explain a phase's error (PhaseError.Check).
	Explain func(error) []string
	// Logger receives a line when a phase starts and one when it is done.
	Logger *slog.Logger
}

// Run runs phase name: fn under a context bounded by the timeout. Its error is a *PhaseError.
func (p Phases) Run(ctx context.Context, name string, fn func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, p.Timeout)
	defer cancel()
	start := time.Now()
	p.Logger.Info("startup phase", "phase", name)
	if err := fn(ctx); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("not done within %s: %w", p.TimeoutSetting, err)
		}
		pe := &PhaseError{Phase: name, Err: err}
		if p.Explain != nil {
			pe.Check = p.Explain(err)
		}
		return pe
	}
	p.Logger.Info("startup phase done", "phase", name, "duration", time.Since(start))
	return nil
}
