//go:build integration

package integration

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	envelopev1 "buf.build/gen/go/ponix/ponix/protocolbuffers/go/envelope/v1"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ponix-go/ponix/migrations"
	"github.com/ponix-go/ponix/ponixclickhouse"
	"github.com/ponix-go/ponix/ponixclickhouse/chtest"
	"github.com/ponix-go/ponix/ponixclickhouse/migrate"
)

func scalar[T any](t *testing.T, d *chtest.Database, q string) T {
	t.Helper()
	var v T
	if err := d.Conn.QueryRow(t.Context(), q).Scan(&v); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return v
}

func showCreate(t *testing.T, d *chtest.Database) string {
	return scalar[string](t, d, "SHOW CREATE TABLE processed_envelopes")
}

// insertOldSchema writes n rows into the step-1 table (no organization_id).
func insertOldSchema(t *testing.T, d *chtest.Database, n int) {
	t.Helper()
	b, err := d.Conn.PrepareBatch(t.Context(), "INSERT INTO processed_envelopes (end_device_id, occurred_at, processed_at, data)")
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2025, 10, 31, 23, 59, 59, 0, time.UTC)
	for i := range n {
		if err := b.Append(fmt.Sprintf("old-%04d", i), at.Add(time.Duration(i)*time.Second), at, fmt.Sprintf(`{"i":%d}`, i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Send(); err != nil {
		t.Fatal(err)
	}
}

func TestUpFromEmptyGivesUpstreamSchemaAndRerunIsNoop(t *testing.T) {
	d := srv.NewDatabase(t)
	res, err := migrate.Up(t.Context(), d.DB, migrations.FS())
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 4 {
		t.Fatalf("applied %d migrations, want 4", len(res))
	}
	ddl := showCreate(t, d)
	for _, want := range []string{"organization_id String", "end_device_id String", "occurred_at DateTime",
		"processed_at DateTime", "data String", "stream_created_ns UInt64", "stream_seq UInt64", "ReplacingMergeTree", "PARTITION BY toYYYYMM(occurred_at)",
		"ORDER BY (organization_id, occurred_at, end_device_id, stream_created_ns, stream_seq)"} {
		if !strings.Contains(ddl, want) {
			t.Errorf("schema lacks %q:\n%s", want, ddl)
		}
	}
	if strings.Contains(ddl, d.Name+".processed_envelopes_") {
		t.Errorf("leftover table name in %s", ddl)
	}
	res, err = migrate.Up(t.Context(), d.DB, migrations.FS())
	if err != nil || len(res) != 0 {
		t.Fatalf("re-run applied %d (err %v), want 0", len(res), err)
	}
	if n := scalar[uint64](t, d, "SELECT count() FROM system.tables WHERE database = currentDatabase() AND name LIKE 'processed_envelopes%'"); n != 1 {
		t.Fatalf("%d processed_envelopes* tables, want 1", n)
	}

	// The envelope writer works against the migrated table.
	w, err := ponixclickhouse.NewEnvelopeWriter(t.Context(), d.Conn, ponixclickhouse.Table{})
	if err != nil {
		t.Fatal(err)
	}
	data, _ := structpb.NewStruct(map[string]any{"t": 21.5})
	now := timestamppb.New(time.Date(2025, 11, 5, 10, 0, 0, 0, time.UTC))
	if err := w.Write(t.Context(), []ponixclickhouse.EnvelopeRow{{Envelope: &envelopev1.ProcessedEnvelope{
		OrganizationId: "org", EndDeviceId: "dev", OccurredAt: now, ProcessedAt: now, Data: data,
	}, StreamSeq: 1}}); err != nil {
		t.Fatal(err)
	}
	if got := scalar[string](t, d, "SELECT data FROM processed_envelopes WHERE organization_id = 'org'"); got != `{"t":21.5}` {
		t.Fatalf("data = %s", got)
	}
}

func TestRowsSurviveRekeyDownAndUp(t *testing.T) {
	d := srv.NewDatabase(t)
	ctx := t.Context()
	m, err := migrate.New(d.DB, migrations.FS())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.UpTo(ctx, migrations.VersionCreate); err != nil {
		t.Fatal(err)
	}
	if ddl := showCreate(t, d); !strings.Contains(ddl, "ORDER BY (occurred_at, end_device_id)") || strings.Contains(ddl, "organization_id") {
		t.Fatalf("step 1 schema:\n%s", ddl)
	}
	insertOldSchema(t, d, 500) // rows in two months
	if _, err := m.Up(ctx); err != nil {
		t.Fatal(err)
	}
	if n := scalar[uint64](t, d, "SELECT count() FROM processed_envelopes WHERE organization_id = '' AND data = concat('{\"i\":', toString(toUInt32(substring(end_device_id, 5))), '}')"); n != 500 {
		t.Fatalf("%d of 500 old rows survived the re-key intact", n)
	}
	// Rows written after the re-key carry an organization; Down keeps every row.
	w, err := ponixclickhouse.NewEnvelopeWriter(t.Context(), d.Conn, ponixclickhouse.Table{})
	if err != nil {
		t.Fatal(err)
	}
	ts := timestamppb.New(time.Date(2025, 11, 5, 10, 0, 0, 0, time.UTC))
	var envs []ponixclickhouse.EnvelopeRow
	for i := range 50 {
		envs = append(envs, ponixclickhouse.EnvelopeRow{
			Envelope:  &envelopev1.ProcessedEnvelope{OrganizationId: "acme", EndDeviceId: fmt.Sprintf("new-%d", i), OccurredAt: ts, ProcessedAt: ts},
			StreamSeq: uint64(i + 1),
		})
	}
	if err := w.Write(ctx, envs); err != nil {
		t.Fatal(err)
	}
	if _, err := m.DownTo(ctx, migrations.VersionCreate); err != nil {
		t.Fatal(err)
	}
	if ddl := showCreate(t, d); strings.Contains(ddl, "organization_id") {
		t.Fatalf("organization_id still there after Down:\n%s", ddl)
	}
	if n := scalar[uint64](t, d, "SELECT count() FROM processed_envelopes"); n != 550 {
		t.Fatalf("%d rows after Down, want 550", n)
	}
	if _, err := m.Up(ctx); err != nil {
		t.Fatal(err)
	}
	if n := scalar[uint64](t, d, "SELECT count() FROM processed_envelopes"); n != 550 {
		t.Fatalf("%d rows after Up again, want 550", n)
	}
	if v, err := m.Version(ctx); err != nil || v != migrations.VersionIncarnation {
		t.Fatalf("version %d, %v", v, err)
	}
	// All the way down removes the table.
	if _, err := m.DownTo(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if n := scalar[uint64](t, d, "SELECT count() FROM system.tables WHERE database = currentDatabase() AND name LIKE 'processed_envelopes%'"); n != 0 {
		t.Fatalf("%d tables left after DownTo(0)", n)
	}
}

func TestTwoConcurrentMigratorsCopyRowsOnce(t *testing.T) {
	d := srv.NewDatabase(t)
	ctx := t.Context()
	if _, err := migrate.DownTo(ctx, d.DB, migrations.FS(), 0); err != nil {
		t.Fatal(err)
	}
	m, err := migrate.New(d.DB, migrations.FS())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.UpTo(ctx, migrations.VersionCreate); err != nil {
		t.Fatal(err)
	}
	insertOldSchema(t, d, 300)
	var wg sync.WaitGroup
	applied := make([]int, 2)
	errs := make([]error, 2)
	for i := range 2 {
		wg.Go(func() {
			// Each instance has its own connection pool, like two processes.
			db := ponixclickhouse.OpenDB(d.Config)
			defer db.Close()
			res, err := migrate.Up(context.Background(), db, migrations.FS(), migrate.WithLockOwner(fmt.Sprintf("instance-%d", i)))
			applied[i], errs[i] = len(res), err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("instance %d: %v", i, err)
		}
	}
	if applied[0]+applied[1] != 3 {
		t.Fatalf("instances applied %v, want the re-key, the dedup and the incarnation steps exactly once in total", applied)
	}
	if n := scalar[uint64](t, d, fmt.Sprintf("SELECT count() FROM goose_db_version WHERE version_id = %d", migrations.VersionRekey)); n != 1 {
		t.Fatalf("re-key recorded %d times", n)
	}
	if n := scalar[uint64](t, d, "SELECT count() FROM processed_envelopes"); n != 300 {
		t.Fatalf("%d rows, want 300 (copied once)", n)
	}
}

// After the dedup step a redelivered message (same stream sequence) stored twice is one row
// to a FINAL query, and rows of the old schema keep their content under a content-hash key.
func TestRedeliveredRowsCollapseAfterDedupStep(t *testing.T) {
	d := srv.NewDatabase(t)
	ctx := t.Context()
	m, err := migrate.New(d.DB, migrations.FS())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.UpTo(ctx, migrations.VersionCreate); err != nil {
		t.Fatal(err)
	}
	insertOldSchema(t, d, 200)
	if _, err := m.Up(ctx); err != nil {
		t.Fatal(err)
	}
	if n := scalar[uint64](t, d, "SELECT count() FROM processed_envelopes"); n != 200 {
		t.Fatalf("%d old rows after the dedup step, want 200 (copied twice, collapsed once)", n)
	}
	if n := scalar[uint64](t, d, "SELECT uniqExact(stream_seq) FROM processed_envelopes"); n != 200 {
		t.Fatalf("old rows got %d distinct content keys, want 200", n)
	}
	w, err := ponixclickhouse.NewEnvelopeWriter(t.Context(), d.Conn, ponixclickhouse.Table{})
	if err != nil {
		t.Fatal(err)
	}
	ts := timestamppb.New(time.Date(2025, 12, 5, 10, 0, 0, 0, time.UTC))
	row := ponixclickhouse.EnvelopeRow{
		Envelope:  &envelopev1.ProcessedEnvelope{OrganizationId: "acme", EndDeviceId: "dev-1", OccurredAt: ts, ProcessedAt: ts},
		StreamSeq: 42,
	}
	other := row
	other.StreamSeq = 43                                                         // another message with the same content is another reading
	for _, batch := range [][]ponixclickhouse.EnvelopeRow{{row, other}, {row}} { // the second is a redelivery
		if err := w.Write(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	if n := scalar[uint64](t, d, "SELECT count() FROM processed_envelopes FINAL WHERE organization_id = 'acme'"); n != 2 {
		t.Fatalf("FINAL sees %d acme rows, want 2 (sequence 42 once, 43)", n)
	}
}

// After the incarnation step, the same stream sequence of two incarnations of a stream (deleted
// and created again) is two rows, while a redelivery within one incarnation still collapses;
// rows from before the step keep their content and stream_seq.
func TestIncarnationStepKeepsRowsAndSeparatesStreams(t *testing.T) {
	d := srv.NewDatabase(t)
	ctx := t.Context()
	m, err := migrate.New(d.DB, migrations.FS())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.UpTo(ctx, migrations.VersionDedup); err != nil {
		t.Fatal(err)
	}
	b, err := d.Conn.PrepareBatch(ctx, "INSERT INTO processed_envelopes (organization_id, end_device_id, occurred_at, processed_at, data, stream_seq)")
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2025, 12, 31, 23, 0, 0, 0, time.UTC)
	for i := range 100 {
		if err := b.Append("org", fmt.Sprintf("dev-%d", i), at.Add(time.Duration(i)*time.Minute), at, "{}", uint64(i+1)); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Send(); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Up(ctx); err != nil {
		t.Fatal(err)
	}
	if n := scalar[uint64](t, d, "SELECT count() FROM processed_envelopes FINAL WHERE stream_created_ns = 0 AND stream_seq BETWEEN 1 AND 100"); n != 100 {
		t.Fatalf("%d of 100 rows kept with their stream_seq and stream_created_ns 0", n)
	}
	w, err := ponixclickhouse.NewEnvelopeWriter(ctx, d.Conn, ponixclickhouse.Table{})
	if err != nil {
		t.Fatal(err)
	}
	ts := timestamppb.New(time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC))
	first, second := time.Date(2026, 12, 1, 0, 0, 0, 1, time.UTC), time.Date(2026, 12, 2, 0, 0, 0, 2, time.UTC)
	env := &envelopev1.ProcessedEnvelope{OrganizationId: "acme", EndDeviceId: "dev-1", OccurredAt: ts, ProcessedAt: ts}
	for _, batch := range [][]ponixclickhouse.EnvelopeRow{
		{{Envelope: env, StreamSeq: 1, StreamCreated: first}},
		{{Envelope: env, StreamSeq: 1, StreamCreated: first}},  // a redelivery
		{{Envelope: env, StreamSeq: 1, StreamCreated: second}}, // the stream was created again
	} {
		if err := w.Write(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	if n := scalar[uint64](t, d, "SELECT count() FROM processed_envelopes FINAL WHERE organization_id = 'acme'"); n != 2 {
		t.Fatalf("FINAL sees %d acme rows, want 2 (one per stream incarnation)", n)
	}
	if n := scalar[uint64](t, d, fmt.Sprintf("SELECT count() FROM processed_envelopes FINAL WHERE stream_created_ns = %d", second.UnixNano())); n != 1 {
		t.Fatalf("stream_created_ns not stored: %d rows with the second incarnation", n)
	}
	// Down keeps every row; under the old key the two incarnations' rows are one.
	if _, err := m.DownTo(ctx, migrations.VersionDedup); err != nil {
		t.Fatal(err)
	}
	if n := scalar[uint64](t, d, "SELECT count() FROM processed_envelopes FINAL"); n != 101 {
		t.Fatalf("%d rows after Down, want 101", n)
	}
}
