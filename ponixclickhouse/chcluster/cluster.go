package chcluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Environment variables that choose the images when Config leaves them empty.
const (
	EnvClickHouseImage = "PONIX_TEST_CLICKHOUSE_IMAGE"
	EnvZooKeeperImage  = "PONIX_TEST_ZOOKEEPER_IMAGE"
)

// Default images, both built locally by docker/cluster/build-images.sh.
const (
	DefaultClickHouseImage = "ponix-test/clickhouse:18.16"
	DefaultZooKeeperImage  = "ponix-test/zookeeper:3.8"
)

// Ports inside the containers.
const (
	// NativePort is ClickHouse's native protocol port.
	NativePort = 9000
	// ZooKeeperPort is ZooKeeper's client port.
	ZooKeeperPort = 2181
)

// LabelKey labels every container and the network of a cluster with the cluster's Name, so that
// leftovers of a crashed test run can be found:
//
//	docker rm -f $(docker ps -aq --filter label=ponix.chcluster)
const LabelKey = "ponix.chcluster"

// HowToBuildImages is the advice included in every "image missing" failure.
const HowToBuildImages = `build the cluster images (no registry needed) with:
  docker/cluster/build-images.sh      # ponix-test/zookeeper:3.8 and ponix-test/clickhouse:18.16
or point PONIX_TEST_CLICKHOUSE_IMAGE / PONIX_TEST_ZOOKEEPER_IMAGE at images you have`

var (
	// ErrNoDocker is wrapped by Start's error when the docker command or the engine does not answer.
	ErrNoDocker = errors.New("chcluster: docker is not available")
	// ErrNoImage is wrapped by Start's error when an image is not present locally.
	ErrNoImage = errors.New("chcluster: image not present locally")
	// ErrUnreachable is wrapped by Start's error when the test process cannot reach a node at its
	// address on the private network.
	ErrUnreachable = errors.New("chcluster: node not reachable from this process")
)

// Config describes a cluster. The zero value is a 2 x 2 cluster named "ponix" with the default
// images and user "default" without password.
type Config struct {
	// Name prefixes the containers and names the network; default "ponix-cl-" and four random hex
	// digits. Letters, digits, '-' and '_' only.
	Name string
	// Shards and Replicas (per shard); default 2 and 2.
	Shards, Replicas int
	// ClickHouseImage; default $PONIX_TEST_CLICKHOUSE_IMAGE, else DefaultClickHouseImage.
	ClickHouseImage string
	// ZooKeeperImage; default $PONIX_TEST_ZOOKEEPER_IMAGE, else DefaultZooKeeperImage.
	ZooKeeperImage string
	// ClusterName is the cluster in remote_servers (ON CLUSTER name, Distributed tables' first
	// argument, system.clusters.cluster); default "ponix". Letters, digits and '_' only.
	ClusterName string
	// User and Password that the servers accept and that remote_servers carries; default user
	// "default" with no password. A user other than "default" replaces the default user (the
	// image's CLICKHOUSE_USER contract).
	User, Password string
	// Subnet for the private network, a /24 in CIDR form (e.g. "172.30.7.0/24"); default: a free
	// /24 in 172.28.0.0/14 picked at random.
	Subnet string
	// ZooKeeperSessionTimeout of the servers' ZooKeeper sessions; default 10s (ClickHouse's own
	// default is 30s). A shorter timeout makes a lost ZooKeeper visible sooner.
	ZooKeeperSessionTimeout time.Duration
	// StartTimeout bounds Start after the containers are created, and each WaitReady that has no
	// deadline of its own; default 3 minutes.
	StartTimeout time.Duration
	// Docker is the docker command; default "docker".
	Docker string
	// Logger receives progress at info level (default: slog.Default()).
	Logger *slog.Logger
}

var (
	namePattern    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,40}$`)
	clusterPattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,63}$`)
)

