package ponixclickhouse

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

func replicas(shard, n int) []Replica {
	out := make([]Replica, n)
	for i := range out {
		out[i] = Replica{Shard: shard, Num: i + 1, Host: "h", Address: "10.0.0.1", Port: 9000}
	}
	return out
}

// ShardIndex places keys as a Distributed table does: key modulo the total weight, each shard
// owning consecutive slots in shard order.
func TestShardIndexFollowsTheDistributedEngine(t *testing.T) {
	topo, err := NewTopology("c", []Shard{{Num: 1, Weight: 1, Replicas: replicas(1, 2)}, {Num: 2, Weight: 1, Replicas: replicas(2, 2)}})
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[uint64]int{0: 0, 1: 1, 2: 0, 3: 1, 1<<63 + 1: 1} {
		if got := topo.ShardIndex(key); got != want {
			t.Errorf("2 shards of weight 1: key %d -> shard index %d, want %d", key, got, want)
		}
	}
	topo, err = NewTopology("c", []Shard{{Num: 1, Weight: 2, Replicas: replicas(1, 1)}, {Num: 2, Weight: 0, Replicas: replicas(2, 1)}, {Num: 3, Weight: 1, Replicas: replicas(3, 1)}})
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[uint64]int{0: 0, 1: 0, 2: 2, 3: 0, 5: 2} {
		if got := topo.ShardIndex(key); got != want {
			t.Errorf("weights 2,0,1: key %d -> shard index %d, want %d", key, got, want)
		}
	}
	if _, err := NewTopology("c", []Shard{{Num: 1, Weight: 0, Replicas: replicas(1, 1)}}); err == nil {
		t.Error("a topology with no weight is accepted")
	}
	if _, err := NewTopology("c", []Shard{{Num: 1, Weight: 1}}); err == nil {
		t.Error("a shard without replicas is accepted")
	}
}

// A shard whose replicas all failed is classified by the most telling answer (a server's
// exception before a network error); a batch with one shard failing as a sink and another
// refusing the data is held (sink first), not split.
func TestShardErrorClassification(t *testing.T) {
	dial := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("i/o timeout")}
	readOnly := &clickhouse.Exception{Code: 242, Message: "Table is in readonly mode"}
	bad := &clickhouse.Exception{Code: 27, Message: "Cannot parse input"}
	shard := func(n int, errs ...error) *ShardError {
		se := &ShardError{Cluster: "c", Shard: n, Rows: 10}
		for i, err := range errs {
			se.Replicas = append(se.Replicas, &ReplicaError{Replica: Replica{Shard: n, Num: i + 1, Host: "h"}, Addr: "a", Err: &WriteError{Rows: 10, Op: "send", Err: err}})
		}
		return se
	}
	if c := Classify(shard(1, dial, readOnly)); c != ClassReadOnly {
		t.Errorf("unreachable + read-only replica: class %s, want %s", c, ClassReadOnly)
	}
	if c := Classify(shard(1, dial, dial)); c != ClassUnreachable {
		t.Errorf("both replicas unreachable: class %s, want %s", c, ClassUnreachable)
	}
	data := shard(2, bad)
	var rf interface{ RecordFault() bool }
	if !errors.As(data, &rf) || !rf.RecordFault() {
		t.Errorf("a shard refusing the data is not a record fault")
	}
	mixed := joinSinkFirst([]error{data, nil, shard(1, dial, dial)})
	if c := Classify(mixed); c != ClassUnreachable {
		t.Errorf("one shard down, one refusing the data: class %s, want %s (hold)", c, ClassUnreachable)
	}
	if !errors.As(mixed, &rf) || rf.RecordFault() {
		t.Errorf("one shard down, one refusing the data: the first record-fault check says %v, want false (hold, do not split)", rf != nil && rf.RecordFault())
	}
	if joinSinkFirst([]error{nil, nil}) != nil {
		t.Error("no errors joined into one")
	}
	msg := shard(1, dial, readOnly).Error()
	for _, want := range []string{"cluster c shard 1: 10 rows not stored", "replica 1", "i/o timeout", "replica 2", "readonly"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
	if errors.Is(shard(1, context.DeadlineExceeded), context.Canceled) {
		t.Error("a timed-out replica reads as canceled")
	}
}

