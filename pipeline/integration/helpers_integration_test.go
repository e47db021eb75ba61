//go:build integration

package integration

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	envelopev1 "buf.build/gen/go/ponix/ponix/protocolbuffers/go/envelope/v1"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ponix-go/ponix/pipeline"
	"github.com/ponix-go/ponix/ponixclickhouse"
	"github.com/ponix-go/ponix/ponixclickhouse/chtest"
	"github.com/ponix-go/ponix/ponixclickhouse/migrate"
	"github.com/ponix-go/ponix/ponixnats"
	"github.com/ponix-go/ponix/ponixnats/natstest"
)

// One ClickHouse for the package; a test that stops its server starts its own.
var srv *chtest.Server

func TestMain(m *testing.M) { os.Exit(chtest.Main(m, &srv)) }

// Names of the test pipeline: its stream (subjects events.<device>), durable consumer, table
// and migration set.
const (
	streamName  = "events"
	durableName = "events-clickhouse"
	tableName   = "events"
	application = "pipetest"
)

// waitLimit bounds every wait of these tests for something to happen.
const waitLimit = 30 * time.Second

// event is the test pipeline's row: an envelope with its place in the stream.
type event struct {
	Env     *envelopev1.ProcessedEnvelope
	Created uint64
	Seq     uint64
}

// eventEncoder returns the encoder of the events table's columns. An envelope without
// occurred_at is refused alone (a *ponixclickhouse.RowError), so that the pipeline
// dead-letters it with reason "rejected".
func eventEncoder() ponixclickhouse.Encoder[event] {
	return ponixclickhouse.Columns(
		ponixclickhouse.Column("end_device_id", func(e event) string { return e.Env.GetEndDeviceId() }),
		ponixclickhouse.Column("organization_id", func(e event) string { return e.Env.GetOrganizationId() }),
		ponixclickhouse.ColumnFunc("occurred_at", func(e event) (time.Time, error) {
			if e.Env.GetOccurredAt() == nil {
				return time.Time{}, errors.New("no occurred_at")
			}
			return e.Env.GetOccurredAt().AsTime().UTC().Truncate(time.Second), nil
		}),
		ponixclickhouse.Column("stream_created_ns", func(e event) uint64 { return e.Created }),
		ponixclickhouse.Column("stream_seq", func(e event) uint64 { return e.Seq }),
	).Encoder()
}

// validEnvelope refuses an envelope without a device id: dead-lettered with reason "invalid".
func validEnvelope(e *envelopev1.ProcessedEnvelope) error {
	if e.GetEndDeviceId() == "" {
		return errors.New("end_device_id is empty")
	}
	return nil
}

// run is a pipeline running in a test against its own NATS server.
type run struct {
	t      *testing.T
	nc     *nats.Conn
	js     jetstream.JetStream
	p      *pipeline.Pipeline[*envelopev1.ProcessedEnvelope, event]
	ch     ponixclickhouse.Config
	cancel context.CancelFunc
	done   chan error
}

