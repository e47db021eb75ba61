package pipeline

// The path of a batch through the pipeline: each message becomes a Record (the Decoder), the
// records that may be stored already are checked against the table, and the others become rows
// written in one insert.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/ponix-go/ponix/ponixclickhouse"
	"github.com/ponix-go/ponix/ponixnats"
)

// Decoder says how a message becomes a T, and which messages are dead-lettered before anything
// is stored. Make one with [Proto] or [Raw].
type Decoder[T any] struct {
	processor func(store storeFunc[T], opts ...ponixnats.StoreOption) ponixnats.Processor
}

// Proto decodes each message as the protobuf message newT returns. A message that does not
// decode is dead-lettered alone with reason "decode"; validate, if set, refuses a decoded
// value (reason "invalid", its error in the Ponix-Dlq-Error header).
func Proto[T proto.Message](newT func() T, validate func(T) error) Decoder[T] {
	return Decoder[T]{processor: func(store storeFunc[T], opts ...ponixnats.StoreOption) ponixnats.Processor {
		var buf []Record[T]
		return ponixnats.NewProtoStoreProcessor(newT, func(ctx context.Context, b ponixnats.Batch[ponixnats.Decoded[T]]) (err error) {
			buf, err = records(b, buf, func(d ponixnats.Decoded[T]) (T, jetstream.Msg) { return d.Value, d.Msg })
			if err != nil {
				return err
			}
			return store(ctx, ponixnats.Batch[Record[T]]{Stream: b.Stream, Consumer: b.Consumer, Items: buf, Stopping: b.Stopping})
		}, validate, opts...)
	}}
}

// Raw hands each message's bytes to the row as they are (Record.Value is the message's data,
// valid while the batch is stored). check, if set, refuses a message before anything is
// stored: it is dead-lettered alone, with reason "decode" when the error wraps
// ponixnats.ErrDecode and "invalid" otherwise. Use Raw when the Encoder reads the bytes itself
// (one parse per message), and refuse a bad message there with a ponixclickhouse.RowError.
func Raw(check func(data []byte) error) Decoder[[]byte] {
	return RawProcessor(func(store ponixnats.MsgStore, opts ...ponixnats.StoreOption) ponixnats.Processor {
		if check != nil {
			opts = append([]ponixnats.StoreOption{ponixnats.WithCheck(func(m jetstream.Msg) error { return check(m.Data()) })}, opts...)
		}
		return ponixnats.NewStoreProcessor(store, opts...)
	})
}

// RawProcessor is [Raw] with a store processor of your own around the pipeline's store, such as
// ponixnats.NewEnvelopeWireProcessor (whose store, the envelope encoder, validates each
// envelope while it encodes it, read once). newProcessor is given the store and the
// pipeline's options (its Hold), which it must pass on.
func RawProcessor(newProcessor func(store ponixnats.MsgStore, opts ...ponixnats.StoreOption) ponixnats.Processor) Decoder[[]byte] {
	return Decoder[[]byte]{processor: func(store storeFunc[[]byte], opts ...ponixnats.StoreOption) ponixnats.Processor {
		var buf []Record[[]byte]
		return newProcessor(func(ctx context.Context, b ponixnats.Batch[jetstream.Msg]) (err error) {
			buf, err = records(b, buf, func(m jetstream.Msg) ([]byte, jetstream.Msg) { return m.Data(), m })
			if err != nil {
				return err
			}
			return store(ctx, ponixnats.Batch[Record[[]byte]]{Stream: b.Stream, Consumer: b.Consumer, Items: buf, Stopping: b.Stopping})
		}, opts...)
	}}
}

// records makes the Records of a batch's items into buf (reused: the consumer stores one batch,
// or part, at a time), record i from item i.
func records[I, T any](b ponixnats.Batch[I], buf []Record[T], split func(I) (T, jetstream.Msg)) ([]Record[T], error) {
	buf = buf[:0]
	for _, it := range b.Items {
		v, m := split(it)
		d, err := ponixnats.DeliveryOf(m)
		if err != nil {
			return buf, err
		}
		buf = append(buf, Record[T]{Value: v, Stream: b.Stream, Seq: d.StreamSeq, Delivered: d.Delivered, Msg: m})
	}
	return buf, nil
}