func (cfg Config) withDefaults() (Config, error) {
	if cfg.Name == "" {
		b := make([]byte, 2)
		_, _ = rand.Read(b)
		cfg.Name = "ponix-cl-" + hex.EncodeToString(b)
	}
	if !namePattern.MatchString(cfg.Name) {
		return cfg, fmt.Errorf("chcluster: Name %q: want 1-41 letters, digits, '-' or '_'", cfg.Name)
	}
	if cfg.Shards == 0 {
		cfg.Shards = 2
	}
	if cfg.Replicas == 0 {
		cfg.Replicas = 2
	}
	if cfg.Shards < 1 || cfg.Replicas < 1 || cfg.Shards*cfg.Replicas > 200 {
		return cfg, fmt.Errorf("chcluster: %d shards x %d replicas: want at least one of each and at most 200 nodes", cfg.Shards, cfg.Replicas)
	}
	if cfg.ClickHouseImage == "" {
		cfg.ClickHouseImage = envOr(EnvClickHouseImage, DefaultClickHouseImage)
	}
	if cfg.ZooKeeperImage == "" {
		cfg.ZooKeeperImage = envOr(EnvZooKeeperImage, DefaultZooKeeperImage)
	}
	if cfg.ClusterName == "" {
		cfg.ClusterName = "ponix"
	}
	if !clusterPattern.MatchString(cfg.ClusterName) {
		return cfg, fmt.Errorf("chcluster: ClusterName %q: want letters, digits and '_'", cfg.ClusterName)
	}
	if cfg.User == "" {
		cfg.User = "default"
	}
	if !clusterPattern.MatchString(cfg.User) {
		return cfg, fmt.Errorf("chcluster: User %q: want letters, digits and '_'", cfg.User)
	}
	if cfg.ZooKeeperSessionTimeout <= 0 {
		cfg.ZooKeeperSessionTimeout = 10 * time.Second
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = 3 * time.Minute
	}
	if cfg.Docker == "" {
		cfg.Docker = "docker"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return cfg, nil
}

// Node is one container of a cluster: a ClickHouse server, or the ZooKeeper server (Shard and
// Replica 0). A Node keeps its name and address for the life of the cluster, across stops, kills
// and partitions.
type Node struct {
	// Name is the container name and its hostname inside the cluster; for a ClickHouse server it
	// is also the replica macro and system.clusters.host_name.
	Name string
	// Shard and Replica number the server from 1; both are 0 for ZooKeeper.
	Shard, Replica int
	// IP is the node's fixed address on the private network (system.clusters.host_address).
	IP string
	// Port is the port the node serves clients on: NativePort, or ZooKeeperPort.
	Port int
}

// Addr returns IP:Port, the address system.clusters reports for a ClickHouse node (host_address
// and port) and where the test process reaches it.
func (n *Node) Addr() string { return net.JoinHostPort(n.IP, strconv.Itoa(n.Port)) }

// IsZooKeeper reports whether n is the ZooKeeper container.
func (n *Node) IsZooKeeper() bool { return n.Shard == 0 }

// String returns the name, with shard and replica for a ClickHouse node.
func (n *Node) String() string {
	if n.IsZooKeeper() {
		return n.Name + " (zookeeper " + n.Addr() + ")"
	}
	return fmt.Sprintf("%s (shard %d replica %d, %s)", n.Name, n.Shard, n.Replica, n.Addr())
}

// Cluster is a running cluster. Its methods are safe for concurrent use; Close it when done.
type Cluster struct {
	cfg     Config
	network string
	subnet  string
	zk      *Node
	nodes   []*Node // shard-major: shard 1 replicas 1..R, shard 2 ...
	log     *slog.Logger

	mu     sync.Mutex
	closed bool
}

// Start creates the network and the containers, configures and starts them, and waits until every
// ClickHouse node answers queries, lists the whole cluster in system.clusters and can read
// ZooKeeper. On failure it returns an error holding the logs of the containers and removes what it
// created. The caller must Close the cluster.
func Start(ctx context.Context, cfg Config) (*Cluster, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	c := &Cluster{cfg: cfg, network: cfg.Name, log: cfg.Logger.With("cluster", cfg.Name)}
	begin := time.Now()
	if err := c.preflight(ctx); err != nil {
		return nil, err
	}
	if err := c.createNetwork(ctx); err != nil {
		return nil, err
	}
	if err := c.start(ctx); err != nil {
		err = fmt.Errorf("chcluster: start %s: %w%s", cfg.Name, err, c.allLogs(context.WithoutCancel(ctx)))
		if cerr := c.Close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
		return nil, err
	}
	c.log.Info("chcluster: cluster ready", "shards", cfg.Shards, "replicas", cfg.Replicas,
		"subnet", c.subnet, "elapsed", time.Since(begin).Round(time.Millisecond))
	return c, nil
}

// preflight checks that docker answers and that both images are present.
func (c *Cluster) preflight(ctx context.Context) error {
	if _, err := c.docker(ctx, nil, "version", "--format", "{{.Server.Version}}"); err != nil {
		return fmt.Errorf("%w: %w", ErrNoDocker, err)
	}
	var missing []error
	for _, image := range []string{c.cfg.ClickHouseImage, c.cfg.ZooKeeperImage} {
		if _, err := c.docker(ctx, nil, "image", "inspect", "--format", "{{.Id}}", image); err != nil {
			missing = append(missing, fmt.Errorf("%w: %s (%w)", ErrNoImage, image, err))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w\n%s", errors.Join(missing...), HowToBuildImages)
	}
	return nil
}

// createNetwork creates the private network on cfg.Subnet or on a free random /24, and assigns
// every node its address: .2 ZooKeeper, .11 and up the ClickHouse servers.
func (c *Cluster) createNetwork(ctx context.Context) error {
	tries := 1
	if c.cfg.Subnet == "" {
		tries = 30
	}
	var lastErr error
	for range tries {
		subnet := c.cfg.Subnet
		if subnet == "" {
			var err error
			if subnet, err = c.pickSubnet(ctx); err != nil {
				return err
			}
		}
		prefix, err := subnetPrefix(subnet)
		if err != nil {
			return err
		}
		_, err = c.docker(ctx, nil, "network", "create", "--driver", "bridge", "--subnet", subnet,
			"--label", LabelKey+"="+c.cfg.Name, c.network)
		if err == nil {
			c.subnet = subnet
			c.assign(prefix)
			return nil
		}
		lastErr = err
		if !strings.Contains(err.Error(), "overlap") {
			break
		}
	}
	return fmt.Errorf("chcluster: create network %s: %w", c.network, lastErr)
}

// subnetPrefix returns "a.b.c." for a /24 "a.b.c.0/24".
func subnetPrefix(subnet string) (string, error) {
	ip, ipnet, err := net.ParseCIDR(subnet)
	if err != nil {
		return "", fmt.Errorf("chcluster: Subnet %q: %w", subnet, err)
	}
	ones, bits := ipnet.Mask.Size()
	ip4 := ip.To4()
	if ip4 == nil || bits != 32 || ones != 24 || !ip.Equal(ipnet.IP) {
		return "", fmt.Errorf("chcluster: Subnet %q: want an IPv4 /24 such as 172.30.7.0/24", subnet)
	}
	return fmt.Sprintf("%d.%d.%d.", ip4[0], ip4[1], ip4[2]), nil
}

// pickSubnet returns a random /24 in 172.28.0.0/14 that no Docker network and no local interface
// uses. (Docker refuses an overlap with its own networks; createNetwork retries then.)
func (c *Cluster) pickSubnet(ctx context.Context) (string, error) {
	var used []*net.IPNet
	ids, err := c.docker(ctx, nil, "network", "ls", "-q")
	if err != nil {
		return "", fmt.Errorf("chcluster: list networks: %w", err)
	}
	if f := strings.Fields(ids); len(f) > 0 {
		out, err := c.docker(ctx, nil, append([]string{"network", "inspect", "--format",
			"{{range .IPAM.Config}}{{.Subnet}} {{end}}"}, f...)...)
		if err == nil {
			for _, s := range strings.Fields(out) {
				if _, n, err := net.ParseCIDR(s); err == nil {
					used = append(used, n)
				}
			}
		}
	}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				used = append(used, n)
			}
		}
	}
	for range 1000 {
		b := make([]byte, 2)
		_, _ = rand.Read(b)
		cand := &net.IPNet{IP: net.IPv4(172, 28+b[0]%4, b[1], 0).To4(), Mask: net.CIDRMask(24, 32)}
		if !overlapsAny(cand, used) {
			return cand.String(), nil
		}
	}
	return "", errors.New("chcluster: no free /24 in 172.28.0.0/14; set Config.Subnet")
}

