//go:build !ponix_noenvelope

package ponixclickhouse

import (
	"errors"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	envelopev1 "buf.build/gen/go/ponix/ponix/protocolbuffers/go/envelope/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ponix-go/ponix/envelope"
)

// encodedRow is what an encoder appended for one row.
type encodedRow struct {
	org, dev  string
	occ, proc time.Time
	data      string
	seq       uint64
}

// encodeOne encodes row alone and returns what was appended, or the error.
func encodeOne(row EnvelopeRow) (encodedRow, error) {
	e := NewEnvelopeEncoder()
	e.Reset(1)
	if err := e.Encode(row); err != nil {
		return encodedRow{}, err
	}
	org, dev := e.idEnds[0], e.idEnds[1]
	return encodedRow{string(e.ids[:org]), string(e.ids[org:dev]), e.occurred[0], e.processed[0], string(e.buf[:e.ends[0]]), e.seqs[0]}, nil
}

// sameAsDecoded checks that the wire path gives exactly what the decoded path gives for the
// message the bytes decode to (or that both reject them, naming the same field).
func sameAsDecoded(t *testing.T, b []byte) {
	t.Helper()
	wire, werr := encodeOne(EnvelopeRow{Wire: b, StreamSeq: 7})
	env := new(envelopev1.ProcessedEnvelope)
	if uerr := proto.Unmarshal(b, env); uerr != nil {
		if werr == nil {
			t.Fatalf("proto.Unmarshal fails (%v) but the wire path stored %+v", uerr, wire)
		}
		return
	}
	dec, derr := encodeOne(EnvelopeRow{Envelope: env, StreamSeq: 7})
	if (werr == nil) != (derr == nil) {
		t.Fatalf("wire err = %v, decoded err = %v", werr, derr)
	}
	if derr != nil {
		var wf, df *envelope.FieldError
		if !errors.As(werr, &wf) || !errors.As(derr, &df) || wf.Field != df.Field {
			t.Fatalf("errors name different fields: wire %v, decoded %v", werr, derr)
		}
		for _, sentinel := range []error{ErrNilTimestamp, ErrTimestampOutOfRange, envelope.ErrNonFiniteNumber} {
			if errors.Is(werr, sentinel) != errors.Is(derr, sentinel) {
				t.Fatalf("errors differ in kind: wire %v, decoded %v", werr, derr)
			}
		}
		return
	}
	if !reflect.DeepEqual(wire, dec) {
		t.Fatalf("wire path\n%+v\ndecoded path\n%+v", wire, dec)
	}
}

