package ponixclickhouse

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
	"unsafe"

	envelopev1 "buf.build/gen/go/ponix/ponix/protocolbuffers/go/envelope/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// ErrMalformed: bytes that should hold a protobuf message do not.
var ErrMalformed = errors.New("malformed protobuf")

// errIrregular marks an encoding the wire path does not take apart itself (a message field
// repeated, which protobuf merges); the envelope is then decoded with proto.Unmarshal.
var errIrregular = errors.New("irregular encoding")

// Field numbers of envelope.v1.ProcessedEnvelope and of the well-known types it uses.
const (
	fEndDeviceID    = 1
	fOccurredAt     = 2
	fData           = 3
	fProcessedAt    = 4
	fOrganizationID = 5

	fTimestampSeconds = 1
	fTimestampNanos   = 2

	fStructFields = 1 // map<string, Value>
	fEntryKey     = 1
	fEntryValue   = 2

	fValueNull   = 1
	fValueNumber = 2
	fValueString = 3
	fValueBool   = 4
	fValueStruct = 5
	fValueList   = 6

	fListValues = 1
)

// errTooDeep: data nested deeper than protobuf's default recursion limit, which proto.Unmarshal
// refuses too.
var errTooDeep = fmt.Errorf("%w: nested deeper than protobuf's recursion limit (%d)", ErrMalformed, protowire.DefaultRecursionLimit)

// wireTimestamp is a google.protobuf.Timestamp read from the wire.
type wireTimestamp struct {
	set     bool
	seconds int64
	nanos   int64
}

// encodeWire appends the row of an envelope given as protobuf wire bytes, exactly as Encode
// appends it for proto.Unmarshal of the same bytes, but without building the message: the ids
// are the only allocations, data goes from the wire straight to JSON.
func (e *EnvelopeEncoder) encodeWire(b []byte, seq uint64) error {
	var (
		dev, org           []byte
		data               []byte
		haveData           bool
		occurred, processd wireTimestamp
	)
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return &FieldError{Field: "envelope", Err: ErrMalformed}
		}
		b = b[n:]
		if typ != protowire.BytesType || num < fEndDeviceID || num > fOrganizationID {
			// Unknown field, or a known one with another wire type (protobuf keeps it as
			// unknown): skip it.
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return &FieldError{Field: "envelope", Err: ErrMalformed}
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return &FieldError{Field: "envelope", Err: ErrMalformed}
		}
		b = b[n:]
		switch num {
		case fEndDeviceID:
			dev = v
		case fOrganizationID:
			org = v
		case fOccurredAt:
			if occurred.set {
				return errIrregular
			}
			if err := occurred.parse(v); err != nil {
				return &FieldError{Field: "occurred_at", Err: err}
			}
		case fProcessedAt:
			if processd.set {
				return errIrregular
			}
			if err := processd.parse(v); err != nil {
				return &FieldError{Field: "processed_at", Err: err}
			}
		case fData:
			if haveData {
				return errIrregular
			}
			data, haveData = v, true
		}
	}
	if !utf8.Valid(dev) {
		return &FieldError{Field: "end_device_id", Err: fmt.Errorf("%w: invalid UTF-8", ErrMalformed)}
	}
	if !utf8.Valid(org) {
		return &FieldError{Field: "organization_id", Err: fmt.Errorf("%w: invalid UTF-8", ErrMalformed)}
	}
	occ, err := occurred.dateTime("occurred_at")
	if err != nil {
		return err
	}
	proc, err := processd.dateTime("processed_at")
	if err != nil {
		return err
	}
	// Depth budget as proto.Unmarshal counts it: one per message (the envelope, then the
	// Struct, each map entry, Value and ListValue below it).
	buf, err := e.json.appendWireStruct(e.buf, data, protowire.DefaultRecursionLimit-2)
	if err != nil {
		if errors.Is(err, errIrregular) {
			return err
		}
		var pe *pathError
		if errors.As(err, &pe) {
			return &FieldError{Field: strings.TrimSuffix("data."+pe.path, "."), Err: pe.err}
		}
		return &FieldError{Field: "data", Err: err}
	}
	e.buf = buf
	e.orgs = append(e.orgs, string(org))
	e.devices = append(e.devices, string(dev))
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
		return &FieldError{Field: "envelope", Err: fmt.Errorf("%w: %w", ErrMalformed, err)}
	}
	return e.encode(EnvelopeRow{Envelope: env, StreamSeq: seq})
}

