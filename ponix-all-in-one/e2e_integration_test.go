//go:build integration

package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	envelopev1 "buf.build/gen/go/ponix/ponix/protocolbuffers/go/envelope/v1"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ponix-go/ponix/ponixclickhouse"
	"github.com/ponix-go/ponix/ponixclickhouse/chserver"
	"github.com/ponix-go/ponix/ponixclickhouse/chtest"
	"github.com/ponix-go/ponix/ponixnats"
	"github.com/ponix-go/ponix/ponixnats/natstest"
)

var (
	binary string         // the ponix-all-in-one binary under test
	chSrv  *chtest.Server // one ClickHouse for the package; a fresh database per test
)

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "ponix-e2e-*")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	binary = filepath.Join(dir, "ponix-all-in-one")
	args := []string{"build", "-o", binary}
	if raceBuild {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, ".")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build ponix-all-in-one:", err)
		return 1
	}
	chSrv, err = chtest.Start(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer chSrv.Close()
	return m.Run()
}

// service is a running ponix-all-in-one subprocess.
type service struct {
	t    *testing.T
	cmd  *exec.Cmd
	logs *syncBuffer
	done chan struct{}
	err  error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// baseEnv is the configuration every test starts from: the test's database, a
// private data dir, short intervals.
func baseEnv(t *testing.T, db *chtest.Database) map[string]string {
	return map[string]string{
		"PONIX_DATA_DIR":              t.TempDir(),
		"PONIX_CLICKHOUSE_NATIVE_URL": db.Config.Addr,
		"PONIX_CLICKHOUSE_DATABASE":   db.Name,
		"PONIX_CLICKHOUSE_USERNAME":   nonEmpty(db.Config.Username, "default"),
		"PONIX_CLICKHOUSE_PASSWORD":   db.Config.Password,
		"PONIX_NATS_BATCH_WAIT_SECS":  "1",
		"PONIX_INTERVAL_SECS":         "1",
		"PONIX_STARTUP_TIMEOUT_SECS":  "20",
		"PONIX_SHUTDOWN_TIMEOUT_SECS": "10",
		"PONIX_LOG_LEVEL":             "info",
		"PONIX_HTTP_ADDR":             "127.0.0.1:0", // a free port: tests never clash on :8080
	}
}

func nonEmpty(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func startService(t *testing.T, env map[string]string) *service {
	t.Helper()
	cmd := exec.Command(binary)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	s := &service{t: t, cmd: cmd, logs: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = s.logs, s.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.err = cmd.Wait(); close(s.done) }()
	t.Cleanup(func() {
		select {
		case <-s.done:
		default:
			_ = cmd.Process.Kill()
			<-s.done
		}
		if t.Failed() {
			t.Logf("service logs:\n%s", s.logs.String())
		}
	})
	return s
}

// wait waits for the process to exit and returns its exit code.
func (s *service) wait(within time.Duration) int {
	s.t.Helper()
	select {
	case <-s.done:
		return s.cmd.ProcessState.ExitCode()
	case <-time.After(within):
		s.t.Fatalf("service did not exit within %s; logs:\n%s", within, s.logs.String())
		return -1
	}
}

// terminate sends SIGTERM and fails the test unless the service exits 0
// within 20 s.
func (s *service) terminate() {
	s.t.Helper()
	s.signal(syscall.SIGTERM)
	if code := s.wait(20 * time.Second); code != 0 {
		s.t.Fatalf("exit code %d after SIGTERM; logs:\n%s", code, s.logs.String())
	}
}

func (s *service) signal(sig syscall.Signal) {
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.t.Fatal(err)
	}
}

// count returns the rows of processed_envelopes and how many distinct
// end_device_ids they hold.
func count(t *testing.T, db *chtest.Database) (rows, distinct uint64) {
	t.Helper()
	err := db.Conn.QueryRow(t.Context(), "SELECT count(), uniqExact(end_device_id) FROM processed_envelopes").Scan(&rows, &distinct)
	if err != nil && !strings.Contains(err.Error(), "doesn't exist") {
		t.Fatal(err)
	}
	return rows, distinct
}

// waitRows polls until processed_envelopes holds at least n rows.
func waitRows(t *testing.T, db *chtest.Database, s *service, n uint64, within time.Duration) uint64 {
	t.Helper()
	var rows uint64
	waitFor(t, within, fmt.Sprintf("%d rows", n), func() bool {
		rows, _ = count(t, db)
		return rows >= n
	}, s)
	return rows
}

type row struct {
	org, device         string
	occurred, processed time.Time
	data                map[string]any
}

func readRows(t *testing.T, db *chtest.Database) map[string]row {
	t.Helper()
	return queryRows(t, db.Conn, "")
}

// queryRows reads the rows of processed_envelopes (with suffix appended to
// the query, e.g. "FINAL WHERE ...") by end_device_id; a device seen twice is
// a visible duplicate and fails the test.
func queryRows(t *testing.T, conn driver.Conn, suffix string) map[string]row {
	t.Helper()
	rs, err := conn.Query(context.Background(), "SELECT organization_id, end_device_id, occurred_at, processed_at, data FROM processed_envelopes "+suffix)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	out := map[string]row{}
	for rs.Next() {
		var r row
		var data string
		if err := rs.Scan(&r.org, &r.device, &r.occurred, &r.processed, &data); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(data), &r.data); err != nil {
			t.Fatalf("row %s: data %q is not JSON: %v", r.device, data, err)
		}
		if _, dup := out[r.device]; dup {
			t.Errorf("duplicate row for end_device_id %s", r.device)
		}
		out[r.device] = r
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// checkRow compares a stored row with the envelope that was published.
func checkRow(t *testing.T, r row, env *envelopev1.ProcessedEnvelope) {
	t.Helper()
	if r.org != env.GetOrganizationId() {
		t.Errorf("%s: organization_id %q, want %q", r.device, r.org, env.GetOrganizationId())
	}
	if r.occurred.Unix() != env.GetOccurredAt().GetSeconds() {
		t.Errorf("%s: occurred_at %v, want %v", r.device, r.occurred.UTC(), env.GetOccurredAt().AsTime())
	}
	if r.processed.Unix() != env.GetProcessedAt().GetSeconds() {
		t.Errorf("%s: processed_at %v, want %v", r.device, r.processed.UTC(), env.GetProcessedAt().AsTime())
	}
	b, err := json.Marshal(env.GetData().AsMap())
	if err != nil {
		t.Fatal(err)
	}
	var want map[string]any
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(r.data, want) {
		t.Errorf("%s: data %v, want %v", r.device, r.data, want)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// envelopes builds n envelopes with varied data, one end device each.
func envelopes(n int, seed uint64) []*envelopev1.ProcessedEnvelope {
	rnd := rand.New(rand.NewPCG(seed, seed))
	base := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	out := make([]*envelopev1.ProcessedEnvelope, n)
	for i := range out {
		occurred := base.Add(time.Duration(rnd.IntN(60*24*3600)) * time.Second)
		data, err := structpb.NewStruct(map[string]any{
			"temperature": float64(rnd.IntN(4000))/100 - 10,
			"humidity":    rnd.IntN(100),
			"status":      []string{"active", "idle", "ünïcødé \"quoted\" <tag>"}[rnd.IntN(3)],
			"ok":          rnd.IntN(2) == 0,
			"nothing":     nil,
			"readings":    []any{rnd.Float64(), rnd.IntN(1 << 30), "x"},
			"nested":      map[string]any{"level": map[string]any{"deep": i, "big": float64(1 << 60)}},
		})
		if err != nil {
			panic(err)
		}
		out[i] = &envelopev1.ProcessedEnvelope{
			EndDeviceId:    fmt.Sprintf("dev-%06d", i),
			OrganizationId: fmt.Sprintf("org-%d", i%10),
			OccurredAt:     timestamppb.New(occurred),
			ProcessedAt:    timestamppb.New(occurred.Add(time.Duration(rnd.IntN(5000)) * time.Millisecond)),
			Data:           data,
		}
	}
	return out
}

// readStream opens the JetStream store in dir with an embedded server and
// returns every envelope of the processed_envelopes stream by end_device_id.
func readStream(t *testing.T, storeDir string) map[string]*envelopev1.ProcessedEnvelope {
	t.Helper()
	srv := natstest.New(t, natstest.WithStoreDir(storeDir))
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	stream, err := js.Stream(t.Context(), "processed_envelopes")
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*envelopev1.ProcessedEnvelope{}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := stream.GetMsg(t.Context(), seq)
		if err != nil {
			t.Fatal(err)
		}
		var env envelopev1.ProcessedEnvelope
		if err := proto.Unmarshal(m.Data, &env); err != nil {
			t.Fatal(err)
		}
		out[env.GetEndDeviceId()] = &env
	}
	return out
}

// publish sends envs to the stream of the given NATS server, creating it as
// the service would; opts are extra connect options (e.g. credentials).
func publish(t *testing.T, url string, envs []*envelopev1.ProcessedEnvelope, opts ...nats.Option) {
	t.Helper()
	ctx := t.Context()
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ponixnats.EnsureStream(ctx, js, ponixnats.StreamConfig{Name: ponixnats.EnvelopeStream}); err != nil {
		t.Fatal(err)
	}
	p := ponixnats.NewEnvelopeProducer(js, "processed_envelopes")
	for start := 0; start < len(envs); start += 1000 {
		end := min(start+1000, len(envs))
		if err := p.PublishBatch(ctx, envs[start:end]); err != nil {
			t.Fatal(err)
		}
	}
}

// (a) With the producer on and the embedded NATS default, sample envelopes land
// in ClickHouse and match what was published.
func TestProducerEnvelopesLandInClickHouse(t *testing.T) {
	db := chSrv.NewDatabase(t)
	env := baseEnv(t, db)
	env["PONIX_NATS_EMBEDDED_ADDR"] = "127.0.0.1:0" // a free port, chosen by the server
	s := startService(t, env)
	waitRows(t, db, s, 3, 30*time.Second)

	s.terminate()
	// What the producer published is in the embedded server's store: open it
	// again and compare the stream with the table.
	published := readStream(t, filepath.Join(env["PONIX_DATA_DIR"], "nats"))
	rows := readRows(t, db)
	if len(rows) < 3 {
		t.Fatalf("%d rows", len(rows))
	}
	if len(published) < len(rows) || len(published)-len(rows) > 2 {
		t.Errorf("%d envelopes published, %d stored: at most the last two may be unconsumed at shutdown", len(published), len(rows))
	}
	for id, r := range rows {
		env, ok := published[id]
		if !ok {
			t.Errorf("row %s was never published", id)
			continue
		}
		checkRow(t, r, env)
		if r.org != "example-org" {
			t.Errorf("%s: organization %q", id, r.org)
		}
		for _, k := range []string{"temperature", "humidity", "status"} {
			if _, ok := r.data[k]; !ok {
				t.Errorf("%s: data lacks %s: %v", id, k, r.data)
			}
		}
		if time.Since(r.occurred) > time.Minute || !r.occurred.Equal(r.processed) {
			t.Errorf("%s: timestamps %v / %v are not 'now'", id, r.occurred, r.processed)
		}
	}
}

// (b) Producer off: 10,000 envelopes from an external publisher all arrive
// exactly once with the right values.
func TestExternalPublisherTenThousandExactlyOnce(t *testing.T) {
	db := chSrv.NewDatabase(t)
	nsrv := natstest.New(t)
	want := envelopes(10_000, 1)
	publish(t, nsrv.URL(), want)

	env := baseEnv(t, db)
	env["PONIX_NATS_URL"] = nsrv.URL()
	env["PONIX_PRODUCER_ENABLED"] = "false"
	env["PONIX_NATS_BATCH_SIZE"] = "1000"
	s := startService(t, env)
	waitRows(t, db, s, uint64(len(want)), 60*time.Second)
	waitSettled(t, nsrv.URL(), 60*time.Second, s) // every message acked: no duplicate can come later
	s.terminate()

	rowsN, distinct := count(t, db)
	if rowsN != uint64(len(want)) || distinct != uint64(len(want)) {
		t.Fatalf("%d rows, %d distinct devices; want %d exactly once", rowsN, distinct, len(want))
	}
	checkStored(t, db, want)
}

// (c) SIGTERM mid-stream exits 0 within the closer timeout after storing and
// acking the batch in hand; a restart continues with nothing lost or
// duplicated.
func TestSIGTERMMidStreamThenRestartLosesNothing(t *testing.T) {
	db := chSrv.NewDatabase(t)
	nsrv := natstest.New(t)
	want := envelopes(20_000, 2)
	publish(t, nsrv.URL(), want)

	env := baseEnv(t, db)
	env["PONIX_NATS_URL"] = nsrv.URL()
	env["PONIX_PRODUCER_ENABLED"] = "false"
	env["PONIX_NATS_BATCH_SIZE"] = "200"
	s := startService(t, env)
	waitRows(t, db, s, 1000, 60*time.Second)
	s.signal(syscall.SIGTERM)
	start := time.Now()
	if code := s.wait(15 * time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM", code)
	}
	t.Logf("stopped in %s", time.Since(start))
	stored, distinct := count(t, db)
	if stored == uint64(len(want)) {
		t.Fatalf("all %d rows stored before SIGTERM: the test did not stop mid-stream", stored)
	}
	if stored != distinct {
		t.Fatalf("%d rows but %d distinct after shutdown: duplicates", stored, distinct)
	}
	// Everything stored was acked, and nothing is left in flight.
	nc, err := nats.Connect(nsrv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	cons, err := js.Consumer(t.Context(), "processed_envelopes", "ponix-all-in-one")
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.NumAckPending != 0 {
		t.Errorf("%d messages left unacked after a clean shutdown", info.NumAckPending)
	}
	if info.AckFloor.Stream != stored {
		t.Errorf("ack floor at stream sequence %d, but %d rows stored", info.AckFloor.Stream, stored)
	}

	s2 := startService(t, env)
	waitRows(t, db, s2, uint64(len(want)), 60*time.Second)
	waitSettled(t, nsrv.URL(), 60*time.Second, s2)
	s2.signal(syscall.SIGTERM)
	if code := s2.wait(15 * time.Second); code != 0 {
		t.Fatalf("restart: exit code %d after SIGTERM", code)
	}
	total, distinct := count(t, db)
	if total != uint64(len(want)) || distinct != uint64(len(want)) {
		t.Fatalf("after restart: %d rows, %d distinct; want %d exactly once", total, distinct, len(want))
	}
}

// (d) A bad configuration value exits 2 and names the variable.
func TestBadConfigExitsTwo(t *testing.T) {
	s := startService(t, map[string]string{"PONIX_NATS_BATCH_SIZE": "lots"})
	if code := s.wait(10 * time.Second); code != 2 {
		t.Fatalf("exit code %d, want 2", code)
	}
	if !strings.Contains(s.logs.String(), "PONIX_NATS_BATCH_SIZE") {
		t.Errorf("output does not name the variable:\n%s", s.logs.String())
	}
}

// (e) ClickHouse unreachable at start: a non-zero exit naming the phase.
func TestClickHouseUnreachableAtStartNamesThePhase(t *testing.T) {
	db := chSrv.NewDatabase(t)
	env := baseEnv(t, db)
	closed := "127.0.0.1:" + strconv.Itoa(freePort(t))
	env["PONIX_CLICKHOUSE_NATIVE_URL"] = closed
	env["PONIX_STARTUP_TIMEOUT_SECS"] = "5"
	s := startService(t, env)
	if code := s.wait(30 * time.Second); code == 0 {
		t.Fatal("exit code 0 with ClickHouse unreachable")
	}
	line := failureLine(t, s.logs.String())
	for _, want := range []string{"startup phase migrations failed", "PONIX_CLICKHOUSE_NATIVE_URL", closed} {
		if !strings.Contains(line, want) {
			t.Errorf("the error does not name %q: %s", want, line)
		}
	}
}

// checkStored fails the test unless every envelope of want is stored in db,
// field by field.
func checkStored(t *testing.T, db *chtest.Database, want []*envelopev1.ProcessedEnvelope) {
	t.Helper()
	rows := readRows(t, db)
	for _, e := range want {
		r, ok := rows[e.GetEndDeviceId()]
		if !ok {
			t.Fatalf("envelope %s missing", e.GetEndDeviceId())
		}
		checkRow(t, r, e)
	}
}

// startClickHouse starts a clickhouse-server of cfg for the test (stopped at
// its end) and creates database dbName as cfg's user.
func startClickHouse(t *testing.T, cfg chserver.Config, dbName string) *chserver.Server {
	t.Helper()
	ctx := t.Context()
	chs, err := chserver.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = chs.Stop(context.Background()) })
	admin, err := ponixclickhouse.Open(ctx, ponixclickhouse.Config{Addr: chs.Addr(), Username: cfg.User, Password: cfg.Password})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if err := admin.Exec(ctx, "CREATE DATABASE "+dbName); err != nil {
		t.Fatal(err)
	}
	return chs
}

// failureLine returns the log line in which the service reports the error it
// stopped with; it fails the test when there is none.
func failureLine(t *testing.T, logs string) string {
	t.Helper()
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, "stopped with an error") {
			return l
		}
	}
	t.Fatalf("no 'stopped with an error' line in the output:\n%s", logs)
	return ""
}
