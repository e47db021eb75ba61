//go:build !ponix_noenvelope

package ponixclickhouse

import (
	"errors"
	"fmt"
	"strings"

	envelopev1 "buf.build/gen/go/ponix/ponix/protocolbuffers/go/envelope/v1"
	"google.golang.org/protobuf/proto"

	"github.com/ponix-go/ponix/envelope"
)

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
