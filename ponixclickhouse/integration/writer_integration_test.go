//go:build integration && !ponix_noenvelope

package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	envelopev1 "buf.build/gen/go/ponix/ponix/protocolbuffers/go/envelope/v1"
	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	envpkg "github.com/ponix-go/ponix/envelope"
	"github.com/ponix-go/ponix/ponixclickhouse"
	"github.com/ponix-go/ponix/ponixclickhouse/chtest"
)

// createEnvelopeTable creates the table of the upstream schema (as the migrations module
// does; this module's tests must not import that module).
func createEnvelopeTable(t *testing.T, conn driver.Conn) {
	t.Helper()
	err := conn.Exec(t.Context(), `CREATE TABLE processed_envelopes (
		organization_id String,
		end_device_id String,
		occurred_at DateTime,
		processed_at DateTime,
		data String,
		stream_created_ns UInt64,
		stream_seq UInt64
	) ENGINE = ReplacingMergeTree() PARTITION BY toYYYYMM(occurred_at) ORDER BY (organization_id, occurred_at, end_device_id, stream_seq)`)
	if err != nil {
		t.Fatal(err)
	}
}

// rows gives envelopes the stream sequences 1, 2, ... in order.
func rows(envs ...*envelopev1.ProcessedEnvelope) []ponixclickhouse.EnvelopeRow {
	out := make([]ponixclickhouse.EnvelopeRow, len(envs))
	for i, e := range envs {
		out[i] = ponixclickhouse.EnvelopeRow{Envelope: e, StreamSeq: uint64(i + 1)}
	}
	return out
}

var base = time.Date(2025, 11, 30, 23, 59, 58, 0, time.UTC)

// envelope i carries every value kind; its times cross a month boundary (two partitions) and
// carry sub-second parts that DateTime drops.
func envelope(t testing.TB, i int) *envelopev1.ProcessedEnvelope {
	data, err := structpb.NewStruct(map[string]any{
		"seq":      i,
		"temp":     20.5 + float64(i%100)/10,
		"negative": -float64(i),
		"beyond53": float64(1<<60 + i*1024),
		"negzero":  math.Copysign(0, -1),
		"tiny":     1e-9 * float64(i+1),
		"on":       i%2 == 0,
		"nothing":  nil,
		"label":    fmt.Sprintf(`dev "%d" <é✓🚀> \ tab	nl`+"\n", i),
		"nested":   map[string]any{"list": []any{i, "x", nil, false, map[string]any{"deep": []any{}}}, "obj": map[string]any{}},
	})
	if err != nil {
		t.Fatal(err)
	}
	occ := base.Add(time.Duration(i%7) * time.Second).Add(123 * time.Millisecond)
	return &envelopev1.ProcessedEnvelope{
		OrganizationId: fmt.Sprintf("org-%d", i%3),
		EndDeviceId:    fmt.Sprintf("dev-%07d", i),
		OccurredAt:     timestamppb.New(occ),
		ProcessedAt:    timestamppb.New(occ.Add(1500 * time.Millisecond)),
		Data:           data,
	}
}

type storedRow struct {
	Org, Device         string
	Occurred, Processed time.Time
	Data                string
	Seq                 uint64
}

