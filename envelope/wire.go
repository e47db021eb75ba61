package envelope

import (
	"fmt"
	"unsafe"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Field numbers of envelope.v1.ProcessedEnvelope (the wire format, fixed by the upstream
// schema) and of the well-known types it uses.
const (
	fieldEndDeviceID    = 1
	fieldOccurredAt     = 2
	fieldData           = 3
	fieldProcessedAt    = 4
	fieldOrganizationID = 5

	fieldTimestampSeconds = 1
	fieldTimestampNanos   = 2

	fieldStructFields = 1 // map<string, Value>
	fieldEntryKey     = 1
	fieldEntryValue   = 2

	fieldValueNull   = 1
	fieldValueNumber = 2
	fieldValueString = 3
	fieldValueBool   = 4
	fieldValueStruct = 5
	fieldValueList   = 6

	fieldListValues = 1
)

// Timestamp is a google.protobuf.Timestamp read from the wire (or taken from a decoded
// envelope).
type Timestamp struct {
	// Set reports whether the field was present.
	Set     bool
	Seconds int64
	Nanos   int32
}

// TimestampOf is the Timestamp of a decoded envelope's field (Set false for nil).
func TimestampOf(t *timestamppb.Timestamp) Timestamp {
	return Timestamp{Set: t != nil, Seconds: t.GetSeconds(), Nanos: t.GetNanos()}
}

// Valid reports whether t is present and in google.protobuf.Timestamp's valid range (years
// 0001 to 9999, nanoseconds in [0, 1e9)), as timestamppb's CheckValid says.
func (t Timestamp) Valid() bool { return t.check("") == nil }

// check is the rule of Valid, with the [*ValidationError] that names field when t breaks it.
func (t Timestamp) check(field string) error {
	const minSec, maxSec = -62135596800, 253402300799 // 0001-01-01, 9999-12-31T23:59:59Z
	var reason string
	switch {
	case !t.Set:
		return &ValidationError{Field: field, Reason: "is missing", Err: ErrNilTimestamp}
	case t.Seconds < minSec:
		reason = "before 0001-01-01"
	case t.Seconds > maxSec:
		reason = "after 9999-12-31"
	case t.Nanos < 0 || t.Nanos >= 1e9:
		reason = "nanos not in [0, 999999999]"
	default:
		return nil
	}
	return &ValidationError{Field: field, Value: fmt.Sprintf("seconds:%d nanos:%d", t.Seconds, t.Nanos), Reason: reason, Err: ErrTimestampOutOfRange}
}

// Wire is an envelope read from its protobuf wire bytes with [Wire.Parse]. The byte slices are
// views into the bytes parsed: valid as long as those are.
type Wire struct {
	EndDeviceID    []byte
	OrganizationID []byte
	OccurredAt     Timestamp
	ProcessedAt    Timestamp
	// Data is the google.protobuf.Struct's bytes; nil when the field is absent.
	Data []byte
	// Irregular reports that data was given more than once (protobuf merges the Structs):
	// Data holds the last one only, so decode the envelope with proto.Unmarshal for its data.
	Irregular bool
}

// Parse reads the envelope in b into w, as proto.Unmarshal would: of a string field given
// several times the last wins, the occurrences of a timestamp merge, fields of another wire
// type or unknown numbers are skipped. It does not allocate. Bytes proto.Unmarshal refuses
// give a [*FieldError] wrapping [ErrMalformed] (a string that is not valid UTF-8 among
// them, in any occurrence of the field). The data field is not looked into (see [DataJSON.AppendWire]).
func (w *Wire) Parse(b []byte) error {
	*w = Wire{}
	for len(b) > 0 {
		num, typ, n := consumeTag(b)
		if n < 0 {
			return &FieldError{Field: "envelope", Err: ErrMalformed}
		}
		b = b[n:]
		if typ != protowire.BytesType || num < fieldEndDeviceID || num > fieldOrganizationID {
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return &FieldError{Field: "envelope", Err: ErrMalformed}
			}
			b = b[n:]
			continue
		}
		v, n := consumeBytes(b)
		if n < 0 {
			return &FieldError{Field: "envelope", Err: ErrMalformed}
		}
		b = b[n:]
		switch num {
		case fieldEndDeviceID:
			if w.EndDeviceID != nil && !validUTF8(w.EndDeviceID) { // every occurrence must be valid
				return &FieldError{Field: "end_device_id", Err: fmt.Errorf("%w: not valid UTF-8", ErrMalformed)}
			}
			w.EndDeviceID = v
		case fieldOrganizationID:
			if w.OrganizationID != nil && !validUTF8(w.OrganizationID) {
				return &FieldError{Field: "organization_id", Err: fmt.Errorf("%w: not valid UTF-8", ErrMalformed)}
			}
			w.OrganizationID = v
		case fieldOccurredAt:
			if err := w.OccurredAt.parse(v); err != nil {
				return &FieldError{Field: "occurred_at", Err: err}
			}
		case fieldProcessedAt:
			if err := w.ProcessedAt.parse(v); err != nil {
				return &FieldError{Field: "processed_at", Err: err}
			}
		case fieldData:
			if w.Data != nil {
				w.Irregular = true
			}
			w.Data = v
			if w.Data == nil {
				w.Data = []byte{}
			}
		}
	}
	if !validUTF8(w.EndDeviceID) {
		return &FieldError{Field: "end_device_id", Err: fmt.Errorf("%w: not valid UTF-8", ErrMalformed)}
	}
	if !validUTF8(w.OrganizationID) {
		return &FieldError{Field: "organization_id", Err: fmt.Errorf("%w: not valid UTF-8", ErrMalformed)}
	}
	return nil
}

// parse merges the Timestamp in b into t (fields present override, as protobuf merges a
// message given more than once).
func (t *Timestamp) parse(b []byte) error {
	t.Set = true
	for len(b) > 0 {
		num, typ, n := consumeTag(b)
		if n < 0 {
			return ErrMalformed
		}
		b = b[n:]
		if typ == protowire.VarintType && (num == fieldTimestampSeconds || num == fieldTimestampNanos) {
			x, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return ErrMalformed
			}
			b = b[n:]
			if num == fieldTimestampSeconds {
				t.Seconds = int64(x)
			} else {
				t.Nanos = int32(x)
			}
			continue
		}
		if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
			return ErrMalformed
		}
		b = b[n:]
	}
	return nil
}

