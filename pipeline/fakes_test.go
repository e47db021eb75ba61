package pipeline

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/ponix-go/ponix/ponixclickhouse"
	"github.com/ponix-go/ponix/ponixnats"
)

// fakeMsg is a jetstream.Msg for unit tests of processors (no server): its reply subject is a
// JetStream ack subject that carries its stream sequence.
type fakeMsg struct {
	jetstream.Msg // nil: calling anything not overridden panics
	subject       string
	data          []byte
	reply         string
}

func (m *fakeMsg) Data() []byte         { return m.data }
func (m *fakeMsg) Subject() string      { return m.subject }
func (m *fakeMsg) Headers() nats.Header { return nil }
func (m *fakeMsg) Reply() string        { return m.reply }

// newMsg returns message seq of stream "s" as consumer "d" delivers it.
func newMsg(seq uint64, data []byte) *fakeMsg {
	return &fakeMsg{
		subject: fmt.Sprintf("s.dev%d", seq),
		data:    data,
		reply:   fmt.Sprintf("$JS.ACK.s.d.1.%d.%d.1700000000000000000.0", seq, seq),
	}
}

// fakeJS stands for a JetStream context in configurations that New only checks.
type fakeJS struct{ jetstream.JetStream }

// testRow is the row of the unit tests' pipelines.
type testRow struct {
	Value   string
	Created uint64
	Seq     uint64
}

// testEncoder returns an encoder of testRows.
func testEncoder() ponixclickhouse.Encoder[testRow] {
	return ponixclickhouse.Columns(
		ponixclickhouse.Column("value", func(r testRow) string { return r.Value }),
		ponixclickhouse.Column("stream_created_ns", func(r testRow) uint64 { return r.Created }),
		ponixclickhouse.Column("stream_seq", func(r testRow) uint64 { return r.Seq }),
	).Encoder()
}

// rawConfig is a valid configuration of a Raw pipeline of testRows.
func rawConfig(check func([]byte) error) Config[[]byte, testRow] {
	return Config[[]byte, testRow]{
		JetStream:  fakeJS{},
		Stream:     ponixnats.StreamConfig{Name: "s"},
		Consumer:   ponixnats.ConsumerConfig{Durable: "d"},
		ClickHouse: ponixclickhouse.Config{Addr: "127.0.0.1:9000"},
		Table:      ponixclickhouse.Table{Name: "t"},
		Encoder:    testEncoder,
		Decode:     Raw(check),
		Row: func(r Record[[]byte]) testRow {
			return testRow{Value: string(r.Value), Created: r.StreamCreatedNanos(), Seq: r.Seq}
		},
		Key:    Key{StreamCreated: "stream_created_ns", StreamSeq: "stream_seq"},
		Hold:   ponixnats.HoldConfig{MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond},
		Logger: slog.New(slog.DiscardHandler),
	}
}

// protoConfig is a valid configuration of a Proto pipeline of StringValues into testRows.
func protoConfig(validate func(*wrapperspb.StringValue) error) Config[*wrapperspb.StringValue, testRow] {
	return Config[*wrapperspb.StringValue, testRow]{
		JetStream:  fakeJS{},
		Stream:     ponixnats.StreamConfig{Name: "s"},
		Consumer:   ponixnats.ConsumerConfig{Durable: "d"},
		ClickHouse: ponixclickhouse.Config{Addr: "127.0.0.1:9000"},
		Table:      ponixclickhouse.Table{Name: "t"},
		Encoder:    testEncoder,
		Decode:     Proto(func() *wrapperspb.StringValue { return new(wrapperspb.StringValue) }, validate),
		Row: func(r Record[*wrapperspb.StringValue]) testRow {
			return testRow{Value: r.Value.GetValue(), Created: r.StreamCreatedNanos(), Seq: r.Seq}
		},
		Hold:   ponixnats.HoldConfig{MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond},
		Logger: slog.New(slog.DiscardHandler),
	}
}

// stringValue returns the wire bytes of a StringValue holding s.
func stringValue(t *testing.T, s string) []byte {
	t.Helper()
	b, err := proto.Marshal(wrapperspb.String(s))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fakeWriter is a writer whose Write is a function of the test's.
type fakeWriter[R any] struct {
	write func(rows []R) error
}

func (w *fakeWriter[R]) Write(_ context.Context, rows []R) error { return w.write(rows) }
func (w *fakeWriter[R]) CheckSchema(context.Context) error       { return nil }

// newTestPipeline returns the pipeline of cfg, writing with write as if the table fitted, and
// the processor its consumer would run.
func newTestPipeline[T any](t *testing.T, cfg Config[T, testRow], write func(rows []testRow) error) (*Pipeline[T, testRow], ponixnats.Processor) {
	t.Helper()
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tbl := &fakeTable{}
	p.writer.Store(&writerRef[testRow]{&fakeWriter[testRow]{write: func(rows []testRow) error {
		err := write(rows)
		if err == nil {
			tbl.add(rows)
		}
		return err
	}}})
	p.lookup = lookupIn[T](tbl)
	return p, cfg.Decode.processor(p.store, ponixnats.WithHold(p.hold))
}

// fakeTable is the table of a unit test's pipeline: the sequences of the rows stored.
type fakeTable struct {
	seqs    map[uint64]bool
	lookups int
}

func (tbl *fakeTable) add(rows []testRow) {
	if tbl.seqs == nil {
		tbl.seqs = map[uint64]bool{}
	}
	for _, r := range rows {
		tbl.seqs[r.Seq] = true
	}
}

// lookupIn is the pipeline's read of which sequences of recs are stored, in tbl.
func lookupIn[T any](tbl *fakeTable) func(context.Context, []Record[T]) (map[uint64]struct{}, error) {
	return func(_ context.Context, recs []Record[T]) (map[uint64]struct{}, error) {
		tbl.lookups++
		out := map[uint64]struct{}{}
		for _, r := range recs {
			if tbl.seqs[r.Seq] {
				out[r.Seq] = struct{}{}
			}
		}
		return out, nil
	}
}

// testStream is the stream incarnation of the unit tests' batches.
func testStream() ponixnats.StreamID {
	return ponixnats.StreamID{Name: "s", Created: time.Unix(1_700_000_000, 123)}
}

// process runs the processor on msgs as one batch of testStream and returns its Result.
func process(t *testing.T, proc ponixnats.Processor, msgs ...jetstream.Msg) ponixnats.Result {
	t.Helper()
	res, err := proc(t.Context(), ponixnats.Batch[jetstream.Msg]{Stream: testStream(), Consumer: "d", Items: msgs})
	if err != nil {
		t.Fatalf("processor: %v", err)
	}
	return res
}

// wantDecisions checks the action (and, for dead letters, the reason) of each message.
func wantDecisions(t *testing.T, res ponixnats.Result, want ...ponixnats.Decision) {
	t.Helper()
	for i, w := range want {
		got, ok := res.Decision(i)
		if !ok {
			t.Errorf("message %d: no decision, want %s", i, w.Action)
			continue
		}
		if got.Action != w.Action || got.Reason != w.Reason {
			t.Errorf("message %d: %s (%q, %v), want %s (%q)", i, got.Action, got.Reason, got.Err, w.Action, w.Reason)
		}
	}
}

// acked is the decision to acknowledge a message.
func acked() ponixnats.Decision { return ponixnats.Decision{Action: ponixnats.ActionAck} }

// deadLetter is the decision to dead-letter a message for reason.
func deadLetter(reason ponixnats.Reason) ponixnats.Decision {
	return ponixnats.Decision{Action: ponixnats.ActionDeadLetter, Reason: reason}
}
