package envelope

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/structpb"
)

// ErrNonFiniteNumber: a number in data is NaN or ±Inf, which JSON cannot represent.
var ErrNonFiniteNumber = errors.New("number is NaN or infinite, which JSON cannot represent")

// errTooDeep: data nested deeper than protobuf's default recursion limit, which proto.Unmarshal
// refuses too.
var errTooDeep = fmt.Errorf("%w: nested deeper than protobuf's recursion limit (%d)", ErrMalformed, protowire.DefaultRecursionLimit)

// DataJSON encodes google.protobuf.Struct values — an envelope's data — as compact JSON objects, byte for byte as
// encoding/json encodes s.AsMap(): keys sorted, strings escaped the same way (including the
// HTML characters <, > and & as \u003c, \u003e, \u0026, U+2028/U+2029, invalid UTF-8 as
// \ufffd), numbers in the same format (integers up to 1e21 without exponent, so integers beyond
// 2^53 print as the float64 that Struct holds, e.g. 9007199254740993 → 9007199254740992; -0
// prints as -0). A nil Struct encodes as {}; a nil or NullValue value as null.
//
// NaN and ±Inf: JSON cannot represent them and encoding/json refuses them. DataJSON refuses
// them too, with a [*PathError] naming the path that wraps [ErrNonFiniteNumber], so that the
// message is dead-lettered intact instead of stored altered (null or a string would change
// the data without a trace).
//
// A DataJSON reuses its internal buffers; it is not safe for concurrent use. The zero value
// is ready to use.
type DataJSON struct {
	keys    []string    // stack of sorted keys, shared by all nesting levels
	entries []wireEntry // the same for Structs read from wire bytes
}

// Append appends the JSON encoding of s to dst and returns the extended buffer. On error (a
// [*PathError]) dst is returned unchanged in length.
func (e *DataJSON) Append(dst []byte, s *structpb.Struct) ([]byte, error) {
	n := len(dst)
	out, err := e.appendStruct(dst, s)
	if err != nil {
		return dst[:n], err
	}
	return out, nil
}

func (e *DataJSON) appendStruct(dst []byte, s *structpb.Struct) ([]byte, error) {
	fields := s.GetFields()
	if len(fields) == 0 {
		return append(dst, '{', '}'), nil
	}
	base := len(e.keys)
	for k := range fields {
		e.keys = append(e.keys, k)
	}
	slices.Sort(e.keys[base:])
	end := len(e.keys)
	dst = append(dst, '{')
	var err error
	for i := base; i < end; i++ {
		if i > base {
			dst = append(dst, ',')
		}
		k := e.keys[i]
		dst = appendJSONString(dst, k)
		dst = append(dst, ':')
		if dst, err = e.appendValue(dst, fields[k]); err != nil {
			e.keys = e.keys[:base]
			return dst, prefixPath(err, jsonPathKey(k))
		}
	}
	e.keys = e.keys[:base]
	return append(dst, '}'), nil
}

func (e *DataJSON) appendValue(dst []byte, v *structpb.Value) ([]byte, error) {
	switch k := v.GetKind().(type) {
	case nil, *structpb.Value_NullValue:
		return append(dst, "null"...), nil
	case *structpb.Value_BoolValue:
		return strconv.AppendBool(dst, k.BoolValue), nil
	case *structpb.Value_NumberValue:
		return appendJSONFloat(dst, k.NumberValue)
	case *structpb.Value_StringValue:
		return appendJSONString(dst, k.StringValue), nil
	case *structpb.Value_StructValue:
		return e.appendStruct(dst, k.StructValue)
	case *structpb.Value_ListValue:
		dst = append(dst, '[')
		var err error
		for i, item := range k.ListValue.GetValues() {
			if i > 0 {
				dst = append(dst, ',')
			}
			if dst, err = e.appendValue(dst, item); err != nil {
				return dst, prefixPath(err, "["+strconv.Itoa(i)+"]")
			}
		}
		return append(dst, ']'), nil
	}
	return append(dst, "null"...), nil
}

