//go:build integration

package main_test

import (
	"context"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	envelopev1 "buf.build/gen/go/ponix/ponix/protocolbuffers/go/envelope/v1"
	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/ponix-go/ponix/migrations"
	"github.com/ponix-go/ponix/ponixnats"
	"github.com/ponix-go/ponix/ponixnats/natstest"
)

// temperatureColumn is a migration a user might add: a column computed from data at insert
// time. ClickHouse refuses a block holding a row whose temperature is not a number — a record
// only the server rejects.
const temperatureColumn = `-- +goose NO TRANSACTION
-- +goose Up
ALTER TABLE processed_envelopes ADD COLUMN temperature Float64 MATERIALIZED
    toFloat64(if(visitParamHas(data, 'temperature'), visitParamExtractRaw(data, 'temperature'), '0'));

-- +goose Down
ALTER TABLE processed_envelopes DROP COLUMN temperature;
`

// migrationsWithTemperature writes the embedded migrations plus temperatureColumn into a
// directory for PONIX_CLICKHOUSE_MIGRATIONS_DIR.
func migrationsWithTemperature(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	err := fs.WalkDir(migrations.FS(), ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(migrations.FS(), path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, filepath.Base(path)), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "29990101000000_temperature_column.sql"), []byte(temperatureColumn), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Bad records among 20,000 good ones, in the same batches: rows only the server refuses (a
// temperature that is not a number, for a MATERIALIZED column) and rows the encoder refuses
// (NaN). Bisecting a refused batch dead-letters exactly the bad records, each with an error
// naming its message, and stores every good one exactly once.
func TestFaultBadRecordsAmongGoodOnesAreBisected(t *testing.T) {
	t.Parallel()
	const seed = 209
	db := chSrv.NewDatabase(t)
	nsrv := natstest.New(t)
	ensureStream(t, nsrv.URL(), 1)
	want := envelopes(faultN, seed)

	rnd := rand.New(rand.NewPCG(seed, 2))
	var bad []*envelopev1.ProcessedEnvelope
	for i := range 36 {
		e := proto.Clone(want[rnd.IntN(len(want))]).(*envelopev1.ProcessedEnvelope)
		e.EndDeviceId = "bad-" + strconv.Itoa(i)
		if i%6 == 5 {
			e.Data.Fields["temperature"] = structpb.NewNumberValue(math.NaN()) // the encoder refuses it
		} else {
			e.Data.Fields["temperature"] = structpb.NewStringValue("hot") // only the server refuses it
		}
		bad = append(bad, e)
	}
	// Interleave: each bad record goes into a random chunk of 500.
	all := append([]*envelopev1.ProcessedEnvelope(nil), want...)
	for _, b := range bad {
		i := rnd.IntN(len(all))
		all = append(all[:i], append([]*envelopev1.ProcessedEnvelope{b}, all[i:]...)...)
	}

	env := faultEnv(t, db, nsrv.URL())
	env["PONIX_CLICKHOUSE_MIGRATIONS_DIR"] = migrationsWithTemperature(t)
	s := startService(t, env)
	pub := startPublisher(t, nsrv.URL(), all, 500, 50*time.Millisecond)
	pub.wait(t, 120*time.Second)
	f := figures{scenario: "bad-records-bisected", published: len(want)}
	f.recovery = waitFinal(t, db.Conn, uint64(len(want)), 120*time.Second, s)
	waitSettled(t, nsrv.URL(), 60*time.Second, s) // every good record acked, every bad one dead-lettered and terminated
	stopService(t, s)

	checkExact(t, db.Conn, want, seed, &f)
	dlq := dlqMessages(t, nsrv.URL())
	f.deadLettered = len(dlq)
	got := map[string]bool{}
	for _, m := range dlq {
		subj := m.Header.Get(ponixnats.HeaderOriginalSubject)
		id := strings.TrimPrefix(subj, "processed_envelopes.")
		got[id] = true
		reason, cause := m.Header.Get(ponixnats.HeaderDLQReason), m.Header.Get(ponixnats.HeaderDLQError)
		if !strings.HasPrefix(id, "bad-") {
			t.Errorf("good envelope %s dead-lettered: %s", id, cause)
			continue
		}
		n, _ := strconv.Atoi(strings.TrimPrefix(id, "bad-"))
		wantCause := "Cannot parse" // the server's own words
		if n%6 == 5 {
			wantCause = "NaN"
		}
		seq := m.Header.Get(ponixnats.HeaderOriginalSequence)
		if reason != string(ponixnats.ReasonRejected) || !strings.Contains(cause, wantCause) ||
			!strings.Contains(cause, subj+" (stream sequence "+seq+")") || strings.Contains(cause, "row ") {
			t.Errorf("%s: reason %q, error %q; want rejected, naming the message and %q", id, reason, cause, wantCause)
		}
	}
	for _, b := range bad {
		if !got[b.GetEndDeviceId()] {
			t.Errorf("bad record %s not dead-lettered", b.GetEndDeviceId())
		}
	}
	if len(dlq) != len(bad) {
		t.Errorf("%d dead letters, want exactly the %d bad records", len(dlq), len(bad))
	}
	f.log(t)
}

var (
	_ = context.Background
	_ = nats.Connect
)
