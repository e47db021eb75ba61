package envelopev1_test

import (
	"math"
	"testing"
	"time"

	envelopev1 "buf.build/gen/go/ponix/ponix/protocolbuffers/go/envelope/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// timestampBytes hand-encodes a google.protobuf.Timestamp (seconds = 1, nanos = 2).
func timestampBytes(sec int64, nanos int32) []byte {
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(sec))
	b = protowire.AppendTag(b, 2, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(nanos))
	return b
}

// structBytes hand-encodes a google.protobuf.Struct holding {"k": <number v>}.
func structBytes(key string, v float64) []byte {
	var value []byte // google.protobuf.Value, number_value = 2 (double)
	value = protowire.AppendTag(value, 2, protowire.Fixed64Type)
	value = protowire.AppendFixed64(value, math.Float64bits(v))
	var entry []byte // map entry: key = 1, value = 2
	entry = protowire.AppendTag(entry, 1, protowire.BytesType)
	entry = protowire.AppendString(entry, key)
	entry = protowire.AppendTag(entry, 2, protowire.BytesType)
	entry = protowire.AppendBytes(entry, value)
	var s []byte // Struct.fields = 1
	s = protowire.AppendTag(s, 1, protowire.BytesType)
	s = protowire.AppendBytes(s, entry)
	return s
}

// TestWireFormatDecode proves that bytes laid out by field number (as the
// upstream schema defines them) decode into the right Go fields.
func TestWireFormatDecode(t *testing.T) {
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendString(b, "device-1")
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendBytes(b, timestampBytes(1700000000, 5))
	b = protowire.AppendTag(b, 3, protowire.BytesType)
	b = protowire.AppendBytes(b, structBytes("temperature", 21.5))
	b = protowire.AppendTag(b, 4, protowire.BytesType)
	b = protowire.AppendBytes(b, timestampBytes(1700000060, 7))
	b = protowire.AppendTag(b, 5, protowire.BytesType)
	b = protowire.AppendString(b, "org-1")

	var env envelopev1.ProcessedEnvelope
	if err := proto.Unmarshal(b, &env); err != nil {
		t.Fatalf("unmarshal hand-built bytes: %v", err)
	}
	if got := env.GetEndDeviceId(); got != "device-1" {
		t.Errorf("end_device_id (1) = %q, want device-1", got)
	}
	if got := env.GetOccurredAt().AsTime(); !got.Equal(time.Unix(1700000000, 5)) {
		t.Errorf("occurred_at (2) = %v", got)
	}
	if got := env.GetData().GetFields()["temperature"].GetNumberValue(); got != 21.5 {
		t.Errorf("data (3) temperature = %v, want 21.5", got)
	}
	if got := env.GetProcessedAt().AsTime(); !got.Equal(time.Unix(1700000060, 7)) {
		t.Errorf("processed_at (4) = %v", got)
	}
	if got := env.GetOrganizationId(); got != "org-1" {
		t.Errorf("organization_id (5) = %q, want org-1", got)
	}
}

// TestWireFormatEncode proves that each Go field is written under the upstream
// field number and wire type.
func TestWireFormatEncode(t *testing.T) {
	data, err := structpb.NewStruct(map[string]any{"temperature": 21.5})
	if err != nil {
		t.Fatal(err)
	}
	env := &envelopev1.ProcessedEnvelope{
		EndDeviceId:    "device-1",
		OccurredAt:     timestamppb.New(time.Unix(1700000000, 5)),
		Data:           data,
		ProcessedAt:    timestamppb.New(time.Unix(1700000060, 7)),
		OrganizationId: "org-1",
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	got := map[protowire.Number][]byte{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			t.Fatalf("bad tag: %v", protowire.ParseError(n))
		}
		b = b[n:]
		if typ != protowire.BytesType {
			t.Fatalf("field %d has wire type %v, want bytes", num, typ)
		}
		v, m := protowire.ConsumeBytes(b)
		if m < 0 {
			t.Fatalf("bad field %d: %v", num, protowire.ParseError(m))
		}
		got[num] = v
		b = b[m:]
	}
	want := map[protowire.Number][]byte{
		1: []byte("device-1"),
		2: timestampBytes(1700000000, 5),
		3: structBytes("temperature", 21.5),
		4: timestampBytes(1700000060, 7),
		5: []byte("org-1"),
	}
	if len(got) != len(want) {
		t.Fatalf("encoded %d fields, want %d", len(got), len(want))
	}
	for num, w := range want {
		if string(got[num]) != string(w) {
			t.Errorf("field %d = %x, want %x", num, got[num], w)
		}
	}
}
