//go:build integration

package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ponix-go/ponix/ponix-all-in-one/internal/statuscmd"
	"github.com/ponix-go/ponix/ponixclickhouse/chserver"
	"github.com/ponix-go/ponix/ponixnats/natstest"
)

// terminal is a tmux server of the test's own (its own socket) running one command in a
// 160x40 window: the screen is read as a person sees it.
type terminal struct {
	t      *testing.T
	socket string
}

// startTerminal runs binary with args and env in a new tmux session.
func startTerminal(t *testing.T, env map[string]string, args ...string) *terminal {
	t.Helper()
	tm := &terminal{t: t, socket: fmt.Sprintf("ponix-status-test-%d-%d", os.Getpid(), time.Now().UnixNano())}
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	words := []string{"env"}
	for _, k := range keys {
		words = append(words, shellQuote(k+"="+env[k]))
	}
	words = append(words, shellQuote(binary))
	for _, a := range args {
		words = append(words, shellQuote(a))
	}
	tm.tmux("new-session", "-d", "-s", "status", "-x", "160", "-y", "40", strings.Join(words, " "))
	tm.tmux("set-option", "-t", "status", "remain-on-exit", "on") // a crash stays on the screen
	t.Cleanup(func() { _ = exec.Command("tmux", "-L", tm.socket, "kill-server").Run() })
	return tm
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func (tm *terminal) tmux(args ...string) string {
	tm.t.Helper()
	cmd := exec.Command("tmux", append([]string{"-L", tm.socket}, args...)...)
	cmd.Env = append(os.Environ(), "TERM=xterm-256color")
	out, err := cmd.CombinedOutput()
	if err != nil {
		tm.t.Fatalf("tmux %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// screen is what the terminal shows now.
func (tm *terminal) screen() string {
	return strings.TrimRight(tm.tmux("capture-pane", "-p", "-t", "status"), "\n")
}

// waitScreen polls the screen until ok holds, and fails with the last screen after within.
func (tm *terminal) waitScreen(within time.Duration, what string, ok func(string) bool) string {
	tm.t.Helper()
	deadline := time.Now().Add(within)
	for {
		s := tm.screen()
		if ok(s) {
			return s
		}
		if time.Now().After(deadline) {
			tm.t.Fatalf("the screen did not show %s within %s; it shows:\n%s", what, within, s)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

var tableRows = regexp.MustCompile(`(?m)^table +\S+: ([0-9,]+) rows`)

// rowsOnScreen is the table's row count the screen shows (-1: none).
func rowsOnScreen(screen string) int {
	m := tableRows.FindStringSubmatch(screen)
	if m == nil {
		return -1
	}
	var n int
	fmt.Sscan(strings.ReplaceAll(m[1], ",", ""), &n)
	return n
}

// jetstreamPublish publishes data to subject and waits for the stream's acknowledgement.
func jetstreamPublish(nc *nats.Conn, subject string, data []byte) (*jetstream.PubAck, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return js.Publish(ctx, subject, data)
}

// statusJSON runs "status -json" once and decodes its snapshot.
func statusJSON(t *testing.T, env map[string]string, args ...string) (statuscmd.Snapshot, int) {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"status", "-json"}, args...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := cmd.ProcessState.ExitCode()
	if err != nil && code <= 0 {
		t.Fatalf("status -json: %v\n%s", err, stderr.String())
	}
	var s statuscmd.Snapshot
	if err := json.Unmarshal(stdout.Bytes(), &s); err != nil {
		t.Fatalf("status -json printed no snapshot (%v):\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	return s, code
}

// status in a real terminal (tmux) and through -json: data flowing, then ClickHouse stopped
// (the hold and its cause appear on the screen within seconds, the exit status turns 1),
// then ClickHouse started again (the hold clears, the status is OK again).
func TestStatusInTerminalAndJSON(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv, db, _ := ownClickHouse(t, dir, 0)
	port := portOf(t, srv.Addr())
	nsrv := natstest.New(t)
	env := baseEnv(t, db)
	env["PONIX_NATS_URL"] = nsrv.URL()
	svc := startService(t, env) // publishes a sample envelope every second
	base := httpBase(t, svc)

	tm := startTerminal(t, env, "status", "-watch", "-interval", "500ms", "-timeout", "2s", "-service", base)
	screen := tm.waitScreen(60*time.Second, "data flowing (rows, a rate, no hold, OK)", func(s string) bool {
		return rowsOnScreen(s) > 0 && strings.Contains(s, "  OK") && strings.Contains(s, "/s over") &&
			regexp.MustCompile(`(?m)^hold +none`).MatchString(s) && strings.Contains(s, "newest stored envelope")
	})
	t.Logf("flowing:\n%s", screen)
	if strings.Contains(screen, "\x1b") {
		t.Errorf("control sequences visible on the screen:\n%q", screen)
	}

	// A message that is no envelope is dead-lettered: it shows by reason, as a warning.
	nc, err := nats.Connect(nsrv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := jetstreamPublish(nc, "processed_envelopes.not-an-envelope", []byte{0xff, 0x01}); err != nil {
		t.Fatal(err)
	}
	tm.waitScreen(30*time.Second, "the dead letter by reason", func(s string) bool {
		return regexp.MustCompile(`(?m)^dead letters 1: \S+ 1$`).MatchString(s) && strings.Contains(s, "warning      1 dead letters")
	})

	healthy, code := statusJSON(t, env, "-service", base)
	if code != 0 || !healthy.OK || healthy.Stream == nil || healthy.Consumer == nil || healthy.Table == nil ||
		healthy.Table.Rows == 0 || !healthy.Hold.Known || healthy.Hold.Held || healthy.Stored.PerSecond == nil ||
		healthy.Stored.NewestAgeSeconds == nil || *healthy.Stored.NewestAgeSeconds > 30 || healthy.Stored.NewestSource != "service" ||
		healthy.DeadLetters == nil || healthy.DeadLetters.Total != 1 || len(healthy.DeadLetters.ByReason) != 1 || len(healthy.Warnings) != 1 {
		t.Errorf("healthy -json: exit %d, %+v", code, healthy)
	}
	// Without the service's address: what NATS and ClickHouse say, the hold unknown.
	direct, code := statusJSON(t, env, "-window", "0")
	if code != 0 || !direct.OK || direct.Hold.Known || direct.Table == nil || direct.Stored.NewestSource != "table" {
		t.Errorf("-json without -service: exit %d, %+v", code, direct)
	}

	stopped := time.Now()
	if err := srv.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	screen = tm.waitScreen(15*time.Second, "the hold and its cause", func(s string) bool {
		return strings.Contains(s, "PROBLEM") && regexp.MustCompile(`(?m)^hold +HELD for .*class unreachable: `).MatchString(s)
	})
	t.Logf("hold on the screen %s after ClickHouse was told to stop:\n%s", time.Since(stopped).Round(100*time.Millisecond), screen)
	if !strings.Contains(screen, "ClickHouse: ") {
		t.Errorf("the screen does not say ClickHouse is unreachable from status itself:\n%s", screen)
	}
	held, code := statusJSON(t, env, "-service", base, "-window", "0")
	if code != 1 || held.OK || !held.Hold.Held || held.Hold.Class != "unreachable" || held.Hold.Cause == "" || len(held.Problems) == 0 {
		t.Errorf("held -json: exit %d, %+v", code, held)
	}

	srv2, err := chserver.Start(context.Background(), chserver.Config{Dir: dir, TCPPort: port, User: "ponix", Password: "ponix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv2.Stop(context.Background()) })
	restarted := time.Now()
	rowsHeld := rowsOnScreen(screen)
	screen = tm.waitScreen(60*time.Second, "the hold cleared", func(s string) bool {
		return strings.Contains(s, "  OK") && regexp.MustCompile(`(?m)^hold +none`).MatchString(s) && rowsOnScreen(s) > rowsHeld
	})
	t.Logf("clear %s after ClickHouse restarted:\n%s", time.Since(restarted).Round(100*time.Millisecond), screen)
	if _, code := statusJSON(t, env, "-service", base, "-window", "0"); code != 0 {
		t.Errorf("status exit %d after recovery, want 0", code)
	}
}
