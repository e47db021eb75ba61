package envelope

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// everyKind is a Struct holding every value kind, with the awkward cases of each.
func everyKind(t testing.TB) *structpb.Struct {
	t.Helper()
	s, err := structpb.NewStruct(map[string]any{
		"zeta":     "last key, sorted after the others",
		"alpha":    1,
		"int":      42,
		"negint":   -17,
		"big":      float64(1 << 60),
		"beyond53": float64(9007199254740993), // not representable: the float64 holds ...992
		"maxint64": float64(math.MaxInt64),
		"float":    3.14159,
		"tiny":     1e-7,
		"huge":     1e21,
		"justbig":  1e20,
		"negzero":  math.Copysign(0, -1),
		"true":     true,
		"false":    false,
		"null":     nil,
		"empty":    "",
		"quotes":   `she said "hi" \ back\slash`,
		"html":     "<script>alert('x') && 1 > 0</script>",
		"control":  "tab\there\nnewline\rcr\bbs\fff\x00nul\x01\x1f\x7fdel",
		"unicode":  "héllo wörld ✓ 日本 🚀 \u2028 line sep \u2029 para",
		"nested": map[string]any{
			"b": map[string]any{"c": []any{1, "two", nil, true, map[string]any{}}},
			"a": []any{},
		},
		"list":      []any{1.5, []any{[]any{"deep"}}, map[string]any{"k": "v"}},
		"":          "empty key",
		"key\"<>&":  "odd key",
		"emptyobj":  map[string]any{},
		"emptylist": []any{},
	})
	if err != nil {
		t.Fatal(err)
	}
	// Invalid UTF-8 cannot come off the wire (proto3 strings are validated) but can be built
	// in memory; NewStruct refuses it, so set it directly.
	s.Fields["invalid"] = structpb.NewStringValue("bad \xff\xfe utf8")
	return s
}

func TestDataJSONMatchesEncodingJSON(t *testing.T) {
	cases := map[string]*structpb.Struct{
		"every kind": everyKind(t),
		"nil":        nil,
		"empty":      {},
		"nil value":  {Fields: map[string]*structpb.Value{"x": nil, "y": {}}},
	}
	var e DataJSON
	for name, s := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := e.Append(nil, s)
			if err != nil {
				t.Fatal(err)
			}
			want, err := json.Marshal(s.AsMap())
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(want) {
				t.Fatalf("DataJSON differs from encoding/json:\n got %s\nwant %s", got, want)
			}
			if !json.Valid(got) {
				t.Fatalf("invalid JSON %s", got)
			}
		})
	}
}

func TestDataJSONFormatsNumbersLikeEncodingJSON(t *testing.T) {
	nums := []float64{0, 1, -1, 0.1, 1e-6, 9.99e-7, 1e-7, 123456789, 1e20, 1e21, 1.5e300, -1e-300,
		math.SmallestNonzeroFloat64, math.MaxFloat64, 1 << 53, 1<<53 + 2, 1 << 63, 12345678901234567890,
		math.Copysign(0, -1), 5e-324, 2.5e-8}
	var e DataJSON
	for _, f := range nums {
		s := &structpb.Struct{Fields: map[string]*structpb.Value{"n": structpb.NewNumberValue(f)}}
		got, err := e.Append(nil, s)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := json.Marshal(map[string]any{"n": f})
		if string(got) != string(want) {
			t.Errorf("%v: got %s want %s", f, got, want)
		}
	}
}

func TestDataJSONEscapesEveryByteLikeEncodingJSON(t *testing.T) {
	var b strings.Builder
	for c := 0; c < 256; c++ {
		b.WriteByte(byte(c))
	}
	b.WriteString("\u2028\u2029\ufffd")
	s := &structpb.Struct{Fields: map[string]*structpb.Value{b.String(): structpb.NewStringValue(b.String())}}
	var e DataJSON
	got, err := e.Append(nil, s)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := json.Marshal(s.AsMap())
	if string(got) != string(want) {
		t.Fatalf("got  %q\nwant %q", got, want)
	}
}

func TestDataJSONRejectsNonFiniteNumbersWithPath(t *testing.T) {
	for _, tc := range []struct {
		name string
		v    float64
	}{{"NaN", math.NaN()}, {"+Inf", math.Inf(1)}, {"-Inf", math.Inf(-1)}} {
		t.Run(tc.name, func(t *testing.T) {
			s := &structpb.Struct{Fields: map[string]*structpb.Value{
				"ok": structpb.NewStringValue("fine"),
				"outer": structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{
					"readings": structpb.NewListValue(&structpb.ListValue{Values: []*structpb.Value{
						structpb.NewNumberValue(1), structpb.NewNumberValue(tc.v),
					}}),
				}}),
			}}
			var e DataJSON
			prefix := []byte("keep")
			out, err := e.Append(prefix, s)
			if !errors.Is(err, ErrNonFiniteNumber) {
				t.Fatalf("err = %v, want ErrNonFiniteNumber", err)
			}
			if !strings.Contains(err.Error(), "outer.readings[1]") {
				t.Errorf("error %q does not name the path outer.readings[1]", err)
			}
			if string(out) != "keep" {
				t.Errorf("buffer after error = %q, want it unchanged", out)
			}
			// The encoder is reusable after an error.
			ok, err := e.Append(nil, &structpb.Struct{Fields: map[string]*structpb.Value{"a": structpb.NewBoolValue(true)}})
			if err != nil || string(ok) != `{"a":true}` {
				t.Fatalf("after error: %s, %v", ok, err)
			}
		})
	}
}

