package ponixnats

import (
	"context"
	"time"
)

// BatchInfo describes the batch a [Processor] is called with. The [Consumer] puts it into the
// processor's context; read it with [BatchInfoFromContext].
type BatchInfo struct {
	// Stream is the stream the batch was fetched from.
	Stream string
	// StreamCreated is when that stream was created. A stream deleted and created again has
	// the same name but a new creation time and starts its sequences again at 1: with the
	// stream sequence, StreamCreated identifies a message (e.g. in a de-duplication key).
	StreamCreated time.Time
	// Consumer is the durable consumer's name.
	Consumer string
	// Stopping is closed when the consumer has been asked to stop. A processor that waits
	// (retries, back-off) should stop waiting then: its messages are nak'd and come back after
	// a restart. The processor's context itself stays alive a little longer (see
	// [ConsumerConfig].DrainTimeout) so that a store in flight can finish.
	Stopping <-chan struct{}
}

type batchInfoKey struct{}

// BatchInfoFromContext returns the BatchInfo a [Consumer] put into a processor's context.
func BatchInfoFromContext(ctx context.Context) (BatchInfo, bool) {
	bi, ok := ctx.Value(batchInfoKey{}).(BatchInfo)
	return bi, ok
}

// WithBatchInfo returns a context carrying bi, for calling a [Processor] outside a Consumer
// (tests, replays).
func WithBatchInfo(ctx context.Context, bi BatchInfo) context.Context {
	return context.WithValue(ctx, batchInfoKey{}, bi)
}