// newRun starts a NATS server and returns a run whose pipeline writes to database on ch's server
// (created by the pipeline when missing). edit, if set, changes the configuration first.
func newRun(t *testing.T, ch ponixclickhouse.Config, edit func(*pipeline.Config[*envelopev1.ProcessedEnvelope, event])) *run {
	t.Helper()
	ns := natstest.New(t)
	nc, err := nats.Connect(ns.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
	ch.Logger = slog.New(slog.DiscardHandler)
	cfg := pipeline.Config[*envelopev1.ProcessedEnvelope, event]{
		JetStream:  js,
		Stream:     ponixnats.StreamConfig{Name: streamName},
		Consumer:   ponixnats.ConsumerConfig{Durable: durableName, BatchSize: 100, MaxWait: 200 * time.Millisecond, DrainTimeout: 5 * time.Second},
		ClickHouse: ch,
		Table:      ponixclickhouse.Table{Name: tableName},
		Encoder:    eventEncoder,
		Decode:     pipeline.Proto(func() *envelopev1.ProcessedEnvelope { return new(envelopev1.ProcessedEnvelope) }, validEnvelope),
		Row: func(r pipeline.Record[*envelopev1.ProcessedEnvelope]) event {
			return event{Env: r.Value, Created: r.StreamCreatedNanos(), Seq: r.Seq}
		},
		Key:        pipeline.Key{StreamCreated: "stream_created_ns", StreamSeq: "stream_seq"},
		Migrations: pipeline.Migrations{FS: os.DirFS("testdata/migrations"), Options: []migrate.Option{migrate.WithApplication(application)}},
		Hold:       ponixnats.HoldConfig{MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second},
		Logger:     logger,
	}
	if edit != nil {
		edit(&cfg)
	}
	p, err := pipeline.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &run{t: t, nc: nc, js: js, p: p, ch: ch}
}

// start starts the pipeline (its stream exists when start returns) and runs it until the test
// ends; Run must then return nil.
func (r *run) start() {
	r.t.Helper()
	if err := r.p.Start(r.t.Context()); err != nil {
		r.t.Fatalf("Start: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel, r.done = cancel, make(chan error, 1)
	go func() { r.done <- r.p.Run(ctx) }()
	r.t.Cleanup(func() {
		r.stop()
		if err := r.p.Close(); err != nil {
			r.t.Errorf("Close: %v", err)
		}
	})
}

// stop ends Run and checks that it returned nil.
func (r *run) stop() {
	r.t.Helper()
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	select {
	case err := <-r.done:
		if err != nil {
			r.t.Errorf("Run: %v", err)
		}
	case <-time.After(waitLimit):
		r.t.Errorf("Run did not return within %s of its context's end", waitLimit)
	}
}

// envelope returns a valid envelope of device dev.
func envelope(dev string, i int) *envelopev1.ProcessedEnvelope {
	at := time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Second)
	return &envelopev1.ProcessedEnvelope{
		EndDeviceId: dev, OrganizationId: "org", OccurredAt: timestamppb.New(at), ProcessedAt: timestamppb.New(at),
	}
}

// publish publishes data on events.<dev> and returns its stream sequence.
func (r *run) publish(dev string, data []byte) uint64 {
	r.t.Helper()
	ack, err := r.js.Publish(r.t.Context(), streamName+"."+dev, data)
	if err != nil {
		r.t.Fatalf("publish: %v", err)
	}
	return ack.Sequence
}

// publishEnvelopes publishes n valid envelopes of device dev and returns their sequences.
func (r *run) publishEnvelopes(dev string, n int) []uint64 {
	r.t.Helper()
	seqs := make([]uint64, n)
	for i := range n {
		b, err := proto.Marshal(envelope(dev, i))
		if err != nil {
			r.t.Fatal(err)
		}
		seqs[i] = r.publish(dev, b)
	}
	return seqs
}

// waitFor waits until cond holds, polling; it fails the test after waitLimit with cond's last
// word on what it saw.
func waitFor(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, saw := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s; last seen: %s", what, waitLimit, saw)
		}
		<-tick.C
	}
}

// waitConsuming waits until every check of the pipeline holds: its migrations were applied,
// the table fits, no batch is held and fetching works.
func waitConsuming(t *testing.T, r *run) {
	t.Helper()
	waitFor(t, "the pipeline ready", func() (bool, string) {
		err := r.p.Ready(t.Context())
		return err == nil, fmt.Sprint(err)
	})
}

// startOnNewDatabase runs a pipeline into a database it creates, waits until it consumes, and
// returns it with a connection to the database.
func startOnNewDatabase(t *testing.T) (*run, driver.Conn) {
	t.Helper()
	ch := srv.Config(newDatabaseName(t))
	r := newRun(t, ch, nil)
	r.start()
	waitConsuming(t, r)
	return r, openDB(t, ch)
}

