//go:build !ponix_noenvelope

package ponixclickhouse

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	envelopev1 "buf.build/gen/go/ponix/ponix/protocolbuffers/go/envelope/v1"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/ponix-go/ponix/envelope"
)

// DefaultEnvelopeTable is the table of the upstream schema (see the migrations module).
const DefaultEnvelopeTable = "processed_envelopes"

// Sentinel errors of envelopes that cannot be stored; they arrive wrapped in [*RowError] and
// *envelope.FieldError (or *envelope.ValidationError). They are the envelope package's values,
// under the names this package has always had.
var (
	// ErrNilTimestamp: a required timestamp is missing (envelope.ErrNilTimestamp).
	ErrNilTimestamp = envelope.ErrNilTimestamp
	// ErrTimestampOutOfRange: a timestamp is invalid or outside the DateTime range
	// (1970-01-01 00:00:00 to 2106-02-07 06:28:15 UTC) (envelope.ErrTimestampOutOfRange).
	ErrTimestampOutOfRange = envelope.ErrTimestampOutOfRange
)

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
// JetStream message's data; used when Envelope is nil, and empty bytes are an empty envelope,
// which is invalid): wire bytes are read once, validated and encoded straight into the columns
// without building the message, which saves most of the CPU and allocations of the decoded
// path. Both give the same row, or the same error, for the same envelope.
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
// String, occurred_at and processed_at as DateTime (UTC, whole seconds), data as a compact JSON
// object String (see envelope.DataJSON; NaN/±Inf are rejected), stream_created_ns and stream_seq
// as UInt64. It validates while it encodes: bytes that are not an envelope are an
// *envelope.FieldError wrapping envelope.ErrMalformed, an envelope that breaks
// envelope.Validate's rules an *envelope.ValidationError (both carry their dead-letter reason,
// decode or invalid, for ponixnats), a value the table cannot hold an *envelope.FieldError
// naming the field (ErrTimestampOutOfRange, envelope.ErrNonFiniteNumber).
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

// encode validates and encodes row: envelope.Validate's rules (a *envelope.ValidationError
// naming the field), the DateTime range, data as JSON. Wire bytes are read once, by
// envelope.Wire.Parse and DataJSON.AppendWire.
func (e *EnvelopeEncoder) encode(row EnvelopeRow) error {
	env := row.Envelope
	if env == nil {
		return e.encodeWire(row.Wire, row.StreamSeq)
	}
	if err := envelope.Validate(env); err != nil {
		return err
	}
	occ, proc, err := dateTimes(envelope.TimestampOf(env.GetOccurredAt()), envelope.TimestampOf(env.GetProcessedAt()))
	if err != nil {
		return err
	}
	buf, err := e.json.Append(e.buf, env.GetData())
	if err != nil {
		return dataError(err)
	}
	e.appendRow(buf, env.GetOrganizationId(), env.GetEndDeviceId(), occ, proc, row.StreamSeq)
	return nil
}

// appendRow appends a row whose data JSON ends buf.
func (e *EnvelopeEncoder) appendRow(buf []byte, org, device string, occ, proc time.Time, seq uint64) {
	e.buf = buf
	e.orgs = append(e.orgs, org)
	e.devices = append(e.devices, device)
	e.occurred = append(e.occurred, occ)
	e.processed = append(e.processed, proc)
	e.ends = append(e.ends, len(e.buf))
	e.seqs = append(e.seqs, seq)
}

// dateTimes converts an envelope's valid timestamps (envelope.Validate passed) to DateTime
// values: UTC, whole seconds. A timestamp outside the DateTime range (1970-01-01 00:00:00 to
// 2106-02-07 06:28:15 UTC) is an *envelope.FieldError wrapping ErrTimestampOutOfRange.
func dateTimes(occurred, processed envelope.Timestamp) (occ, proc time.Time, err error) {
	if occ, err = dateTime("occurred_at", occurred); err != nil {
		return occ, proc, err
	}
	proc, err = dateTime("processed_at", processed)
	return occ, proc, err
}

func dateTime(field string, t envelope.Timestamp) (time.Time, error) {
	if t.Seconds < 0 || t.Seconds > maxDateTime {
		return time.Time{}, &envelope.FieldError{Field: field, Err: fmt.Errorf("%w: %s is outside the ClickHouse DateTime range (1970 to 2106)",
			ErrTimestampOutOfRange, time.Unix(t.Seconds, int64(t.Nanos)).UTC().Format(time.RFC3339))}
	}
	return time.Unix(t.Seconds, 0).UTC(), nil
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

// encodeWire appends the row of an envelope given as protobuf wire bytes, exactly as encode
// appends it for proto.Unmarshal of the same bytes, but without building the message and
// reading the bytes once: envelope.Wire.Parse reads the ids and timestamps (bytes that are not
// an envelope: an *envelope.FieldError wrapping envelope.ErrMalformed), Wire.Validate applies
// envelope.Validate's rules to them (an *envelope.ValidationError), and data goes from the wire
// straight to JSON. The ids are the only allocations.
func (e *EnvelopeEncoder) encodeWire(b []byte, seq uint64) error {
	var w envelope.Wire
	if err := w.Parse(b); err != nil {
		return err
	}
	if err := w.Validate(); err != nil {
		return err
	}
	if w.Irregular {
		return e.encodeDecoded(b, seq)
	}
	occ, proc, err := dateTimes(w.OccurredAt, w.ProcessedAt)
	if err != nil {
		return err
	}
	buf, err := e.json.AppendWire(e.buf, w.Data)
	if errors.Is(err, envelope.ErrIrregular) {
		return e.encodeDecoded(b, seq)
	}
	if err != nil {
		return dataError(err)
	}
	e.appendRow(buf, string(w.OrganizationID), string(w.EndDeviceID), occ, proc, seq)
	return nil
}

// encodeDecoded is the slow path for bytes the wire path does not take apart itself (a
// message field of data given more than once, which protobuf merges).
func (e *EnvelopeEncoder) encodeDecoded(b []byte, seq uint64) error {
	env := new(envelopev1.ProcessedEnvelope)
	if err := proto.Unmarshal(b, env); err != nil {
		return &envelope.FieldError{Field: "envelope", Err: fmt.Errorf("%w: %w", envelope.ErrMalformed, err)}
	}
	return e.encode(EnvelopeRow{Envelope: env, StreamSeq: seq})
}

// dataError names the path in data of a value that cannot be encoded.
func dataError(err error) error {
	var pe *envelope.PathError
	if errors.As(err, &pe) {
		return &envelope.FieldError{Field: strings.TrimSuffix("data."+pe.Path, "."), Err: pe.Err}
	}
	return &envelope.FieldError{Field: "data", Err: err}
}