func randomValue(r *rand.Rand, depth int) *structpb.Value {
	switch k := r.IntN(8); {
	case k == 0:
		return structpb.NewNullValue()
	case k == 1:
		return structpb.NewBoolValue(r.IntN(2) == 0)
	case k == 2:
		return structpb.NewNumberValue([]float64{0, math.Copysign(0, -1), 1e21, 1e-7, 9007199254740993, -3.25, r.NormFloat64() * 1e6}[r.IntN(7)])
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

func randomEnvelope(r *rand.Rand) *envelopev1.ProcessedEnvelope {
	env := &envelopev1.ProcessedEnvelope{
		EndDeviceId:    []string{"dev-1", "", "ünï"}[r.IntN(3)],
		OrganizationId: []string{"org", ""}[r.IntN(2)],
		Data:           randomStruct(r, 0),
	}
	ts := func() *timestamppb.Timestamp {
		switch r.IntN(6) {
		case 0:
			return nil
		case 1:
			return &timestamppb.Timestamp{Seconds: -5}
		case 2:
			return &timestamppb.Timestamp{Seconds: 1 << 33}
		case 3:
			return &timestamppb.Timestamp{Seconds: 1700000000, Nanos: 2e9}
		default:
			return timestamppb.New(time.Unix(1700000000+r.Int64N(1e8), r.Int64N(1e9)))
		}
	}
	env.OccurredAt, env.ProcessedAt = ts(), ts()
	if r.IntN(10) == 0 {
		env.Data.Fields["bad"] = structpb.NewNumberValue(math.NaN())
	}
	if r.IntN(10) == 0 {
		env.Data = nil
	}
	return env
}

func TestWirePathEqualsDecodedPath(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 3000 {
		env := randomEnvelope(r)
		b, err := proto.MarshalOptions{Deterministic: i%2 == 0}.Marshal(env)
		if err != nil {
			t.Fatal(err)
		}
		sameAsDecoded(t, b)
		// Concatenated messages merge in protobuf; the wire path must agree (it falls back).
		b2, _ := proto.Marshal(randomEnvelope(r))
		sameAsDecoded(t, append(append([]byte{}, b...), b2...))
		// Truncated bytes.
		if len(b) > 1 {
			sameAsDecoded(t, b[:r.IntN(len(b))])
		}
	}
}

func TestWirePathTakesRepeatedKeysAndUnknownFieldsLikeProtobuf(t *testing.T) {
	one, _ := proto.Marshal(&structpb.Struct{Fields: map[string]*structpb.Value{"k": structpb.NewNumberValue(1)}})
	two, _ := proto.Marshal(&structpb.Struct{Fields: map[string]*structpb.Value{"k": structpb.NewStringValue("last")}})
	env, _ := proto.Marshal(&envelopev1.ProcessedEnvelope{EndDeviceId: "d", OrganizationId: "o", OccurredAt: timestamppb.Now(), ProcessedAt: timestamppb.Now()})
	// data given twice: protobuf merges the two Structs (the later key wins).
	b := append(append([]byte{}, env...), append([]byte{0x1a, byte(len(one))}, one...)...)
	b = append(b, append([]byte{0x1a, byte(len(two))}, two...)...)
	b = append(b, 0xf8, 0x01, 0x05) // unknown field 31, varint 5
	sameAsDecoded(t, b)
	row, err := encodeOne(EnvelopeRow{Wire: b})
	if err != nil || row.data != `{"k":"last"}` {
		t.Fatalf("row %+v, err %v", row, err)
	}
}

// Data that protobuf encoders do not write but proto.Unmarshal reads in full: the wire path
// stores what the decoded path stores, and refuses what proto.Unmarshal refuses, even in a
// value that a later one replaces (bytes a fuzz test found the wire path took).
func TestWirePathTakesShadowedFieldsLikeProtobuf(t *testing.T) {
	field := func(num protowire.Number, v []byte) []byte {
		return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), v)
	}
	entry := func(fields ...[]byte) []byte { return field(1, slices.Concat(fields...)) } // of Struct.fields
	str := func(s string) []byte { return field(3, []byte(s)) }
	boolean := protowire.AppendVarint(protowire.AppendTag(nil, 4, protowire.VarintType), 1)
	broken := []byte{0x31, 0x30} // a fixed64 field cut short
	env, _ := proto.Marshal(&envelopev1.ProcessedEnvelope{EndDeviceId: "d", OrganizationId: "o", OccurredAt: timestamppb.Now(), ProcessedAt: timestamppb.Now()})
	for _, c := range []struct {
		name   string
		data   []byte
		stored string // "": refused as malformed
	}{
		{"key twice", append(entry(field(1, []byte("k")), field(2, str("first"))), entry(field(1, []byte("k")), field(2, str("last")))...), `{"k":"last"}`},
		{"key twice, the first value broken", append(entry(field(1, []byte("k")), field(2, broken)), entry(field(1, []byte("k")), field(2, str("last")))...), ""},
		{"two kinds", entry(field(1, []byte("k")), field(2, append(str("a string"), boolean...))), "{\"k\":true}"},
		{"two kinds, the first a broken Struct", entry(field(1, []byte("k")), field(2, append(field(5, broken), str("s")...))), ""},
		{"two kinds, the first a string not UTF-8", entry(field(1, []byte("k")), field(2, append(str("\xff"), boolean...))), ""},
		{"an entry's key twice, the first not UTF-8", entry(field(1, []byte("\xff")), field(1, []byte("k")), field(2, boolean)), ""},
		{"a field number above protobuf's maximum", protowire.AppendVarint(protowire.AppendTag(nil, protowire.MaxValidNumber+1, protowire.VarintType), 1), ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := append(append([]byte{}, env...), field(3, c.data)...)
			sameAsDecoded(t, b)
			row, err := encodeOne(EnvelopeRow{Wire: b})
			if c.stored == "" {
				if !errors.Is(err, envelope.ErrMalformed) {
					t.Fatalf("stored %q, err %v; want ErrMalformed", row.data, err)
				}
				return
			}
			if err != nil || row.data != c.stored {
				t.Fatalf("row data %q, err %v; want %q", row.data, err, c.stored)
			}
		})
	}
}

func TestWirePathRejectsNonFiniteNumbersNamingThePath(t *testing.T) {
	data, _ := structpb.NewStruct(map[string]any{"outer": map[string]any{"readings": []any{1.0, math.Inf(1)}}})
	b, _ := proto.Marshal(&envelopev1.ProcessedEnvelope{EndDeviceId: "d", OrganizationId: "o", OccurredAt: timestamppb.Now(), ProcessedAt: timestamppb.Now(), Data: data})
	_, err := encodeOne(EnvelopeRow{Wire: b})
	var fe *envelope.FieldError
	if !errors.As(err, &fe) || fe.Field != "data.outer.readings[1]" || !errors.Is(err, envelope.ErrNonFiniteNumber) {
		t.Fatalf("err = %v", err)
	}
}

