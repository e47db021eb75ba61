package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Names of the pipeline's readiness checks.
const (
	CheckSchema   = "schema"   // the table fits the writer
	CheckSink     = "sink"     // no batch is held because ClickHouse fails
	CheckConsumer = "consumer" // the consumer is created and fetching works
)

// What the consumer check reports while the pipeline is not consuming.
var (
	// ErrNotStarted: Start has not created the consumer yet.
	ErrNotStarted = errors.New("not started yet")
	// ErrNotConsuming: Run waits until the table fits the writer (the error says why it could
	// not be checked, when ClickHouse does not answer), or Run has not been called.
	ErrNotConsuming = errors.New("not consuming yet")
	// ErrStopped: Run has returned.
	ErrStopped = errors.New("stopped")
)

// Check is one readiness condition: Func returns nil while it holds, or says what is wrong.
type Check struct {
	Name string
	Func func(ctx context.Context) error
}

// Checks returns the pipeline's readiness checks: the table fits the writer (CheckSchema), no
// batch is held because ClickHouse fails (CheckSink: since when, how many attempts, the class
// and the last error), and the pipeline consumes and fetching from the durable consumer works
// (CheckConsumer: not before Start and Run, nor while Run waits for the table, nor after Run). Serve
// them with your own readiness endpoint, or with [Pipeline.ServeHTTP].
func (p *Pipeline[T, R]) Checks() []Check {
	return []Check{
		{Name: CheckSchema, Func: func(context.Context) error { return p.schema.Problem() }},
		{Name: CheckSink, Func: func(context.Context) error {
			if st := p.hold.State(); st.Held {
				return fmt.Errorf("batch held since %s (%s, %d attempts, %s): %w", st.Since.UTC().Format(time.RFC3339),
					time.Since(st.Since).Round(time.Second), st.Attempts, st.Class, st.Err)
			}
			return nil
		}},
		{Name: CheckConsumer, Func: func(context.Context) error {
			c := p.consumer.Load()
			switch {
			case c == nil:
				return ErrNotStarted
			case p.stopped.Load():
				return ErrStopped
			case p.writer.Load() == nil:
				if err := p.schema.uncheckedErr(); err != nil {
					return fmt.Errorf("%w: checking the table: %w", ErrNotConsuming, err)
				}
				return ErrNotConsuming
			}
			return c.Health().Err
		}},
	}
}

// Ready returns nil when every check holds, or their errors, each prefixed with its name.
func (p *Pipeline[T, R]) Ready(ctx context.Context) error {
	var errs []error
	for _, c := range p.Checks() {
		if err := c.Func(ctx); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c.Name, err))
		}
	}
	return errors.Join(errs...)
}

// ServeHTTP answers a readiness probe: 200 when every check holds, 503 otherwise, with a JSON
// body {"status": "ready" | "not ready", "checks": {name: "ok" | what is wrong}}.
func (p *Pipeline[T, R]) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body := struct {
		Status string            `json:"status"`
		Checks map[string]string `json:"checks"`
	}{Status: "ready", Checks: map[string]string{}}
	code := http.StatusOK
	for _, c := range p.Checks() {
		body.Checks[c.Name] = "ok"
		if err := c.Func(r.Context()); err != nil {
			body.Checks[c.Name] = err.Error()
			body.Status, code = "not ready", http.StatusServiceUnavailable
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(body)
}
