//go:build integration

package integration

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ponix-go/ponix/ponixnats"
	"github.com/ponix-go/ponix/ponixnats/dlqadmin"
)

// dlqFixture is a source stream with a real Consumer whose processor
// dead-letters every message with a payload "<reason>|<id>" (reason "ok" is
// acked), so dead letters take the real dead-letter path.
type dlqFixture struct {
	t      *testing.T
	js     jetstream.JetStream
	stream string
	dlq    string
	c      *ponixnats.Consumer
	stop   func()
}

func newDLQFixture(t *testing.T) *dlqFixture {
	t.Helper()
	_, js := connectJS(t, testURL)
	f := &dlqFixture{t: t, js: js, stream: testStream(t, js)}
	f.dlq = f.stream + "_dlq"
	f.startConsumer()
	return f
}

// reasonProcessor acks "ok|…" payloads and dead-letters the others with the
// reason before '|'.
func reasonProcessor(_ context.Context, batch ponixnats.Batch[jetstream.Msg]) (ponixnats.Result, error) {
	r := ponixnats.NewResult(batch.Len())
	for i, m := range batch.Items {
		reason, id, _ := strings.Cut(string(m.Data()), "|")
		if reason == "ok" {
			r.Ack(i)
			continue
		}
		r.DeadLetter(i, ponixnats.Reason(reason), fmt.Errorf("test rejects %s", id))
	}
	return r, nil
}

func (f *dlqFixture) startConsumer() {
	f.t.Helper()
	c, err := ponixnats.NewConsumer(context.Background(), f.js, baseConfig(f.stream), reasonProcessor)
	if err != nil {
		f.t.Fatal(err)
	}
	f.c, f.stop = c, runConsumer(f.t, c)
}

func (f *dlqFixture) publish(subject, payload string, h nats.Header) {
	f.t.Helper()
	if _, err := f.js.PublishMsg(context.Background(), &nats.Msg{Subject: f.stream + "." + subject, Data: []byte(payload), Header: h}); err != nil {
		f.t.Fatal(err)
	}
}

// waitDeadLettered waits until the consumer dead-lettered n messages in all.
func (f *dlqFixture) waitDeadLettered(n uint64) {
	f.t.Helper()
	eventually(f.t, 20*time.Second, fmt.Sprintf("%d messages dead-lettered", n), func() bool {
		return f.c.Stats().DeadLettered >= n
	})
}

func (f *dlqFixture) open() *dlqadmin.Stream {
	f.t.Helper()
	d, err := dlqadmin.Open(context.Background(), f.js, f.dlq)
	if err != nil {
		f.t.Fatal(err)
	}
	return d
}

func (f *dlqFixture) dlqMsgs() uint64 {
	f.t.Helper()
	st, err := f.js.Stream(context.Background(), f.dlq)
	if err != nil {
		f.t.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		f.t.Fatal(err)
	}
	return info.State.Msgs
}

// replayedInSource returns the messages of the source stream that carry a
// replay count, by payload.
func (f *dlqFixture) replayedInSource() map[string][]*jetstream.RawStreamMsg {
	f.t.Helper()
	ctx := context.Background()
	st, err := f.js.Stream(ctx, f.stream)
	if err != nil {
		f.t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		f.t.Fatal(err)
	}
	out := map[string][]*jetstream.RawStreamMsg{}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			f.t.Fatal(err)
		}
		if m.Header.Get(ponixnats.HeaderReplayCount) != "" {
			out[string(m.Data)] = append(out[string(m.Data)], m)
		}
	}
	return out
}

// noConsumersLeft fails the test if reading left a consumer on the
// dead-letter stream.
func (f *dlqFixture) noConsumersLeft() {
	f.t.Helper()
	st, err := f.js.Stream(context.Background(), f.dlq)
	if err != nil {
		f.t.Fatal(err)
	}
	eventually(f.t, 5*time.Second, "no consumer left on the dead-letter stream", func() bool {
		names := st.ConsumerNames(context.Background())
		n := 0
		for range names.Name() {
			n++
		}
		return names.Err() == nil && n == 0
	})
}

func collect(t *testing.T, d *dlqadmin.Stream, flt dlqadmin.Filter) []dlqadmin.DeadLetter {
	t.Helper()
	var out []dlqadmin.DeadLetter
	for dl, err := range d.All(context.Background(), flt) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, dl)
	}
	return out
}

