//go:build integration

package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/pressly/goose/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	metricsv1 "github.com/ponix-go/ponix/examples/readings/proto/metrics/v1"
	"github.com/ponix-go/ponix/migrations"
	"github.com/ponix-go/ponix/ponixclickhouse/chtest"
	"github.com/ponix-go/ponix/ponixclickhouse/migrate"
	"github.com/ponix-go/ponix/ponixnats"
	"github.com/ponix-go/ponix/ponixnats/dlqadmin"
	"github.com/ponix-go/ponix/ponixnats/natstest"
)

// clickhouse is the ClickHouse server of this package's tests (see chtest for where it comes
// from: PONIX_TEST_CLICKHOUSE_ADDR, a container, or the local clickhouse-server binary).
var clickhouse *chtest.Server

func TestMain(m *testing.M) {
	srv, err := chtest.Start(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	clickhouse = srv
	code := m.Run()
	_ = srv.Close()
	os.Exit(code)
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// base is the time of the first test reading; reading i is measured i seconds later.
var base = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func testReading(i int) *metricsv1.Reading {
	return &metricsv1.Reading{
		SensorId: fmt.Sprintf("sensor-%02d", i%20),
		At:       timestamppb.New(base.Add(time.Duration(i) * time.Second)),
		Value:    float64(i) / 4,
		Unit:     "celsius",
	}
}

// publish publishes msgs (subject → payload pairs) and waits for the stream to store them.
func publish(t *testing.T, js jetstream.JetStream, msgs []*nats.Msg) {
	t.Helper()
	futures := make([]jetstream.PubAckFuture, 0, len(msgs))
	for _, m := range msgs {
		f, err := js.PublishMsgAsync(m)
		if err != nil {
			t.Fatal(err)
		}
		futures = append(futures, f)
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		t.Fatal("publishing took longer than 30s")
	}
	for _, f := range futures {
		select {
		case err := <-f.Err():
			t.Fatalf("publish to %s: %v", f.Msg().Subject, err)
		case <-f.Ok():
		}
	}
}

func readingMsgs(t *testing.T, from, to int) []*nats.Msg {
	t.Helper()
	var msgs []*nats.Msg
	for i := from; i < to; i++ {
		r := testReading(i)
		b, err := proto.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, &nats.Msg{Subject: streamName + "." + r.GetSensorId(), Data: b})
	}
	return msgs
}

// The service end to end against a real JetStream and a real ClickHouse: a backlog published
// before it starts and readings published while it runs are each in the table exactly once; a
// message that is not a Reading and a Reading that is not valid end in the dead-letter stream,
// not in the table; a stop leaves nothing pending or unacknowledged.
func TestReadingsEndToEnd(t *testing.T) {
	const backlog, live = 2500, 500
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ns := natstest.New(t)
	db := clickhouse.NewDatabase(t)

	nc, err := nats.Connect(ns.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	// The producer's side: the stream exists before the service does (EnsureStream is
	// idempotent; the service calls it too).
	if _, err := ponixnats.EnsureStream(ctx, js, ponixnats.StreamConfig{Name: streamName}); err != nil {
		t.Fatal(err)
	}
	msgs := readingMsgs(t, 0, backlog/2)
	undecodable := &nats.Msg{Subject: streamName + ".broken", Data: []byte("\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff not a reading")}
	bad, _ := proto.Marshal(&metricsv1.Reading{SensorId: "sensor-nan", At: timestamppb.New(base), Value: math.NaN()})
	invalid := &nats.Msg{Subject: streamName + ".sensor-nan", Data: bad}
	msgs = append(msgs, undecodable, invalid)
	msgs = append(msgs, readingMsgs(t, backlog/2, backlog)...)
	publish(t, js, msgs)

	cfg := config{
		NATSURL:            ns.URL(),
		ClickHouseAddr:     db.Config.Addr,
		ClickHouseDatabase: db.Name,
		ClickHouseUser:     db.Config.Username,
		ClickHousePassword: db.Config.Password,
		BatchSize:          1000,
		BatchWait:          200 * time.Millisecond,
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- run(runCtx, cfg, testLogger(t)) }()

	// Readings published while the service runs.
	publish(t, js, readingMsgs(t, backlog, backlog+live))
	const total = backlog + live

	var stored uint64
	var dead dlqadmin.Summary
	for deadline := time.Now().Add(2 * time.Minute); ; {
		select {
		case err := <-done:
			t.Fatalf("the service stopped by itself: %v", err)
		default:
		}
		if err := db.Conn.QueryRow(ctx, "SELECT count() FROM readings FINAL").Scan(&stored); err != nil {
			t.Logf("count: %v", err) // the table appears when the service has migrated
		}
		if dls, err := dlqadmin.Open(ctx, js, streamName+"_dlq"); err == nil {
			if dead, err = dls.Summary(ctx, dlqadmin.Filter{}); err != nil {
				t.Fatal(err)
			}
		}
		if stored == total && dead.Total == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 2 minutes: %d of %d readings stored, %d dead letters (want 2)", stored, total, dead.Total)
		}
		time.Sleep(200 * time.Millisecond)
	}

	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run after a stop: %v; want nil", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the service did not stop within a minute of its context's end")
	}

	// Every reading, exactly once, with its values.
	rows, err := db.Conn.Query(ctx, "SELECT sensor_id, at, value, unit FROM readings FINAL")
	if err != nil {
		t.Fatal(err)
	}
	seen := make([]int, total)
	for rows.Next() {
		var (
			sensor, unit string
			at           time.Time
			value        float64
		)
		if err := rows.Scan(&sensor, &at, &value, &unit); err != nil {
			t.Fatal(err)
		}
		i := int(value * 4)
		want := testReading(i)
		if i < 0 || i >= total || sensor != want.GetSensorId() || !at.Equal(want.GetAt().AsTime()) || unit != want.GetUnit() {
			t.Errorf("row %s %s %v %s is not one of the readings published", sensor, at.UTC().Format(time.RFC3339), value, unit)
			continue
		}
		seen[i]++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rows.Close()
	for i, n := range seen {
		if n != 1 {
			t.Errorf("reading %d is in the table %d times; want once", i, n)
		}
	}

	// The two messages that could never be stored are dead letters, with the reason.
	if dead.ByReason[ponixnats.ReasonDecode] != 1 || dead.BySubject[undecodable.Subject] < 1 ||
		dead.ByReason[ponixnats.ReasonInvalid] != 1 || dead.BySubject[invalid.Subject] != 1 {
		t.Errorf("dead letters by reason %v, by subject %v; want one %s from %s and one %s from %s",
			dead.ByReason, dead.BySubject, ponixnats.ReasonDecode, undecodable.Subject, ponixnats.ReasonInvalid, invalid.Subject)
	}

	// Nothing left behind: every message was acknowledged (stored, or terminated after its
	// dead-lettering).
	cons, err := js.Consumer(ctx, streamName, durableName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.NumPending != 0 || info.NumAckPending != 0 || info.AckFloor.Stream != uint64(total+2) {
		t.Errorf("consumer after the stop: %d pending, %d awaiting an ack, ack floor %d; want 0, 0, %d",
			info.NumPending, info.NumAckPending, info.AckFloor.Stream, total+2)
	}
}

// The example's migrations and Ponix's (github.com/ponix-go/ponix/migrations) share one
// database in either order: each set keeps its history in its own goose version table, so
// neither sees the other's versions, and each lock table is its own.
func TestMigrationsShareADatabaseWithPonix(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	logger := testLogger(t)
	ponixUp := func(t *testing.T, db *chtest.Database) {
		t.Helper()
		if _, err := migrate.Up(ctx, db.DB, migrations.FS(), migrate.WithLogger(logger)); err != nil {
			t.Fatalf("Ponix's migrations: %v", err)
		}
	}
	readingsUp := func(t *testing.T, db *chtest.Database) {
		t.Helper()
		if _, err := migrate.Up(ctx, db.DB, schema(), migrate.WithApplication(application), migrate.WithLogger(logger)); err != nil {
			t.Fatalf("the example's migrations: %v", err)
		}
	}
	for _, tc := range []struct {
		name  string
		order []func(*testing.T, *chtest.Database)
	}{
		{"Ponix first", []func(*testing.T, *chtest.Database){ponixUp, readingsUp}},
		{"readings first", []func(*testing.T, *chtest.Database){readingsUp, ponixUp}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := clickhouse.NewDatabase(t)
			for _, up := range tc.order {
				up(t, db)
			}
			// Again, in the other order: nothing left to apply, nothing failing.
			for _, up := range slices.Backward(tc.order) {
				up(t, db)
			}

			ponixStatus, err := migrate.Status(ctx, db.DB, migrations.FS(), migrate.WithLogger(logger))
			if err != nil {
				t.Fatal(err)
			}
			readingsStatus, err := migrate.Status(ctx, db.DB, schema(),
				migrate.WithApplication(application), migrate.WithLogger(logger))
			if err != nil {
				t.Fatal(err)
			}
			for _, st := range append(ponixStatus, readingsStatus...) {
				if st.State != goose.StateApplied {
					t.Errorf("migration %s is %s; want applied", st.Source.Path, st.State)
				}
			}
			if len(ponixStatus) == 0 || len(readingsStatus) == 0 {
				t.Fatalf("status lists %d Ponix and %d example migrations", len(ponixStatus), len(readingsStatus))
			}

			// Each history holds its own versions only.
			versions := func(table string) []int64 {
				t.Helper()
				rows, err := db.Conn.Query(ctx, "SELECT version_id FROM "+table+" WHERE version_id > 0 ORDER BY version_id")
				if err != nil {
					t.Fatal(err)
				}
				defer rows.Close()
				var vs []int64
				for rows.Next() {
					var v int64
					if err := rows.Scan(&v); err != nil {
						t.Fatal(err)
					}
					vs = append(vs, v)
				}
				return vs
			}
			var wantPonix, wantReadings []int64
			for _, st := range ponixStatus {
				wantPonix = append(wantPonix, st.Source.Version)
			}
			for _, st := range readingsStatus {
				wantReadings = append(wantReadings, st.Source.Version)
			}
			if got := versions(migrate.DefaultVersionTable); !slices.Equal(got, wantPonix) {
				t.Errorf("%s holds versions %v; want Ponix's %v", migrate.DefaultVersionTable, got, wantPonix)
			}
			if got := versions(application + "_goose_db_version"); !slices.Equal(got, wantReadings) {
				t.Errorf("%s_goose_db_version holds versions %v; want the example's %v", application, got, wantReadings)
			}

			// Both tables are there, side by side.
			var tables []string
			rows, err := db.Conn.Query(ctx, "SELECT name FROM system.tables WHERE database = currentDatabase() AND name IN ('processed_envelopes', 'readings') ORDER BY name")
			if err != nil {
				t.Fatal(err)
			}
			for rows.Next() {
				var n string
				if err := rows.Scan(&n); err != nil {
					t.Fatal(err)
				}
				tables = append(tables, n)
			}
			rows.Close()
			if !slices.Equal(tables, []string{"processed_envelopes", "readings"}) {
				t.Errorf("tables %v; want processed_envelopes and readings", tables)
			}
		})
	}

	// Why the example's migrations need their own tables: in goose's default version table,
	// after Ponix's, the records are another set's, and migrate refuses to mix them.
	t.Run("one version table for both collides", func(t *testing.T) {
		db := clickhouse.NewDatabase(t)
		ponixUp(t, db)
		if _, err := migrate.Up(ctx, db.DB, schema(), migrate.WithLogger(logger)); !errors.Is(err, migrate.ErrForeignVersions) {
			t.Fatalf("the example's migrations in Ponix's version table: err = %v, want migrate.ErrForeignVersions", err)
		} else {
			t.Logf("as expected: %v", err)
		}
		var n uint64
		if err := db.Conn.QueryRow(ctx, "SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'readings'").Scan(&n); err != nil || n != 0 {
			t.Errorf("readings tables: %d (%v); want none", n, err)
		}
	})
}
