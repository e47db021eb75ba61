//go:build integration

package integration

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ponix-go/ponix/ponixnats"
)

// outOfRange is a sink's refusal of a batch's data (a RecordFault) that names its own
// dead-letter reason.
type outOfRange struct{ value string }

func (e outOfRange) Error() string            { return "value out of range: " + e.value }
func (e outOfRange) RecordFault() bool        { return true }
func (e outOfRange) DeadLetterReason() string { return "out_of_range" }

// The store stages against a real server: a sink fault holds the batch, a record the sink
// refuses is found by bisecting and dead-lettered with the reason its error names, and the
// observer (WithObserver) sees every insert attempt — its stored parts are exactly what is
// acked.
func TestIntegrationStoreStagesObserveHoldAndIsolate(t *testing.T) {
	_, js := connectJS(t, testURL)
	stream := testStream(t, js)
	publishN(t, js, stream+".a", 10, 0) // payloads "0".."9"; "7" is out of range

	var (
		mu       sync.Mutex
		down     = 1 // the first insert meets a sink fault
		stored   []string
		observed []string
		faults   int
	)
	store := func(_ context.Context, in ponixnats.Batch[jetstream.Msg]) error {
		mu.Lock()
		defer mu.Unlock()
		if down > 0 {
			down--
			return errors.New("connection refused")
		}
		for _, m := range in.Items {
			if string(m.Data()) == "7" {
				return fmt.Errorf("insert %d rows: %w", in.Len(), outOfRange{"7"})
			}
		}
		for _, m := range in.Items {
			stored = append(stored, string(m.Data()))
		}
		return nil
	}
	observe := func(a ponixnats.StoreAttempt[jetstream.Msg]) {
		mu.Lock()
		defer mu.Unlock()
		var rf ponixnats.RecordFault
		switch {
		case a.Err == nil:
			for _, m := range a.Batch.Items {
				observed = append(observed, string(m.Data()))
			}
		case !errors.As(a.Err, &rf):
			faults++
		}
	}
	hold := ponixnats.NewHold(ponixnats.HoldConfig{MinBackoff: 10 * time.Millisecond, MaxBackoff: 10 * time.Millisecond, Logger: quietLogger()})
	cfg := baseConfig(stream)
	cfg.BatchSize = 10
	cfg.MaxWait = time.Second
	c, err := ponixnats.NewConsumer(context.Background(), js, cfg,
		ponixnats.NewStoreProcessor(store, ponixnats.WithHold(hold), ponixnats.WithObserver(observe)))
	if err != nil {
		t.Fatal(err)
	}
	stop := runConsumer(t, c)
	eventually(t, 10*time.Second, "9 acked and 1 dead-lettered", func() bool {
		s := c.Stats()
		return s.Acked == 9 && s.DeadLettered == 1
	})
	stop()

	mu.Lock()
	defer mu.Unlock()
	slices.Sort(stored)
	slices.Sort(observed)
	if want := []string{"0", "1", "2", "3", "4", "5", "6", "8", "9"}; !slices.Equal(stored, want) || !slices.Equal(observed, want) {
		t.Errorf("stored %v, observed stored %v; want each of %v once", stored, observed, want)
	}
	if faults != 1 {
		t.Errorf("%d sink faults observed, want 1", faults)
	}
	if st := hold.State(); st.Held || st.Holds != 1 {
		t.Errorf("hold state %+v, want one hold, ended", st)
	}
	dlq, err := js.Stream(context.Background(), stream+"_dlq")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := dlq.GetLastMsgForSubject(context.Background(), stream+"_dlq."+stream+".a")
	if err != nil {
		t.Fatal(err)
	}
	if string(raw.Data) != "7" || raw.Header.Get(ponixnats.HeaderDLQReason) != "out_of_range" ||
		!strings.Contains(raw.Header.Get(ponixnats.HeaderDLQError), "value out of range: 7") {
		t.Errorf("dead letter %q with headers %v; want \"7\", reason out_of_range and the refusal", raw.Data, raw.Header)
	}
}