func seqs(dls []dlqadmin.DeadLetter) []uint64 {
	out := make([]uint64, len(dls))
	for i, d := range dls {
		out[i] = d.Sequence
	}
	return out
}

// TestIntegrationDeadLettersSummaryAndFilters: dead letters from a real
// consumer are counted by reason and subject, and every filter selects
// exactly what it says, without consuming anything or leaving consumers.
func TestIntegrationDeadLettersSummaryAndFilters(t *testing.T) {
	ctx := context.Background()
	f := newDLQFixture(t)
	// Phase 1: 6 dead letters (4 invalid, 2 decode) on a.1, a.2, b.1; 2 acked.
	phase1 := []struct{ subj, payload string }{
		{"a.1", "invalid|p1-0"}, {"a.2", "invalid|p1-1"}, {"b.1", "invalid|p1-2"}, {"a.1", "decode|p1-3"},
		{"b.1", "invalid|p1-4"}, {"a.2", "decode|p1-5"}, {"a.1", "ok|p1-6"}, {"b.1", "ok|p1-7"},
	}
	for _, m := range phase1 {
		f.publish(m.subj, m.payload, nats.Header{"X-Custom": {m.payload}})
	}
	f.waitDeadLettered(6)
	// The boundary lies strictly after the last phase-1 dead letter and before anything
	// published later, on the clock that stamps the messages (this machine's).
	st, err := f.js.Stream(ctx, f.dlq)
	if err != nil {
		t.Fatal(err)
	}
	lastP1, err := st.GetLastMsgForSubject(ctx, f.dlq+".>")
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the clock past the last phase-1 dead letter", func() bool { return time.Now().After(lastP1.Time) })
	boundary := time.Now()
	eventually(t, 5*time.Second, "the clock past the boundary", func() bool { return time.Now().After(boundary) })
	// Phase 2: 4 more dead letters, reason rejected, on c.x.y and a.1.
	for i, s := range []string{"c.x.y", "a.1", "c.x.y", "c.x.z"} {
		f.publish(s, fmt.Sprintf("rejected|p2-%d", i), nil)
	}
	f.waitDeadLettered(10)
	f.stop()

	d := f.open()
	sum, err := d.Summary(ctx, dlqadmin.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	s := f.stream + "."
	if sum.Total != 10 || sum.ByReason[ponixnats.ReasonInvalid] != 4 || sum.ByReason[ponixnats.ReasonDecode] != 2 || sum.ByReason[ponixnats.ReasonRejected] != 4 {
		t.Fatalf("summary %+v", sum)
	}
	wantSubj := map[string]int{s + "a.1": 3, s + "a.2": 2, s + "b.1": 2, s + "c.x.y": 2, s + "c.x.z": 1}
	if len(sum.BySubject) != len(wantSubj) {
		t.Fatalf("by subject %v; want %v", sum.BySubject, wantSubj)
	}
	for k, v := range wantSubj {
		if sum.BySubject[k] != v {
			t.Errorf("by subject %s = %d; want %d", k, sum.BySubject[k], v)
		}
	}
	if sum.FirstSeq != 1 || sum.LastSeq != 10 || sum.Oldest.After(boundary) || sum.Newest.Before(boundary) {
		t.Fatalf("span %+v (boundary %s)", sum, boundary)
	}

	all := collect(t, d, dlqadmin.Filter{})
	if !slices.Equal(seqs(all), []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}) {
		t.Fatalf("all: %v", seqs(all))
	}
	first := all[0]
	if string(first.Data) != "invalid|p1-0" || first.OriginalSubject() != s+"a.1" || first.Reason() != ponixnats.ReasonInvalid ||
		first.Header.Get("X-Custom") != "invalid|p1-0" || first.Subject != f.dlq+"."+s+"a.1" || first.OriginalSequence() != 1 ||
		!strings.Contains(first.Cause(), "test rejects p1-0") {
		t.Fatalf("first dead letter %+v", first)
	}
	got, err := d.Get(ctx, 1)
	if err != nil || string(got.Data) != string(first.Data) || got.OriginalSubject() != first.OriginalSubject() || !got.Time.Equal(first.Time) {
		t.Fatalf("Get(1) = %+v, %v", got, err)
	}
	if _, err := d.Get(ctx, 99); !errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Fatalf("Get(99) error %v; want ErrMsgNotFound", err)
	}

	payloads := func(flt dlqadmin.Filter) []string {
		var out []string
		for _, dl := range collect(t, d, flt) {
			_, id, _ := strings.Cut(string(dl.Data), "|")
			out = append(out, id)
		}
		return out
	}
	for _, c := range []struct {
		name string
		flt  dlqadmin.Filter
		want []string
	}{
		{"reason", dlqadmin.Filter{Reasons: []ponixnats.Reason{ponixnats.ReasonDecode}}, []string{"p1-3", "p1-5"}},
		{"two reasons", dlqadmin.Filter{Reasons: []ponixnats.Reason{ponixnats.ReasonDecode, ponixnats.ReasonRejected}}, []string{"p1-3", "p1-5", "p2-0", "p2-1", "p2-2", "p2-3"}},
		{"subject exact", dlqadmin.Filter{Subjects: []string{s + "a.1"}}, []string{"p1-0", "p1-3", "p2-1"}},
		{"subject star", dlqadmin.Filter{Subjects: []string{s + "a.*"}}, []string{"p1-0", "p1-1", "p1-3", "p1-5", "p2-1"}},
		{"subject star middle", dlqadmin.Filter{Subjects: []string{s + "*.1"}}, []string{"p1-0", "p1-2", "p1-3", "p1-4", "p2-1"}},
		{"subject tail", dlqadmin.Filter{Subjects: []string{s + "c.>"}}, []string{"p2-0", "p2-2", "p2-3"}},
		{"overlapping subjects", dlqadmin.Filter{Subjects: []string{s + "c.>", s + "c.x.z", s + "b.1"}}, []string{"p1-2", "p1-4", "p2-0", "p2-2", "p2-3"}},
		{"subject and reason", dlqadmin.Filter{Subjects: []string{s + "a.*"}, Reasons: []ponixnats.Reason{ponixnats.ReasonInvalid}}, []string{"p1-0", "p1-1"}},
		{"seq range", dlqadmin.Filter{FromSeq: 3, ToSeq: 5}, []string{"p1-2", "p1-3", "p1-4"}},
		{"from seq", dlqadmin.Filter{FromSeq: 9}, []string{"p2-2", "p2-3"}},
		{"since (dead-lettered)", dlqadmin.Filter{Since: boundary}, []string{"p2-0", "p2-1", "p2-2", "p2-3"}},
		{"until (dead-lettered)", dlqadmin.Filter{Until: boundary}, []string{"p1-0", "p1-1", "p1-2", "p1-3", "p1-4", "p1-5"}},
		{"original since", dlqadmin.Filter{OriginalSince: boundary}, []string{"p2-0", "p2-1", "p2-2", "p2-3"}},
		{"original until", dlqadmin.Filter{OriginalUntil: boundary, Reasons: []ponixnats.Reason{ponixnats.ReasonDecode}}, []string{"p1-3", "p1-5"}},
		{"since and from seq", dlqadmin.Filter{Since: boundary, FromSeq: 8}, []string{"p2-1", "p2-2", "p2-3"}},
		{"limit", dlqadmin.Filter{Limit: 3}, []string{"p1-0", "p1-1", "p1-2"}},
		{"limit with filter", dlqadmin.Filter{Reasons: []ponixnats.Reason{ponixnats.ReasonRejected}, Limit: 2}, []string{"p2-0", "p2-1"}},
		{"nothing", dlqadmin.Filter{Subjects: []string{s + "zzz"}}, nil},
		{"beyond the end", dlqadmin.Filter{FromSeq: 11}, nil},
	} {
		if got := payloads(c.flt); !slices.Equal(got, c.want) {
			t.Errorf("%s: %v; want %v", c.name, got, c.want)
		}
		sum, err := d.Summary(ctx, c.flt)
		if err != nil || sum.Total != len(c.want) {
			t.Errorf("%s: summary total %d (%v); want %d", c.name, sum.Total, err, len(c.want))
		}
	}
	if _, err := d.Summary(ctx, dlqadmin.Filter{Subjects: []string{"a.>.b"}}); !errors.Is(err, ponixnats.ErrInvalidConfig) {
		t.Fatalf("bad filter: %v", err)
	}

	// Breaking out of All stops the scan.
	n := 0
	for _, err := range d.All(ctx, dlqadmin.Filter{}) {
		if err != nil {
			t.Fatal(err)
		}
		if n++; n == 2 {
			break
		}
	}
	// Read-only: nothing consumed, nothing deleted, no consumer left.
	if f.dlqMsgs() != 10 {
		t.Fatalf("dead-letter stream holds %d messages after reading; want 10", f.dlqMsgs())
	}
	f.noConsumersLeft()
	if _, err := dlqadmin.Open(ctx, f.js, "no_such_dlq"); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("opening a missing stream: %v", err)
	}
}