// fakeConn is a replica: PrepareBatch either never answers (until the context ends, as a
// partitioned node) or returns a batch that stores the rows it is given.
type fakeConn struct {
	driver.Conn
	silent bool
	stored *[]uint64
}

func (c fakeConn) PrepareBatch(ctx context.Context, query string, opts ...driver.PrepareBatchOption) (driver.Batch, error) {
	if c.silent {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return &fakeBatch{stored: c.stored}, nil
}

func (fakeConn) Close() error { return nil }

type fakeBatch struct {
	driver.Batch
	stored *[]uint64
	col    fakeColumn
	sent   bool
}

type fakeColumn struct {
	driver.BatchColumn
	vals []uint64
}

func (c *fakeColumn) Append(v any) error {
	c.vals = append(c.vals, v.([]uint64)...)
	return nil
}

func (b *fakeBatch) Column(int) driver.BatchColumn { return &b.col }
func (b *fakeBatch) Send() error {
	b.sent = true
	*b.stored = append(*b.stored, b.col.vals...)
	return nil
}
func (b *fakeBatch) IsSent() bool { return b.sent }
func (b *fakeBatch) Abort() error { return nil }

// seqEncoder encodes uint64 rows into one column.
type seqEncoder struct{ vals []uint64 }

func (e *seqEncoder) Columns() []string             { return []string{"v"} }
func (e *seqEncoder) Reset(n int)                   { e.vals = make([]uint64, 0, n) }
func (e *seqEncoder) Encode(v uint64) error         { e.vals = append(e.vals, v); return nil }
func (e *seqEncoder) AppendTo(b driver.Batch) error { return b.Column(0).Append(e.vals) }

// A replica that never answers (a partition) costs PrepareTimeout, then its rows go to the next
// replica of the shard, which is preferred from then on; a shard whose replicas all stay silent
// is a sink fault (unreachable), never "canceled".
func TestShardedWriterFailsOverASilentReplica(t *testing.T) {
	topo, err := NewTopology("c", []Shard{{Num: 1, Weight: 1, Replicas: replicas(1, 2)}, {Num: 2, Weight: 1, Replicas: replicas(2, 2)}})
	if err != nil {
		t.Fatal(err)
	}
	w, err := NewShardedWriterFor(topo, nil, ClusterConfig{Cluster: "c", PrepareTimeout: 200 * time.Millisecond},
		Table{Name: "t_local"}, func() Encoder[uint64] { return &seqEncoder{} }, func(v uint64) uint64 { return v })
	if err != nil {
		t.Fatal(err)
	}
	var shard1, shard2 []uint64
	w.shards[0].conns = []driver.Conn{fakeConn{silent: true}, fakeConn{stored: &shard1}}
	w.shards[1].conns = []driver.Conn{fakeConn{stored: &shard2}, fakeConn{silent: true}}
	begin := time.Now()
	if err := w.Write(t.Context(), []uint64{1, 2, 3, 4, 5}); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(begin); d < 200*time.Millisecond || d > 2*time.Second {
		t.Errorf("the write took %s, want about the prepare timeout (200ms)", d)
	}
	if !slices.Equal(shard1, []uint64{2, 4}) || !slices.Equal(shard2, []uint64{1, 3, 5}) {
		t.Errorf("shard 1 got %v, shard 2 got %v; want [2 4] and [1 3 5] (key modulo 2)", shard1, shard2)
	}
	begin = time.Now()
	if err := w.Write(t.Context(), []uint64{6}); err != nil || time.Since(begin) > 100*time.Millisecond {
		t.Errorf("second write: %v after %s; want the replica that worked, at once", err, time.Since(begin))
	}
	w.shards[0].conns[1] = fakeConn{silent: true}
	err = w.Write(t.Context(), []uint64{8})
	var se *ShardError
	if !errors.As(err, &se) || se.Shard != 1 || len(se.Replicas) != 2 {
		t.Fatalf("every replica of shard 1 silent: %v, want a ShardError for shard 1 naming both replicas", err)
	}
	if c := Classify(err); c != ClassUnreachable {
		t.Errorf("every replica silent: class %s, want %s", c, ClassUnreachable)
	}
	if !strings.Contains(err.Error(), "no answer to the INSERT statement within 200ms") {
		t.Errorf("message %q does not say what happened", err)
	}
}