// store writes a batch (or a part of one) in one insert, row i from record i, so that a
// ponixclickhouse.RowError's index names the record; records already stored are left out (see
// [Key]). A schema error makes it compare the table with the writer (and repair a dropped
// table) and report the difference instead.
func (p *Pipeline[T, R]) store(ctx context.Context, batch ponixnats.Batch[Record[T]]) error {
	start := time.Now()
	stored, err := p.write(ctx, batch.Items)
	if p.cfg.Observe != nil {
		p.cfg.Observe(Insert[T]{Records: batch.Items, Took: time.Since(start), Err: err, Stored: stored})
	}
	if err == nil {
		p.log.Info("stored batch", "batch_size", len(batch.Items), "duration", time.Since(start))
	}
	return err
}

// write inserts the records that have no row yet (see [Key]) and returns how many had one.
func (p *Pipeline[T, R]) write(ctx context.Context, recs []Record[T]) (int, error) {
	ref := p.writer.Load()
	if ref == nil {
		return 0, errors.New("the ClickHouse writer is not ready")
	}
	fresh, idx, err := p.unstored(ctx, recs)
	if err != nil {
		// The table the check reads may be what is wrong (missing on a shard, say): say so.
		return 0, p.schema.diagnose(ctx, ref.w, err)
	}
	if len(fresh) > 0 {
		p.rows = p.rows[:0]
		for _, r := range fresh {
			p.rows = append(p.rows, p.cfg.Row(r))
		}
		err = inBatch(ref.w.Write(ctx, p.rows), idx)
	}
	if p.cfg.Key.StreamSeq != "" {
		p.noteWritten(recs, err) // on success, every record of recs has its row
	}
	if err != nil {
		if ponixclickhouse.Classify(err) == ponixclickhouse.ClassSchema {
			return 0, p.schema.diagnose(ctx, ref.w, err)
		}
		return 0, err
	}
	p.schema.fits()
	return len(recs) - len(fresh), nil
}

// recheck: the messages of a stream incarnation up to a sequence may be stored although they
// are delivered for the first time, because the durable consumer was created anew (see
// resumeAt) when the stream's last sequence was through.
type recheck struct {
	created uint64 // the incarnation, Unix nanoseconds
	through uint64
}

// highWater is the highest stream sequence of a stream incarnation the pipeline stored.
type highWater struct{ created, seq uint64 }

// mayBeStored reports whether a record of recs may already have a row:
//   - it was delivered before;
//   - it is covered by a recheck (the durable consumer was created anew);
//   - it is at or below the highest sequence of its stream incarnation this pipeline stored: a
//     pull consumer hands out first deliveries in stream order, so the consumer went back (a
//     NATS server killed and restarted may lose the consumer's latest state and deliver stored
//     messages again as first deliveries);
//   - the last write failed in a way after which its rows may be committed (an insert answered
//     after its timeout, a connection lost after the data was sent, a cluster insert that
//     reached some shards): the batch is retried in place, still as a first delivery.
func (p *Pipeline[T, R]) mayBeStored(recs []Record[T]) bool {
	if p.uncertain {
		return true
	}
	rc, hw := p.recheck.Load(), p.high
	for _, r := range recs {
		created := r.StreamCreatedNanos()
		if r.Delivered > 1 || created == hw.created && r.Seq <= hw.seq || rc != nil && r.Seq <= rc.through && created == rc.created {
			return true
		}
	}
	return false
}

// noteWritten remembers what a write of recs that ended with err may have stored: on success the
// highest sequence; on a failure after which some rows may be committed (any but a row the
// encoder refused, when nothing was sent), that the next write must be checked.
func (p *Pipeline[T, R]) noteWritten(recs []Record[T], err error) {
	if err != nil {
		if ponixclickhouse.Classify(err) != ponixclickhouse.ClassRow {
			p.uncertain = true
		}
		return
	}
	p.uncertain = false
	for _, r := range recs {
		if created := r.StreamCreatedNanos(); created != p.high.created {
			p.high = highWater{created: created}
		}
		p.high.seq = max(p.high.seq, r.Seq)
	}
}

// shardReader is a writer into a cluster that reads each shard where it holds every part the
// shard committed (ponixclickhouse.ShardedWriter).
type shardReader interface {
	Table() ponixclickhouse.Table
	QueryShards(ctx context.Context, query string, scan func(driver.Rows) error) error
}

