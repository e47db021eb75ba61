//go:build integration

package integration

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"github.com/ponix-go/ponix/ponixnats"
	"github.com/ponix-go/ponix/ponixnats/natstest"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// One server for the package; every test uses its own streams.
var testURL string

func TestMain(m *testing.M) {
	srv, err := natstest.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testURL = srv.URL()
	code := m.Run()
	srv.Shutdown()
	os.Exit(code)
}

func quietLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func connectJS(t *testing.T, url string, opts ...ponixnats.ConnectOption) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	opts = append([]ponixnats.ConnectOption{ponixnats.WithName(t.Name()), ponixnats.WithLogger(quietLogger())}, opts...)
	nc, err := ponixnats.Connect(context.Background(), url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

var (
	nonName   = regexp.MustCompile(`[^A-Za-z0-9_-]+`)
	streamSeq atomic.Int64
)

// testStream creates a fresh stream named after the test.
func testStream(t *testing.T, js jetstream.JetStream) string {
	t.Helper()
	name := fmt.Sprintf("t%d_%s", streamSeq.Add(1), nonName.ReplaceAllString(t.Name(), "_"))
	if _, err := ponixnats.EnsureStream(context.Background(), js, ponixnats.StreamConfig{Name: name}); err != nil {
		t.Fatal(err)
	}
	return name
}

func publishN(t *testing.T, js jetstream.JetStream, subject string, n, from int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		if _, err := js.Publish(context.Background(), subject, []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
}

// runConsumer runs c until the returned stop function is called; stop waits
// for Run to return and fails the test if Run returned an error.
func runConsumer(t *testing.T, c *ponixnats.Consumer) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run returned %v", err)
				}
			case <-time.After(20 * time.Second):
				t.Error("Run did not return after cancel")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for: %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// deliveries counts deliveries per payload.
type deliveries struct {
	mu sync.Mutex
	m  map[string]int
}

func (d *deliveries) add(batch []jetstream.Msg) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.m == nil {
		d.m = map[string]int{}
	}
	for _, m := range batch {
		d.m[string(m.Data())]++
	}
}

func (d *deliveries) get(k string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.m[k]
}

func (d *deliveries) total() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, v := range d.m {
		n += v
	}
	return n
}

func (d *deliveries) distinct() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.m)
}

func baseConfig(stream string) ponixnats.ConsumerConfig {
	return ponixnats.ConsumerConfig{
		Stream:      stream,
		Durable:     "test",
		BatchSize:   10,
		MaxWait:     200 * time.Millisecond,
		AckWait:     3 * time.Second,
		NakDelay:    20 * time.Millisecond,
		MaxNakDelay: 100 * time.Millisecond,
		Logger:      quietLogger(),
	}
}

// waitSettled waits until the server has an answer for every message of c's stream: each
// acknowledged or terminated (the ack floor is the stream's last sequence), none left to
// deliver or waiting for its ack. Nothing is delivered again after that: the deliveries
// counted so far are final.
func waitSettled(t *testing.T, js jetstream.JetStream, c *ponixnats.Consumer) {
	t.Helper()
	ctx := context.Background()
	eventually(t, 10*time.Second, "every message acknowledged or terminated", func() bool {
		st, err := js.Stream(ctx, c.Config().Stream)
		if err != nil {
			return false
		}
		info, err := c.Info(ctx)
		return err == nil && info.NumAckPending == 0 && info.NumPending == 0 && info.AckFloor.Stream == st.CachedInfo().State.LastSeq
	})
}

func consumerInfo(t *testing.T, c *ponixnats.Consumer) *jetstream.ConsumerInfo {
	t.Helper()
	info, err := c.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info
}

