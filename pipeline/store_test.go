package pipeline

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/ponix-go/ponix/ponixclickhouse"
	"github.com/ponix-go/ponix/ponixnats"
)

// rowsOf returns the rows of values in testStream's incarnation, at the given sequences.
func rowsOf(values []string, seqs []uint64) []testRow {
	created := uint64(testStream().Created.UnixNano())
	rows := make([]testRow, len(values))
	for i := range values {
		rows[i] = testRow{Value: values[i], Created: created, Seq: seqs[i]}
	}
	return rows
}

func TestRawCheckDeadLettersAloneAndStoresTheRestInOrder(t *testing.T) {
	check := func(data []byte) error {
		switch string(data) {
		case "garbage":
			return fmt.Errorf("%w: not ours", ponixnats.ErrDecode)
		case "bad":
			return errors.New("out of range")
		}
		return nil
	}
	var stored [][]testRow
	var observed []Insert[[]byte]
	cfg := rawConfig(check)
	cfg.Observe = func(in Insert[[]byte]) { observed = append(observed, in) }
	_, proc := newTestPipeline(t, cfg, func(rows []testRow) error {
		stored = append(stored, slices.Clone(rows))
		return nil
	})

	res := process(t, proc,
		newMsg(10, []byte("a")), newMsg(11, []byte("garbage")), newMsg(12, []byte("b")),
		newMsg(13, []byte("bad")), newMsg(14, []byte("c")))

	wantDecisions(t, res, acked(), deadLetter(ponixnats.ReasonDecode), acked(), deadLetter(ponixnats.ReasonInvalid), acked())
	if d, _ := res.Decision(1); !errors.Is(d.Err, ponixnats.ErrDecode) || !strings.Contains(d.Err.Error(), "stream sequence 11") {
		t.Errorf("the decode dead letter's error %q: want it to wrap ErrDecode and name stream sequence 11", d.Err)
	}
	if d, _ := res.Decision(3); !strings.Contains(d.Err.Error(), "out of range") {
		t.Errorf("the invalid dead letter's error %q lacks the check's", d.Err)
	}
	want := [][]testRow{rowsOf([]string{"a", "b", "c"}, []uint64{10, 12, 14})}
	if fmt.Sprint(stored) != fmt.Sprint(want) {
		t.Errorf("stored %v, want %v", stored, want)
	}
	if len(observed) != 1 || observed[0].Err != nil || len(observed[0].Records) != 3 || observed[0].Records[2].Seq != 14 ||
		observed[0].Records[0].Stream != testStream() || string(observed[0].Records[1].Value) != "b" {
		t.Errorf("Observe saw %+v, want one successful insert of the 3 records", observed)
	}
}

func TestRawWithoutCheckStoresEverything(t *testing.T) {
	var stored []testRow
	_, proc := newTestPipeline(t, rawConfig(nil), func(rows []testRow) error {
		stored = append(stored, rows...)
		return nil
	})
	res := process(t, proc, newMsg(1, []byte("garbage")), newMsg(2, nil))
	wantDecisions(t, res, acked(), acked())
	if want := rowsOf([]string{"garbage", ""}, []uint64{1, 2}); fmt.Sprint(stored) != fmt.Sprint(want) {
		t.Errorf("stored %v, want %v", stored, want)
	}
}

func TestProtoDecodesValidatesAndStoresTheRestInOrder(t *testing.T) {
	validate := func(v *wrapperspb.StringValue) error {
		if v.GetValue() == "" {
			return errors.New("empty value")
		}
		return nil
	}
	var stored []testRow
	_, proc := newTestPipeline(t, protoConfig(validate), func(rows []testRow) error {
		stored = append(stored, rows...)
		return nil
	})

	res := process(t, proc,
		newMsg(5, stringValue(t, "x")),
		newMsg(6, []byte{0xff, 0xff, 0xff}), // not protobuf
		newMsg(7, stringValue(t, "")),
		newMsg(8, stringValue(t, "y")))

	wantDecisions(t, res, acked(), deadLetter(ponixnats.ReasonDecode), deadLetter(ponixnats.ReasonInvalid), acked())
	if d, _ := res.Decision(1); !errors.Is(d.Err, ponixnats.ErrDecode) {
		t.Errorf("the decode dead letter's error %v does not wrap ErrDecode", d.Err)
	}
	if d, _ := res.Decision(2); !strings.Contains(d.Err.Error(), "empty value") || !strings.Contains(d.Err.Error(), "stream sequence 7") {
		t.Errorf("the invalid dead letter's error %q: want validate's error and stream sequence 7", d.Err)
	}
	if want := rowsOf([]string{"x", "y"}, []uint64{5, 8}); fmt.Sprint(stored) != fmt.Sprint(want) {
		t.Errorf("stored %v, want %v", stored, want)
	}
}