func readAll(t *testing.T, conn driver.Conn) []storedRow {
	t.Helper()
	rows, err := conn.Query(t.Context(), `SELECT organization_id, end_device_id, occurred_at, processed_at, data, stream_seq
		FROM processed_envelopes ORDER BY end_device_id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []storedRow
	for rows.Next() {
		var r storedRow
		if err := rows.Scan(&r.Org, &r.Device, &r.Occurred, &r.Processed, &r.Data, &r.Seq); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestEnvelopeWriterWritesAndReadsBackFieldByField(t *testing.T) {
	for _, n := range []int{1, 100_000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			db := srv.NewDatabase(t)
			createEnvelopeTable(t, db.Conn)
			w, err := ponixclickhouse.NewEnvelopeWriter(t.Context(), db.Conn, ponixclickhouse.Table{})
			if err != nil {
				t.Fatal(err)
			}
			envs := make([]*envelopev1.ProcessedEnvelope, n)
			for i := range envs {
				envs[i] = envelope(t, i)
			}
			start := time.Now()
			if err := w.Write(t.Context(), rows(envs...)); err != nil {
				t.Fatal(err)
			}
			t.Logf("wrote %d envelopes in %s", n, time.Since(start))
			got := readAll(t, db.Conn)
			if len(got) != n {
				t.Fatalf("read %d rows, want %d", len(got), n)
			}
			for i, r := range got {
				e := envs[i]
				if r.Seq != uint64(i+1) {
					t.Fatalf("row %d stream_seq = %d, want %d", i, r.Seq, i+1)
				}
				if r.Org != e.OrganizationId || r.Device != e.EndDeviceId {
					t.Fatalf("row %d ids = %q/%q, want %q/%q", i, r.Org, r.Device, e.OrganizationId, e.EndDeviceId)
				}
				wantOcc := e.OccurredAt.AsTime().Truncate(time.Second)
				wantProc := e.ProcessedAt.AsTime().Truncate(time.Second)
				if !r.Occurred.Equal(wantOcc) || !r.Processed.Equal(wantProc) {
					t.Fatalf("row %d times = %s/%s, want %s/%s", i, r.Occurred, r.Processed, wantOcc, wantProc)
				}
				wantJSON, err := json.Marshal(e.Data.AsMap())
				if err != nil {
					t.Fatal(err)
				}
				if r.Data != string(wantJSON) {
					t.Fatalf("row %d data\n got %s\nwant %s", i, r.Data, wantJSON)
				}
				if i%997 == 0 || n == 1 { // the full round trip back into a Struct, on a sample
					var back structpb.Struct
					if err := protojson.Unmarshal([]byte(r.Data), &back); err != nil {
						t.Fatalf("row %d data does not parse back: %v", i, err)
					}
					if !proto.Equal(&back, e.Data) {
						t.Fatalf("row %d data round trip differs:\n got %v\nwant %v", i, &back, e.Data)
					}
				}
			}
			var parts uint64
			if err := db.Conn.QueryRow(t.Context(), `SELECT uniqExact(partition) FROM system.parts
				WHERE database = currentDatabase() AND table = 'processed_envelopes' AND active`).Scan(&parts); err != nil {
				t.Fatal(err)
			}
			if n > 1 && parts != 2 {
				t.Errorf("rows span %d partitions, want 2 (Nov and Dec 2025)", parts)
			}
		})
	}
}

func TestEnvelopeWriterRejectsBadRowAndSendsNothing(t *testing.T) {
	db := srv.NewDatabase(t)
	createEnvelopeTable(t, db.Conn)
	w, err := ponixclickhouse.NewEnvelopeWriter(t.Context(), db.Conn, ponixclickhouse.Table{})
	if err != nil {
		t.Fatal(err)
	}
	bad := envelope(t, 2)
	bad.ProcessedAt = nil
	nan := envelope(t, 3)
	nan.Data.Fields["nested"].GetStructValue().Fields["x"] = structpb.NewNumberValue(math.NaN())
	for _, tc := range []struct {
		name     string
		envs     []*envelopev1.ProcessedEnvelope
		index    int
		field    string
		sentinel error
	}{
		{"nil processed_at", []*envelopev1.ProcessedEnvelope{envelope(t, 0), envelope(t, 1), bad}, 2, "processed_at", ponixclickhouse.ErrNilTimestamp},
		{"NaN in data", []*envelopev1.ProcessedEnvelope{envelope(t, 0), nan}, 1, "data.nested.x", envpkg.ErrNonFiniteNumber},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := w.Write(t.Context(), rows(tc.envs...))
			var re *ponixclickhouse.RowError
			if !errors.As(err, &re) || re.Index != tc.index {
				t.Fatalf("err = %v, want RowError at index %d", err, tc.index)
			}
			var fe *envpkg.FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field || !errors.Is(err, tc.sentinel) {
				t.Fatalf("err = %v, want FieldError %s wrapping %v", err, tc.field, tc.sentinel)
			}
			if ponixclickhouse.Classify(err) != ponixclickhouse.ClassRow {
				t.Error("a bad row must not be retryable")
			}
		})
	}
	if got := readAll(t, db.Conn); len(got) != 0 {
		t.Fatalf("%d rows stored after rejected writes, want 0", len(got))
	}
	// The rows without the bad one go through.
	if err := w.Write(t.Context(), rows(envelope(t, 0), envelope(t, 1))); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, db.Conn); len(got) != 2 {
		t.Fatalf("%d rows stored, want 2", len(got))
	}
}

func TestEnvelopeWriterFailsWhenTableDropped(t *testing.T) {
	db := srv.NewDatabase(t)
	createEnvelopeTable(t, db.Conn)
	w, err := ponixclickhouse.NewEnvelopeWriter(t.Context(), db.Conn, ponixclickhouse.Table{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(t.Context(), rows(envelope(t, 0))); err != nil {
		t.Fatal(err)
	}
	if err := db.Conn.Exec(t.Context(), "DROP TABLE processed_envelopes"); err != nil {
		t.Fatal(err)
	}
	err = w.Write(t.Context(), rows(envelope(t, 1)))
	var ex *clickhouse.Exception
	if !errors.As(err, &ex) || ex.Code != 60 {
		t.Fatalf("err = %v, want exception code 60 (unknown table)", err)
	}
	if c := ponixclickhouse.Classify(err); c != ponixclickhouse.ClassSchema {
		t.Errorf("unknown table is class %q, want %q (a sink fault: hold, never dead-letter): %v", c, ponixclickhouse.ClassSchema, err)
	}
	t.Logf("error: %v", err)
}

func TestEnvelopeWriterFailsWhenServerGoesAway(t *testing.T) {
	db := srv.NewDatabase(t)
	createEnvelopeTable(t, db.Conn)
	p := startProxy(t, srv.Addr)
	cfg := db.Config
	cfg.Addr = p.addr()
	cfg.DialTimeout = time.Second
	conn, err := ponixclickhouse.Open(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	w, err := ponixclickhouse.NewEnvelopeWriter(t.Context(), conn, ponixclickhouse.Table{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(t.Context(), rows(envelope(t, 0))); err != nil {
		t.Fatal(err)
	}
	p.close() // the server is gone: connections drop, new ones are refused
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	err = w.Write(ctx, rows(envelope(t, 1), envelope(t, 2)))
	if err == nil {
		t.Fatal("Write succeeded with the server gone")
	}
	if c := ponixclickhouse.Classify(err); c != ponixclickhouse.ClassUnreachable {
		t.Errorf("a lost server is class %q, want %q: %v", c, ponixclickhouse.ClassUnreachable, err)
	}
	t.Logf("error: %v", err)
	if got := readAll(t, db.Conn); len(got) != 1 {
		t.Fatalf("%d rows stored, want only the 1 written before the failure", len(got))
	}
}

func TestEnvelopeRowsOfOneStreamSequenceCollapse(t *testing.T) {
	db := srv.NewDatabase(t)
	createEnvelopeTable(t, db.Conn)
	w, err := ponixclickhouse.NewEnvelopeWriter(t.Context(), db.Conn, ponixclickhouse.Table{})
	if err != nil {
		t.Fatal(err)
	}
	e0, e1 := envelope(t, 0), envelope(t, 1)
	first := []ponixclickhouse.EnvelopeRow{{Envelope: e0, StreamSeq: 7}, {Envelope: e1, StreamSeq: 8}}
	redelivery := []ponixclickhouse.EnvelopeRow{{Envelope: e0, StreamSeq: 7}, {Envelope: e0, StreamSeq: 9}}
	for _, batch := range [][]ponixclickhouse.EnvelopeRow{first, redelivery} {
		if err := w.Write(t.Context(), batch); err != nil {
			t.Fatal(err)
		}
	}
	count := func(q string) uint64 {
		var n uint64
		if err := db.Conn.QueryRow(t.Context(), q).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count("SELECT count() FROM processed_envelopes"); n != 4 {
		t.Fatalf("raw rows = %d, want 4 before merging", n)
	}
	if n := count("SELECT count() FROM processed_envelopes FINAL"); n != 3 {
		t.Fatalf("FINAL rows = %d, want 3 (sequence 7 once, 8, 9)", n)
	}
	if err := db.Conn.Exec(t.Context(), "OPTIMIZE TABLE processed_envelopes FINAL"); err != nil {
		t.Fatal(err)
	}
	if n := count("SELECT count() FROM processed_envelopes"); n != 3 {
		t.Fatalf("rows after merge = %d, want 3", n)
	}
}

func TestWriterChecksTheTableWhenBuiltAndOnDemand(t *testing.T) {
	db := srv.NewDatabase(t)
	ctx := t.Context()
	_, err := ponixclickhouse.NewEnvelopeWriter(ctx, db.Conn, ponixclickhouse.Table{})
	var se *ponixclickhouse.SchemaError
	if !errors.As(err, &se) || !se.TableMissing {
		t.Fatalf("no table: err = %v, want a SchemaError with TableMissing", err)
	}
	if c := ponixclickhouse.Classify(err); c != ponixclickhouse.ClassSchema {
		t.Errorf("class %q, want schema", c)
	}

	// A table without stream_seq, as before migration 3.
	if err := db.Conn.Exec(ctx, `CREATE TABLE processed_envelopes (organization_id String, end_device_id String,
		occurred_at DateTime, processed_at DateTime, data String) ENGINE = MergeTree() ORDER BY occurred_at`); err != nil {
		t.Fatal(err)
	}
	_, err = ponixclickhouse.NewEnvelopeWriter(ctx, db.Conn, ponixclickhouse.Table{})
	if !errors.As(err, &se) || strings.Join(se.MissingColumns, ",") != "stream_created_ns,stream_seq" {
		t.Fatalf("missing columns: err = %v, want a SchemaError naming stream_created_ns and stream_seq", err)
	}
	if !strings.Contains(err.Error(), "stream_seq") {
		t.Errorf("error %q does not name the column", err)
	}

	// A column whose type does not take the encoder's values.
	if err := db.Conn.Exec(ctx, "DROP TABLE processed_envelopes"); err != nil {
		t.Fatal(err)
	}
	if err := db.Conn.Exec(ctx, `CREATE TABLE processed_envelopes (organization_id String, end_device_id String,
		occurred_at DateTime, processed_at DateTime, data Int64, stream_created_ns UInt64, stream_seq UInt64) ENGINE = MergeTree() ORDER BY occurred_at`); err != nil {
		t.Fatal(err)
	}
	_, err = ponixclickhouse.NewEnvelopeWriter(ctx, db.Conn, ponixclickhouse.Table{})
	if !errors.As(err, &se) || se.Err == nil || !strings.Contains(err.Error(), "data") {
		t.Fatalf("type mismatch: err = %v, want a SchemaError about column data", err)
	}
	t.Logf("type mismatch: %v", err)

	// The right table: the writer is built, and a later check sees the table go.
	if err := db.Conn.Exec(ctx, "DROP TABLE processed_envelopes"); err != nil {
		t.Fatal(err)
	}
	createEnvelopeTable(t, db.Conn)
	w, err := ponixclickhouse.NewEnvelopeWriter(ctx, db.Conn, ponixclickhouse.Table{})
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, db.Conn); len(got) != 0 {
		t.Fatalf("the check wrote %d rows", len(got))
	}
	if err := db.Conn.Exec(ctx, "RENAME TABLE processed_envelopes TO processed_envelopes_away"); err != nil {
		t.Fatal(err)
	}
	if err := w.CheckSchema(ctx); !errors.As(err, &se) || !se.TableMissing {
		t.Fatalf("after the rename: CheckSchema = %v, want TableMissing", err)
	}
}

// A MATERIALIZED column computed from data makes the server refuse some rows: the error says
// that the data (a record), not the sink, may be at fault, and the rows without it are stored.
func TestServerRefusingOneRowIsADataFault(t *testing.T) {
	db := srv.NewDatabase(t)
	ctx := t.Context()
	if err := db.Conn.Exec(ctx, `CREATE TABLE processed_envelopes (
		organization_id String, end_device_id String, occurred_at DateTime, processed_at DateTime,
		data String, stream_created_ns UInt64, stream_seq UInt64,
		temp Float64 MATERIALIZED toFloat64(visitParamExtractRaw(data, 'temp'))
	) ENGINE = ReplacingMergeTree() ORDER BY (organization_id, occurred_at, end_device_id, stream_seq)`); err != nil {
		t.Fatal(err)
	}
	w, err := ponixclickhouse.NewEnvelopeWriter(ctx, db.Conn, ponixclickhouse.Table{})
	if err != nil {
		t.Fatal(err)
	}
	bad := envelope(t, 2)
	bad.Data.Fields["temp"] = structpb.NewStringValue("hot")
	err = w.Write(ctx, rows(envelope(t, 0), envelope(t, 1), bad))
	if c := ponixclickhouse.Classify(err); c != ponixclickhouse.ClassData {
		t.Fatalf("err = %v: class %q, want data", err, c)
	}
	var rf interface{ RecordFault() bool }
	if !errors.As(err, &rf) || !rf.RecordFault() {
		t.Errorf("err = %v is not a record fault", err)
	}
	t.Logf("server refused the batch: %v", err)
	if got := readAll(t, db.Conn); len(got) != 0 {
		t.Fatalf("%d rows stored from the refused batch", len(got))
	}
	if err := w.Write(ctx, rows(envelope(t, 0), envelope(t, 1))); err != nil {
		t.Fatalf("the good rows alone: %v", err)
	}
}

// that goes away, whatever way the server was started.
type proxy struct {
	l      net.Listener
	mu     sync.Mutex
	conns  []net.Conn
	closed bool
}

func startProxy(t *testing.T, target string) *proxy {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{l: l}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			if p.closed { // closed while dialling: close did not see this connection
				p.mu.Unlock()
				c.Close()
				s.Close()
				continue
			}
			p.conns = append(p.conns, c, s)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(s, c); s.Close() }()
			go func() { _, _ = io.Copy(c, s); c.Close() }()
		}
	}()
	t.Cleanup(p.close)
	return p
}

func (p *proxy) addr() string { return p.l.Addr().String() }

func (p *proxy) close() {
	p.l.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

var _ = chtest.ModeProcess

// A redelivered message stored twice (same stream sequence) is one row to a FINAL query, and
// collapses for good when the parts merge; a different sequence is a different row.
