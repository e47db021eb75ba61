//go:build !ponix_noenvelope

package ponixclickhouse

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	envelopev1 "buf.build/gen/go/ponix/ponix/protocolbuffers/go/envelope/v1"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ponix-go/ponix/envelope"
)

// DefaultEnvelopeTable is the table of the upstream schema (see the migrations module).
const DefaultEnvelopeTable = "processed_envelopes"

// EnvelopeColumns returns the columns the envelope writer fills, in order.
func EnvelopeColumns() []string { return slices.Clone(envelopeColumns) }

var envelopeColumns = []string{"organization_id", "end_device_id", "occurred_at", "processed_at", "data", "stream_created_ns", "stream_seq"}

// EnvelopeRow is one row of the envelope table: an envelope and the identity of the JetStream
// message it came with — the stream sequence and the stream's creation time. Both are the same
// on every redelivery of a message, and they end the table's sorting key, so the
// ReplacingMergeTree collapses the rows that a redelivery stored twice (read with FINAL to see
// them collapsed at once; see the migrations module). The creation time tells apart two
// incarnations of a stream (deleted and created again), whose sequences both start at 1, so
// that a new message is never collapsed into an old row. Rows that did not come from a stream
// should use distinct sequences.
//
// Give the envelope either decoded (Envelope) or as its protobuf wire bytes (Wire, e.g. a
// JetStream message's data): wire bytes are encoded straight into the columns without building
// the message, which saves most of the CPU and allocations of the decoded path. Both give the
// same row for the same envelope.
type EnvelopeRow struct {
	Envelope *envelopev1.ProcessedEnvelope
	Wire     []byte
	// StreamSeq is the message's stream sequence (column stream_seq).
	StreamSeq uint64
	// StreamCreated is when the message's stream was created (column stream_created_ns, Unix
	// nanoseconds; the zero time is 0).
	StreamCreated time.Time
}

// maxDateTime is the last second a ClickHouse DateTime (UInt32 seconds) holds.
const maxDateTime = 1<<32 - 1

// EnvelopeEncoder is the [Encoder] for [EnvelopeRow]s: organization_id and end_device_id as
// String, occurred_at and processed_at as DateTime (UTC, whole seconds; nil is an error naming
// the field), data as a compact JSON object String (see envelope.DataJSON; NaN/±Inf are rejected),
// stream_created_ns and stream_seq as UInt64. A nil envelope is an error.
type EnvelopeEncoder struct {
	created       []uint64
	seqs          []uint64
	orgs, devices []string
	occurred      []time.Time
	processed     []time.Time
	data          []string
	ends          []int // end offset of each row's JSON in buf
	buf           []byte
	json          envelope.DataJSON
}

// NewEnvelopeEncoder returns an empty encoder.
func NewEnvelopeEncoder() *EnvelopeEncoder { return &EnvelopeEncoder{} }

// Columns implements [Encoder].
func (e *EnvelopeEncoder) Columns() []string { return envelopeColumns }

// Reset implements [Encoder].
func (e *EnvelopeEncoder) Reset(n int) {
	e.seqs = grow(e.seqs[:0], n)
	e.created = grow(e.created[:0], n)
	e.orgs = grow(e.orgs[:0], n)
	e.devices = grow(e.devices[:0], n)
	e.occurred = grow(e.occurred[:0], n)
	e.processed = grow(e.processed[:0], n)
	e.ends = grow(e.ends[:0], n)
	clear(e.data)
	e.data = e.data[:0]
	e.buf = e.buf[:0]
}

func grow[S ~[]E, E any](s S, n int) S {
	if cap(s) < n {
		return make(S, 0, n)
	}
	return s
}

// Encode implements [Encoder].
func (e *EnvelopeEncoder) Encode(row EnvelopeRow) error {
	if err := e.encode(row); err != nil {
		return err
	}
	var ns uint64
	if !row.StreamCreated.IsZero() {
		ns = uint64(row.StreamCreated.UnixNano())
	}
	e.created = append(e.created, ns)
	return nil
}

func (e *EnvelopeEncoder) encode(row EnvelopeRow) error {
	env := row.Envelope
	if env == nil && row.Wire != nil {
		err := e.encodeWire(row.Wire, row.StreamSeq)
		if errors.Is(err, errIrregular) {
			return e.encodeDecoded(row.Wire, row.StreamSeq)
		}
		return err
	}
	if env == nil {
		return fmt.Errorf("envelope is nil")
	}
	occ, err := dateTime("occurred_at", env.GetOccurredAt())
	if err != nil {
		return err
	}
	proc, err := dateTime("processed_at", env.GetProcessedAt())
	if err != nil {
		return err
	}
	buf, err := e.json.Append(e.buf, env.GetData())
	if err != nil {
		return dataError(err)
	}
	e.buf = buf
	e.orgs = append(e.orgs, env.GetOrganizationId())
	e.devices = append(e.devices, env.GetEndDeviceId())
	e.occurred = append(e.occurred, occ)
	e.processed = append(e.processed, proc)
	e.ends = append(e.ends, len(e.buf))
	e.seqs = append(e.seqs, row.StreamSeq)
	return nil
}

func dateTime(field string, ts *timestamppb.Timestamp) (time.Time, error) {
	if ts == nil {
		return time.Time{}, &FieldError{Field: field, Err: ErrNilTimestamp}
	}
	if err := ts.CheckValid(); err != nil {
		return time.Time{}, &FieldError{Field: field, Err: fmt.Errorf("%w: %w", ErrTimestampOutOfRange, err)}
	}
	s := ts.GetSeconds()
	if s < 0 || s > maxDateTime {
		return time.Time{}, &FieldError{Field: field, Err: fmt.Errorf("%w: %s", ErrTimestampOutOfRange, ts.AsTime().Format(time.RFC3339))}
	}
	return time.Unix(s, 0).UTC(), nil
}

// AppendTo implements [Encoder]. All JSON documents of the batch share one string allocation.
func (e *EnvelopeEncoder) AppendTo(b driver.Batch) error {
	all := string(e.buf)
	start := 0
	for _, end := range e.ends {
		e.data = append(e.data, all[start:end])
		start = end
	}
	cols := [...]any{e.orgs, e.devices, e.occurred, e.processed, e.data, e.created, e.seqs}
	for i, c := range cols {
		if err := b.Column(i).Append(c); err != nil {
			return fmt.Errorf("column %s: %w", envelopeColumns[i], err)
		}
	}
	return nil
}

// NewEnvelopeWriter returns a [BatchWriter] for [EnvelopeRow]s into table; an empty table name
// means [DefaultEnvelopeTable] in the connection's database. Like [NewBatchWriter] it checks the
// table's columns first.
func NewEnvelopeWriter(ctx context.Context, conn driver.Conn, table Table, opts ...WriterOption) (*BatchWriter[EnvelopeRow], error) {
	if table.Name == "" {
		table.Name = DefaultEnvelopeTable
	}
	return NewBatchWriter(ctx, conn, table, func() Encoder[EnvelopeRow] { return NewEnvelopeEncoder() }, opts...)
}