// storedSeqs returns the sequences of recs (all of one stream incarnation) that have a row.
//
// On a cluster it reads each shard's local table on a replica that holds every part the shard
// committed, not the Distributed table: the rows of an insert that a replica committed and did
// not answer (it was killed) are on that replica alone until it is back, and a read through the
// Distributed table served by its peer would not see them — the messages would be stored again
// in another composition (after a restart, say), which no block deduplication catches. While
// no replica of a shard holds every part, the check fails and the batch is held.
func (p *Pipeline[T, R]) storedSeqs(ctx context.Context, recs []Record[T]) (map[uint64]struct{}, error) {
	table := p.cfg.Table
	var shards shardReader
	if p.cfg.Key.Lookup != (ponixclickhouse.Table{}) {
		table = p.cfg.Key.Lookup
	} else if ref := p.writer.Load(); ref != nil {
		if sr, ok := ref.w.(shardReader); ok {
			table, shards = sr.Table(), sr
		}
	}
	quoted, err := table.Quoted()
	if err != nil {
		return nil, err
	}
	created, err := ponixclickhouse.QuoteIdentifier(p.cfg.Key.StreamCreated)
	if err != nil {
		return nil, err
	}
	seqCol, err := ponixclickhouse.QuoteIdentifier(p.cfg.Key.StreamSeq)
	if err != nil {
		return nil, err
	}
	lo, hi := recs[0].Seq, recs[0].Seq
	for _, r := range recs {
		lo, hi = min(lo, r.Seq), max(hi, r.Seq)
	}
	query := fmt.Sprintf("SELECT DISTINCT %[3]s FROM %[1]s WHERE %[2]s = %[4]d AND %[3]s BETWEEN %[5]d AND %[6]d",
		quoted, created, seqCol, recs[0].StreamCreatedNanos(), lo, hi)
	stored := make(map[uint64]struct{})
	scan := func(rows driver.Rows) error {
		for rows.Next() {
			var seq uint64
			if err := rows.Scan(&seq); err != nil {
				return err
			}
			stored[seq] = struct{}{}
		}
		return rows.Err()
	}
	if shards != nil {
		if err := shards.QueryShards(ctx, query, scan); err != nil {
			return nil, err
		}
		return stored, nil
	}
	rows, err := p.conn.Query(ctx, query)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return stored, scan(rows)
}

// unstored returns the records of recs that have no row, and their indices in recs, when
// some may have one (see [Key]); recs itself (and nil indices) otherwise.
func (p *Pipeline[T, R]) unstored(ctx context.Context, recs []Record[T]) ([]Record[T], []int, error) {
	if p.cfg.Key.StreamSeq == "" || len(recs) == 0 || !p.mayBeStored(recs) {
		return recs, nil, nil
	}
	stored, err := p.lookup(ctx, recs)
	if err == nil {
		p.uncertain = false // what the last failed write left is known now
	}
	if err != nil {
		return nil, nil, fmt.Errorf("reading which messages of the batch are stored already: %w", err)
	}
	if len(stored) == 0 {
		return recs, nil, nil
	}
	p.fresh, p.freshIdx = p.fresh[:0], p.freshIdx[:0]
	for i, r := range recs {
		if _, ok := stored[r.Seq]; !ok {
			p.fresh, p.freshIdx = append(p.fresh, r), append(p.freshIdx, i)
		}
	}
	p.log.Info("messages delivered before are stored already: acknowledged, not inserted again",
		"stored", len(recs)-len(p.fresh), "batch", len(recs), "first_stream_seq", recs[0].Seq)
	return p.fresh, p.freshIdx, nil
}

// inBatch maps a refused row's index in the rows written (fresh records only) back to the
// batch's: a ponixclickhouse.RowError must name the batch's item.
func inBatch(err error, idx []int) error {
	var re *ponixclickhouse.RowError
	if idx == nil || !errors.As(err, &re) || re.Index < 0 || re.Index >= len(idx) {
		return err
	}
	return &ponixclickhouse.RowError{Index: idx[re.Index], Err: re.Err}
}

// noteResumed makes the pipeline check the messages of the stream incarnation created up to
// sequence through (the last one stored) before inserting them: the durable consumer was
// created anew and may deliver stored messages for the first time (past a gap).
func (p *Pipeline[T, R]) noteResumed(created time.Time, through uint64) {
	p.recheck.Store(&recheck{created: uint64(created.UnixNano()), through: through})
}