// A row the writer refuses (a *ponixclickhouse.RowError, by its index in the rows it was
// given) dead-letters that row's message, even when messages before it were set aside.
func TestRowErrorIndexNamesTheRightMessage(t *testing.T) {
	for _, tc := range []struct {
		name string
		proc func(t *testing.T, write func([]testRow) error) ponixnats.Processor
		data func(t *testing.T, v string) []byte
	}{
		{"raw", func(t *testing.T, write func([]testRow) error) ponixnats.Processor {
			_, proc := newTestPipeline(t, rawConfig(func(b []byte) error {
				if string(b) == "garbage" {
					return ponixnats.ErrDecode
				}
				return nil
			}), write)
			return proc
		}, func(_ *testing.T, v string) []byte { return []byte(v) }},
		{"proto", func(t *testing.T, write func([]testRow) error) ponixnats.Processor {
			_, proc := newTestPipeline(t, protoConfig(nil), write)
			return proc
		}, func(t *testing.T, v string) []byte {
			if v == "garbage" {
				return []byte{0xff}
			}
			return stringValue(t, v)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stored []testRow
			proc := tc.proc(t, func(rows []testRow) error {
				for i, r := range rows {
					if r.Value == "refused" {
						return &ponixclickhouse.RowError{Index: i, Err: &ponixclickhouse.ColumnError{Column: "value", Err: errors.New("refused")}}
					}
				}
				stored = append(stored, rows...)
				return nil
			})
			values := []string{"garbage", "a", "garbage", "b", "refused", "c"}
			msgs := make([]jetstream.Msg, len(values))
			for i, v := range values {
				msgs[i] = newMsg(uint64(20+i), tc.data(t, v))
			}
			res := process(t, proc, msgs...)
			wantDecisions(t, res, deadLetter(ponixnats.ReasonDecode), acked(), deadLetter(ponixnats.ReasonDecode), acked(),
				deadLetter(ponixnats.ReasonRejected), acked())
			if d, _ := res.Decision(4); d.Err == nil || !strings.Contains(d.Err.Error(), `column "value"`) {
				t.Errorf("the rejected message's error %v does not name the column", d.Err)
			}
			if want := rowsOf([]string{"a", "b", "c"}, []uint64{21, 23, 25}); fmt.Sprint(stored) != fmt.Sprint(want) {
				t.Errorf("stored %v, want %v", stored, want)
			}
		})
	}
}

// A sink fault holds the batch: the sink check names it while it lasts, and the same records
// are written again, once the sink works, and acknowledged; nothing is dead-lettered.
func TestSinkFaultHoldsAndTheSinkCheckSaysSo(t *testing.T) {
	var p *Pipeline[[]byte, testRow]
	var attempts int
	var heldErr error
	var stored []testRow
	var observed []error
	cfg := rawConfig(nil)
	cfg.Observe = func(in Insert[[]byte]) { observed = append(observed, in.Err) }
	p, proc := newTestPipeline(t, cfg, func(rows []testRow) error {
		attempts++
		switch attempts {
		case 1:
			return errors.New("connection refused")
		case 2:
			heldErr = checkErr(t, p, CheckSink)
			return errors.New("connection refused")
		}
		stored = append(stored, rows...)
		return nil
	})
	res := process(t, proc, newMsg(1, []byte("a")), newMsg(2, []byte("b")))
	wantDecisions(t, res, acked(), acked())
	if heldErr == nil || !strings.Contains(heldErr.Error(), "batch held since") || !strings.Contains(heldErr.Error(), "connection refused") {
		t.Errorf("during the hold the sink check said %v, want the held batch and its error", heldErr)
	}
	if want := rowsOf([]string{"a", "b"}, []uint64{1, 2}); fmt.Sprint(stored) != fmt.Sprint(want) {
		t.Errorf("stored %v after %d attempts, want %v", stored, attempts, want)
	}
	if err := checkErr(t, p, CheckSink); err != nil {
		t.Errorf("after the sink recovered the sink check says %v", err)
	}
	if len(observed) != 3 || observed[0] == nil || observed[1] == nil || observed[2] != nil {
		t.Errorf("Observe saw the attempts' errors %v, want two failures, then a success", observed)
	}
	if st := p.Hold().State(); st.Held || st.Holds != 1 {
		t.Errorf("hold state %+v, want one hold, ended", st)
	}
}