// nextBytes returns the next length-delimited field numbered want in b, skipping every other
// field, and the bytes after it; ok is false when b holds no more such field.
func nextBytes(b []byte, want protowire.Number) (val, rest []byte, ok bool, err error) {
	for len(b) > 0 {
		num, typ, n := consumeTag(b)
		if n < 0 {
			return nil, nil, false, ErrMalformed
		}
		b = b[n:]
		if num == want && typ == protowire.BytesType {
			v, n := consumeBytes(b)
			if n < 0 {
				return nil, nil, false, ErrMalformed
			}
			return v, b[n:], true, nil
		}
		if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
			return nil, nil, false, ErrMalformed
		}
		b = b[n:]
	}
	return nil, nil, false, nil
}

// consumeTag is protowire.ConsumeTag with one-byte tags (field numbers 1 to 15, all of an
// envelope's and of data's) decoded inline, and field numbers above protobuf's maximum
// refused as proto.Unmarshal refuses them (protowire.ConsumeTag takes them).
func consumeTag(b []byte) (protowire.Number, protowire.Type, int) {
	if len(b) > 0 && b[0] >= 1<<3 && b[0] < 0x80 {
		return protowire.Number(b[0] >> 3), protowire.Type(b[0] & 7), 1
	}
	num, typ, n := protowire.ConsumeTag(b)
	if n >= 0 && num > protowire.MaxValidNumber {
		return 0, 0, -1
	}
	return num, typ, n
}

// consumeBytes is protowire.ConsumeBytes with one-byte lengths (below 128) decoded inline.
func consumeBytes(b []byte) ([]byte, int) {
	if len(b) > 0 && b[0] < 0x80 && int(b[0]) < len(b) {
		n := 1 + int(b[0])
		return b[1:n], n
	}
	return protowire.ConsumeBytes(b)
}

// bytesString views b as a string without copying; the string must not outlive b or be kept.
func bytesString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}
