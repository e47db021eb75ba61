package startup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"
)

func TestPhaseErrorListsTheVariablesToCheck(t *testing.T) {
	err := &PhaseError{Phase: "nats", Check: []string{"PONIX_NATS_URL"}, Err: fmt.Errorf("boom")}
	if got, want := err.Error(), "startup phase nats failed (check PONIX_NATS_URL): boom"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func TestRunNamesThePhaseTheTimeoutAndTheVariables(t *testing.T) {
	boom := errors.New("boom")
	p := Phases{Timeout: 10 * time.Millisecond, TimeoutSetting: "X_TIMEOUT=0.01", Logger: slog.New(slog.DiscardHandler),
		Explain: func(err error) []string {
			if errors.Is(err, boom) {
				return []string{"X_URL"}
			}
			return nil
		}}
	if err := p.Run(t.Context(), "ok", func(context.Context) error { return nil }); err != nil {
		t.Fatalf("a phase that succeeds: %v", err)
	}
	err := p.Run(t.Context(), "connect", func(context.Context) error { return boom })
	var pe *PhaseError
	if !errors.As(err, &pe) || pe.Phase != "connect" || len(pe.Check) != 1 || pe.Check[0] != "X_URL" || !errors.Is(err, boom) {
		t.Errorf("a failing phase: %#v", err)
	}
	err = p.Run(t.Context(), "slow", func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() })
	if !errors.As(err, &pe) || pe.Phase != "slow" || !errors.Is(err, context.DeadlineExceeded) || pe.Check != nil {
		t.Fatalf("a phase out of time: %v", err)
	}
	if want := "startup phase slow failed: not done within X_TIMEOUT=0.01: context deadline exceeded"; err.Error() != want {
		t.Errorf("Error() = %q, want %q", err.Error(), want)
	}
}
