package chcluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"syscall"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/ponix-go/ponix/runner/backoff"
)

// probeEvery is the wait between two probes of a node or of ZooKeeper that is not ready yet.
const probeEvery = 250 * time.Millisecond

// Options returns clickhouse-go options for the native protocol to node n as the cluster's user,
// database "default": a 5 s dial timeout, a 2 min read timeout, the driver's logging discarded
// (it warns that 18.16 is older than it supports, which is harmless). Adjust them before
// clickhouse.Open as a test needs.
func (c *Cluster) Options(n *Node) *clickhouse.Options {
	return &clickhouse.Options{
		Protocol: clickhouse.Native,
		Addr:     []string{n.Addr()},
		Auth: clickhouse.Auth{
			Database: "default",
			Username: c.cfg.User,
			Password: c.cfg.Password,
		},
		DialTimeout:  5 * time.Second,
		ReadTimeout:  2 * time.Minute,
		MaxOpenConns: 4,
		MaxIdleConns: 4,
		Logger:       slog.New(slog.DiscardHandler),
	}
}

// Open connects to node n (see Options) and pings it. The caller must Close the connection.
func (c *Cluster) Open(ctx context.Context, n *Node) (driver.Conn, error) {
	if n == nil || n.IsZooKeeper() {
		return nil, errors.New("chcluster: open: not a ClickHouse node")
	}
	conn, err := clickhouse.Open(c.Options(n))
	if err != nil {
		return nil, fmt.Errorf("chcluster: open %s: %w", n.Name, err)
	}
	if err := conn.Ping(ctx); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("chcluster: open %s: %w", n.Name, err)
	}
	return conn, nil
}

// Exec runs one statement on node n over a connection of its own. Settings travel in ctx
// (clickhouse.Context(ctx, clickhouse.WithSettings(...))). Errors from the server wrap a
// *clickhouse.Exception. Never send INSERT … VALUES with inline data to ClickHouse 18.16 (it
// hangs): insert through a batch on a connection from Open.
func (c *Cluster) Exec(ctx context.Context, n *Node, query string, args ...any) error {
	conn, err := c.Open(ctx, n)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.Exec(ctx, query, args...); err != nil {
		return fmt.Errorf("chcluster: on %s: %w", n.Name, err)
	}
	return nil
}

// WaitReady waits until n serves again: for a ClickHouse node, until it answers queries and lists
// the whole cluster in system.clusters, and — when the ZooKeeper container is running — until it
// reads ZooKeeper; for the ZooKeeper node, until it answers on its client port. Without a deadline
// in ctx it waits at most Config.StartTimeout.
func (c *Cluster) WaitReady(ctx context.Context, n *Node) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.cfg.StartTimeout)
		defer cancel()
	}
	begin := time.Now()
	if n.IsZooKeeper() {
		if err := c.waitZooKeeper(ctx); err != nil {
			return err
		}
	} else {
		zkUp, err := c.Running(ctx, c.zk)
		if err != nil {
			return err
		}
		if err := c.waitNode(ctx, n, zkUp); err != nil {
			return err
		}
	}
	c.log.Info("chcluster: ready", "node", n.Name, "elapsed", time.Since(begin).Round(time.Millisecond))
	return nil
}

// waitNode polls n until it answers, shows the cluster and (with zk) reads ZooKeeper.
func (c *Cluster) waitNode(ctx context.Context, n *Node, zk bool) error {
	want := uint64(c.cfg.Shards * c.cfg.Replicas)
	retry := backoff.Constant(probeEvery).Start()
	var last error
	for {
		last = c.probeNode(ctx, n, want, zk)
		if last == nil {
			return nil
		}
		if retry.Wait(ctx) != nil {
			if unreachable(last) {
				return fmt.Errorf("%s: %w (%w); on Docker Desktop or a remote engine the containers' "+
					"network is not routed to this process", n, ErrUnreachable, last)
			}
			return fmt.Errorf("%s not ready: %w (last: %w)", n, ctx.Err(), last)
		}
	}
}

func (c *Cluster) probeNode(ctx context.Context, n *Node, want uint64, zk bool) error {
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := c.Open(pctx, n)
	if err != nil {
		return err
	}
	defer conn.Close()
	var got uint64
	q := "SELECT count() FROM system.clusters WHERE cluster = '" + c.cfg.ClusterName + "'"
	if err := conn.QueryRow(pctx, q).Scan(&got); err != nil {
		return fmt.Errorf("%s: %w", q, err)
	}
	if got != want {
		return fmt.Errorf("system.clusters lists %d nodes of cluster %s, want %d", got, c.cfg.ClusterName, want)
	}
	if zk {
		q := "SELECT count() FROM system.zookeeper WHERE path = '/'"
		if err := conn.QueryRow(pctx, q).Scan(&got); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
	}
	return nil
}

// waitZooKeeper polls ZooKeeper with the four-letter word "ruok" until it answers (any answer:
// a server that does not whitelist ruok still says so).
func (c *Cluster) waitZooKeeper(ctx context.Context) error {
	retry := backoff.Constant(probeEvery).Start()
	var last error
	for {
		last = probeZooKeeper(ctx, c.zk.Addr())
		if last == nil {
			return nil
		}
		if retry.Wait(ctx) != nil {
			if unreachable(last) {
				return fmt.Errorf("%s: %w (%w)", c.zk, ErrUnreachable, last)
			}
			return fmt.Errorf("%s not ready: %w (last: %w)", c.zk, ctx.Err(), last)
		}
	}
}

func probeZooKeeper(ctx context.Context, addr string) error {
	d := net.Dialer{Timeout: 3 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := conn.Write([]byte("ruok")); err != nil {
		return err
	}
	b, err := io.ReadAll(conn)
	if len(b) == 0 {
		if err == nil {
			err = errors.New("no answer to ruok")
		}
		return fmt.Errorf("zookeeper %s: %w", addr, err)
	}
	return nil
}

// unreachable reports whether err says that packets do not get through (as opposed to a server
// that is not listening yet, which refuses the connection).
func unreachable(err error) bool {
	var oe *net.OpError
	return errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH) ||
		(errors.As(err, &oe) && oe.Op == "dial" && oe.Timeout())
}