// openDB connects to the database of ch, created by the pipeline's migrations.
func openDB(t *testing.T, ch ponixclickhouse.Config) driver.Conn {
	t.Helper()
	conn, err := ponixclickhouse.Open(t.Context(), ch)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// seqs returns the stream sequences of the table's rows, in order, each as often as it is
// stored (FINAL: after de-duplication); an error when the table cannot be read.
func seqs(ctx context.Context, conn driver.Conn, final bool) ([]uint64, error) {
	q := "SELECT stream_seq FROM " + tableName
	if final {
		q += " FINAL"
	}
	rows, err := conn.Query(ctx, q+" ORDER BY stream_seq")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []uint64
	for rows.Next() {
		var s uint64
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// waitRows waits until the table holds exactly the rows of want (FINAL), and checks that no
// row is stored twice (raw).
func waitRows(t *testing.T, conn driver.Conn, want []uint64) {
	t.Helper()
	waitFor(t, fmt.Sprintf("the %d rows stored", len(want)), func() (bool, string) {
		got, err := seqs(t.Context(), conn, true)
		if err != nil {
			return false, err.Error()
		}
		return fmt.Sprint(got) == fmt.Sprint(want), fmt.Sprintf("%d rows %s", len(got), short(got))
	})
	raw, err := seqs(t.Context(), conn, false)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(raw) != fmt.Sprint(want) {
		t.Errorf("raw rows (no FINAL): %d %s, want %d %s: a message stored twice?", len(raw), short(raw), len(want), short(want))
	}
}

// short shows a list of sequences briefly.
func short(s []uint64) string {
	if len(s) <= 12 {
		return fmt.Sprint(s)
	}
	return fmt.Sprintf("%v … %v", s[:6], s[len(s)-6:])
}

// deadLetters returns the headers of the messages in the pipeline's dead-letter stream.
func (r *run) deadLetters() ([]nats.Header, error) {
	st, err := r.js.Stream(r.t.Context(), streamName+"_dlq")
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	info, err := st.Info(r.t.Context())
	if err != nil {
		return nil, err
	}
	var out []nats.Header
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := st.GetMsg(r.t.Context(), seq)
		if err != nil {
			return nil, err
		}
		out = append(out, m.Header)
	}
	return out, nil
}

// wantDeadLetters waits for the dead letters (original stream sequence → reason), and checks
// that there are no others.
func (r *run) wantDeadLetters(want map[uint64]ponixnats.Reason) {
	r.t.Helper()
	var got map[uint64]string
	waitFor(r.t, fmt.Sprintf("%d dead letters", len(want)), func() (bool, string) {
		hs, err := r.deadLetters()
		if err != nil {
			return false, err.Error()
		}
		got = map[uint64]string{}
		for _, h := range hs {
			var seq uint64
			_, _ = fmt.Sscan(h.Get(ponixnats.HeaderOriginalSequence), &seq)
			got[seq] = h.Get(ponixnats.HeaderDLQReason) + ": " + h.Get(ponixnats.HeaderDLQError)
		}
		return len(hs) >= len(want), fmt.Sprint(got)
	})
	if len(got) != len(want) {
		r.t.Errorf("dead letters %v, want %v", got, want)
	}
	for seq, reason := range want {
		if !strings.HasPrefix(got[seq], string(reason)+": ") {
			r.t.Errorf("message %d dead-lettered as %q, want reason %q", seq, got[seq], reason)
		}
	}
}

// newDatabaseName returns the name of a database that does not exist yet, dropped at cleanup.
func newDatabaseName(t *testing.T) string {
	t.Helper()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "pipe_" + hex.EncodeToString(b)
	t.Cleanup(func() {
		admin, err := ponixclickhouse.Open(context.Background(), srv.Config(""))
		if err != nil {
			t.Errorf("drop database %s: %v", name, err)
			return
		}
		defer admin.Close()
		if err := admin.Exec(context.Background(), "DROP DATABASE IF EXISTS `"+name+"`"); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	return name
}
