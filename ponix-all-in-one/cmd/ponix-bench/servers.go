package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/ponix-go/ponix/ponixclickhouse/chserver"
	"github.com/ponix-go/ponix/ponixnats/embedded"
	"github.com/ponix-go/ponix/runner/backoff"
)

// serveNATS is the body of the "serve-nats" subcommand: the benchmark runs its
// NATS server as a child process (this same binary), so that the CPU and memory
// it reports for each pipeline are the pipeline's alone.
func serveNATS(args []string) int {
	if len(args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: ponix-bench serve-nats STORE_DIR PORT")
		return 2
	}
	port, err := strconv.Atoi(args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "serve-nats: port:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv, err := embedded.Start(ctx, embedded.Config{Port: port, StoreDir: args[0], ServerName: "ponix-bench"})
	if err != nil {
		fmt.Fprintln(os.Stderr, "serve-nats:", err)
		return 1
	}
	<-ctx.Done()
	srv.Stop()
	return 0
}

// natsProcess is a nats-server running as a child process.
type natsProcess struct {
	cmd *exec.Cmd
	url string
}

func startNATS(ctx context.Context, dir string) (*natsProcess, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, "serve-nats", filepath.Join(dir, "nats"), strconv.Itoa(port))
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start NATS child: %w", err)
	}
	p := &natsProcess{cmd: cmd, url: fmt.Sprintf("nats://127.0.0.1:%d", port)}
	listening, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	poll := backoff.Constant(50 * time.Millisecond).Start()
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.Close()
			return p, nil
		}
		if poll.Wait(listening) != nil {
			p.stop()
			return nil, errors.New("NATS child did not start listening")
		}
	}
}

func (p *natsProcess) pid() int { return p.cmd.Process.Pid }

func (p *natsProcess) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
}

func startClickHouse(ctx context.Context, dir string) (*chserver.Server, error) {
	return chserver.Start(ctx, chserver.Config{Dir: filepath.Join(dir, "clickhouse")})
}

// chPID finds the pid of the clickhouse-server listening for srv (0 if unknown).
func chPID(dir string) int {
	b, err := os.ReadFile(filepath.Join(dir, "clickhouse", "data", "status"))
	if err != nil {
		return 0
	}
	var pid int
	_, _ = fmt.Sscanf(string(b), "PID: %d", &pid)
	return pid
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
