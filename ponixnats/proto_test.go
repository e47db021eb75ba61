package ponixnats

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func tsMsg(t *testing.T, sec int64) jetstream.Msg {
	t.Helper()
	b, err := proto.Marshal(timestamppb.New(timestampOf(sec)))
	if err != nil {
		t.Fatal(err)
	}
	return &fakeMsg{subject: "s.x", data: b}
}

func TestProtoProcessorMapsIndicesAroundDecodeFailures(t *testing.T) {
	garbage := &fakeMsg{subject: "s.bad", data: []byte{0xff, 0xff, 0xff}}
	batch := []jetstream.Msg{tsMsg(t, 1), garbage, tsMsg(t, 3), tsMsg(t, 4)}
	var seen []int64
	p := ProtoProcessor(func() *timestamppb.Timestamp { return new(timestamppb.Timestamp) },
		func(_ context.Context, in Batch[Decoded[*timestamppb.Timestamp]]) (Result, error) {
			ds := in.Items
			r := NewResult(0)
			for _, d := range ds {
				seen = append(seen, d.Value.GetSeconds())
				if d.Value.GetSeconds() == 3 {
					r.Nak(d.Index, 0)
				} else {
					r.Ack(d.Index)
				}
			}
			return r, nil
		})
	res, err := p(context.Background(), msgBatch(batch))
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != 3 || seen[0] != 1 || seen[1] != 3 || seen[2] != 4 {
		t.Fatalf("handler saw %v; want [1 3 4]", seen)
	}
	want := []Action{ActionAck, ActionDeadLetter, ActionNak, ActionAck}
	for i, a := range want {
		d, ok := res.Decision(i)
		if !ok || d.Action != a {
			t.Fatalf("index %d: %+v (mentioned %v); want %s", i, d, ok, a)
		}
	}
	d, _ := res.Decision(1)
	if d.Reason != ReasonDecode || !errors.Is(d.Err, ErrDecode) {
		t.Fatalf("decode failure decision = %+v", d)
	}
}

func TestProtoProcessorHandlerErrorWithDecodeFailure(t *testing.T) {
	batch := []jetstream.Msg{&fakeMsg{subject: "s.bad", data: []byte{0xff}}, tsMsg(t, 2)}
	boom := errors.New("sink down")
	p := ProtoProcessor(func() *timestamppb.Timestamp { return new(timestamppb.Timestamp) },
		func(context.Context, Batch[Decoded[*timestamppb.Timestamp]]) (Result, error) { return Result{}, boom })
	res, err := p(context.Background(), msgBatch(batch))
	if err != nil {
		t.Fatalf("error should become per-message releases, got %v", err)
	}
	if d, _ := res.Decision(0); d.Action != ActionDeadLetter {
		t.Fatalf("undecodable message: %+v", d)
	}
	if d, _ := res.Decision(1); d.Action != ActionRelease || !errors.Is(d.Err, boom) {
		t.Fatalf("decoded message: %+v", d)
	}
}

func TestProtoProcessorHandlerErrorAllDecoded(t *testing.T) {
	boom := errors.New("sink down")
	p := ProtoProcessor(func() *timestamppb.Timestamp { return new(timestamppb.Timestamp) },
		func(context.Context, Batch[Decoded[*timestamppb.Timestamp]]) (Result, error) { return Result{}, boom })
	if _, err := p(context.Background(), msgBatch([]jetstream.Msg{tsMsg(t, 1)})); !errors.Is(err, boom) {
		t.Fatalf("err = %v; want the handler error (whole batch nak)", err)
	}
}

func TestProtoProcessorHandlerUnmentionedStaysUnmentioned(t *testing.T) {
	batch := []jetstream.Msg{&fakeMsg{subject: "s.bad", data: []byte{0xff}}, tsMsg(t, 2), tsMsg(t, 3)}
	p := ProtoProcessor(func() *timestamppb.Timestamp { return new(timestamppb.Timestamp) },
		func(_ context.Context, in Batch[Decoded[*timestamppb.Timestamp]]) (Result, error) {
			ds := in.Items
			r := NewResult(0)
			r.Ack(ds[0].Index)
			r.Ack(ds[0].Index) // duplicate
			r.Ack(5)           // out of range
			r.Ack(0)           // the undecodable message: ignored, it is dead-lettered
			return r, nil
		})
	res, _ := p(context.Background(), msgBatch(batch))
	if _, ok := res.Decision(2); ok {
		t.Fatal("index 2 was not mentioned by the handler but is mentioned after mapping")
	}
	if d, _ := res.Decision(0); d.Action != ActionDeadLetter {
		t.Fatalf("the undecodable message is %+v, want dead_letter", d)
	}
	if res.conflicts != 1 || res.extra != 3 {
		t.Fatalf("conflicts=%d extra=%d; want 1 and 3", res.conflicts, res.extra)
	}
}

func timestampOf(sec int64) (t time.Time) { return time.Unix(sec, 0) }
