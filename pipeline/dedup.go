package pipeline

import (
	"context"
	"errors"
	"fmt"

	"github.com/ponix-go/ponix/ponixclickhouse"
	"github.com/ponix-go/ponix/ponixnats"
)

// recheck: the messages of a stream incarnation up to a sequence may be stored although they
// are delivered for the first time, because the durable consumer was created anew (see
// resumeAt) when the stream's last sequence was through.
type recheck struct {
	created uint64 // the incarnation, Unix nanoseconds
	through uint64
}

// mayBeStored reports whether a record of recs may already have a row: it was delivered
// before, or it is covered by a recheck.
func (p *Pipeline[T, R]) mayBeStored(recs []Record[T]) bool {
	rc := p.recheck.Load()
	for _, r := range recs {
		if r.Delivered > 1 || rc != nil && r.Seq <= rc.through && r.StreamCreatedNanos() == rc.created {
			return true
		}
	}
	return false
}

// storedSeqs returns the sequences of recs (all of one stream incarnation) that have a row.
func (p *Pipeline[T, R]) storedSeqs(ctx context.Context, recs []Record[T]) (map[uint64]struct{}, error) {
	table := p.cfg.Table
	if p.cfg.Key.Lookup != (ponixclickhouse.Table{}) {
		table = p.cfg.Key.Lookup
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
	rows, err := p.conn.Query(ctx, fmt.Sprintf("SELECT DISTINCT %[3]s FROM %[1]s WHERE %[2]s = %[4]d AND %[3]s BETWEEN %[5]d AND %[6]d",
		quoted, created, seqCol, recs[0].StreamCreatedNanos(), lo, hi))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	stored := make(map[uint64]struct{})
	for rows.Next() {
		var seq uint64
		if err := rows.Scan(&seq); err != nil {
			return nil, err
		}
		stored[seq] = struct{}{}
	}
	return stored, rows.Err()
}

// unstored returns the records of recs that have no row, and their indices in recs, when
// some may have one (see [Key]); recs itself (and nil indices) otherwise.
func (p *Pipeline[T, R]) unstored(ctx context.Context, recs []Record[T]) ([]Record[T], []int, error) {
	if p.cfg.Key.StreamSeq == "" || len(recs) == 0 || !p.mayBeStored(recs) {
		return recs, nil, nil
	}
	stored, err := p.storedSeqs(ctx, recs)
	if err != nil {
		return nil, nil, fmt.Errorf("reading which messages delivered before are stored: %w", err)
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

// noteResumed makes the pipeline check the messages of ri's stream incarnation up to its
// last sequence before inserting them: the durable consumer was created anew and may deliver
// stored messages for the first time (past a gap, or those another instance stored).
func (p *Pipeline[T, R]) noteResumed(ri ponixnats.ResumeInfo) {
	if ri.StreamCreated.IsZero() {
		return
	}
	p.recheck.Store(&recheck{created: uint64(ri.StreamCreated.UnixNano()), through: ri.LastSeq})
}