// produceDeadLetters publishes n messages to be dead-lettered (reason
// invalid, subjects dev-0..dev-4) and waits for them in the DLQ; the consumer
// is stopped afterwards.
func produceDeadLetters(t *testing.T, n int) *dlqFixture {
	t.Helper()
	f := newDLQFixture(t)
	for i := range n {
		f.publish(fmt.Sprintf("dev-%d", i%5), fmt.Sprintf("invalid|m%03d", i), nats.Header{"X-Custom": {fmt.Sprint(i)}})
	}
	f.waitDeadLettered(uint64(n))
	f.stop()
	return f
}

// checkReplayedOnce fails unless each of the n produced messages is in the
// source stream exactly once as a replay, on its original subject, with the
// replay count and the replay's message id.
func checkReplayedOnce(t *testing.T, f *dlqFixture, n int, wantCount string) {
	t.Helper()
	got := f.replayedInSource()
	if len(got) != n {
		t.Fatalf("%d distinct replayed messages in the source stream; want %d", len(got), n)
	}
	for i := range n {
		p := fmt.Sprintf("invalid|m%03d", i)
		ms := got[p]
		if len(ms) != 1 {
			t.Fatalf("%s is %d times in the source stream; want once", p, len(ms))
		}
		m := ms[0]
		if m.Subject != fmt.Sprintf("%s.dev-%d", f.stream, i%5) || m.Header.Get(ponixnats.HeaderReplayCount) != wantCount ||
			m.Header.Get("X-Custom") != fmt.Sprint(i) || !strings.HasPrefix(m.Header.Get(jetstream.MsgIDHeader), "ponix-replay:"+f.dlq+":") {
			t.Fatalf("replayed %s: subject %s headers %v", p, m.Subject, m.Header)
		}
		for k := range m.Header {
			if strings.HasPrefix(k, "Ponix-Dlq-") || strings.HasPrefix(k, "Ponix-Original-") || k == ponixnats.HeaderNumDelivered {
				t.Fatalf("replayed %s keeps dead-letter header %s", p, k)
			}
		}
	}
}

