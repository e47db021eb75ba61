//go:build integration

package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	envelopev1 "buf.build/gen/go/ponix/ponix/protocolbuffers/go/envelope/v1"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ponix-go/ponix/ponixnats"
	"github.com/ponix-go/ponix/ponixnats/natstest"
)

// dlqProc is a running "ponix-all-in-one dlq ..." process.
type dlqProc struct {
	cmd            *exec.Cmd
	stdout, stderr *syncBuffer
	done           chan struct{}
}

// startDLQ starts the binary with args and only the given PONIX_* variables.
func startDLQ(t *testing.T, env map[string]string, args ...string) *dlqProc {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"dlq"}, args...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	p := &dlqProc{cmd: cmd, stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.stdout, p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

func (p *dlqProc) wait(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(within):
		t.Fatalf("dlq %v did not exit within %s\nstdout: %s\nstderr: %s", p.cmd.Args[1:], within, p.stdout.String(), p.stderr.String())
		return -1
	}
}

// runDLQ runs the binary to its end and returns exit status, stdout and
// stderr.
func runDLQ(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	p := startDLQ(t, env, args...)
	code := p.wait(t, 2*time.Minute)
	return code, p.stdout.String(), p.stderr.String()
}

// mustDLQ runs the binary and fails the test unless it exits 0; the session
// is logged (go test -v shows it).
func mustDLQ(t *testing.T, env map[string]string, args ...string) string {
	t.Helper()
	code, out, errOut := runDLQ(t, env, args...)
	t.Logf("$ ponix-all-in-one dlq %s\n%s%s(exit %d)", strings.Join(args, " "), errOut, out, code)
	if code != 0 {
		t.Fatalf("dlq %v: exit %d\nstdout: %s\nstderr: %s", args, code, out, errOut)
	}
	return out
}

func dlqEnvFor(url string) map[string]string {
	return map[string]string{"PONIX_NATS_URL": url, "PONIX_LOG_LEVEL": "info"}
}

func dlqJS(t *testing.T, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// garbage is an undecodable payload: a length-delimited field 1 that claims
// 127 bytes and has fewer.
func garbage(i int) []byte { return append([]byte{0x0a, 0x7f}, fmt.Sprintf("garbage-%d", i)...) }

// makeDeadLetters publishes n messages to processed_envelopes (3 of 5 are
// envelopes without occurred_at, 2 of 5 are undecodable), has the service's
// envelope processor dead-letter them through a real ponixnats.Consumer, and
// returns their payloads.
func makeDeadLetters(t *testing.T, js jetstream.JetStream, n int) [][]byte {
	t.Helper()
	ctx := t.Context()
	if _, err := ponixnats.EnsureStream(ctx, js, ponixnats.StreamConfig{Name: "processed_envelopes"}); err != nil {
		t.Fatal(err)
	}
	payloads := make([][]byte, n)
	for i := range n {
		dev := fmt.Sprintf("dev-%02d", i%20)
		if i%5 < 2 {
			payloads[i] = garbage(i)
		} else {
			b, err := proto.Marshal(&envelopev1.ProcessedEnvelope{
				EndDeviceId:    dev,
				OrganizationId: fmt.Sprintf("org-%d", i), // unique: identifies the message
				ProcessedAt:    timestamppb.New(time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)),
			})
			if err != nil {
				t.Fatal(err)
			}
			payloads[i] = b
		}
		if _, err := js.PublishAsync("processed_envelopes."+dev, payloads[i]); err != nil {
			t.Fatal(err)
		}
		if (i+1)%1000 == 0 || i == n-1 {
			// Wait for the stream's acks of each thousand: more outstanding than the client's
			// limit (4,000) stall, and fail, when a loaded machine acks slowly.
			select {
			case <-js.PublishAsyncComplete():
			case <-time.After(time.Minute):
				t.Fatal("publishing did not complete")
			}
		}
	}
	store := func(context.Context, ponixnats.Batch[ponixnats.Decoded[*envelopev1.ProcessedEnvelope]]) error {
		return nil
	}
	c, err := ponixnats.NewConsumer(ctx, js, ponixnats.ConsumerConfig{
		Stream: "processed_envelopes", Durable: "ponix-all-in-one", BatchSize: 1000, MaxWait: 300 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, ponixnats.NewEnvelopeProcessor(store))
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(runCtx) }()
	deadline := time.Now().Add(2 * time.Minute)
	for c.Stats().DeadLettered < uint64(n) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d dead-lettered; stats %+v", c.Stats().DeadLettered, n, c.Stats())
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := streamMsgs(t, js, "processed_envelopes_dlq"); got != uint64(n) {
		t.Fatalf("dead-letter stream holds %d messages; want %d", got, n)
	}
	return payloads
}

