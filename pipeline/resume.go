package pipeline

import (
	"context"
	"fmt"

	"github.com/ponix-go/ponix/ponixclickhouse"
	"github.com/ponix-go/ponix/ponixnats"
)

// maxResumeScan bounds the stored sequences read to find where a consumer created anew resumes.
const maxResumeScan = 5_000_000

// resumeAt says where a durable consumer created anew (it was deleted, or its stream was)
// starts: after the stored messages of this stream incarnation that follow each other from the
// last known ack floor on, i.e. at the first message after the floor that has no row. A
// dead-lettered message has no row either, so delivery may start a little early; the copies
// stored again collapse under FINAL.
func (p *Pipeline[T, R]) resumeAt(ctx context.Context, ri ponixnats.ResumeInfo) (uint64, error) {
	next := max(ri.AckFloor+1, ri.FirstSeq, 1)
	if ri.StreamCreated.IsZero() {
		return next, nil
	}
	table, err := p.cfg.Table.Quoted()
	if err != nil {
		return 0, err
	}
	created, err := ponixclickhouse.QuoteIdentifier(p.cfg.Key.StreamCreated)
	if err != nil {
		return 0, err
	}
	seqCol, err := ponixclickhouse.QuoteIdentifier(p.cfg.Key.StreamSeq)
	if err != nil {
		return 0, err
	}
	rows, err := p.conn.Query(ctx, fmt.Sprintf(
		"SELECT DISTINCT %[3]s FROM %[1]s WHERE %[2]s = %[4]d AND %[3]s >= %[5]d ORDER BY %[3]s LIMIT %[6]d",
		table, created, seqCol, ri.StreamCreated.UnixNano(), next, maxResumeScan))
	if err != nil {
		if ponixclickhouse.Classify(err) == ponixclickhouse.ClassSchema {
			// No table yet (it is checked, and repaired, before consuming starts): nothing of
			// this stream is stored after the floor.
			p.log.Warn("no stored sequences to resume after: the table cannot be read", "error", err, "start_sequence", next)
			return next, nil
		}
		return p.resumeUnknown(ri, next, err), nil
	}
	defer rows.Close()
	for rows.Next() {
		var seq uint64
		if err := rows.Scan(&seq); err != nil {
			return 0, err
		}
		if seq != next {
			break
		}
		next++
	}
	if err := rows.Err(); err != nil {
		return p.resumeUnknown(ri, next, err), nil
	}
	// Past a gap (a dead-lettered message, another instance's batch not stored yet) messages may
	// be stored: those up to the last stored sequence are checked before they are inserted.
	var last uint64
	if err := p.conn.QueryRow(ctx, fmt.Sprintf("SELECT max(%[3]s) FROM %[1]s WHERE %[2]s = %[4]d",
		table, created, seqCol, ri.StreamCreated.UnixNano())).Scan(&last); err != nil {
		return p.resumeUnknown(ri, next, err), nil
	}
	if last >= next {
		p.noteResumed(ri.StreamCreated, last)
	}
	p.log.Info("resuming after the stored messages", "stream", ri.Stream, "ack_floor", ri.AckFloor, "start_sequence", next)
	return next, nil
}

// resumeUnknown is where delivery resumes when the table could not be read (err) past next:
// the sink is down or slow, so where the rows end is unknown. Delivery starts at next, and every
// message up to the stream's last sequence is checked against the table before it is inserted,
// which waits for the sink like any insert: a consumer created anew, or taken over, never waits
// for the sink to start delivering.
func (p *Pipeline[T, R]) resumeUnknown(ri ponixnats.ResumeInfo, next uint64, err error) uint64 {
	p.noteResumed(ri.StreamCreated, ri.LastSeq)
	p.log.Warn("where the stored rows end cannot be read: resuming there; messages up to the stream's last sequence are checked against the table before they are inserted",
		"error", err, "start_sequence", next, "checked_through", ri.LastSeq)
	return next
}
