package embedded

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ponix-go/ponix/runner/backoff"
)

// Cluster is a JetStream cluster of embedded servers, all in this process, for
// tests of failover: stop a node, restart it, and see the others carry on.
type Cluster struct {
	// Nodes of the cluster, named "n1", "n2", ... (their ServerName).
	Nodes []*Server
}

// StartCluster starts an n-node JetStream cluster named "ponix" on free
// ports of base.Host, each node with its store under dir/<node name>, and
// waits until the cluster has elected its JetStream meta leader. base gives
// the settings shared by all nodes (authentication, limits, logger); its Port,
// StoreDir, ServerName and Cluster are set per node.
func StartCluster(ctx context.Context, n int, dir string, base Config) (*Cluster, error) {
	if n < 1 {
		return nil, fmt.Errorf("embedded: cluster of %d nodes", n)
	}
	if dir == "" {
		return nil, errors.New("embedded: StartCluster needs a store directory")
	}
	host := base.Host
	if host == "" {
		host = "127.0.0.1"
	}
	ports, err := freePorts(host, 2*n)
	if err != nil {
		return nil, fmt.Errorf("embedded: picking cluster ports: %w", err)
	}
	routes := make([]string, n)
	for i := range n {
		routes[i] = "nats-route://" + net.JoinHostPort(host, strconv.Itoa(ports[n+i]))
	}
	c := &Cluster{}
	for i := range n {
		cfg := base
		cfg.Host = host
		cfg.Port = ports[i]
		cfg.ServerName = "n" + strconv.Itoa(i+1)
		cfg.StoreDir = filepath.Join(dir, cfg.ServerName)
		cfg.Cluster = &ClusterConfig{Name: "ponix", Port: ports[n+i], Routes: routes}
		srv, err := Start(ctx, cfg)
		if err != nil {
			c.Shutdown()
			return nil, fmt.Errorf("embedded: cluster node %s: %w", cfg.ServerName, err)
		}
		c.Nodes = append(c.Nodes, srv)
	}
	if err := c.WaitJetStream(ctx); err != nil {
		c.Shutdown()
		return nil, err
	}
	return c, nil
}

// URLs returns the client URLs of all nodes, comma-separated, as
// nats.Connect and PONIX_NATS_URL accept them.
func (c *Cluster) URLs() string {
	urls := make([]string, len(c.Nodes))
	for i, s := range c.Nodes {
		urls[i] = s.URL()
	}
	return strings.Join(urls, ",")
}

// Node returns the node whose ServerName is name, or nil.
func (c *Cluster) Node(name string) *Server {
	for _, s := range c.Nodes {
		if s.cfg.ServerName == name {
			return s
		}
	}
	return nil
}

// WaitJetStream waits until a running node is the JetStream meta leader and counts every
// running node as a JetStream peer it has current statistics of: until then, creating a
// stream with a replica on each node fails ("no suitable peers for placement").
func (c *Cluster) WaitJetStream(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	poll := backoff.Constant(100 * time.Millisecond).Start()
	for {
		running, peers, leader := 0, 0, false
		for _, s := range c.Nodes {
			ns := s.NATSServer()
			if ns == nil || !ns.Running() {
				continue
			}
			running++
			if ns.JetStreamIsLeader() {
				leader, peers = true, len(ns.JetStreamClusterPeers())
			}
		}
		if leader && peers >= running {
			return nil
		}
		if err := poll.Wait(ctx); err != nil {
			if !leader {
				return fmt.Errorf("embedded: no JetStream meta leader in the cluster: %w", err)
			}
			return fmt.Errorf("embedded: the JetStream meta leader counts %d of %d running nodes as peers: %w", peers, running, err)
		}
	}
}

// Shutdown stops every node.
func (c *Cluster) Shutdown() {
	for _, s := range c.Nodes {
		s.Shutdown()
	}
}

// freePorts returns n distinct ports that were free a moment ago.
func freePorts(host string, n int) ([]int, error) {
	ports := make([]int, 0, n)
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