func TestIntegrationReplayDryRunChangesNothing(t *testing.T) {
	f := produceDeadLetters(t, 12)
	d := f.open()
	var listed []uint64
	st, err := d.Replay(context.Background(), dlqadmin.Filter{Subjects: []string{f.stream + ".dev-1"}}, dlqadmin.ReplayOptions{
		DryRun:   true,
		Progress: func(p dlqadmin.ReplayProgress) { listed = append(listed, p.DeadLetter.Sequence) },
		Logger:   quietLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if st.Matched != 3 || st.Replayed != 0 || st.Deleted != 0 || st.Failed != 0 || !slices.Equal(listed, []uint64{2, 7, 12}) {
		t.Fatalf("dry run stats %+v listed %v", st, listed)
	}
	if f.dlqMsgs() != 12 || len(f.replayedInSource()) != 0 {
		t.Fatal("dry run changed the streams")
	}
	f.noConsumersLeft()
}

func TestIntegrationReplayReturnsEachOnceAndDeletes(t *testing.T) {
	ctx := context.Background()
	f := produceDeadLetters(t, 20)
	d := f.open()
	var progress []dlqadmin.Outcome
	st, err := d.Replay(ctx, dlqadmin.Filter{}, dlqadmin.ReplayOptions{Logger: quietLogger(), Progress: func(p dlqadmin.ReplayProgress) { progress = append(progress, p.Outcome) }})
	if err != nil {
		t.Fatal(err)
	}
	if st.Matched != 20 || st.Replayed != 20 || st.Duplicates != 0 || st.Deleted != 20 || st.Failed != 0 || len(progress) != 20 {
		t.Fatalf("stats %+v, %d progress calls", st, len(progress))
	}
	if w, ok := st.DuplicateWindows[f.stream]; !ok || w != 2*time.Minute {
		t.Fatalf("duplicate windows %v; want %s: 2m", st.DuplicateWindows, f.stream)
	}
	if f.dlqMsgs() != 0 {
		t.Fatalf("%d dead letters left", f.dlqMsgs())
	}
	checkReplayedOnce(t, f, 20, "1")

	// A second run finds nothing to do.
	st, err = d.Replay(ctx, dlqadmin.Filter{}, dlqadmin.ReplayOptions{Logger: quietLogger()})
	if err != nil || st.Matched != 0 {
		t.Fatalf("second run: %+v, %v", st, err)
	}
	checkReplayedOnce(t, f, 20, "1")
	f.noConsumersLeft()
}

func TestIntegrationReplayFilteredAndLimited(t *testing.T) {
	ctx := context.Background()
	f := produceDeadLetters(t, 20)
	d := f.open()
	st, err := d.Replay(ctx, dlqadmin.Filter{Subjects: []string{f.stream + ".dev-3"}}, dlqadmin.ReplayOptions{Logger: quietLogger(), Limit: 3})
	if err != nil || st.Replayed != 3 || st.Deleted != 3 {
		t.Fatalf("limited replay: %+v, %v", st, err)
	}
	got := f.replayedInSource()
	for _, p := range []string{"invalid|m003", "invalid|m008", "invalid|m013"} {
		if len(got[p]) != 1 {
			t.Fatalf("replayed %v; want m003, m008, m013 once", got)
		}
	}
	if len(got) != 3 || f.dlqMsgs() != 17 {
		t.Fatalf("%d replayed, %d left; want 3 and 17", len(got), f.dlqMsgs())
	}
	if _, err := d.Get(ctx, 19); err != nil {
		t.Fatalf("m018 (dev-3, beyond the limit) must still be a dead letter: %v", err)
	}
}

// TestIntegrationReplayInterruptedAndRunAgain: a replay cancelled half way,
// and one "killed" after a publish but before its delete, run again: each
// message is in the source stream once and the dead-letter stream is empty.
func TestIntegrationReplayInterruptedAndRunAgain(t *testing.T) {
	ctx := context.Background()
	f := produceDeadLetters(t, 30)
	d := f.open()

	cctx, cancel := context.WithCancel(ctx)
	var handled atomic.Int64
	st, err := d.Replay(cctx, dlqadmin.Filter{}, dlqadmin.ReplayOptions{Logger: quietLogger(), Progress: func(dlqadmin.ReplayProgress) {
		if handled.Add(1) == 10 {
			cancel()
		}
	}})
	cancel()
	if !errors.Is(err, context.Canceled) || st.Deleted != 10 || st.Replayed != 10 {
		t.Fatalf("cancelled replay: %+v, %v", st, err)
	}
	if f.dlqMsgs() != 20 {
		t.Fatalf("%d dead letters left after the cancelled replay; want 20", f.dlqMsgs())
	}

	// What a replay killed between publish and delete leaves behind: the
	// next dead letter published under its replay id, still in the DLQ.
	next, err := d.Get(ctx, 11)
	if err != nil {
		t.Fatal(err)
	}
	h := nats.Header{ponixnats.HeaderReplayCount: []string{"1"}}
	for k, v := range next.Header { // the original headers, as a replay publishes them
		if !strings.HasPrefix(k, "Ponix-") && !strings.HasPrefix(k, "Nats-") {
			h[k] = v
		}
	}
	if _, err := f.js.PublishMsg(ctx, &nats.Msg{Subject: next.OriginalSubject(), Data: next.Data, Header: h},
		jetstream.WithMsgID(d.ReplayMsgID(11))); err != nil {
		t.Fatal(err)
	}

	st, err = d.Replay(ctx, dlqadmin.Filter{}, dlqadmin.ReplayOptions{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if st.Matched != 20 || st.Duplicates != 1 || st.Replayed != 19 || st.Deleted != 20 {
		t.Fatalf("second run: %+v", st)
	}
	// And a third run, as if the second had been run twice.
	if st, err := d.Replay(ctx, dlqadmin.Filter{}, dlqadmin.ReplayOptions{Logger: quietLogger()}); err != nil || st.Matched != 0 {
		t.Fatalf("third run: %+v, %v", st, err)
	}
	if f.dlqMsgs() != 0 {
		t.Fatalf("%d dead letters left", f.dlqMsgs())
	}
	checkReplayedOnce(t, f, 30, "1")
}

// TestIntegrationReplayedDeadLetteredAgainCarriesReplayCount: a replayed
// message that fails again goes back to the DLQ with its replay count; its
// next replay counts 2.
func TestIntegrationReplayedDeadLetteredAgainCarriesReplayCount(t *testing.T) {
	ctx := context.Background()
	f := produceDeadLetters(t, 5)
	d := f.open()
	first, err := d.Get(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := d.Replay(ctx, dlqadmin.Filter{}, dlqadmin.ReplayOptions{Logger: quietLogger()}); err != nil || st.Replayed != 5 {
		t.Fatalf("replay: %+v, %v", st, err)
	}
	f.startConsumer() // fails them again
	f.waitDeadLettered(5)
	f.stop()

	again := collect(t, d, dlqadmin.Filter{})
	if len(again) != 5 {
		t.Fatalf("%d dead letters after the second failure; want 5", len(again))
	}
	dl := again[0]
	if dl.Sequence != 6 || string(dl.Data) != string(first.Data) || dl.ReplayCount() != 1 || dl.Reason() != ponixnats.ReasonInvalid ||
		dl.Header.Get(ponixnats.HeaderOriginalMsgID) != d.ReplayMsgID(1) || dl.OriginalSubject() != first.OriginalSubject() ||
		dl.OriginalSequence() == first.OriginalSequence() || dl.Header.Get("X-Custom") != "0" {
		t.Fatalf("dead letter after a failed replay: seq %d headers %v", dl.Sequence, dl.Header)
	}
	if st, err := d.Replay(ctx, dlqadmin.Filter{}, dlqadmin.ReplayOptions{Logger: quietLogger()}); err != nil || st.Replayed != 5 {
		t.Fatalf("second replay: %+v, %v", st, err)
	}
	// Each message was replayed twice in all, once with each count.
	for p, ms := range f.replayedInSource() {
		if len(ms) != 2 || ms[0].Header.Get(ponixnats.HeaderReplayCount) != "1" || ms[1].Header.Get(ponixnats.HeaderReplayCount) != "2" {
			t.Fatalf("%s replayed %d times", p, len(ms))
		}
	}
}

// TestIntegrationReplayFailuresLeaveDeadLetters: a publish the source stream
// refuses, and a malformed dead letter, stay in the dead-letter stream.
func TestIntegrationReplayFailuresLeaveDeadLetters(t *testing.T) {
	ctx := context.Background()
	f := produceDeadLetters(t, 6)
	d := f.open()

	// A dead letter without Ponix-Original-Subject (malformed).
	if _, err := f.js.PublishMsg(ctx, &nats.Msg{Subject: f.dlq + ".x", Data: []byte("no header"), Header: nats.Header{ponixnats.HeaderDLQReason: {"invalid"}}}); err != nil {
		t.Fatal(err)
	}
	// A dead letter whose original subject the DLQ itself captures.
	if _, err := f.js.PublishMsg(ctx, &nats.Msg{Subject: f.dlq + ".y", Data: []byte("loop"), Header: nats.Header{
		ponixnats.HeaderDLQReason: {"invalid"}, ponixnats.HeaderOriginalSubject: {f.dlq + ".y"}}}); err != nil {
		t.Fatal(err)
	}
	st, err := d.Replay(ctx, dlqadmin.Filter{FromSeq: 7}, dlqadmin.ReplayOptions{Logger: quietLogger()})
	if !errors.Is(err, dlqadmin.ErrReplayIncomplete) || st.Failed != 2 || st.Deleted != 0 || len(st.Failures) != 2 || st.Failures[0].Sequence != 7 {
		t.Fatalf("malformed dead letters: %+v, %v", st, err)
	}

	// The source stream is full and refuses new messages.
	src, err := f.js.Stream(ctx, f.stream)
	if err != nil {
		t.Fatal(err)
	}
	cfg := src.CachedInfo().Config
	cfg.MaxMsgs, cfg.Discard = int64(src.CachedInfo().State.Msgs), jetstream.DiscardNew
	if _, err := f.js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	st, err = d.Replay(ctx, dlqadmin.Filter{ToSeq: 6}, dlqadmin.ReplayOptions{Logger: quietLogger(), MaxFailures: 4})
	if !errors.Is(err, dlqadmin.ErrReplayIncomplete) || st.Matched != 4 || st.Failed != 4 || st.Replayed != 0 || st.Deleted != 0 {
		t.Fatalf("refused publishes: %+v, %v", st, err)
	}
	if f.dlqMsgs() != 8 || len(f.replayedInSource()) != 0 {
		t.Fatalf("after failed publishes: %d dead letters (want all 8), %d replayed (want 0)", f.dlqMsgs(), len(f.replayedInSource()))
	}

	// Room again: the same dead letters replay.
	cfg.MaxMsgs = -1
	if _, err := f.js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	st, err = d.Replay(ctx, dlqadmin.Filter{ToSeq: 6}, dlqadmin.ReplayOptions{Logger: quietLogger()})
	if err != nil || st.Replayed != 6 || st.Deleted != 6 {
		t.Fatalf("replay after the fix: %+v, %v", st, err)
	}
	checkReplayedOnce(t, f, 6, "1")
	if f.dlqMsgs() != 2 {
		t.Fatalf("%d dead letters left; want the 2 malformed ones", f.dlqMsgs())
	}
}

// TestIntegrationReplayWhileServiceRuns: reading and replaying next to a
// running consumer changes nothing of that consumer, and a replayed message
// that fails again during the replay is not replayed again by it.
func TestIntegrationReplayWhileServiceRuns(t *testing.T) {
	ctx := context.Background()
	f := newDLQFixture(t)
	for i := range 40 {
		f.publish(fmt.Sprintf("dev-%d", i%5), fmt.Sprintf("invalid|m%03d", i), nil)
	}
	f.waitDeadLettered(40)
	before := consumerInfo(t, f.c).Config

	d := f.open()
	st, err := d.Replay(ctx, dlqadmin.Filter{}, dlqadmin.ReplayOptions{Logger: quietLogger()})
	if err != nil || st.Matched != 40 || st.Replayed != 40 {
		t.Fatalf("replay: %+v, %v", st, err)
	}
	f.waitDeadLettered(80) // the running consumer fails them again
	after := consumerInfo(t, f.c)
	if after.Config.Durable != before.Durable || after.Config.AckPolicy != before.AckPolicy || after.NumAckPending != 0 {
		t.Fatalf("consumer changed: before %+v after %+v", before, after.Config)
	}
	sum, err := d.Summary(ctx, dlqadmin.Filter{})
	if err != nil || sum.Total != 40 || sum.FirstSeq != 41 {
		t.Fatalf("dead letters after the second failure: %+v, %v", sum, err)
	}
	for dl, err := range d.All(ctx, dlqadmin.Filter{Limit: 1}) {
		if err != nil || dl.ReplayCount() != 1 {
			t.Fatalf("second-generation dead letter: count %d, %v", dl.ReplayCount(), err)
		}
	}
}

// TestIntegrationReplayRefusesUndeletableDeadLetterStream: a dead-letter
// stream that denies deletes could not drop what was replayed, so Replay
// publishes nothing; reading and dry runs still work.
func TestIntegrationReplayRefusesUndeletableDeadLetterStream(t *testing.T) {
	ctx := context.Background()
	f := newDLQFixture(t)
	f.stop()
	name := f.stream + "_nodel"
	if _, err := f.js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{name + ".>"}, DenyDelete: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.js.PublishMsg(ctx, &nats.Msg{Subject: name + "." + f.stream + ".a", Data: []byte("x"), Header: nats.Header{
		ponixnats.HeaderDLQReason: {"invalid"}, ponixnats.HeaderOriginalSubject: {f.stream + ".a"}, ponixnats.HeaderOriginalStream: {f.stream}}}); err != nil {
		t.Fatal(err)
	}
	d, err := dlqadmin.Open(ctx, f.js, name)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := d.Replay(ctx, dlqadmin.Filter{}, dlqadmin.ReplayOptions{Logger: quietLogger()}); err == nil || st.Matched != 0 {
		t.Fatalf("replay from a deny-delete stream: %+v, %v", st, err)
	}
	if st, err := d.Replay(ctx, dlqadmin.Filter{}, dlqadmin.ReplayOptions{Logger: quietLogger(), DryRun: true}); err != nil || st.Matched != 1 {
		t.Fatalf("dry run on a deny-delete stream: %+v, %v", st, err)
	}
	if len(f.replayedInSource()) != 0 {
		t.Fatal("something was published")
	}
}
