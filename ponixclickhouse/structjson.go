package ponixclickhouse

import (
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/structpb"
)

// StructJSON encodes google.protobuf.Struct values as compact JSON objects, byte for byte as
// encoding/json encodes s.AsMap(): keys sorted, strings escaped the same way (including the
// HTML characters <, > and & as \u003c, \u003e, \u0026, U+2028/U+2029, invalid UTF-8 as
// \ufffd), numbers in the same format (integers up to 1e21 without exponent, so integers beyond
// 2^53 print as the float64 that Struct holds, e.g. 9007199254740993 → 9007199254740992; -0
// prints as -0). A nil Struct encodes as {}; a nil or NullValue value as null.
//
// NaN and ±Inf: JSON cannot represent them and encoding/json refuses them. StructJSON refuses
// them too, with a [*FieldError] naming the path that wraps [ErrNonFiniteNumber], so that the
// message is dead-lettered intact instead of stored altered (null or a string would change
// the data without a trace).
//
// A StructJSON reuses its internal buffers; it is not safe for concurrent use. The zero value
// is ready to use.
type StructJSON struct {
	keys    []string    // stack of sorted keys, shared by all nesting levels
	entries []wireEntry // the same for Structs read from wire bytes
}

// Append appends the JSON encoding of s to dst and returns the extended buffer. On error dst
// is returned unchanged in length.
func (e *StructJSON) Append(dst []byte, s *structpb.Struct) ([]byte, error) {
	n := len(dst)
	out, err := e.appendStruct(dst, s)
	if err != nil {
		return dst[:n], err
	}
	return out, nil
}

func (e *StructJSON) appendStruct(dst []byte, s *structpb.Struct) ([]byte, error) {
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

func (e *StructJSON) appendValue(dst []byte, v *structpb.Value) ([]byte, error) {
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

// pathError carries the JSON path of a bad value up the recursion; the envelope encoder turns
// it into a FieldError.
type pathError struct {
	path string
	err  error
}

func (p *pathError) Error() string { return p.path + ": " + p.err.Error() }
func (p *pathError) Unwrap() error { return p.err }

// maxPathLen bounds the data path in errors, which deeply nested data would make huge.
const maxPathLen = 256

func prefixPath(err error, part string) error {
	if pe, ok := err.(*pathError); ok {
		if len(pe.path) > maxPathLen { // deep data: keep the innermost part, bounded
			if !strings.HasPrefix(pe.path, "…") {
				pe.path = "…" + pe.path
			}
			return pe
		}
		if pe.path == "" || strings.HasPrefix(pe.path, "[") {
			pe.path = part + pe.path
		} else {
			pe.path = part + "." + pe.path
		}
		return pe
	}
	return &pathError{path: part, err: err}
}

func jsonPathKey(k string) string {
	if k != "" && ValidateIdentifier(k) == nil {
		return k
	}
	return strconv.Quote(k)
}

// appendJSONFloat formats like encoding/json's float64 encoder.
func appendJSONFloat(dst []byte, f float64) ([]byte, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return dst, &pathError{err: ErrNonFiniteNumber}
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

const hexDigits = "0123456789abcdef"

// appendJSONString escapes like encoding/json with HTML escaping on.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' && b != '<' && b != '>' && b != '&' {
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
