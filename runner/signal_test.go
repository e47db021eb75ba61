package runner_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ponix-go/ponix/runner"
)

// scenarioEnv names the scenario a re-executed test binary runs instead of the tests.
const scenarioEnv = "RUNNER_TEST_SCENARIO"

func TestMain(m *testing.M) {
	if s := os.Getenv(scenarioEnv); s != "" {
		os.Exit(runScenario(s))
	}
	os.Exit(m.Run())
}

// runScenario is the body of the subprocess: a real Runner with real signal
// handling, reporting its progress on stdout.
func runScenario(name string) int {
	say := func(s string) { fmt.Println(s) }
	r := runner.New(runner.WithLogger(slog.New(slog.NewTextHandler(os.Stderr, nil))), runner.WithCloserTimeout(time.Minute))
	r.AddProcess("worker", func(ctx context.Context) error {
		say("ready")
		<-ctx.Done()
		say("worker stopping")
		return ctx.Err()
	})
	switch name {
	case "clean":
		r.AddCloser("flush", func(ctx context.Context) error { say("closer ran"); return nil })
	case "hung-closer":
		r.AddCloser("stuck", func(ctx context.Context) error {
			say("closing")
			select {} // never returns, ignores ctx
		})
	default:
		say("unknown scenario " + name)
		return 3
	}
	return runner.ExitCode(r.Run(context.Background()))
}

// startScenario re-executes the test binary as a subprocess running scenario.
func startScenario(t *testing.T, scenario string) (*exec.Cmd, *bufio.Scanner) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), scenarioEnv+"="+scenario)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd, bufio.NewScanner(out)
}

// waitLine reads stdout until a line equal to want, failing after a timeout.
func waitLine(t *testing.T, sc *bufio.Scanner, want string, seen *[]string) {
	t.Helper()
	found := make(chan bool, 1)
	go func() {
		for sc.Scan() {
			*seen = append(*seen, sc.Text())
			if sc.Text() == want {
				found <- true
				return
			}
		}
		found <- false
	}()
	select {
	case ok := <-found:
		if !ok {
			t.Fatalf("subprocess ended before printing %q; printed %q", want, *seen)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("subprocess did not print %q in time", want)
	}
}

// waitExit waits for the subprocess and returns its exit code.
func waitExit(t *testing.T, cmd *exec.Cmd, sc *bufio.Scanner, seen *[]string, within time.Duration) int {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		for sc.Scan() {
			*seen = append(*seen, sc.Text())
		}
		done <- cmd.Wait()
	}()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		if err != nil && !errors.Is(err, io.EOF) {
			t.Fatalf("wait: %v", err)
		}
		return 0
	case <-time.After(within):
		t.Fatalf("subprocess did not exit within %s", within)
		return -1
	}
}

func TestSIGTERMShutsDownCleanly(t *testing.T) {
	cmd, sc := startScenario(t, "clean")
	var seen []string
	waitLine(t, sc, "ready", &seen)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	code := waitExit(t, cmd, sc, &seen, 10*time.Second)
	if code != 0 {
		t.Errorf("exit code = %d, want 0 after a clean SIGTERM shutdown", code)
	}
	out := strings.Join(seen, "\n")
	if !strings.Contains(out, "worker stopping\ncloser ran") {
		t.Errorf("want the worker to stop and then the closer to run; stdout:\n%s", out)
	}
}

func TestDuplicateSignalIsNotASecondSignal(t *testing.T) {
	cmd, sc := startScenario(t, "clean")
	var seen []string
	waitLine(t, sc, "ready", &seen)
	// As timeout(1) does: the same signal twice, at once.
	_ = cmd.Process.Signal(syscall.SIGTERM)
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if code := waitExit(t, cmd, sc, &seen, 10*time.Second); code != 0 {
		t.Errorf("exit code = %d, want 0: a duplicate signal must not force an exit", code)
	}
}

func TestSecondSignalDuringShutdownExitsAtOnce(t *testing.T) {
	cmd, sc := startScenario(t, "hung-closer")
	var seen []string
	waitLine(t, sc, "ready", &seen)
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	waitLine(t, sc, "closing", &seen) // the closer hangs with a 1-minute timeout
	time.Sleep(runner.DuplicateSignalWindow + 100*time.Millisecond)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	code := waitExit(t, cmd, sc, &seen, 5*time.Second)
	if code != runner.ForcedExitCode {
		t.Errorf("exit code = %d, want %d after a second signal", code, runner.ForcedExitCode)
	}
}
