//go:build !ponix_noenvelope

package ponixclickhouse

import (
	"context"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// EnvelopeShardingKey is the sharding key of the envelope table on a cluster: the stream
// sequence, the column the Distributed table processed_envelopes is sharded by (see the
// migrations module). A message redelivered (stored again) goes to the shard of its first copy.
const EnvelopeShardingKey = "stream_seq"

// EnvelopeShardKey returns the sharding key of row: its stream sequence.
func EnvelopeShardKey(row EnvelopeRow) uint64 { return row.StreamSeq }

// NewShardedEnvelopeWriter returns a [ShardedWriter] of [EnvelopeRow]s for a cluster: rows go
// to the local table of the shard their stream sequence names, as the Distributed table table
// (empty: [DefaultEnvelopeTable]) would send them; the local table is table's name with
// [LocalTableSuffix]. Like [NewEnvelopeWriter] it checks the tables first.
func NewShardedEnvelopeWriter(ctx context.Context, seed driver.Conn, cfg ClusterConfig, table Table, opts ...WriterOption) (*ShardedWriter[EnvelopeRow], error) {
	if table.Name == "" {
		table.Name = DefaultEnvelopeTable
	}
	if cfg.DistributedTable == "" {
		cfg.DistributedTable = table.Name
	}
	local := Table{Database: table.Database, Name: table.Name + LocalTableSuffix}
	return NewShardedWriter(ctx, seed, cfg, local, func() Encoder[EnvelopeRow] { return NewEnvelopeEncoder() }, EnvelopeShardKey, opts...)
}
