package ponixnats_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"

	"github.com/ponix-go/ponix/ponixnats"
)

// badValue is what a sink says when it refuses the data of a batch (a ponixnats.RecordFault),
// as ponixclickhouse.WriteError does for a parse error.
type badValue struct{ value string }

func (e badValue) Error() string     { return "cannot parse " + e.value }
func (e badValue) RecordFault() bool { return true }

// The store stages composed by hand, for a store of your own items (here strings): the sink's
// store, observed; the isolating stage above it; the holding stage on top. The store
// processors compose the same stages (NewStoreProcessor, WithObserver).
func ExampleNewHoldStage() {
	insert := ponixnats.StoreFunc[string](func(_ context.Context, b ponixnats.Batch[string]) error {
		if i := slices.Index(b.Items, "NaN"); i >= 0 {
			return fmt.Errorf("insert %d rows: %w", b.Len(), badValue{b.Items[i]})
		}
		return nil // all or nothing
	})
	observed := ponixnats.NewObserveStage(insert, func(a ponixnats.StoreAttempt[string]) {
		fmt.Println("insert", a.Batch.Items, "error:", a.Err)
	})
	hold := ponixnats.NewHold(ponixnats.HoldConfig{Logger: slog.New(slog.DiscardHandler)}) // hold.State() for readiness
	held := ponixnats.NewHoldStage(ponixnats.NewIsolateStage(observed, func(r string) string { return "reading " + r }), hold)

	batch := ponixnats.Batch[string]{Items: []string{"20.5", "NaN", "21.0", "21.5"}}
	res := held.Store(context.Background(), batch)
	for i := range batch.Items {
		switch d, _ := res.Decision(i); d.Action {
		case ponixnats.ActionDeadLetter:
			fmt.Printf("%s: %s (%s) %v\n", batch.Items[i], d.Action, d.Reason, d.Err)
		default:
			fmt.Printf("%s: %s\n", batch.Items[i], d.Action)
		}
	}
	// Output:
	// insert [20.5 NaN 21.0 21.5] error: insert 4 rows: cannot parse NaN
	// insert [20.5 NaN] error: insert 2 rows: cannot parse NaN
	// insert [20.5] error: <nil>
	// insert [NaN] error: insert 1 rows: cannot parse NaN
	// insert [21.0 21.5] error: <nil>
	// 20.5: ack
	// NaN: dead_letter (rejected) reading NaN: the sink refused this message alone: insert 1 rows: cannot parse NaN
	// 21.0: ack
	// 21.5: ack
}