func TestRawProcessorWrapsThePipelinesStore(t *testing.T) {
	var built int
	cfg := rawConfig(nil)
	cfg.Decode = RawProcessor(func(store ponixnats.MsgStore, opts ...ponixnats.StoreOption) ponixnats.Processor {
		built++
		// A processor of one's own: refuse "bad" before the store, as an envelope screen would.
		return ponixnats.NewStoreProcessor(store, append(opts, ponixnats.WithCheck(func(m jetstream.Msg) error {
			if string(m.Data()) == "bad" {
				return errors.New("bad")
			}
			return nil
		}))...)
	})
	var stored []testRow
	_, proc := newTestPipeline(t, cfg, func(rows []testRow) error {
		stored = append(stored, rows...)
		return nil
	})
	res := process(t, proc, newMsg(7, []byte("a")), newMsg(8, []byte("bad")), newMsg(9, []byte("b")))
	wantDecisions(t, res, acked(), deadLetter(ponixnats.ReasonInvalid), acked())
	if want := rowsOf([]string{"a", "b"}, []uint64{7, 9}); fmt.Sprint(stored) != fmt.Sprint(want) {
		t.Errorf("stored %v, want %v", stored, want)
	}
	if built != 1 {
		t.Errorf("the processor was built %d times, want once", built)
	}
}

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
	// The durable consumer created anew when the last stored sequence was 5.
	p.noteResumed(created, 5)
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

// rowSeqs returns the sequences of rows.
func rowSeqs(rows []testRow) []uint64 {
	var s []uint64
	for _, r := range rows {
		s = append(s, r.Seq)
	}
	return s
}

func TestAConsumerThatWentBackDeliversNothingStoredTwice(t *testing.T) {
	var writes [][]uint64
	p, proc := newTestPipeline(t, rawConfig(nil), func(rows []testRow) error {
		writes = append(writes, rowSeqs(rows))
		return nil
	})
	tbl := &fakeTable{}
	base := p.lookup
	p.lookup = func(ctx context.Context, recs []Record[[]byte]) (map[uint64]struct{}, error) {
		tbl.lookups++
		return base(ctx, recs)
	}
	wantDecisions(t, process(t, proc, newMsg(1, []byte("a")), newMsg(2, []byte("b")), newMsg(3, []byte("c"))), acked(), acked(), acked())
	wantDecisions(t, process(t, proc, newMsg(4, []byte("d")), newMsg(5, []byte("e"))), acked(), acked())
	if tbl.lookups != 0 {
		t.Errorf("first deliveries past everything stored were looked up %d times, want 0", tbl.lookups)
	}
	// A NATS server restarted without the consumer's latest state delivers 4 and 5 again, as
	// first deliveries.
	wantDecisions(t, process(t, proc, newMsg(4, []byte("d")), newMsg(5, []byte("e")), newMsg(6, []byte("f"))), acked(), acked(), acked())
	if want := "[[1 2 3] [4 5] [6]]"; fmt.Sprint(writes) != want {
		t.Errorf("writes %v, want %s: 4 and 5 are stored already", writes, want)
	}
	if tbl.lookups != 1 {
		t.Errorf("looked up %d times, want once (the batch that went back)", tbl.lookups)
	}
}