func TestIntegrationEnsureStream(t *testing.T) {
	ctx := context.Background()
	_, js := connectJS(t, testURL)
	name := fmt.Sprintf("t%d_ensure", streamSeq.Add(1))

	st, err := ponixnats.EnsureStream(ctx, js, ponixnats.StreamConfig{Name: name, MaxAge: time.Hour, Duplicates: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	if len(cfg.Subjects) != 1 || cfg.Subjects[0] != name+".>" || cfg.Storage != jetstream.FileStorage || cfg.MaxAge != time.Hour || cfg.Duplicates != time.Minute {
		t.Fatalf("created config: %+v", cfg)
	}
	// Idempotent.
	if _, err := ponixnats.EnsureStream(ctx, js, ponixnats.StreamConfig{Name: name, MaxAge: time.Hour, Duplicates: time.Minute}); err != nil {
		t.Fatal(err)
	}
	// Updatable fields are updated.
	st, err = ponixnats.EnsureStream(ctx, js, ponixnats.StreamConfig{Name: name, Subjects: []string{name + ".>", name + "_extra.*"},
		MaxAge: 2 * time.Hour, MaxBytes: 1 << 20, Duplicates: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cfg = info.Config
	if len(cfg.Subjects) != 2 || cfg.MaxAge != 2*time.Hour || cfg.MaxBytes != 1<<20 || cfg.Duplicates != 30*time.Second {
		t.Fatalf("updated config: %+v", cfg)
	}
	// Immutable differences are a clear error.
	_, err = ponixnats.EnsureStream(ctx, js, ponixnats.StreamConfig{Name: name, Storage: jetstream.MemoryStorage})
	var me *ponixnats.StreamMismatchError
	if !errors.Is(err, ponixnats.ErrStreamConfigMismatch) || !errors.As(err, &me) || me.Field != "storage" {
		t.Fatalf("storage change: err = %v", err)
	}
	if !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), "storage") {
		t.Fatalf("error does not name stream and field: %v", err)
	}
	_, err = ponixnats.EnsureStream(ctx, js, ponixnats.StreamConfig{Name: name, Retention: jetstream.WorkQueuePolicy})
	if !errors.As(err, &me) || me.Field != "retention" {
		t.Fatalf("retention change: err = %v", err)
	}
	// No name is made up; the subjects default to "<name>.>".
	if _, err := ponixnats.EnsureStream(ctx, js, ponixnats.StreamConfig{}); !errors.Is(err, ponixnats.ErrInvalidConfig) {
		t.Fatalf("empty stream name: %v", err)
	}
	st, err = ponixnats.EnsureStream(ctx, js, ponixnats.StreamConfig{Name: "readings_" + strconv.Itoa(int(time.Now().UnixNano()%1e6))})
	if err != nil {
		t.Fatal(err)
	}
	if subj := st.CachedInfo().Config.Subjects; len(subj) != 1 || subj[0] != st.CachedInfo().Config.Name+".>" {
		t.Fatalf("default subjects: %v", subj)
	}
	// Invalid config is rejected before reaching the server.
	if _, err := ponixnats.EnsureStream(ctx, js, ponixnats.StreamConfig{Name: "a.b"}); !errors.Is(err, ponixnats.ErrInvalidConfig) {
		t.Fatalf("invalid name: %v", err)
	}
}

func TestIntegrationBatchByCountAndByMaxWait(t *testing.T) {
	_, js := connectJS(t, testURL)
	stream := testStream(t, js)
	publishN(t, js, stream+".a", 25, 0)

	type batchInfo struct {
		n  int
		at time.Time
	}
	got := make(chan batchInfo, 10)
	cfg := baseConfig(stream)
	cfg.MaxWait = 500 * time.Millisecond
	c, err := ponixnats.NewConsumer(context.Background(), js, cfg, func(_ context.Context, in ponixnats.Batch[jetstream.Msg]) (ponixnats.Result, error) {
		b := in.Items
		got <- batchInfo{len(b), time.Now()}
		return ponixnats.AckAll(len(b)), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	stop := runConsumer(t, c)
	var sizes []int
	var last time.Time
	for len(sizes) < 3 {
		select {
		case b := <-got:
			sizes = append(sizes, b.n)
			last = b.at
		case <-time.After(5 * time.Second):
			t.Fatalf("batches so far %v", sizes)
		}
	}
	if sizes[0] != 10 || sizes[1] != 10 || sizes[2] != 5 {
		t.Fatalf("batch sizes %v; want [10 10 5]", sizes)
	}
	// The first two are full batches (no waiting); the partial one waited
	// for MaxWait before being handed over.
	if el := last.Sub(start); el < 400*time.Millisecond {
		t.Fatalf("partial batch handed over after %s; want about MaxWait (500ms)", el)
	}
	// An idle stream hands over nothing: once the server's clock says that a whole fetch more
	// (MaxWait, twice over) passed after the partial batch was handed over, Run is stopped,
	// which returns only after every batch handed over was processed.
	idle := consumerInfo(t, c).TimeStamp
	eventually(t, 10*time.Second, "2 MaxWait of an idle stream, on the server's clock", func() bool {
		return consumerInfo(t, c).TimeStamp.Sub(idle) > 2*cfg.MaxWait
	})
	stop()
	select {
	case b := <-got:
		t.Fatalf("unexpected batch of %d on an empty stream", b.n)
	default:
	}
	if s := c.Stats(); s.Acked != 25 || s.Batches != 3 {
		t.Fatalf("stats %+v", s)
	}
}

func TestIntegrationPartialAckNakRedeliversExactlyTheNakd(t *testing.T) {
	_, js := connectJS(t, testURL)
	stream := testStream(t, js)
	publishN(t, js, stream+".a", 6, 0)

	var d deliveries
	c, err := ponixnats.NewConsumer(context.Background(), js, baseConfig(stream), func(_ context.Context, in ponixnats.Batch[jetstream.Msg]) (ponixnats.Result, error) {
		b := in.Items
		d.add(b)
		r := ponixnats.NewResult(len(b))
		for i, m := range b {
			n, _ := strconv.Atoi(string(m.Data()))
			md, _ := m.Metadata()
			if n%2 == 1 && md.NumDelivered == 1 {
				r.Nak(i, 50*time.Millisecond)
			} else {
				r.Ack(i)
			}
		}
		return r, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	stop := runConsumer(t, c)
	waitSettled(t, js, c) // after it, no redelivery can come
	stop()
	for i := range 6 {
		want := 1
		if i%2 == 1 {
			want = 2
		}
		if got := d.get(strconv.Itoa(i)); got != want {
			t.Errorf("message %d delivered %d times; want %d", i, got, want)
		}
	}
	if info := consumerInfo(t, c); info.NumAckPending != 0 || info.NumPending != 0 {
		t.Fatalf("ack pending %d, pending %d; want 0, 0", info.NumAckPending, info.NumPending)
	}
}

func TestIntegrationUnmentionedAndDuplicateIndices(t *testing.T) {
	_, js := connectJS(t, testURL)
	stream := testStream(t, js)
	publishN(t, js, stream+".a", 3, 0)

	var d deliveries
	c, err := ponixnats.NewConsumer(context.Background(), js, baseConfig(stream), func(_ context.Context, in ponixnats.Batch[jetstream.Msg]) (ponixnats.Result, error) {
		b := in.Items
		d.add(b)
		r := ponixnats.NewResult(len(b))
		for i, m := range b {
			md, _ := m.Metadata()
			if md.NumDelivered > 1 {
				r.Ack(i)
				continue
			}
			switch string(m.Data()) {
			case "0":
				r.Ack(i)
			case "1": // mentioned twice: Ack and Nak -> Nak wins
				r.Ack(i)
				r.Nak(i, 0)
			case "2": // not mentioned -> nak'd
			}
		}
		return r, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	stop := runConsumer(t, c)
	waitSettled(t, js, c)
	stop()
	if d.get("0") != 1 || d.get("1") != 2 || d.get("2") != 2 {
		t.Fatalf("deliveries %v; want 0:1 1:2 2:2", d.m)
	}
	if s := c.Stats(); s.Unmentioned != 1 || s.Conflicts != 1 {
		t.Fatalf("stats %+v; want 1 unmentioned, 1 conflict", s)
	}
}

func TestIntegrationTermIsNotRedelivered(t *testing.T) {
	_, js := connectJS(t, testURL)
	stream := testStream(t, js)
	publishN(t, js, stream+".a", 2, 0)

	var d deliveries
	cfg := baseConfig(stream)
	cfg.AckWait = time.Second
	c, err := ponixnats.NewConsumer(context.Background(), js, cfg, func(_ context.Context, in ponixnats.Batch[jetstream.Msg]) (ponixnats.Result, error) {
		b := in.Items
		d.add(b)
		r := ponixnats.NewResult(len(b))
		for i, m := range b {
			if string(m.Data()) == "0" {
				r.Term(i, "test")
			} else {
				r.Ack(i)
			}
		}
		return r, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	stop := runConsumer(t, c)
	// The server has the term and the ack: nothing is left whose AckWait could expire.
	waitSettled(t, js, c)
	stop()
	if d.get("0") != 1 || d.get("1") != 1 {
		t.Fatalf("deliveries %v; want each once", d.m)
	}
	if info := consumerInfo(t, c); info.NumAckPending != 0 || info.NumRedelivered != 0 {
		t.Fatalf("ack pending %d, redelivered %d", info.NumAckPending, info.NumRedelivered)
	}
}

func TestIntegrationProcessorErrorAndPanicNakWholeBatch(t *testing.T) {
	_, js := connectJS(t, testURL)
	stream := testStream(t, js)
	publishN(t, js, stream+".a", 3, 0)

	var calls atomic.Int32
	var d deliveries
	c, err := ponixnats.NewConsumer(context.Background(), js, baseConfig(stream), func(_ context.Context, in ponixnats.Batch[jetstream.Msg]) (ponixnats.Result, error) {
		b := in.Items
		d.add(b)
		switch calls.Add(1) {
		case 1:
			return ponixnats.AckAll(len(b)), errors.New("sink down") // error wins over the result
		case 2:
			panic("processor bug")
		}
		return ponixnats.AckAll(len(b)), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	stop := runConsumer(t, c)
	waitSettled(t, js, c)
	stop()
	for i := range 3 {
		if got := d.get(strconv.Itoa(i)); got != 3 {
			t.Errorf("message %d delivered %d times; want 3", i, got)
		}
	}
	if s := c.Stats(); s.ProcessorErrors != 2 || s.Acked != 3 {
		t.Fatalf("stats %+v", s)
	}
}

func tsBytes(t *testing.T, sec int64) []byte {
	b, err := proto.Marshal(&timestamppb.Timestamp{Seconds: sec})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestIntegrationDecodeFailureGoesToDLQWithHeaders(t *testing.T) {
	ctx := context.Background()
	_, js := connectJS(t, testURL)
	stream := testStream(t, js)
	if _, err := js.Publish(ctx, stream+".good", tsBytes(t, 42)); err != nil {
		t.Fatal(err)
	}
	bad := &nats.Msg{Subject: stream + ".bad", Data: []byte{0xff, 0xfe, 0xfd}, Header: nats.Header{"X-Custom": {"keep"}}}
	badAck, err := js.PublishMsg(ctx, bad)
	if err != nil {
		t.Fatal(err)
	}

	var got atomic.Int64
	var d deliveries
	p := ponixnats.ProtoProcessor(func() *timestamppb.Timestamp { return new(timestamppb.Timestamp) },
		func(_ context.Context, in ponixnats.Batch[ponixnats.Decoded[*timestamppb.Timestamp]]) (ponixnats.Result, error) {
			ds := in.Items
			for _, x := range ds {
				got.Add(x.Value.GetSeconds())
			}
			return ponixnats.AckAll(len(ds)), nil
		})
	c, err := ponixnats.NewConsumer(ctx, js, baseConfig(stream), func(ctx context.Context, in ponixnats.Batch[jetstream.Msg]) (ponixnats.Result, error) {
		d.add(in.Items)
		return p(ctx, in)
	})
	if err != nil {
		t.Fatal(err)
	}
	stop := runConsumer(t, c)
	eventually(t, 5*time.Second, "good message handled and bad one dead-lettered", func() bool {
		return got.Load() == 42 && c.Stats().DeadLettered == 1
	})
	waitSettled(t, js, c)
	stop()
	if d.total() != 2 {
		t.Fatalf("deliveries %v; want each message once", d.m)
	}

	dlq, err := js.Stream(ctx, stream+"_dlq")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := dlq.GetLastMsgForSubject(ctx, stream+"_dlq.>")
	if err != nil {
		t.Fatal(err)
	}
	if raw.Subject != stream+"_dlq."+stream+".bad" || string(raw.Data) != string(bad.Data) {
		t.Fatalf("dead letter subject %q data %x", raw.Subject, raw.Data)
	}
	h := raw.Header
	for k, want := range map[string]string{
		ponixnats.HeaderDLQReason:        string(ponixnats.ReasonDecode),
		ponixnats.HeaderOriginalSubject:  stream + ".bad",
		ponixnats.HeaderOriginalStream:   stream,
		ponixnats.HeaderOriginalSequence: strconv.FormatUint(badAck.Sequence, 10),
		ponixnats.HeaderNumDelivered:     "1",
		ponixnats.HeaderOriginalConsumer: "test",
		"X-Custom":                       "keep",
	} {
		if got := h.Get(k); got != want {
			t.Errorf("header %s = %q; want %q", k, got, want)
		}
	}
	if e := h.Get(ponixnats.HeaderDLQError); !strings.Contains(e, "decode") {
		t.Errorf("header %s = %q; want the decode error", ponixnats.HeaderDLQError, e)
	}
	if info := consumerInfo(t, c); info.NumAckPending != 0 {
		t.Fatalf("ack pending %d", info.NumAckPending)
	}
}

func TestIntegrationMaxDeliverDeadLetters(t *testing.T) {
	ctx := context.Background()
	_, js := connectJS(t, testURL)
	stream := testStream(t, js)
	publishN(t, js, stream+".a", 1, 0)

	var d deliveries
	cfg := baseConfig(stream)
	cfg.MaxDeliver = 3
	c, err := ponixnats.NewConsumer(ctx, js, cfg, func(_ context.Context, in ponixnats.Batch[jetstream.Msg]) (ponixnats.Result, error) {
		b := in.Items
		d.add(b)
		r := ponixnats.NewResult(len(b))
		for i := range b {
			r.NakErr(i, 0, errors.New("always failing"))
		}
		return r, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	stop := runConsumer(t, c)
	eventually(t, 5*time.Second, "dead-lettered at MaxDeliver", func() bool { return c.Stats().MaxDelivered == 1 })
	waitSettled(t, js, c)
	stop()
	if got := d.get("0"); got != 3 {
		t.Fatalf("delivered %d times; want MaxDeliver=3", got)
	}
	dlq, err := js.Stream(ctx, stream+"_dlq")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := dlq.GetLastMsgForSubject(ctx, stream+"_dlq.>")
	if err != nil {
		t.Fatal(err)
	}
	if raw.Header.Get(ponixnats.HeaderDLQReason) != string(ponixnats.ReasonMaxDeliver) || raw.Header.Get(ponixnats.HeaderNumDelivered) != "3" ||
		!strings.Contains(raw.Header.Get(ponixnats.HeaderDLQError), "always failing") {
		t.Fatalf("dead letter headers %v", raw.Header)
	}
}

func TestIntegrationDeadLetterSubjectsMustNotLoop(t *testing.T) {
	_, js := connectJS(t, testURL)
	stream := testStream(t, js)
	cfg := baseConfig(stream)
	cfg.DeadLetter.SubjectPrefix = stream + ".dlq"
	_, err := ponixnats.NewConsumer(context.Background(), js, cfg, func(context.Context, ponixnats.Batch[jetstream.Msg]) (ponixnats.Result, error) {
		return ponixnats.Result{}, nil
	})
	if !errors.Is(err, ponixnats.ErrInvalidConfig) || !strings.Contains(err.Error(), "overlap") {
		t.Fatalf("err = %v; want overlap error", err)
	}
}

func TestIntegrationCleanShutdownLeavesNothingUnacked(t *testing.T) {
	_, js := connectJS(t, testURL)
	stream := testStream(t, js)
	publishN(t, js, stream+".a", 50, 0)

	started := make(chan struct{})
	var once sync.Once
	var processed, ctxErrs atomic.Int32
	cfg := baseConfig(stream)
	cfg.BatchSize = 50
	c, err := ponixnats.NewConsumer(context.Background(), js, cfg, func(ctx context.Context, in ponixnats.Batch[jetstream.Msg]) (ponixnats.Result, error) {
		b := in.Items
		once.Do(func() { close(started) })
		<-in.Stopping // the shutdown arrives while we work
		if ctx.Err() != nil {
			ctxErrs.Add(1)
		}
		processed.Add(int32(len(b)))
		return ponixnats.AckAll(len(b)), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	stop := runConsumer(t, c)
	<-started
	stop() // returns only after Run returned
	if processed.Load() != 50 || ctxErrs.Load() != 0 {
		t.Fatalf("processed %d (want 50), processor saw a cancelled context %d times", processed.Load(), ctxErrs.Load())
	}
	info := consumerInfo(t, c)
	if info.NumAckPending != 0 || info.AckFloor.Stream != 50 {
		t.Fatalf("right after Run returned: ack pending %d, ack floor %d; want 0, 50", info.NumAckPending, info.AckFloor.Stream)
	}
}

func TestIntegrationInProgressKeepsSlowBatchAlive(t *testing.T) {
	_, js := connectJS(t, testURL)
	stream := testStream(t, js)
	publishN(t, js, stream+".a", 3, 0)

	var d deliveries
	cfg := baseConfig(stream)
	cfg.AckWait = time.Second
	holding, release := make(chan struct{}, 1), make(chan struct{})
	c, err := ponixnats.NewConsumer(context.Background(), js, cfg, func(_ context.Context, in ponixnats.Batch[jetstream.Msg]) (ponixnats.Result, error) {
		b := in.Items
		d.add(b)
		select {
		case holding <- struct{}{}:
		default:
		}
		<-release // slow processing
		return ponixnats.AckAll(len(b)), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	stop := runConsumer(t, c)
	select {
	case <-holding:
	case <-time.After(10 * time.Second):
		t.Fatal("no batch")
	}
	// The processor holds the batch until the server's clock says 2.5 AckWait passed since it
	// was handed over.
	held := consumerInfo(t, c).TimeStamp
	eventually(t, 10*time.Second, "2.5 AckWait of holding, on the server's clock", func() bool {
		return consumerInfo(t, c).TimeStamp.Sub(held) > 5*cfg.AckWait/2
	})
	close(release)
	eventually(t, 10*time.Second, "slow batch acked", func() bool { return c.Stats().Acked == 3 })
	stop()
	if d.total() != 3 {
		t.Fatalf("deliveries %v; want each once (no redelivery during slow processing)", d.m)
	}
	if info := consumerInfo(t, c); info.NumRedelivered != 0 {
		t.Fatalf("redelivered %d", info.NumRedelivered)
	}
}

func TestIntegrationReconnectAfterServerRestart(t *testing.T) {
	ctx := context.Background()
	srv := natstest.New(t)
	_, js := connectJS(t, srv.URL(), ponixnats.WithReconnectBackoff(50*time.Millisecond, 200*time.Millisecond))
	stream := testStream(t, js)
	publishN(t, js, stream+".a", 20, 0)

	var d deliveries
	cfg := baseConfig(stream)
	c, err := ponixnats.NewConsumer(ctx, js, cfg, func(_ context.Context, in ponixnats.Batch[jetstream.Msg]) (ponixnats.Result, error) {
		b := in.Items
		d.add(b)
		return ponixnats.AckAll(len(b)), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	stop := runConsumer(t, c)
	eventually(t, 5*time.Second, "first 20 consumed", func() bool { return d.distinct() == 20 })

	if err := srv.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	// Publish after the restart (retrying while the client reconnects).
	for i := 20; i < 40; i++ {
		eventually(t, 10*time.Second, "publish after restart", func() bool {
			pctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			_, err := js.Publish(pctx, stream+".a", []byte(strconv.Itoa(i)))
			return err == nil
		})
	}
	eventually(t, 15*time.Second, "all 40 consumed after the restart", func() bool { return d.distinct() == 40 })
	// The server applies acks in the background: wait for it to have every one, with the
	// consumer running — an ack the restart lost makes its message come again after AckWait,
	// and only a running consumer acknowledges it (stopped first, this timed out in CI).
	waitSettled(t, js, c)
	stop()
	if info := consumerInfo(t, c); info.NumAckPending != 0 || info.AckFloor.Stream != 40 {
		t.Fatalf("ack pending %d, ack floor %d", info.NumAckPending, info.AckFloor.Stream)
	}
}

func TestIntegrationConnectAuthAndErrors(t *testing.T) {
	ctx := context.Background()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	srv := natstest.New(t, natstest.WithUserPassword("ponix", "s3cret"), natstest.WithNKey(pub))

	t.Run("user and password", func(t *testing.T) {
		nc, js := connectJS(t, srv.URL(), ponixnats.WithUserPassword("ponix", "s3cret"))
		if _, err := ponixnats.EnsureStream(ctx, js, ponixnats.StreamConfig{Name: fmt.Sprintf("auth_up%d", streamSeq.Add(1))}); err != nil {
			t.Fatalf("JetStream with user/password: %v", err)
		}
		if !nc.IsConnected() {
			t.Fatal("not connected")
		}
	})
	t.Run("nkey seed", func(t *testing.T) {
		_, js := connectJS(t, srv.URL(), ponixnats.WithNKeySeed(string(seed)))
		if _, err := ponixnats.EnsureStream(ctx, js, ponixnats.StreamConfig{Name: fmt.Sprintf("auth_nkey%d", streamSeq.Add(1))}); err != nil {
			t.Fatalf("JetStream with NKey: %v", err)
		}
	})
	t.Run("nkey seed file", func(t *testing.T) {
		f := filepath.Join(t.TempDir(), "user.nk")
		if err := os.WriteFile(f, seed, 0o600); err != nil {
			t.Fatal(err)
		}
		connectJS(t, srv.URL(), ponixnats.WithNKeySeedFile(f))
	})
	t.Run("wrong password", func(t *testing.T) {
		start := time.Now()
		_, err := ponixnats.Connect(ctx, srv.URL(), ponixnats.WithUserPassword("ponix", "wrong"), ponixnats.WithLogger(quietLogger()))
		if !errors.Is(err, ponixnats.ErrAuthorization) || errors.Is(err, ponixnats.ErrServerUnreachable) {
			t.Fatalf("err = %v; want ErrAuthorization", err)
		}
		if time.Since(start) > 3*time.Second {
			t.Fatalf("auth failure took %s; want fail fast", time.Since(start))
		}
		if strings.Contains(err.Error(), "wrong") {
			t.Fatalf("password leaked in error: %v", err)
		}
	})
	t.Run("no credentials", func(t *testing.T) {
		_, err := ponixnats.Connect(ctx, srv.URL(), ponixnats.WithLogger(quietLogger()))
		if !errors.Is(err, ponixnats.ErrAuthorization) {
			t.Fatalf("err = %v; want ErrAuthorization", err)
		}
	})
	t.Run("unknown nkey", func(t *testing.T) {
		other, _ := nkeys.CreateUser()
		oseed, _ := other.Seed()
		_, err := ponixnats.Connect(ctx, srv.URL(), ponixnats.WithNKeySeed(string(oseed)), ponixnats.WithLogger(quietLogger()))
		if !errors.Is(err, ponixnats.ErrAuthorization) {
			t.Fatalf("err = %v; want ErrAuthorization", err)
		}
	})
	t.Run("unreachable", func(t *testing.T) {
		stopped := natstest.New(t)
		url := stopped.URL()
		stopped.Shutdown()
		start := time.Now()
		_, err := ponixnats.Connect(ctx, url, ponixnats.WithLogger(quietLogger()), ponixnats.WithTimeout(2*time.Second))
		if !errors.Is(err, ponixnats.ErrServerUnreachable) || !strings.Contains(err.Error(), url) {
			t.Fatalf("err = %v; want ErrServerUnreachable naming %s", err, url)
		}
		if time.Since(start) > 3*time.Second {
			t.Fatalf("took %s; want fail fast", time.Since(start))
		}
	})
	t.Run("token", func(t *testing.T) {
		tsrv := natstest.New(t, natstest.WithToken("t0ken"))
		connectJS(t, tsrv.URL(), ponixnats.WithToken("t0ken"))
		_, err := ponixnats.Connect(ctx, tsrv.URL(), ponixnats.WithToken("nope"), ponixnats.WithLogger(quietLogger()))
		if !errors.Is(err, ponixnats.ErrAuthorization) {
			t.Fatalf("wrong token: err = %v; want ErrAuthorization", err)
		}
	})
	t.Run("bad seed is a config error", func(t *testing.T) {
		_, err := ponixnats.Connect(ctx, srv.URL(), ponixnats.WithNKeySeed("not-a-seed"))
		if !errors.Is(err, ponixnats.ErrInvalidConfig) {
			t.Fatalf("err = %v", err)
		}
	})
}
