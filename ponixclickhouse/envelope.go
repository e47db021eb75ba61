//go:build !ponix_noenvelope

package ponixclickhouse

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unsafe"

	"google.golang.org/protobuf/proto"

	envelopev1 "buf.build/gen/go/ponix/ponix/protocolbuffers/go/envelope/v1"
	"github.com/ClickHouse/clickhouse-go/v2/lib/column"
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
	created   []uint64
	seqs      []uint64
	occurred  []time.Time
	processed []time.Time
	// The strings of the String columns live in two buffers, one for the ids (each row's
	// organization_id then end_device_id) and one for the data JSON, with the end offset of each:
	// no allocation per row. AppendTo makes the strings (orgs, devices, data) from them; they
	// point into the buffers and are valid until the next Reset (the columns copy them).
	ids           []byte
	idEnds        []int // per row: end of organization_id, end of end_device_id in ids
	buf           []byte
	ends          []int // end offset of each row's JSON in buf
	orgs, devices []string
	data          []string
	orgBytes      int // total length of the organization_ids
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
	e.occurred = grow(e.occurred[:0], n)
	e.processed = grow(e.processed[:0], n)
	e.ends = grow(e.ends[:0], n)
	e.idEnds = grow(e.idEnds[:0], 2*n)
	for _, s := range []*[]string{&e.orgs, &e.devices, &e.data} {
		clear(*s) // they point into the buffers, which are written again
		*s = (*s)[:0]
	}
	e.buf = e.buf[:0]
	e.ids = e.ids[:0]
	e.orgBytes = 0
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
	e.buf = buf
	e.ids = append(e.ids, env.GetOrganizationId()...)
	e.orgBytes += len(env.GetOrganizationId())
	e.idEnds = append(e.idEnds, len(e.ids))
	e.ids = append(e.ids, env.GetEndDeviceId()...)
	e.appendRow(occ, proc, row.StreamSeq)
	return nil
}

// appendRow appends a row whose data JSON ends e.buf and whose ids end e.ids.
func (e *EnvelopeEncoder) appendRow(occ, proc time.Time, seq uint64) {
	e.idEnds = append(e.idEnds, len(e.ids))
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

// AppendTo implements [Encoder]. The strings it appends point into the encoder's buffers
// (no copy, no allocation per row); they are valid until the next Reset. A clickhouse-go
// column copies them as it takes them.
func (e *EnvelopeEncoder) AppendTo(b driver.Batch) error {
	ids, all := bytesString(e.ids), bytesString(e.buf)
	e.orgs, e.devices, e.data = e.orgs[:0], e.devices[:0], e.data[:0]
	start := 0
	for i := 0; i+1 < len(e.idEnds); i += 2 {
		org, dev := e.idEnds[i], e.idEnds[i+1]
		e.orgs = append(e.orgs, ids[start:org])
		e.devices = append(e.devices, ids[org:dev])
		start = dev
	}
	start = 0
	for _, end := range e.ends {
		e.data = append(e.data, all[start:end])
		start = end
	}
	// Strings of the columns' total lengths (their bytes do not matter).
	reserveStrings(b, []string{0: ids[:e.orgBytes], 1: ids[:len(ids)-e.orgBytes], 4: all})
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
	e.buf = buf
	e.ids = append(e.ids, w.OrganizationID...)
	e.orgBytes += len(w.OrganizationID)
	e.idEnds = append(e.idEnds, len(e.ids))
	e.ids = append(e.ids, w.EndDeviceID...)
	e.appendRow(occ, proc, seq)
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

// bytesString is b as a string, without a copy: b must not change while the string is used.
func bytesString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// reserveStrings gives each empty clickhouse-go String column i of b room for len(like[i])
// bytes ("" or no entry: leave it) in one allocation: a column made by PrepareBatch starts
// empty and would grow by appending, allocating and copying several times its final size
// (10,000 envelopes: ~12 MB for 2.5 MB of JSON). It appends like[i] and resets the column,
// which keeps the room. Columns of other types or not empty, and batches whose Columns cannot
// be read, are left as they are.
func reserveStrings(b driver.Batch, like []string) {
	cols := batchColumns(b)
	for i, c := range cols[:min(len(cols), len(like))] {
		s, ok := c.(*column.String)
		if !ok || like[i] == "" || s.Rows() != 0 {
			continue
		}
		if s.AppendRow(like[i]) == nil {
			s.Reset()
		}
	}
}

// batchColumns returns b.Columns(), or nil when b (a test double embedding a nil
// driver.Batch, say) cannot give them.
func batchColumns(b driver.Batch) (cols []column.Interface) {
	defer func() {
		if recover() != nil {
			cols = nil
		}
	}()
	return b.Columns()
}