// The short-decimal path of the number encoder gives exactly encoding/json's text: decimals of
// every fractional length around its limits, their float64 neighbours, the bounds of its
// range, and random float64s of every magnitude.
func TestShortDecimalFormatsNumbersLikeEncodingJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	var nums []float64
	for k := range shortDecimalMaxFrac + 3 {
		for range 4000 {
			m := r.Uint64N(uint64(1) << (1 + r.IntN(53)))
			s := strconv.FormatUint(m, 10)
			if k > 0 {
				s = strings.Repeat("0", k) + s
				s = s[:len(s)-k] + "." + s[len(s)-k:]
			}
			f, err := strconv.ParseFloat(s, 64)
			if err != nil {
				t.Fatal(err)
			}
			nums = append(nums, f, -f, math.Nextafter(f, math.Inf(1)), math.Nextafter(f, math.Inf(-1)))
		}
	}
	for range 20000 {
		nums = append(nums, math.Float64frombits(r.Uint64()), r.Float64()*math.Pow(10, float64(r.IntN(40)-20)))
	}
	for _, f := range []float64{1e-6, 9.99999e-7, 1.000001e-6, 1 << 50, 1<<50 + 0.25, 1<<50 - 0.25, 1<<50 + 1, 1<<50 - 1,
		1 << 51, 0.1 + 0.2, 1.0 / 3, 2.0 / 3, 0.000001, 0.0000015, 123456.654321, 1125899906842.624, 999999.9999995} {
		nums = append(nums, f, -f, math.Nextafter(f, math.Inf(1)), math.Nextafter(f, math.Inf(-1)))
	}
	for _, f := range nums {
		if math.IsNaN(f) || math.IsInf(f, 0) {
			continue
		}
		got, err := appendJSONFloat(nil, f)
		if err != nil {
			t.Fatal(err)
		}
		want, err := json.Marshal(f)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Fatalf("%v (bits %#x): got %s want %s", f, math.Float64bits(f), got, want)
		}
	}
}

func BenchmarkJSONFloat(b *testing.B) {
	for _, f := range []float64{21.5, -71, 1013.25, 52.523456789012345} {
		b.Run(strconv.FormatFloat(f, 'g', -1, 64), func(b *testing.B) {
			buf := make([]byte, 0, 64)
			for b.Loop() {
				buf, _ = appendJSONFloat(buf[:0], f)
			}
		})
	}
}