func overlapsAny(n *net.IPNet, used []*net.IPNet) bool {
	for _, u := range used {
		if u.Contains(n.IP) || n.Contains(u.IP) {
			return true
		}
	}
	return false
}

// assign names and addresses the nodes.
func (c *Cluster) assign(prefix string) {
	c.zk = &Node{Name: c.cfg.Name + "-zk", IP: prefix + "2", Port: ZooKeeperPort}
	c.nodes = c.nodes[:0]
	for s := 1; s <= c.cfg.Shards; s++ {
		for r := 1; r <= c.cfg.Replicas; r++ {
			c.nodes = append(c.nodes, &Node{
				Name:    fmt.Sprintf("%s-s%dr%d", c.cfg.Name, s, r),
				Shard:   s,
				Replica: r,
				IP:      prefix + strconv.Itoa(10+len(c.nodes)+1),
				Port:    NativePort,
			})
		}
	}
}

// start creates and starts the containers, then waits for the cluster.
func (c *Cluster) start(ctx context.Context) error {
	var hosts []string
	for _, n := range c.all() {
		hosts = append(hosts, "--add-host", n.Name+":"+n.IP)
	}
	zkArgs := append([]string{"create", "--name", c.zk.Name, "--hostname", c.zk.Name,
		"--network", c.network, "--ip", c.zk.IP, "--label", LabelKey + "=" + c.cfg.Name}, hosts...)
	if _, err := c.docker(ctx, nil, append(zkArgs, c.cfg.ZooKeeperImage)...); err != nil {
		return fmt.Errorf("create %s: %w", c.zk.Name, err)
	}
	if _, err := c.docker(ctx, nil, "start", c.zk.Name); err != nil {
		return fmt.Errorf("start %s: %w", c.zk.Name, err)
	}
	for _, n := range c.nodes {
		args := append([]string{"create", "--name", n.Name, "--hostname", n.Name,
			"--network", c.network, "--ip", n.IP, "--label", LabelKey + "=" + c.cfg.Name,
			"--env", "CLICKHOUSE_USER=" + c.cfg.User,
			"--env", "CLICKHOUSE_PASSWORD=" + c.cfg.Password}, hosts...)
		if _, err := c.docker(ctx, nil, append(args, c.cfg.ClickHouseImage)...); err != nil {
			return fmt.Errorf("create %s: %w", n.Name, err)
		}
		archive, err := tarFile(strings.TrimPrefix(ConfigPath, "/etc/clickhouse-server/"), c.serverConfig(n))
		if err != nil {
			return fmt.Errorf("config of %s: %w", n.Name, err)
		}
		if _, err := c.docker(ctx, archive, "cp", "-", n.Name+":/etc/clickhouse-server/"); err != nil {
			return fmt.Errorf("copy config into %s: %w", n.Name, err)
		}
		if _, err := c.docker(ctx, nil, "start", n.Name); err != nil {
			return fmt.Errorf("start %s: %w", n.Name, err)
		}
	}
	c.log.Info("chcluster: containers started", "zookeeper", c.zk.Addr(), "nodes", len(c.nodes))

	ctx, cancel := context.WithTimeout(ctx, c.cfg.StartTimeout)
	defer cancel()
	errs := make([]error, len(c.nodes))
	var wg sync.WaitGroup
	for i, n := range c.nodes {
		wg.Go(func() { errs[i] = c.waitNode(ctx, n, true) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return nil
}

// Name returns the cluster's Name: the network's name and the containers' prefix.
func (c *Cluster) Name() string { return c.cfg.Name }

// ClusterName returns the cluster's name in remote_servers, for ON CLUSTER and Distributed.
func (c *Cluster) ClusterName() string { return c.cfg.ClusterName }

// Network returns the name of the private Docker network.
func (c *Cluster) Network() string { return c.network }

// Subnet returns the private network's subnet in CIDR form.
func (c *Cluster) Subnet() string { return c.subnet }

// User returns the user name the servers accept.
func (c *Cluster) User() string { return c.cfg.User }

// Password returns the user's password.
func (c *Cluster) Password() string { return c.cfg.Password }

// Shards returns the number of shards.
func (c *Cluster) Shards() int { return c.cfg.Shards }

// Replicas returns the number of replicas per shard.
func (c *Cluster) Replicas() int { return c.cfg.Replicas }

// Nodes returns the ClickHouse nodes, shard by shard, replicas in order.
func (c *Cluster) Nodes() []*Node { return append([]*Node(nil), c.nodes...) }

// Node returns the ClickHouse node of a shard and replica (both from 1), or nil.
func (c *Cluster) Node(shard, replica int) *Node {
	if shard < 1 || shard > c.cfg.Shards || replica < 1 || replica > c.cfg.Replicas {
		return nil
	}
	return c.nodes[(shard-1)*c.cfg.Replicas+replica-1]
}

// Shard returns the replicas of a shard (from 1), or nil.
func (c *Cluster) Shard(shard int) []*Node {
	if shard < 1 || shard > c.cfg.Shards {
		return nil
	}
	return append([]*Node(nil), c.nodes[(shard-1)*c.cfg.Replicas:shard*c.cfg.Replicas]...)
}

// ZooKeeper returns the ZooKeeper node.
func (c *Cluster) ZooKeeper() *Node { return c.zk }

func (c *Cluster) all() []*Node { return append([]*Node{c.zk}, c.nodes...) }

// Close removes every container (with its volumes) and the network, whatever their state. It is
// safe to call more than once.
func (c *Cluster) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var errs []error
	names := []string{"rm", "-f", "-v"}
	for _, n := range c.all() {
		if n != nil {
			names = append(names, n.Name)
		}
	}
	if len(names) > 3 {
		if _, err := c.docker(ctx, nil, names...); err != nil && !strings.Contains(err.Error(), "No such container") {
			errs = append(errs, err)
		}
	}
	if c.subnet != "" {
		if _, err := c.docker(ctx, nil, "network", "rm", c.network); err != nil && !strings.Contains(err.Error(), "not found") {
			errs = append(errs, err)
		}
	}
	c.log.Info("chcluster: removed")
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("chcluster: close %s: %w", c.cfg.Name, err)
	}
	return nil
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
