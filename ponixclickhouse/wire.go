//go:build !ponix_noenvelope

package ponixclickhouse

import (
	"errors"
	"fmt"
	"strings"
	"time"

	envelopev1 "buf.build/gen/go/ponix/ponix/protocolbuffers/go/envelope/v1"
	"google.golang.org/protobuf/proto"

	"github.com/ponix-go/ponix/envelope"
)

// errIrregular marks an encoding the wire path does not take apart itself (a message field of
// data repeated, which protobuf merges); the envelope is then decoded with proto.Unmarshal.
var errIrregular = errors.New("irregular encoding")

// encodeWire appends the row of an envelope given as protobuf wire bytes, exactly as Encode
// appends it for proto.Unmarshal of the same bytes, but without building the message: the ids
// are the only allocations, data goes from the wire straight to JSON.
func (e *EnvelopeEncoder) encodeWire(b []byte, seq uint64) error {
	var w envelope.Wire
	if err := w.Parse(b); err != nil {
		return fieldError(err)
	}
	if w.Irregular {
		return errIrregular
	}
	occ, err := wireDateTime("occurred_at", w.OccurredAt)
	if err != nil {
		return err
	}
	proc, err := wireDateTime("processed_at", w.ProcessedAt)
	if err != nil {
		return err
	}
	buf, err := e.json.AppendWire(e.buf, w.Data)
	if err != nil {
		if errors.Is(err, envelope.ErrIrregular) {
			return errIrregular
		}
		return dataError(err)
	}
	e.buf = buf
	e.orgs = append(e.orgs, string(w.OrganizationID))
	e.devices = append(e.devices, string(w.EndDeviceID))
	e.occurred = append(e.occurred, occ)
	e.processed = append(e.processed, proc)
	e.ends = append(e.ends, len(e.buf))
	e.seqs = append(e.seqs, seq)
	return nil
}

// encodeDecoded is the slow path for bytes the wire path does not take apart itself.
func (e *EnvelopeEncoder) encodeDecoded(b []byte, seq uint64) error {
	env := new(envelopev1.ProcessedEnvelope)
	if err := proto.Unmarshal(b, env); err != nil {
		return &FieldError{Field: "envelope", Err: fmt.Errorf("%w: %w", envelope.ErrMalformed, err)}
	}
	return e.encode(EnvelopeRow{Envelope: env, StreamSeq: seq})
}

// fieldError turns the envelope package's field errors into this package's.
func fieldError(err error) error {
	var fe *envelope.FieldError
	if errors.As(err, &fe) {
		return &FieldError{Field: fe.Field, Err: fe.Err}
	}
	return &FieldError{Field: "envelope", Err: err}
}

// dataError names the path in data of a value that cannot be encoded.
func dataError(err error) error {
	var pe *envelope.PathError
	if errors.As(err, &pe) {
		return &FieldError{Field: strings.TrimSuffix("data."+pe.Path, "."), Err: pe.Err}
	}
	return &FieldError{Field: "data", Err: err}
}

// wireDateTime applies the checks of dateTime (nil, timestamppb's CheckValid, the DateTime
// range) to a timestamp read from the wire.
func wireDateTime(field string, t envelope.Timestamp) (time.Time, error) {
	if !t.Set {
		return time.Time{}, &FieldError{Field: field, Err: ErrNilTimestamp}
	}
	if !t.Valid() {
		return time.Time{}, &FieldError{Field: field, Err: fmt.Errorf("%w: seconds %d, nanos %d", ErrTimestampOutOfRange, t.Seconds, t.Nanos)}
	}
	if t.Seconds < 0 || t.Seconds > maxDateTime {
		return time.Time{}, &FieldError{Field: field, Err: fmt.Errorf("%w: %s", ErrTimestampOutOfRange, time.Unix(t.Seconds, int64(t.Nanos)).UTC().Format(time.RFC3339))}
	}
	return time.Unix(t.Seconds, 0).UTC(), nil
}