func streamMsgs(t *testing.T, js jetstream.JetStream, name string) uint64 {
	t.Helper()
	st, err := js.Stream(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// replayedCopies reads the whole processed_envelopes stream and counts, per
// payload, the messages that carry Ponix-Replay-Count (the replayed ones),
// failing on any that is not on its original subject or has a wrong count.
func replayedCopies(t *testing.T, js jetstream.JetStream) map[string]int {
	t.Helper()
	ctx := t.Context()
	cons, err := js.OrderedConsumer(ctx, "processed_envelopes", jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	total := cons.CachedInfo().NumPending
	it, err := cons.Messages()
	if err != nil {
		t.Fatal(err)
	}
	defer it.Stop()
	out := map[string]int{}
	for range total {
		m, err := it.Next(jetstream.NextMaxWait(10 * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if m.Headers().Get(ponixnats.HeaderReplayCount) == "" {
			continue
		}
		if c := m.Headers().Get(ponixnats.HeaderReplayCount); c != "1" {
			t.Fatalf("replayed message on %s has %s=%s; want 1", m.Subject(), ponixnats.HeaderReplayCount, c)
		}
		if m.Headers().Get(ponixnats.HeaderDLQReason) != "" || !strings.HasPrefix(m.Subject(), "processed_envelopes.dev-") {
			t.Fatalf("replayed message on %s with headers %v", m.Subject(), m.Headers())
		}
		out[string(m.Data())]++
	}
	return out
}

var (
	progressLine = regexp.MustCompile(`replay: (\d+)/(\d+) handled`)
	summaryLine  = regexp.MustCompile(`replay: matched (\d+), replayed (\d+), duplicates (\d+) \(already replayed\), deleted (\d+), failed (\d+)`)
)

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestDLQListShowReplayKilledAndRerun runs the real binary's dlq commands
// against 5,000 dead letters made by the real dead-letter path: list and
// show them, a dry run that changes nothing, a replay killed with SIGKILL
// half way and run again: every dead letter ends up in the source stream
// exactly once and the dead-letter stream is empty.
func TestDLQListShowReplayKilledAndRerun(t *testing.T) {
	t.Parallel() // servers of its own
	const n = 5000
	srv := natstest.New(t)
	js := dlqJS(t, srv.URL())
	payloads := makeDeadLetters(t, js, n)
	env := dlqEnvFor(srv.URL())

	// list: counts by reason and subject.
	out := mustDLQ(t, env, "list", "--top", "3")
	for _, want := range []string{"processed_envelopes_dlq: 5000 dead letters, sequences 1-5000", "invalid", "3000", "decode", "2000", "... and 17 more subjects"} {
		if !strings.Contains(out, want) {
			t.Errorf("list output lacks %q:\n%s", want, out)
		}
	}
	var sum struct {
		Total     int            `json:"total"`
		ByReason  map[string]int `json:"by_reason"`
		BySubject map[string]int `json:"by_subject"`
		FirstSeq  uint64         `json:"first_seq"`
		LastSeq   uint64         `json:"last_seq"`
	}
	if err := json.Unmarshal([]byte(mustDLQ(t, env, "list", "--json")), &sum); err != nil {
		t.Fatal(err)
	}
	if sum.Total != n || sum.ByReason["invalid"] != 3000 || sum.ByReason["decode"] != 2000 || len(sum.BySubject) != 20 ||
		sum.BySubject["processed_envelopes.dev-07"] != 250 || sum.FirstSeq != 1 || sum.LastSeq != n {
		t.Fatalf("list --json: %+v", sum)
	}
	if code, _, errOut := runDLQ(t, env, "list", "--subject", "processed_envelopes.dev-0*"); code != 2 || !strings.Contains(errOut, "dev-0*") {
		t.Fatalf("a subject pattern with '*' inside a token: exit %d, %s", code, errOut)
	}
	if err := json.Unmarshal([]byte(mustDLQ(t, env, "list", "--json", "--reason", "decode", "--subject", "processed_envelopes.dev-00,processed_envelopes.dev-02")), &sum); err != nil {
		t.Fatal(err)
	}
	if sum.Total != 250 { // 250 each; dev-00 gets only undecodable ones, dev-02 only invalid envelopes
		t.Fatalf("list --reason decode --subject dev-00,dev-02: total %d; want 250", sum.Total)
	}

	// show: one by sequence (an invalid envelope as JSON, an undecodable one
	// in hex), and the first N of a filter.
	out = mustDLQ(t, env, "show", "3")
	for _, want := range []string{"=== dead letter 3: subject processed_envelopes_dlq.processed_envelopes.dev-02", "Ponix-Dlq-Reason: invalid",
		"Ponix-Original-Subject: processed_envelopes.dev-02", "Ponix-Original-Stream: processed_envelopes", `"organization_id": "org-2"`, `"end_device_id": "dev-02"`} {
		if !strings.Contains(out, want) {
			t.Errorf("show 3 lacks %q:\n%s", want, out)
		}
	}
	out = mustDLQ(t, env, "show", "1")
	for _, want := range []string{"Ponix-Dlq-Reason: decode", "not a ProcessedEnvelope", "0a 7f 67 61 72 62 61 67  65 2d 30"} {
		if !strings.Contains(out, want) {
			t.Errorf("show 1 lacks %q:\n%s", want, out)
		}
	}
	out = mustDLQ(t, env, "show", "--reason", "invalid", "--subject", "processed_envelopes.dev-04", "--limit", "2")
	if c := strings.Count(out, "=== dead letter "); c != 2 || !strings.Contains(out, "=== dead letter 5:") || !strings.Contains(out, "=== dead letter 25:") {
		t.Fatalf("show with a filter printed %d dead letters:\n%s", c, out)
	}
	if code, _, errOut := runDLQ(t, env, "show", "999999"); code != 1 || !strings.Contains(errOut, "no dead letter at sequence [999999]") {
		t.Fatalf("show of a missing sequence: exit %d, %s", code, errOut)
	}

	// replay --dry-run lists and changes nothing.
	out = mustDLQ(t, env, "replay", "--dry-run", "--subject", "processed_envelopes.dev-03")
	if c := strings.Count(out, "would replay "); c != 250 || !strings.Contains(out, "dry run: 250 dead letters would be replayed; nothing was changed") {
		t.Fatalf("dry run listed %d:\n%.2000s", c, out)
	}
	if got := streamMsgs(t, js, "processed_envelopes_dlq"); got != n {
		t.Fatalf("dry run left %d dead letters; want %d", got, n)
	}
	if got := replayedCopies(t, js); len(got) != 0 {
		t.Fatalf("dry run published %d messages", len(got))
	}

	// replay, killed with SIGKILL half way.
	p := startDLQ(t, env, "replay", "--rate", "1000")
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if m := progressLine.FindAllStringSubmatch(p.stderr.String(), -1); len(m) > 0 && atoi(t, m[len(m)-1][1]) >= 1000 {
			break
		}
		select {
		case <-p.done:
			t.Fatalf("replay ended before it was killed\nstdout: %s\nstderr: %s", p.stdout.String(), p.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no progress line with 1000 handled\nstderr: %s", p.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	p.wait(t, 30*time.Second)
	t.Logf("$ ponix-all-in-one dlq replay --rate 1000   # killed with SIGKILL\n%s%s", p.stderr.String(), p.stdout.String())
	left := streamMsgs(t, js, "processed_envelopes_dlq")
	if left == 0 || left >= n {
		t.Fatalf("after the kill %d dead letters are left; want some replayed and some not", left)
	}
	if !strings.Contains(p.stderr.String(), "duplicate_window=2m0s") {
		t.Errorf("replay did not report the duplicate window:\n%s", p.stderr.String())
	}
	mustDLQ(t, env, "list", "--top", "3")

	// Run again: finishes the rest; at most the one dead letter in flight at
	// the kill is a duplicate.
	out = mustDLQ(t, env, "replay")
	m := summaryLine.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no summary line:\n%s", out)
	}
	matched, replayed, dups, deleted, failed := atoi(t, m[1]), atoi(t, m[2]), atoi(t, m[3]), atoi(t, m[4]), atoi(t, m[5])
	if matched != int(left) || deleted != int(left) || failed != 0 || dups > 1 || replayed+dups != int(left) {
		t.Fatalf("second run: %s (left after the kill: %d)", m[0], left)
	}
	if got := streamMsgs(t, js, "processed_envelopes_dlq"); got != 0 {
		t.Fatalf("%d dead letters left after the second run", got)
	}
	copies := replayedCopies(t, js)
	if len(copies) != n {
		t.Fatalf("%d distinct replayed messages; want %d", len(copies), n)
	}
	for i, p := range payloads {
		if copies[string(p)] != 1 {
			t.Fatalf("message %d is %d times in the source stream; want once", i, copies[string(p)])
		}
	}

	// And once more: nothing to do.
	if out := mustDLQ(t, env, "replay"); !strings.Contains(out, "nothing to replay") {
		t.Fatalf("third run: %s", out)
	}
	if out := mustDLQ(t, env, "list"); !strings.Contains(out, "processed_envelopes_dlq: 0 dead letters") {
		t.Fatalf("list after the replay: %s", out)
	}
}

// TestDLQExitStatusesAndHelp: -h of every command exits 0; usage and
// configuration mistakes exit 2; runtime failures exit 1.
func TestDLQExitStatusesAndHelp(t *testing.T) {
	t.Parallel() // servers of its own
	srv := natstest.New(t)
	env := dlqEnvFor(srv.URL())
	for _, args := range [][]string{{"-h"}, {"list", "-h"}, {"show", "-h"}, {"replay", "-h"}} {
		code, out, errOut := runDLQ(t, env, args...)
		if code != 0 || !strings.Contains(out, "Usage: ponix-all-in-one dlq") {
			t.Errorf("dlq %v: exit %d\nstdout: %s\nstderr: %s", args, code, out, errOut)
		}
	}
	cmd := exec.Command(binary, "-h")
	usage, err := cmd.Output()
	if err != nil || !strings.Contains(string(usage), "dlq list|show|replay") {
		t.Errorf("ponix-all-in-one -h does not mention dlq (%v):\n%s", err, usage)
	}
	for _, c := range []struct {
		args []string
		env  map[string]string
		code int
		want string
	}{
		{[]string{}, env, 2, "Usage:"},
		{[]string{"bogus"}, env, 2, "unknown command"},
		{[]string{"list", "--nope"}, env, 2, "flag provided but not defined"},
		{[]string{"replay", "--since", "last tuesday"}, env, 2, "--since"},
		{[]string{"list"}, map[string]string{"PONIX_NATS_URL": srv.URL(), "PONIX_LOG_LEVEL": "loud"}, 2, "PONIX_LOG_LEVEL"},
		{[]string{"list"}, dlqEnvFor("nats://127.0.0.1:1"), 1, "cannot reach NATS server"},
		{[]string{"show", "1"}, env, 1, "no dead letter 1"}, // no dead-letter stream on this server
	} {
		code, out, errOut := runDLQ(t, c.env, c.args...)
		if code != c.code || !strings.Contains(errOut, c.want) {
			t.Errorf("dlq %v: exit %d, want %d with %q\nstdout: %s\nstderr: %s", c.args, code, c.code, c.want, out, errOut)
		}
	}
	// Without a dead-letter stream, list and replay have nothing to do.
	if code, out, _ := runDLQ(t, env, "list"); code != 0 || !strings.Contains(out, "0 dead letters") {
		t.Errorf("list without a dead-letter stream: exit %d, %s", code, out)
	}
	if code, out, _ := runDLQ(t, env, "replay"); code != 0 || !strings.Contains(out, "nothing to replay") {
		t.Errorf("replay without a dead-letter stream: exit %d, %s", code, out)
	}
}