func TestAnInsertThatCommittedButFailedIsNotRepeated(t *testing.T) {
	cfg := rawConfig(nil)
	p, proc := newTestPipeline(t, cfg, func([]testRow) error { return nil })
	tbl := &fakeTable{}
	var calls int
	p.writer.Store(&writerRef[testRow]{&fakeWriter[testRow]{write: func(rows []testRow) error {
		calls++
		tbl.add(rows) // ClickHouse commits the rows...
		if calls == 1 {
			// ...and answers after the insert timeout: the writer gives up on it.
			return fmt.Errorf("%w: no answer within 1s", ponixclickhouse.ErrUnresponsive)
		}
		return nil
	}}})
	p.lookup = lookupIn[[]byte](tbl)
	wantDecisions(t, process(t, proc, newMsg(1, []byte("a")), newMsg(2, []byte("b"))), acked(), acked())
	if calls != 1 || tbl.lookups != 1 {
		t.Errorf("%d writes and %d lookups, want 1 write (the retry finds both rows stored) after 1 lookup", calls, tbl.lookups)
	}
	if got := p.hold.State(); got.Held || got.Holds != 1 {
		t.Errorf("hold state %+v, want one hold, ended", got)
	}
}

// shardWriter is a writer into a cluster (as ponixclickhouse.ShardedWriter): its QueryShards
// answers the already-stored check with the sequences query returns.
type shardWriter struct {
	fakeWriter[testRow]
	queries []string
	query   func(n int) ([]uint64, error) // the n-th query's answer, from 1
}

func (w *shardWriter) Table() ponixclickhouse.Table { return ponixclickhouse.Table{Name: "t_local"} }

func (w *shardWriter) QueryShards(_ context.Context, query string, scan func(driver.Rows) error) error {
	w.queries = append(w.queries, query)
	seqs, err := w.query(len(w.queries))
	if err != nil {
		return err
	}
	return scan(&seqRows{seqs: seqs, i: -1})
}

// seqRows are the rows of a one-column answer of sequences.
type seqRows struct {
	driver.Rows // nil: calling anything not overridden panics
	seqs        []uint64
	i           int
}

func (r *seqRows) Next() bool { r.i++; return r.i < len(r.seqs) }
func (r *seqRows) Err() error { return nil }
func (r *seqRows) Scan(dest ...any) error {
	*dest[0].(*uint64) = r.seqs[r.i]
	return nil
}

// On a cluster the check reads the shard-local table through the writer, where each shard holds
// every part it committed, not the Distributed table through the seed connection (none here:
// reading it would panic): a peer of a killed replica lacks the rows that replica committed.
// A shard that cannot say (no replica holds every part) holds the batch until one can.
func TestOnAClusterTheCheckReadsEachShardWhereItHoldsEveryPart(t *testing.T) {
	p, proc := newTestPipeline(t, rawConfig(nil), nil)
	p.lookup = p.storedSeqs
	var writes [][]uint64
	w := &shardWriter{fakeWriter: fakeWriter[testRow]{write: func(rows []testRow) error {
		writes = append(writes, rowSeqs(rows))
		return nil
	}}}
	w.query = func(n int) ([]uint64, error) {
		if n == 1 {
			return nil, &ponixclickhouse.ShardError{Cluster: "c", Shard: 2, Replicas: []*ponixclickhouse.ReplicaError{
				{Replica: ponixclickhouse.Replica{Shard: 2, Num: 2}, Err: fmt.Errorf("%w: 3 parts to fetch", ponixclickhouse.ErrReplicaBehind)},
			}}
		}
		return []uint64{1, 2}, nil // the killed replica is back: its rows are seen
	}
	p.writer.Store(&writerRef[testRow]{w})
	wantDecisions(t, process(t, proc, newMsg(1, []byte("a")), newMsg(2, []byte("b"))), acked(), acked())
	// The consumer went back: 1 and 2 come again, as first deliveries, with 3.
	wantDecisions(t, process(t, proc, newMsg(1, []byte("a")), newMsg(2, []byte("b")), newMsg(3, []byte("c"))), acked(), acked(), acked())
	if want := "[[1 2] [3]]"; fmt.Sprint(writes) != want {
		t.Errorf("writes %v, want %s: 1 and 2 are stored already", writes, want)
	}
	if len(w.queries) != 2 || !strings.Contains(w.queries[1], "FROM `t_local` WHERE") {
		t.Errorf("queries %q, want 2 of the shard-local table (the first one failed)", w.queries)
	}
	if got := p.hold.State(); got.Holds != 1 {
		t.Errorf("hold state %+v, want one hold while no replica of the shard held every part", got)
	}
}
