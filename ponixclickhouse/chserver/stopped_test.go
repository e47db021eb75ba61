package chserver

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// fakeTasks makes a /proc/PID/task-like directory whose threads have the given stat lines.
func fakeTasks(t *testing.T, stats map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for tid, stat := range stats {
		if err := os.MkdirAll(filepath.Join(dir, tid), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, tid, "stat"), []byte(stat), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestRunningThreadsReadsTheStateAfterTheCommandName(t *testing.T) {
	dir := fakeTasks(t, map[string]string{
		"10": "10 (clickhouse-serv) T 1 10 10 0 -1",
		"11": "11 (Bg) R (x) S) R 1 10 10 0 -1", // a command name with ") S)" in it: the last ')' ends it
		"12": "12 (traced) t 1 10 10 0 -1",
		"13": "13 (io) D 1 10 10 0 -1",
	})
	n, err := runningThreads(dir)
	if err != nil || n != 2 {
		t.Fatalf("runningThreads = %d, %v; want 2 (R and D), nil", n, err)
	}
	if err := waitStopped(dir, 20*time.Millisecond); err == nil {
		t.Fatal("waitStopped returned nil while two threads run")
	}
}

func TestWaitStoppedReturnsOnceEveryThreadIsStopped(t *testing.T) {
	dir := fakeTasks(t, map[string]string{"10": "10 (a) T 1", "11": "11 (b) t 1", "12": "12 (exited) Z 1"})
	if err := waitStopped(dir, time.Second); err != nil {
		t.Fatal(err)
	}
	// No such directory (no procfs): nothing to wait on.
	if err := waitStopped(filepath.Join(dir, "none"), time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestRunningThreadsRefusesAStatWithoutState(t *testing.T) {
	dir := fakeTasks(t, map[string]string{"10": "10 (cut"})
	if _, err := runningThreads(dir); err == nil {
		t.Fatal("a stat line without a state was read")
	}
}
