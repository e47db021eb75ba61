package ponixnats

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

var errDown = errors.New("sink down")

func retryable(err error) bool { return errors.Is(err, errDown) }

func TestRetryStoreRetriesInPlaceUntilTheSinkRecovers(t *testing.T) {
	var logs bytes.Buffer
	calls := 0
	store := RetryStore(func(_ context.Context, batch []int) error {
		calls++
		if calls < 5 {
			return errDown
		}
		return nil
	}, RetryOptions{Retryable: retryable, MinBackoff: time.Millisecond, MaxBackoff: 4 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err := store(context.Background(), []int{1, 2}); err != nil {
		t.Fatalf("err = %v", err)
	}
	if calls != 5 {
		t.Errorf("%d attempts, want 5", calls)
	}
	if n := strings.Count(logs.String(), "\n"); n != 2 { // first failure, recovery
		t.Errorf("%d log lines for one outage, want 2:\n%s", n, logs.String())
	}
}

func TestRetryStoreReturnsOtherErrorsAtOnce(t *testing.T) {
	other := errors.New("bad column")
	calls := 0
	store := RetryStore(func(context.Context, []int) error { calls++; return other },
		RetryOptions{Retryable: retryable, MinBackoff: time.Millisecond})
	if err := store(context.Background(), nil); !errors.Is(err, other) || calls != 1 {
		t.Fatalf("err = %v after %d calls", err, calls)
	}
}

func TestRetryStoreStopsWithTheContextAndAfterMaxDuration(t *testing.T) {
	down := func(context.Context, []int) error { return errDown }
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := RetryStore(down, RetryOptions{Retryable: retryable, MinBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond})(ctx, nil)
	if !errors.Is(err, errDown) || time.Since(start) > time.Second {
		t.Fatalf("with a cancelled context: err = %v after %s", err, time.Since(start))
	}
	start = time.Now()
	err = RetryStore(down, RetryOptions{Retryable: retryable, MinBackoff: 5 * time.Millisecond, MaxDuration: 50 * time.Millisecond})(context.Background(), nil)
	if !errors.Is(err, errDown) || time.Since(start) > time.Second {
		t.Fatalf("with MaxDuration: err = %v after %s", err, time.Since(start))
	}
}