// PathError is a value of data that cannot be encoded, with its path in data: "readings[3]",
// "location.lat", or "" for data itself.
type PathError struct {
	Path string
	Err  error
}

func (p *PathError) Error() string { return p.Path + ": " + p.Err.Error() }

// Unwrap returns the cause.
func (p *PathError) Unwrap() error { return p.Err }

// maxPathLen bounds the data path in errors, which deeply nested data would make huge.
const maxPathLen = 256

func prefixPath(err error, part string) error {
	if pe, ok := err.(*PathError); ok {
		if len(pe.Path) > maxPathLen { // deep data: keep the innermost part, bounded
			if !strings.HasPrefix(pe.Path, "…") {
				pe.Path = "…" + pe.Path
			}
			return pe
		}
		if pe.Path == "" || strings.HasPrefix(pe.Path, "[") {
			pe.Path = part + pe.Path
		} else {
			pe.Path = part + "." + pe.Path
		}
		return pe
	}
	if errors.Is(err, ErrIrregular) {
		return err
	}
	return &PathError{Path: part, Err: err}
}

// jsonPathKey writes a key of data in a path: plain identifiers as they are, others quoted.
func jsonPathKey(k string) string {
	plain := k != ""
	for i := 0; i < len(k) && plain; i++ {
		c := k[i]
		plain = c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9'
	}
	if plain {
		return k
	}
	return strconv.Quote(k)
}

// appendJSONFloat formats like encoding/json's float64 encoder.
func appendJSONFloat(dst []byte, f float64) ([]byte, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return dst, &PathError{Err: ErrNonFiniteNumber}
	}
	if out, ok := appendShortDecimal(dst, f); ok {
		return out, nil
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	dst = strconv.AppendFloat(dst, f, format, -1, 64)
	if format == 'e' {
		// Clean up e-09 to e-9, as encoding/json does.
		n := len(dst)
		if n >= 4 && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst[n-2] = dst[n-1]
			dst = dst[:n-1]
		}
	}
	return dst, nil
}

// shortDecimalMaxFrac is the most fractional digits appendShortDecimal handles.
const shortDecimalMaxFrac = 6

var pow10f = [shortDecimalMaxFrac + 1]float64{1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6}

// appendShortDecimal appends f as strconv.AppendFloat(dst, f, 'f', -1, 64) does — the
// shortest decimal that reads back as f — for the usual readings, several times faster than
// the general shortest-digits search: integers up to 2^50, and numbers from 1e-6 (below,
// encoding/json uses the exponent form) to 2^50/10^6 (~1.1e9) whose shortest decimal has at
// most shortDecimalMaxFrac fractional digits (21.5, 1013.25, 0.000125). Otherwise it appends
// nothing and reports false.
//
// Why the text is the shortest decimal: an integer up to 2^50 is a float64 whose neighbours
// are at most 1/4 away, so no decimal with fewer significant digits reads back as it. For the
// others, if a decimal d = m/10^k (k <= 6) reads back as f, then |f|·10^6 is within 1/8 of
// M = m·10^(6-k) <= 2^50 (float64 precision), and the computed product within 1/4: rounding
// it gives M, and stripping M's trailing zeros gives the fewest fractional digits k. Then
// m/10^k, computed in float64, is the correctly rounded value of the decimal (m < 2^53 and
// 10^k are exact), which is what parsing it gives, so comparing it with |f| checks that the
// decimal reads back as f. As m <= 2^50, the float64 spacing around f is at most 10^-k/4, so
// no other decimal of k fractional digits reads back as f, and none with fewer does.
func appendShortDecimal(dst []byte, f float64) ([]byte, bool) {
	abs := math.Abs(f)
	if !(abs >= 1e-6) || abs > 1<<50 { // also NaN
		return dst, false
	}
	var m uint64
	k := 0
	if t := math.Trunc(abs); t == abs {
		m = uint64(t)
	} else {
		if abs > (1<<50)/1e6 {
			return dst, false
		}
		t6 := abs * 1e6
		r := math.Round(t6)
		if math.Abs(t6-r) > 0.25 {
			return dst, false // more than six fractional digits
		}
		m, k = uint64(r), shortDecimalMaxFrac
		for k > 0 && m%10 == 0 {
			m, k = m/10, k-1
		}
		if float64(m)/pow10f[k] != abs {
			return dst, false
		}
	}
	if f < 0 {
		dst = append(dst, '-')
	}
	if k == 0 {
		return strconv.AppendUint(dst, m, 10), true
	}
	p := uint64(pow10f[k])
	dst = strconv.AppendUint(dst, m/p, 10)
	var frac [shortDecimalMaxFrac + 1]byte
	frac[0] = '.'
	for i, r := k, m%p; i > 0; i, r = i-1, r/10 {
		frac[i] = byte('0' + r%10)
	}
	return append(dst, frac[:k+1]...), true
}

