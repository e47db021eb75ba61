package pipeline

import (
	"errors"
	"testing"
	"time"

	"github.com/ponix-go/ponix/ponixclickhouse"
	"github.com/ponix-go/ponix/ponixnats"
)

func TestMayBeStored(t *testing.T) {
	p, err := New(rawConfig(nil))
	if err != nil {
		t.Fatal(err)
	}
	created := time.Unix(0, 1_700_000_000_000_000_000)
	stream := ponixnats.StreamID{Name: "s", Created: created}
	first := []Record[[]byte]{{Stream: stream, Seq: 5, Delivered: 1}, {Stream: stream, Seq: 6, Delivered: 1}}
	if p.mayBeStored(first) {
		t.Error("first deliveries: checked, want not (they pay nothing)")
	}
	again := []Record[[]byte]{{Stream: stream, Seq: 5, Delivered: 1}, {Stream: stream, Seq: 6, Delivered: 2}}
	if !p.mayBeStored(again) {
		t.Error("a message delivered before: not checked")
	}
	// The durable consumer created anew when the stream's last sequence was 5.
	p.noteResumed(ponixnats.ResumeInfo{Stream: "s", StreamCreated: created, LastSeq: 5})
	if !p.mayBeStored(first) {
		t.Error("a first delivery at or below the last sequence at the consumer's re-creation: not checked")
	}
	if p.mayBeStored(first[1:]) {
		t.Error("a first delivery past the last sequence at the re-creation: checked")
	}
	other := []Record[[]byte]{{Stream: ponixnats.StreamID{Name: "s", Created: created.Add(time.Second)}, Seq: 1, Delivered: 1}}
	if p.mayBeStored(other) {
		t.Error("a first delivery of another stream incarnation: checked")
	}
}

func TestInBatchMapsARefusedRowToItsRecord(t *testing.T) {
	cause := errors.New("value out of range")
	err := inBatch(&ponixclickhouse.RowError{Index: 1, Err: cause}, []int{0, 3, 4})
	var re *ponixclickhouse.RowError
	if !errors.As(err, &re) || re.Index != 3 || !errors.Is(err, cause) {
		t.Errorf("row 1 of the fresh records [0 3 4]: %v, want row 3 of the batch", err)
	}
	sink := errors.New("connection refused")
	if got := inBatch(sink, []int{2}); got != sink {
		t.Errorf("a sink fault: %v, want it unchanged", got)
	}
	if got := inBatch(&ponixclickhouse.RowError{Index: 1, Err: cause}, nil); !errors.As(got, &re) || re.Index != 1 {
		t.Errorf("no record left out: %v, want the index unchanged", got)
	}
}
