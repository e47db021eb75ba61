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

// ErrNotStarted is what the consumer check reports before Start created the consumer.
var ErrNotStarted = errors.New("not started yet")

// Check is one readiness condition: Func returns nil while it holds, or says what is wrong.
type Check struct {
	Name string
	Func func(ctx context.Context) error
}

// Checks returns the pipeline's readiness checks: the table fits the writer (CheckSchema), no
// batch is held because ClickHouse fails (CheckSink: since when, how many attempts, the class
// and the last error), and fetching from the durable consumer works (CheckConsumer). Serve
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
			if c == nil {
				return ErrNotStarted
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