const hexDigits = "0123456789abcdef"

// jsonSafe[b]: ASCII byte b is written as it is inside a JSON string (encoding/json's
// htmlSafeSet: not a control character, '"', '\\', '<', '>' or '&').
var jsonSafe = func() (safe [utf8.RuneSelf]bool) {
	for b := range safe {
		safe[b] = b >= 0x20 && b != '"' && b != '\\' && b != '<' && b != '>' && b != '&'
	}
	return safe
}()

// validUTF8 is utf8.Valid with the short ASCII strings of data (keys, short values) checked
// inline.
func validUTF8(b []byte) bool {
	for _, c := range b {
		if c >= utf8.RuneSelf {
			return utf8.Valid(b)
		}
	}
	return true
}

// appendJSONString escapes like encoding/json with HTML escaping on.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			if jsonSafe[b] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRuneInString(s[i:])
		if c == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if c == '\u2028' || c == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[c&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// wireEntry is one key/value of a Struct read from the wire.
type wireEntry struct {
	key   string // points into the message bytes (no copy); used only while encoding
	val   []byte
	plain bool // key needs no escaping (plainJSON)
}

// AppendWire appends the JSON encoding of the google.protobuf.Struct whose wire bytes are b
// (an envelope's data, [Wire].Data) to dst, exactly as [DataJSON.Append] encodes the Struct
// proto.Unmarshal makes of b, without building it: no allocation once the buffers are warm.
// Data nested beyond protobuf's recursion limit (counted as proto.Unmarshal counts it within
// an envelope) is refused as proto.Unmarshal refuses it ([ErrMalformed]). What no protobuf
// encoder writes but protobuf accepts — a message field given more than once (protobuf merges
// those), a key given twice, a Value with two kinds — gives [ErrIrregular]: decode then. On
// error dst is returned unchanged in length.
func (e *DataJSON) AppendWire(dst []byte, b []byte) ([]byte, error) {
	n := len(dst)
	// One level for the envelope, one for the Struct.
	out, err := e.appendWireStruct(dst, b, protowire.DefaultRecursionLimit-2)
	if err != nil {
		return dst[:n], err
	}
	return out, nil
}

// appendWireStruct appends the JSON of a google.protobuf.Struct given as wire bytes, as
// appendStruct does for the decoded Struct: keys sorted; a key given twice is irregular.
//
// depth is what remains of the recursion budget for this Struct (negative: too deep).
func (e *DataJSON) appendWireStruct(dst []byte, b []byte, depth int) ([]byte, error) {
	if depth < 0 {
		return dst, errTooDeep
	}
	base := len(e.entries)
	defer func() { e.entries = e.entries[:base] }()
	for len(b) > 0 {
		key, val, rest, ok := shortMapEntry(b)
		if !ok { // any other shape: read it field by field
			var entry []byte
			var err error
			if entry, rest, ok, err = nextBytes(b, fieldStructFields); err != nil {
				return dst, err
			} else if !ok {
				break
			}
			if depth-1 < 0 { // the map entry is a message
				return dst, errTooDeep
			}
			if key, val, err = readMapEntry(entry); err != nil {
				return dst, err
			}
		} else if depth-1 < 0 {
			return dst, errTooDeep
		}
		b = rest
		plain := plainJSON(key)
		if !plain && !validUTF8(key) {
			return dst, fmt.Errorf("%w: key is not valid UTF-8", ErrMalformed)
		}
		if val == nil {
			val = []byte{} // a missing value is a Value with no kind: null
		}
		e.entries = append(e.entries, wireEntry{key: bytesString(key), val: val, plain: plain})
	}
	entries := e.entries[base:]
	if len(entries) == 0 {
		return append(dst, '{', '}'), nil
	}
	ascending := keysAscending(entries) // deterministic encoders (and ponixnats' producer) sort them already
	if !ascending {
		slices.SortStableFunc(entries, func(a, b wireEntry) int { return strings.Compare(a.key, b.key) })
	}
	dst = append(dst, '{')
	first := true
	var err error
	for i, en := range entries {
		if !ascending && i+1 < len(entries) && entries[i+1].key == en.key {
			// A key given twice: the last value wins, and proto.Unmarshal still reads the
			// others (and refuses them if broken). Rare enough to leave to it.
			return dst, ErrIrregular
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		if en.plain {
			dst = append(dst, '"')
			dst = append(dst, en.key...)
			dst = append(dst, '"', ':')
		} else {
			dst = appendJSONString(dst, en.key)
			dst = append(dst, ':')
		}
		if dst, err = e.appendWireValue(dst, en.val, depth-2); err != nil {
			return dst, prefixPath(err, jsonPathKey(en.key))
		}
	}
	return append(dst, '}'), nil
}

// shortMapEntry reads the next field of a Struct's wire bytes b in the shape every protobuf
// encoder writes for a usual reading: a map entry (field 1) of under 128 bytes holding the key,
// then the value, each once and under 128 bytes. ok is false for anything else, which
// nextBytes and readMapEntry then read.
func shortMapEntry(b []byte) (key, val, rest []byte, ok bool) {
	const entryTag, keyTag, valTag = fieldStructFields<<3 | 2, fieldEntryKey<<3 | 2, fieldEntryValue<<3 | 2
	if len(b) < 2 || b[0] != entryTag || b[1] >= 0x80 || len(b) < 2+int(b[1]) {
		return nil, nil, nil, false
	}
	entry, rest := b[2:2+int(b[1])], b[2+int(b[1]):]
	if len(entry) < 2 || entry[0] != keyTag || entry[1] >= 0x80 {
		return nil, nil, nil, false
	}
	k := 2 + int(entry[1]) // where the value's tag is
	if len(entry) < k+2 || entry[k] != valTag || entry[k+1] >= 0x80 || len(entry) != k+2+int(entry[k+1]) {
		return nil, nil, nil, false
	}
	return entry[2:k], entry[k+2:], rest, true
}

// readMapEntry reads the key and the value of a Struct's map entry in any shape protobuf
// accepts: fields in any order, unknown fields skipped. A key or a value given twice is
// [ErrIrregular] (protobuf merges values, and checks every key).
func readMapEntry(entry []byte) (key, val []byte, err error) {
	for len(entry) > 0 {
		num, typ, n := consumeTag(entry)
		if n < 0 {
			return nil, nil, ErrMalformed
		}
		entry = entry[n:]
		if typ == protowire.BytesType && (num == fieldEntryKey || num == fieldEntryValue) {
			v, n := consumeBytes(entry)
			if n < 0 {
				return nil, nil, ErrMalformed
			}
			entry = entry[n:]
			if num == fieldEntryKey {
				if key != nil {
					return nil, nil, ErrIrregular // proto.Unmarshal checks every one given
				}
				key = v
			} else {
				if val != nil {
					return nil, nil, ErrIrregular // a repeated message field is merged
				}
				val = v
			}
			continue
		}
		if n = protowire.ConsumeFieldValue(num, typ, entry); n < 0 {
			return nil, nil, ErrMalformed
		}
		entry = entry[n:]
	}
	return key, val, nil
}

// plainJSON reports whether s is ASCII that a JSON string holds as it is (nothing to escape),
// which also makes it valid UTF-8.
func plainJSON(s []byte) bool {
	for _, c := range s {
		if c >= utf8.RuneSelf || !jsonSafe[c] {
			return false
		}
	}
	return true
}

// keysAscending reports whether the keys of entries are in strictly ascending order (sorted,
// no key repeated).
func keysAscending(entries []wireEntry) bool {
	for i := 1; i < len(entries); i++ {
		if entries[i-1].key >= entries[i].key {
			return false
		}
	}
	return true
}

// appendWireValue appends the JSON of a google.protobuf.Value given as wire bytes. A Value
// with more than one kind field is irregular.
func (e *DataJSON) appendWireValue(dst []byte, b []byte, depth int) ([]byte, error) {
	if depth < 0 {
		return dst, errTooDeep
	}
	// The shapes every protobuf encoder writes for a number, a short string or a bool: the
	// kind's field alone.
	switch {
	case len(b) == 9 && b[0] == fieldValueNumber<<3|1:
		return appendJSONFloat(dst, math.Float64frombits(binary.LittleEndian.Uint64(b[1:])))
	case len(b) >= 2 && b[0] == fieldValueString<<3|2 && len(b) == 2+int(b[1]) && b[1] < 0x80:
		if s := b[2:]; plainJSON(s) {
			dst = append(dst, '"')
			dst = append(dst, s...)
			return append(dst, '"'), nil
		}
	case len(b) == 2 && b[0] == fieldValueBool<<3 && b[1] < 0x80:
		return strconv.AppendBool(dst, b[1] != 0), nil
	}
	var (
		kind    protowire.Number
		payload []byte
		scalar  uint64
	)
	for len(b) > 0 {
		num, typ, n := consumeTag(b)
		if n < 0 {
			return dst, ErrMalformed
		}
		b = b[n:]
		if kind != 0 && num >= fieldValueNull && num <= fieldValueList {
			// A second kind: the last one wins, but proto.Unmarshal still reads (and checks)
			// the first, and merges a message kind given twice. Rare enough to leave to it.
			return dst, ErrIrregular
		}
		switch {
		case (num == fieldValueNull || num == fieldValueBool) && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return dst, ErrMalformed
			}
			b, kind, scalar = b[n:], num, v
		case num == fieldValueNumber && typ == protowire.Fixed64Type:
			v, n := protowire.ConsumeFixed64(b)
			if n < 0 {
				return dst, ErrMalformed
			}
			b, kind, scalar = b[n:], num, v
		case (num == fieldValueString || num == fieldValueStruct || num == fieldValueList) && typ == protowire.BytesType:
			v, n := consumeBytes(b)
			if n < 0 {
				return dst, ErrMalformed
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
	case fieldValueBool:
		return strconv.AppendBool(dst, scalar != 0), nil
	case fieldValueNumber:
		return appendJSONFloat(dst, math.Float64frombits(scalar))
	case fieldValueString:
		if !validUTF8(payload) {
			return dst, fmt.Errorf("%w: string is not valid UTF-8", ErrMalformed)
		}
		return appendJSONString(dst, bytesString(payload)), nil
	case fieldValueStruct:
		return e.appendWireStruct(dst, payload, depth-1)
	case fieldValueList:
		if depth-1 < 0 {
			return dst, errTooDeep
		}
		dst = append(dst, '[')
		i := 0
		for {
			item, rest, ok, err := nextBytes(payload, fieldListValues)
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