func TestWirePathRejectsGarbage(t *testing.T) {
	for _, b := range [][]byte{{0xff, 0xff, 0xff}, []byte("not protobuf at all"), {0x0a, 0x05, 'a'}} {
		if _, err := encodeOne(EnvelopeRow{Wire: b}); !errors.Is(err, envelope.ErrMalformed) && !strings.Contains(err.Error(), "timestamp") {
			t.Errorf("Encode(%q) err = %v; want ErrMalformed or a missing timestamp", b, err)
		}
	}
}

func FuzzWirePathEqualsDecodedPath(f *testing.F) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 20 {
		b, _ := proto.Marshal(randomEnvelope(r))
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) { sameAsDecoded(t, b) })
}

// benchEnvelope is a realistic envelope: eight readings, one nested.
func benchEnvelope() []byte {
	data, _ := structpb.NewStruct(map[string]any{
		"temperature": 21.5, "humidity": 40.2, "battery": 87, "rssi": -71, "status": "active",
		"firmware": "v2.4.1", "door_open": false, "location": map[string]any{"lat": 52.52, "lon": 13.40},
	})
	now := timestamppb.Now()
	b, _ := proto.Marshal(&envelopev1.ProcessedEnvelope{OrganizationId: "org-01", EndDeviceId: "device-0001", OccurredAt: now, ProcessedAt: now, Data: data})
	return b
}

func TestWirePathDoesNotAllocate(t *testing.T) {
	b := benchEnvelope()
	e := NewEnvelopeEncoder()
	e.Reset(1000)
	for range 10 { // warm the buffers
		_ = e.Encode(EnvelopeRow{Wire: b})
	}
	e.Reset(1000)
	allocs := testing.AllocsPerRun(500, func() {
		if err := e.Encode(EnvelopeRow{Wire: b, StreamSeq: 1}); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 0 {
		t.Errorf("wire path allocates %v times per envelope, want 0 (the ids are copied into a buffer of the encoder)", allocs)
	}
}

// BenchmarkDecode is the decoded path's first step: proto.Unmarshal of one envelope.
func BenchmarkDecode(b *testing.B) {
	buf := benchEnvelope()
	b.ReportAllocs()
	for b.Loop() {
		env := new(envelopev1.ProcessedEnvelope)
		if err := proto.Unmarshal(buf, env); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncodeRow compares the two paths from message bytes to an appended row.
func BenchmarkEncodeRow(b *testing.B) {
	buf := benchEnvelope()
	for _, path := range []string{"decoded", "wire"} {
		b.Run(path, func(b *testing.B) {
			const batch = 1000
			e := NewEnvelopeEncoder()
			b.ReportAllocs()
			for b.Loop() {
				e.Reset(batch)
				for i := range batch {
					row := EnvelopeRow{Wire: buf, StreamSeq: uint64(i)}
					if path == "decoded" {
						env := new(envelopev1.ProcessedEnvelope)
						if err := proto.Unmarshal(buf, env); err != nil {
							b.Fatal(err)
						}
						row = EnvelopeRow{Envelope: env, StreamSeq: uint64(i)}
					}
					if err := e.Encode(row); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/envelope")
		})
	}
}

// Data nested around protobuf's recursion limit: the wire path stores what proto.Unmarshal
// accepts and refuses what it refuses, at the same depth.
func TestWirePathHonoursTheRecursionLimit(t *testing.T) {
	nested := func(levels int, list bool) []byte {
		v := structpb.NewStringValue("leaf")
		for range levels {
			if list {
				v = structpb.NewListValue(&structpb.ListValue{Values: []*structpb.Value{v}})
			} else {
				v = structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{"k": v}})
			}
		}
		env := &envelopev1.ProcessedEnvelope{EndDeviceId: "d", OrganizationId: "o", OccurredAt: timestamppb.Now(), ProcessedAt: timestamppb.Now(),
			Data: &structpb.Struct{Fields: map[string]*structpb.Value{"root": v}}}
		b, err := proto.MarshalOptions{}.Marshal(env)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, list := range []bool{false, true} {
		for _, levels := range []int{100, 3330, 3331, 3332, 3333, 4990, 4995, 4996, 4997, 5000, 6000} {
			sameAsDecoded(t, nested(levels, list))
		}
	}
	_, err := encodeOne(EnvelopeRow{Wire: nested(6000, false)})
	if !errors.Is(err, envelope.ErrMalformed) || !strings.Contains(err.Error(), "recursion limit") || len(err.Error()) > 600 {
		t.Fatalf("6000 levels: err = %v", err)
	}
}