func BenchmarkDataJSON(b *testing.B) {
	s := everyKind(b)
	var e DataJSON
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		buf, err = e.Append(buf[:0], s)
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDataJSONWire is the service's path: data of a realistic envelope (eight readings,
// one nested; as ponix-bench publishes it), from its wire bytes, keys sorted
// (deterministic encoding) or not.
func BenchmarkDataJSONWire(b *testing.B) {
	data, err := structpb.NewStruct(map[string]any{
		"temperature": 21.5, "humidity": 40.2, "battery": 87, "rssi": -71, "status": "active",
		"firmware": "v2.4.1", "door_open": false, "location": map[string]any{"lat": 52.523456789012345, "lon": 13.401234567890123},
	})
	if err != nil {
		b.Fatal(err)
	}
	for _, deterministic := range []bool{true, false} {
		wire, err := proto.MarshalOptions{Deterministic: deterministic}.Marshal(data)
		if err != nil {
			b.Fatal(err)
		}
		if !deterministic { // reverse the order of the entries, whatever it was
			var entries [][]byte
			for rest := wire; len(rest) > 0; {
				_, _, n := protowire.ConsumeField(rest)
				entries = append([][]byte{rest[:n]}, entries...)
				rest = rest[n:]
			}
			wire = slices.Concat(entries...)
		}
		b.Run(fmt.Sprintf("sorted=%v", deterministic), func(b *testing.B) {
			var e DataJSON
			buf := make([]byte, 0, 4096)
			b.ReportAllocs()
			for b.Loop() {
				if buf, err = e.AppendWire(buf[:0], wire); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkEncodingJSONAsMap(b *testing.B) {
	s := everyKind(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := json.Marshal(s.AsMap()); err != nil {
			b.Fatal(err)
		}
	}
}

func randomValue(r *rand.Rand, depth int) *structpb.Value {
	switch k := r.IntN(8); {
	case k == 0:
		return structpb.NewNullValue()
	case k == 1:
		return structpb.NewBoolValue(r.IntN(2) == 0)
	case k == 2:
		return structpb.NewNumberValue([]float64{0, math.Copysign(0, -1), 1e21, 1e-7, 9007199254740993, -3.25, r.NormFloat64() * 1e6, math.NaN()}[r.IntN(8)])
	case k == 3 || depth > 3:
		return structpb.NewStringValue([]string{"", "plain", "é✓🚀", "<a & b>", "q\"uo\\te\n\t\x01", "\u2028\u2029"}[r.IntN(6)])
	case k == 4 || k == 5:
		return structpb.NewStructValue(randomStruct(r, depth+1))
	default:
		var vs []*structpb.Value
		for range r.IntN(4) {
			vs = append(vs, randomValue(r, depth+1))
		}
		return structpb.NewListValue(&structpb.ListValue{Values: vs})
	}
}

func randomStruct(r *rand.Rand, depth int) *structpb.Struct {
	s := &structpb.Struct{Fields: map[string]*structpb.Value{}}
	for range r.IntN(6) {
		s.Fields[[]string{"a", "b", "temperature", "ünï", "x y", "Z", ""}[r.IntN(7)]] = randomValue(r, depth)
	}
	return s
}

// FuzzAppendWire: whatever the bytes, AppendWire gives what proto.Unmarshal and Append give
// (or refuses bytes proto.Unmarshal refuses, or calls them irregular). The seeds hold the
// shapes the fast paths skip: a value before its key, unknown fields, a key given twice, two
// kinds in one Value, multi-byte lengths and varints.
func FuzzAppendWire(f *testing.F) {
	r := rand.New(rand.NewPCG(11, 12))
	for range 20 {
		b, err := proto.Marshal(randomStruct(r, 0))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	b, _ := proto.Marshal(everyKind(f))
	f.Add(b)
	entry := func(fields ...[]byte) []byte { // a map entry of Struct.fields
		e := slices.Concat(fields...)
		return protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), e)
	}
	field := func(num protowire.Number, v []byte) []byte {
		return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), v)
	}
	number := protowire.AppendFixed64(protowire.AppendTag(nil, 2, protowire.Fixed64Type), math.Float64bits(21.5))
	str := func(s string) []byte { return field(3, []byte(s)) }
	boolean := func(v uint64) []byte {
		return protowire.AppendVarint(protowire.AppendTag(nil, 4, protowire.VarintType), v)
	}
	unknown := protowire.AppendVarint(protowire.AppendTag(nil, 9, protowire.VarintType), 7)
	for _, seed := range [][]byte{
		entry(field(2, number), field(1, []byte("v_first"))),                                                                    // value before key
		entry(field(1, []byte("k")), unknown, field(2, number)),                                                                 // unknown field in the entry
		slices.Concat(unknown, entry(field(1, []byte("k")), field(2, str("x")))),                                                // unknown field in the Struct
		slices.Concat(entry(field(1, []byte("k")), field(2, str("a"))), entry(field(1, []byte("k")), field(2, str("b")))),       // key twice
		entry(field(1, []byte("k")), field(2, slices.Concat(number, str("then a string")))),                                     // two kinds
		entry(field(1, []byte("k")), field(2, str(strings.Repeat("long ", 40)))),                                                // lengths over 127
		entry(field(1, []byte("k")), field(2, protowire.AppendVarint(protowire.AppendTag(nil, 4, protowire.VarintType), 1<<8))), // bool as a 2-byte varint
		entry(field(1, []byte("k")), field(2, boolean(0)), field(2, boolean(1))),                                                // value twice: merged
		entry(field(1, []byte("k\"<&")), field(2, str("q\"uo\\te <b>"))),                                                        // escapes
		entry(field(1, []byte("k")), field(2, str("\xff"))),                                                                     // invalid UTF-8
		entry(field(1, []byte("k")), field(2, protowire.AppendFixed64(protowire.AppendTag(nil, 2, protowire.Fixed64Type), math.Float64bits(math.NaN())))),
		entry(field(1, []byte("k")), field(2, number))[:5], // cut short
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var e DataJSON
		got, gerr := e.AppendWire(nil, b)
		if errors.Is(gerr, ErrIrregular) {
			return
		}
		s := new(structpb.Struct)
		// Within an envelope, as AppendWire counts it: one level for the envelope.
		if err := (proto.UnmarshalOptions{RecursionLimit: protowire.DefaultRecursionLimit - 1}).Unmarshal(b, s); err != nil {
			if gerr == nil {
				t.Fatalf("proto.Unmarshal refuses %x (%v), AppendWire gives %s", b, err, got)
			}
			return
		}
		want, werr := e.Append(nil, s)
		if (werr == nil) != (gerr == nil) || string(want) != string(got) {
			t.Fatalf("bytes %x: AppendWire %s (%v), Append %s (%v)", b, got, gerr, want, werr)
		}
		if werr != nil && werr.Error() != gerr.Error() {
			t.Fatalf("bytes %x: errors differ: wire %v, decoded %v", b, gerr, werr)
		}
	})
}
