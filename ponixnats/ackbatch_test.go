package ponixnats

import (
	"context"
	"errors"
	"log/slog"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

// batchConsumer is a consumer acknowledging per batch, for tests of applyBatch (no loop).
func batchConsumer(t *testing.T) (*Consumer, *ackLog) {
	t.Helper()
	cfg := loopConfig()
	cfg.Ack = AckPerBatch
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	c := newConsumer(cfg, func(context.Context, Batch[jetstream.Msg]) (Result, error) { return Result{}, nil }, newFakeSource(streamCreated), newFakeClock())
	return c, &ackLog{}
}

func liveBatch(log *ackLog, first uint64, n int) []jetstream.Msg {
	out := make([]jetstream.Msg, n)
	for i := range out {
		seq := first + uint64(i)
		out[i] = &liveMsg{fakeMsg: fakeMsg{subject: "s.dev", data: []byte("x")}, seq: seq, cseq: seq, delivered: 1, log: log}
	}
	return out
}

// A batch stored whole costs one ack, of its last message.
func TestApplyBatchAcksTheLastMessageOnly(t *testing.T) {
	c, log := batchConsumer(t)
	batch := liveBatch(log, 11, 5)
	rw := c.applyBatch(context.Background(), batch, streamCreated, AckAll(5), nil, false)
	if rw.needed {
		t.Fatalf("rewind %+v for a batch stored whole", rw)
	}
	for seq := uint64(11); seq <= 15; seq++ {
		want := 0
		if seq == 15 {
			want = 1
		}
		if got := len(log.of(seq)); got != want {
			t.Errorf("message %d: %v; want %d ack", seq, log.kinds(seq), want)
		}
	}
	if st := c.Stats(); st.Acked != 5 {
		t.Errorf("Acked %d, want 5", st.Acked)
	}
}

// At a stop the one ack waits for the server's confirmation.
func TestApplyBatchConfirmsTheAckAtAStop(t *testing.T) {
	c, log := batchConsumer(t)
	c.applyBatch(context.Background(), liveBatch(log, 1, 3), streamCreated, AckAll(3), nil, true)
	if k := log.kinds(3); len(k) != 1 || k[0] != "confirmed ack" {
		t.Errorf("last message: %v, want one confirmed ack", k)
	}
}

// A message that must come again in the middle: the batch is acknowledged up to it (one ack,
// of the message before it), nothing after it is acknowledged or nak'd, and delivery rewinds to
// it after its delay. A record terminated after it is covered by no ack yet.
func TestApplyBatchAcknowledgesUpToTheHoleAndRewinds(t *testing.T) {
	c, log := batchConsumer(t)
	batch := liveBatch(log, 21, 5)
	res := NewResult(5)
	res.Ack(0)
	res.Ack(1)
	res.Release(2, 0, errors.New("sink gone"))
	res.Term(3, ReasonRejected)
	res.Ack(4)
	rw := c.applyBatch(context.Background(), batch, streamCreated, res, nil, false)
	if !rw.needed || rw.seq != 23 || rw.delay != c.cfg.NakDelay || rw.resume {
		t.Fatalf("rewind %+v; want to 23 after NakDelay %s", rw, c.cfg.NakDelay)
	}
	if k := log.kinds(22); len(k) != 1 || k[0] != "ack" {
		t.Errorf("message 22 (before the hole): %v, want one ack", k)
	}
	for _, seq := range []uint64{21, 23, 24, 25} {
		if k := log.kinds(seq); len(k) != 0 {
			t.Errorf("message %d: %v, want nothing sent (the ack of 22 covers 21; 23 on come again)", seq, k)
		}
	}
}

// A hole first in the batch: nothing is acknowledged.
func TestApplyBatchHoleFirstAcknowledgesNothing(t *testing.T) {
	c, log := batchConsumer(t)
	batch := liveBatch(log, 31, 3)
	rw := c.applyBatch(context.Background(), batch, streamCreated, Result{}, errors.New("processor failed"), false)
	if !rw.needed || rw.seq != 31 {
		t.Fatalf("rewind %+v; want to 31", rw)
	}
	for seq := uint64(31); seq <= 33; seq++ {
		if k := log.kinds(seq); len(k) != 0 {
			t.Errorf("message %d: %v, want nothing sent", seq, k)
		}
	}
	if st := c.Stats(); st.ProcessorErrors != 1 || st.Released != 3 {
		t.Errorf("stats %+v: want one processor error, 3 released", st)
	}
}

// A nak verdict waits its growing delay; MaxDeliver still counts the naks.
func TestApplyBatchNakDelayGrows(t *testing.T) {
	c, log := batchConsumer(t)
	var delays []int64
	for range 3 {
		res := NewResult(1)
		res.Nak(0, 0)
		rw := c.applyBatch(context.Background(), liveBatch(log, 41, 1), streamCreated, res, nil, false)
		delays = append(delays, int64(rw.delay))
	}
	if !(delays[0] < delays[1] && delays[1] < delays[2]) {
		t.Errorf("nak delays %v: want growing", delays)
	}
}

func TestVersionAtLeast(t *testing.T) {
	for _, tc := range []struct {
		v    string
		want bool
	}{
		{"2.14.0", true}, {"2.15.3", true}, {"v2.14.1-beta.2", true}, {"3.0.0", true},
		{"2.13.9", false}, {"2.12.1", false}, {"1.99.0", false},
		{"", true}, {"unknown", true}, // unreadable: the server's own answers say what it lacks
	} {
		if got := versionAtLeast(tc.v, 2, 14); got != tc.want {
			t.Errorf("versionAtLeast(%q, 2, 14) = %v, want %v", tc.v, got, tc.want)
		}
	}
}
