package chcluster

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// docker runs the docker command with args (stdin, if not nil, on its standard input) and returns
// its standard output. The error carries the command's standard error.
func (c *Cluster) docker(ctx context.Context, stdin []byte, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, c.cfg.Docker, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		what := args
		if len(what) > 3 {
			what = what[:3]
		}
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			return "", fmt.Errorf("docker %s: %w", strings.Join(what, " "), err)
		}
		return "", fmt.Errorf("docker %s: %w: %s", strings.Join(what, " "), err, msg)
	}
	return strings.TrimSpace(stdout.String()), nil
}

// Stop stops n's container (docker stop: SIGTERM, SIGKILL after 10 s). Its data stays.
func (c *Cluster) Stop(ctx context.Context, n *Node) error {
	if _, err := c.docker(ctx, nil, "stop", n.Name); err != nil {
		return fmt.Errorf("chcluster: stop %s: %w", n.Name, err)
	}
	c.log.Info("chcluster: stopped", "node", n.Name)
	return nil
}

// Start starts n's stopped or killed container again, with the same name, address and data. It
// does not wait for the server: call WaitReady.
func (c *Cluster) Start(ctx context.Context, n *Node) error {
	if _, err := c.docker(ctx, nil, "start", n.Name); err != nil {
		return fmt.Errorf("chcluster: start %s: %w", n.Name, err)
	}
	c.log.Info("chcluster: started", "node", n.Name)
	return nil
}

// Kill kills n's container with SIGKILL: no shutdown, as a crash or power loss.
func (c *Cluster) Kill(ctx context.Context, n *Node) error {
	if _, err := c.docker(ctx, nil, "kill", "--signal", "KILL", n.Name); err != nil {
		return fmt.Errorf("chcluster: kill %s: %w", n.Name, err)
	}
	// docker kill returns once the signal is sent; wait for the container to be gone so that the
	// caller's next step sees a dead node.
	if _, err := c.docker(ctx, nil, "wait", n.Name); err != nil {
		return fmt.Errorf("chcluster: kill %s: wait: %w", n.Name, err)
	}
	c.log.Info("chcluster: killed", "node", n.Name)
	return nil
}

// Pause freezes every process of n's container (docker pause, the cgroup freezer): the node
// keeps its connections and its address but answers nothing — a stalled server, or one whose
// machine hangs. Unpause thaws it.
func (c *Cluster) Pause(ctx context.Context, n *Node) error {
	if _, err := c.docker(ctx, nil, "pause", n.Name); err != nil {
		return fmt.Errorf("chcluster: pause %s: %w", n.Name, err)
	}
	c.log.Info("chcluster: paused", "node", n.Name)
	return nil
}

// Unpause thaws a node frozen by Pause.
func (c *Cluster) Unpause(ctx context.Context, n *Node) error {
	if _, err := c.docker(ctx, nil, "unpause", n.Name); err != nil {
		return fmt.Errorf("chcluster: unpause %s: %w", n.Name, err)
	}
	c.log.Info("chcluster: unpaused", "node", n.Name)
	return nil
}

// Restart stops n, starts it again and waits until it is ready: the time a rolling restart of
// one node takes.
func (c *Cluster) Restart(ctx context.Context, n *Node) error {
	if err := c.Stop(ctx, n); err != nil {
		return err
	}
	if err := c.Start(ctx, n); err != nil {
		return err
	}
	return c.WaitReady(ctx, n)
}

// Disconnect cuts n off the private network (docker network disconnect): a real partition, in
// which n reaches neither its peers nor ZooKeeper, and neither they nor the test process reach n.
// The process inside keeps running.
func (c *Cluster) Disconnect(ctx context.Context, n *Node) error {
	if _, err := c.docker(ctx, nil, "network", "disconnect", "--force", c.network, n.Name); err != nil {
		return fmt.Errorf("chcluster: disconnect %s: %w", n.Name, err)
	}
	c.log.Info("chcluster: disconnected", "node", n.Name)
	return nil
}

// Connect heals a partition made by Disconnect: n joins the network again with its address.
func (c *Cluster) Connect(ctx context.Context, n *Node) error {
	if _, err := c.docker(ctx, nil, "network", "connect", "--ip", n.IP, "--alias", n.Name, c.network, n.Name); err != nil {
		return fmt.Errorf("chcluster: connect %s: %w", n.Name, err)
	}
	c.log.Info("chcluster: connected", "node", n.Name)
	return nil
}

// StopZooKeeper stops the ZooKeeper container. Its data stays; StartZooKeeper brings it back.
func (c *Cluster) StopZooKeeper(ctx context.Context) error { return c.Stop(ctx, c.zk) }

// StartZooKeeper starts the ZooKeeper container again and waits until it answers.
func (c *Cluster) StartZooKeeper(ctx context.Context) error {
	if err := c.Start(ctx, c.zk); err != nil {
		return err
	}
	return c.WaitReady(ctx, c.zk)
}

// Heal undoes every fault on n: it connects n again if it is disconnected, thaws it if it is
// paused, starts it if it is not running, and waits until it is ready. Tests call it at
// cleanup.
func (c *Cluster) Heal(ctx context.Context, n *Node) error {
	out, err := c.docker(ctx, nil, "inspect", "--format",
		`{{.State.Running}} {{.State.Paused}} {{if index .NetworkSettings.Networks "`+c.network+`"}}connected{{end}}`, n.Name)
	if err != nil {
		return fmt.Errorf("chcluster: heal %s: %w", n.Name, err)
	}
	f := strings.Fields(out)
	running, paused, connected := len(f) > 0 && f[0] == "true", len(f) > 1 && f[1] == "true", strings.HasSuffix(out, "connected")
	if paused {
		if err := c.Unpause(ctx, n); err != nil {
			return err
		}
	}
	if !connected {
		if err := c.Connect(ctx, n); err != nil {
			return err
		}
	}
	if !running {
		if err := c.Start(ctx, n); err != nil {
			return err
		}
	}
	return c.WaitReady(ctx, n)
}

// Running reports whether n's container is running (per docker inspect).
func (c *Cluster) Running(ctx context.Context, n *Node) (bool, error) {
	out, err := c.docker(ctx, nil, "inspect", "--format", "{{.State.Running}}", n.Name)
	if err != nil {
		return false, fmt.Errorf("chcluster: inspect %s: %w", n.Name, err)
	}
	return out == "true", nil
}

// Logs returns the output of n's container (standard output and error, interleaved as docker
// stored them).
func (c *Cluster) Logs(ctx context.Context, n *Node) (string, error) {
	cmd := exec.CommandContext(ctx, c.cfg.Docker, "logs", n.Name)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("chcluster: logs of %s: %w: %s", n.Name, err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// allLogs returns the state and the last lines of every container's log, for an error message.
func (c *Cluster) allLogs(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var b strings.Builder
	for _, n := range c.all() {
		if n == nil {
			continue
		}
		state, err := c.docker(ctx, nil, "inspect", "--format",
			"{{.State.Status}} exit={{.State.ExitCode}} oom={{.State.OOMKilled}} {{.State.Error}}", n.Name)
		if err != nil {
			if strings.Contains(err.Error(), "No such object") {
				continue // never created
			}
			state = err.Error()
		}
		fmt.Fprintf(&b, "\n--- %s: %s; last 60 lines of its log:\n", n.Name, state)
		cmd := exec.CommandContext(ctx, c.cfg.Docker, "logs", "--tail", "60", n.Name)
		cmd.WaitDelay = 5 * time.Second
		out, _ := cmd.CombinedOutput()
		b.Write(bytes.TrimRight(out, "\n"))
	}
	return b.String()
}
