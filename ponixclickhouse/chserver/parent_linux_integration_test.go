//go:build integration && linux

package chserver

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// helperDirEnv makes the test binary the helper of TestServerDiesWithItsParent: it starts a
// server on that directory, says so on stdout and waits to be killed.
const helperDirEnv = "CHSERVER_TEST_HELPER_DIR"

// TestHelperProcess is not a test: it is the parent process of TestServerDiesWithItsParent
// (the pattern of os/exec's own tests), and returns at once in a normal run.
func TestHelperProcess(t *testing.T) {
	dir := os.Getenv(helperDirEnv)
	if dir == "" {
		return
	}
	if _, err := Start(context.Background(), Config{Dir: dir}); err != nil {
		fmt.Println("start:", err)
		os.Exit(1)
	}
	fmt.Println("ready")
	select {}
}

// A server whose parent dies without stopping it (SIGKILL, a test binary that panics at its
// timeout) does not stay running: the kernel kills it with its parent (Linux).
func TestServerDiesWithItsParent(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	helper := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	helper.Env = append(os.Environ(), helperDirEnv+"="+dir)
	helper.Stderr = os.Stderr
	out, err := helper.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = helper.Process.Kill(); _ = helper.Wait() }()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "ready" {
		t.Fatalf("the helper did not start its server: %q, %v", line, err)
	}
	status, err := os.ReadFile(filepath.Join(dir, "data", "status"))
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	if _, err := fmt.Sscanf(string(status), "PID: %d", &pid); err != nil || pid <= 0 {
		t.Fatalf("no server pid in %s: %q", filepath.Join(dir, "data", "status"), status)
	}
	if !alive(pid) {
		t.Fatalf("the server (pid %d) is not running before its parent dies", pid)
	}
	if err := helper.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = helper.Wait()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for alive(pid) {
		select {
		case <-ctx.Done():
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("the server (pid %d) still runs after its parent was killed", pid)
		case <-tick.C:
		}
	}
}

// alive reports whether process pid exists and has not exited (a zombie has).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	state, ok := procState(b)
	return ok && state != 'Z' && state != 'X'
}