func (t *wireTimestamp) parse(b []byte) error {
	t.set = true
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return ErrMalformed
		}
		b = b[n:]
		if typ == protowire.VarintType && (num == fTimestampSeconds || num == fTimestampNanos) {
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return ErrMalformed
			}
			b = b[n:]
			if num == fTimestampSeconds {
				t.seconds = int64(v)
			} else {
				t.nanos = int64(int32(v))
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

// dateTime applies the checks of dateTime (nil, timestamppb's CheckValid, the DateTime range).
func (t wireTimestamp) dateTime(field string) (time.Time, error) {
	if !t.set {
		return time.Time{}, &FieldError{Field: field, Err: ErrNilTimestamp}
	}
	const minValid, maxValid = -62135596800, 253402300799 // 0001-01-01 .. 9999-12-31 (timestamppb)
	if t.seconds < minValid || t.seconds > maxValid || t.nanos < 0 || t.nanos >= 1e9 {
		return time.Time{}, &FieldError{Field: field, Err: fmt.Errorf("%w: seconds %d, nanos %d", ErrTimestampOutOfRange, t.seconds, t.nanos)}
	}
	if t.seconds < 0 || t.seconds > maxDateTime {
		return time.Time{}, &FieldError{Field: field, Err: fmt.Errorf("%w: %s", ErrTimestampOutOfRange, time.Unix(t.seconds, t.nanos).UTC().Format(time.RFC3339))}
	}
	return time.Unix(t.seconds, 0).UTC(), nil
}

// wireEntry is one key/value of a Struct read from the wire.
type wireEntry struct {
	key string // points into the message bytes (no copy); used only while encoding
	val []byte
}

// appendWireStruct appends the JSON of a google.protobuf.Struct given as wire bytes, as
// appendStruct does for the decoded Struct: keys sorted; of repeated keys the last one wins
// (as protobuf's map decoding does).
//
// depth is what remains of the recursion budget for this Struct (negative: too deep).
func (e *StructJSON) appendWireStruct(dst []byte, b []byte, depth int) ([]byte, error) {
	if depth < 0 {
		return dst, errTooDeep
	}
	base := len(e.entries)
	defer func() { e.entries = e.entries[:base] }()
	for {
		entry, rest, ok, err := nextBytes(b, fStructFields)
		if err != nil {
			return dst, err
		}
		if !ok {
			break
		}
		b = rest
		if depth-1 < 0 { // the map entry is a message
			return dst, errTooDeep
		}
		var key, val []byte
		for len(entry) > 0 {
			num, typ, n := protowire.ConsumeTag(entry)
			if n < 0 {
				return dst, ErrMalformed
			}
			entry = entry[n:]
			if typ == protowire.BytesType && (num == fEntryKey || num == fEntryValue) {
				v, n := protowire.ConsumeBytes(entry)
				if n < 0 {
					return dst, ErrMalformed
				}
				entry = entry[n:]
				if num == fEntryKey {
					key = v
				} else {
					if val != nil {
						return dst, errIrregular // a repeated message field is merged
					}
					val = v
				}
				continue
			}
			if n = protowire.ConsumeFieldValue(num, typ, entry); n < 0 {
				return dst, ErrMalformed
			}
			entry = entry[n:]
		}
		if !utf8.Valid(key) {
			return dst, fmt.Errorf("%w: key is not valid UTF-8", ErrMalformed)
		}
		if val == nil {
			val = []byte{} // a missing value is a Value with no kind: null
		}
		e.entries = append(e.entries, wireEntry{key: bytesString(key), val: val})
	}
	entries := e.entries[base:]
	if len(entries) == 0 {
		return append(dst, '{', '}'), nil
	}
	slices.SortStableFunc(entries, func(a, b wireEntry) int { return strings.Compare(a.key, b.key) })
	dst = append(dst, '{')
	first := true
	var err error
	for i, en := range entries {
		if i+1 < len(entries) && entries[i+1].key == en.key {
			continue // a later entry with the same key wins
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = appendJSONString(dst, en.key)
		dst = append(dst, ':')
		if dst, err = e.appendWireValue(dst, en.val, depth-2); err != nil {
			return dst, prefixPath(err, jsonPathKey(en.key))
		}
	}
	return append(dst, '}'), nil
}

// appendWireValue appends the JSON of a google.protobuf.Value given as wire bytes. Of several
// kinds the last one wins (oneof semantics); a message kind that appears twice is irregular.
func (e *StructJSON) appendWireValue(dst []byte, b []byte, depth int) ([]byte, error) {
	if depth < 0 {
		return dst, errTooDeep
	}
	var (
		kind    protowire.Number
		payload []byte
		scalar  uint64
		msgSeen bool
	)
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return dst, ErrMalformed
		}
		b = b[n:]
		switch {
		case (num == fValueNull || num == fValueBool) && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return dst, ErrMalformed
			}
			b, kind, scalar = b[n:], num, v
		case num == fValueNumber && typ == protowire.Fixed64Type:
			v, n := protowire.ConsumeFixed64(b)
			if n < 0 {
				return dst, ErrMalformed
			}
			b, kind, scalar = b[n:], num, v
		case (num == fValueString || num == fValueStruct || num == fValueList) && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return dst, ErrMalformed
			}
			if num != fValueString {
				if msgSeen {
					return dst, errIrregular
				}
				msgSeen = true
			}
			b, kind, payload = b[n:], num, v
		default:
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return dst, ErrMalformed
			}
			b = b[n:]
		}
	}
	switch kind {
	case fValueBool:
		return strconv.AppendBool(dst, scalar != 0), nil
	case fValueNumber:
		return appendJSONFloat(dst, math.Float64frombits(scalar))
	case fValueString:
		if !utf8.Valid(payload) {
			return dst, fmt.Errorf("%w: string is not valid UTF-8", ErrMalformed)
		}
		return appendJSONString(dst, bytesString(payload)), nil
	case fValueStruct:
		return e.appendWireStruct(dst, payload, depth-1)
	case fValueList:
		if depth-1 < 0 {
			return dst, errTooDeep
		}
		dst = append(dst, '[')
		i := 0
		for {
			item, rest, ok, err := nextBytes(payload, fListValues)
			if err != nil {
				return dst, err
			}
			if !ok {
				break
			}
			payload = rest
			if i > 0 {
				dst = append(dst, ',')
			}
			if dst, err = e.appendWireValue(dst, item, depth-2); err != nil {
				return dst, prefixPath(err, "["+strconv.Itoa(i)+"]")
			}
			i++
		}
		return append(dst, ']'), nil
	}
	return append(dst, "null"...), nil // null_value, or no kind
}

// nextBytes returns the next length-delimited field numbered want in b, skipping every other
// field, and the bytes after it; ok is false when b holds no more such field.
func nextBytes(b []byte, want protowire.Number) (val, rest []byte, ok bool, err error) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, nil, false, ErrMalformed
		}
		b = b[n:]
		if num == want && typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(b)
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

// bytesString views b as a string without copying; the string must not outlive b or be kept.
func bytesString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}
