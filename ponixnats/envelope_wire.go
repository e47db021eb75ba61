//go:build !ponixnats_noenvelope

package ponixnats

import (
	"errors"
	"fmt"
	"unicode/utf8"
	"unsafe"

	envelopev1 "buf.build/gen/go/ponix/ponix/protocolbuffers/go/envelope/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

var errMalformed = errors.New("malformed protobuf")

// ValidateEnvelopeWire is [ValidateEnvelope] for an envelope in protobuf wire
// format: it applies the same rules to the envelope the bytes decode to, but
// reads only the ids and timestamps, without decoding the bytes into a message
// (it does not allocate for a valid envelope). Bytes that are not an envelope
// give an error wrapping [ErrDecode]; an invalid envelope gives the
// [*ValidationError] ValidateEnvelope gives. The data field is not looked into.
func ValidateEnvelopeWire(b []byte) error {
	var v wireEnvelope
	if err := v.parse(b); err != nil {
		return fmt.Errorf("%w: %w", ErrDecode, err)
	}
	if v.valid() {
		return nil
	}
	// Invalid: decode it for the exact error (the slow path, for bad messages only).
	env := new(envelopev1.ProcessedEnvelope)
	if err := proto.Unmarshal(b, env); err != nil {
		return fmt.Errorf("%w: %w", ErrDecode, err)
	}
	return ValidateEnvelope(env)
}

// wireEnvelope holds what validation needs of an envelope, read from the wire.
// As in protobuf decoding, the last occurrence of a string field wins and the
// occurrences of a message field merge.
type wireEnvelope struct {
	dev, org           []byte
	occSet, procSet    bool
	occSec, procSec    int64
	occNanos, procNano int32
}

func (v *wireEnvelope) parse(b []byte) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return errMalformed
		}
		b = b[n:]
		if typ != protowire.BytesType || num < 1 || num > 5 || num == 3 {
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return errMalformed
			}
			b = b[n:]
			continue
		}
		val, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return errMalformed
		}
		b = b[n:]
		switch num {
		case 1:
			v.dev = val
		case 5:
			v.org = val
		case 2:
			v.occSet = true
			if err := parseWireTimestamp(val, &v.occSec, &v.occNanos); err != nil {
				return err
			}
		case 4:
			v.procSet = true
			if err := parseWireTimestamp(val, &v.procSec, &v.procNano); err != nil {
				return err
			}
		}
	}
	if !utf8.Valid(v.dev) || !utf8.Valid(v.org) {
		return fmt.Errorf("%w: string field is not valid UTF-8", errMalformed)
	}
	return nil
}

func parseWireTimestamp(b []byte, sec *int64, nanos *int32) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return errMalformed
		}
		b = b[n:]
		if typ == protowire.VarintType && (num == 1 || num == 2) {
			x, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return errMalformed
			}
			b = b[n:]
			if num == 1 {
				*sec = int64(x)
			} else {
				*nanos = int32(x)
			}
			continue
		}
		if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
			return errMalformed
		}
		b = b[n:]
	}
	return nil
}

// valid applies ValidateEnvelope's rules.
func (v *wireEnvelope) valid() bool {
	const minSec, maxSec = -62135596800, 253402300799 // timestamppb's valid range
	okTS := func(set bool, sec int64, nanos int32) bool {
		return set && sec >= minSec && sec <= maxSec && nanos >= 0 && nanos < 1e9
	}
	return len(v.org) > 0 &&
		len(v.dev) > 0 && ValidSubjectToken(unsafe.String(&v.dev[0], len(v.dev))) &&
		okTS(v.occSet, v.occSec, v.occNanos) && okTS(v.procSet, v.procSec, v.procNano)
}
