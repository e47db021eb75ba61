package ponixclickhouse

import (
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
)

// WithStallTimeout becomes the insert's send_timeout and receive_timeout in whole seconds
// (rounded down, never longer than asked); under a second is refused, not rounded up.
func TestStallSettings(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want clickhouse.Settings
	}{
		{0, nil},
		{time.Second, clickhouse.Settings{"send_timeout": 1, "receive_timeout": 1}},
		{10*time.Second + 900*time.Millisecond, clickhouse.Settings{"send_timeout": 10, "receive_timeout": 10}},
	} {
		got, err := stallSettings(tc.d)
		if err != nil || !maps.Equal(got, tc.want) {
			t.Errorf("stallSettings(%s) = %v, %v; want %v", tc.d, got, err, tc.want)
		}
	}
	for _, d := range []time.Duration{time.Millisecond, 999 * time.Millisecond, -time.Second} {
		_, err := newBatchWriter(nil, Table{Name: "t"}, func() Encoder[uint64] { return &seqEncoder{} }, WithStallTimeout(d))
		if err == nil || !strings.Contains(err.Error(), "stall timeout") || !strings.Contains(err.Error(), "at least 1s") {
			t.Errorf("WithStallTimeout(%s): err = %v, want one naming the stall timeout and its minimum", d, err)
		}
	}
}

// A sharded writer takes its stall timeout and insert quorum into one set of settings, and its
// insert timeout from WithInsertTimeout as from ClusterConfig — refusing the two when they differ.
func TestShardedWriterSettingsAndInsertTimeout(t *testing.T) {
	topo, err := NewTopology("c", []Shard{{Num: 1, Weight: 1, Replicas: replicas(1, 2)}})
	if err != nil {
		t.Fatal(err)
	}
	enc := func() Encoder[uint64] { return &seqEncoder{} }
	key := func(v uint64) uint64 { return v }
	w, err := NewShardedWriterFor(topo, nil, ClusterConfig{Cluster: "c", InsertQuorum: 2}, Table{Name: "t_local"}, enc, key,
		WithStallTimeout(5*time.Second), WithInsertTimeout(7*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if want := (clickhouse.Settings{"insert_quorum": 2, "send_timeout": 5, "receive_timeout": 5}); !maps.Equal(w.settings, want) {
		t.Errorf("settings = %v, want %v", w.settings, want)
	}
	if w.cfg.InsertTimeout != 7*time.Second {
		t.Errorf("insert timeout = %s, want WithInsertTimeout's 7s", w.cfg.InsertTimeout)
	}
	_, err = NewShardedWriterFor(topo, nil, ClusterConfig{Cluster: "c", InsertTimeout: 3 * time.Second}, Table{Name: "t_local"}, enc, key,
		WithInsertTimeout(7*time.Second))
	if err == nil || !strings.Contains(err.Error(), "differ") {
		t.Errorf("two insert timeouts: err = %v, want one saying they differ", err)
	}
}
