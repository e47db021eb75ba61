package chcluster

import (
	"archive/tar"
	"bytes"
	"encoding/xml"
	"io"
	"net"
	"strings"
	"testing"
)

// TestServerConfig parses the config.d file of every node of a 2 x 3 cluster and checks what the
// servers will read from it, including a password that needs escaping.
func TestServerConfig(t *testing.T) {
	cfg, err := Config{Name: "cl", Shards: 2, Replicas: 3, Password: `a&b<c>"d'`}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{cfg: cfg}
	c.assign("172.30.7.")

	type replica struct {
		Host     string `xml:"host"`
		Port     int    `xml:"port"`
		User     string `xml:"user"`
		Password string `xml:"password"`
	}
	type shard struct {
		Internal bool      `xml:"internal_replication"`
		Replicas []replica `xml:"replica"`
	}
	var doc struct {
		ListenHost     string `xml:"listen_host"`
		InterserverURL string `xml:"interserver_http_host"`
		Macros         struct {
			Replace string `xml:"replace,attr"`
			Cluster string `xml:"cluster"`
			Shard   int    `xml:"shard"`
			Replica string `xml:"replica"`
		} `xml:"macros"`
		Shards    []shard `xml:"remote_servers>ponix>shard"`
		ZooKeeper struct {
			Host    string `xml:"node>host"`
			Port    int    `xml:"node>port"`
			Session int    `xml:"session_timeout_ms"`
		} `xml:"zookeeper"`
		DDLPath string `xml:"distributed_ddl>path"`
	}
	for _, n := range c.nodes {
		if err := xml.Unmarshal(c.serverConfig(n), &doc); err != nil {
			t.Fatalf("%s: %v\n%s", n.Name, err, c.serverConfig(n))
		}
		if doc.ListenHost != "0.0.0.0" || doc.InterserverURL != n.Name {
			t.Errorf("%s: listen_host %q interserver_http_host %q", n.Name, doc.ListenHost, doc.InterserverURL)
		}
		if doc.Macros.Replace != "replace" || doc.Macros.Cluster != "ponix" || doc.Macros.Shard != n.Shard || doc.Macros.Replica != n.Name {
			t.Errorf("%s: macros %+v", n.Name, doc.Macros)
		}
		if len(doc.Shards) != 2 {
			t.Fatalf("%s: %d shards in remote_servers, want 2", n.Name, len(doc.Shards))
		}
		for s, sh := range doc.Shards {
			if !sh.Internal || len(sh.Replicas) != 3 {
				t.Errorf("%s: shard %d: %+v", n.Name, s+1, sh)
			}
			for r, rep := range sh.Replicas {
				want := c.Node(s+1, r+1)
				if rep.Host != want.Name || rep.Port != NativePort || rep.User != "default" || rep.Password != `a&b<c>"d'` {
					t.Errorf("%s: shard %d replica %d: %+v, want host %s", n.Name, s+1, r+1, rep, want.Name)
				}
			}
		}
		if doc.ZooKeeper.Host != "cl-zk" || doc.ZooKeeper.Port != ZooKeeperPort || doc.ZooKeeper.Session != 10000 {
			t.Errorf("%s: zookeeper %+v", n.Name, doc.ZooKeeper)
		}
		if doc.DDLPath != "/clickhouse/task_queue/ddl" {
			t.Errorf("%s: distributed_ddl path %q", n.Name, doc.DDLPath)
		}
		doc.Shards = nil
	}
}

func TestAssign(t *testing.T) {
	cfg, err := Config{Name: "x"}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{cfg: cfg}
	c.assign("10.1.2.")
	got := []string{c.ZooKeeper().String()}
	for _, n := range c.Nodes() {
		got = append(got, n.String())
	}
	want := []string{
		"x-zk (zookeeper 10.1.2.2:2181)",
		"x-s1r1 (shard 1 replica 1, 10.1.2.11:9000)",
		"x-s1r2 (shard 1 replica 2, 10.1.2.12:9000)",
		"x-s2r1 (shard 2 replica 1, 10.1.2.13:9000)",
		"x-s2r2 (shard 2 replica 2, 10.1.2.14:9000)",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("nodes:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if c.Node(2, 1) != c.Shard(2)[0] || c.Node(3, 1) != nil || c.Node(1, 0) != nil || c.Shard(0) != nil {
		t.Error("Node/Shard lookups disagree")
	}
}

func TestConfigValidation(t *testing.T) {
	for _, cfg := range []Config{
		{Name: "has space"}, {Name: "a.b"}, {ClusterName: "with-dash"}, {Shards: -1},
		{User: "x'y"}, {Shards: 20, Replicas: 11},
	} {
		if _, err := cfg.withDefaults(); err == nil {
			t.Errorf("%+v: no error", cfg)
		}
	}
	cfg, err := Config{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(cfg.Name, "ponix-cl-") || cfg.Shards != 2 || cfg.Replicas != 2 || cfg.ClusterName != "ponix" || cfg.User != "default" {
		t.Errorf("defaults: %+v", cfg)
	}
}

func TestSubnetPrefix(t *testing.T) {
	if p, err := subnetPrefix("172.30.7.0/24"); err != nil || p != "172.30.7." {
		t.Errorf("172.30.7.0/24: %q, %v", p, err)
	}
	for _, bad := range []string{"172.30.7.0/16", "172.30.7.1/24", "fd00::/64", "nonsense"} {
		if _, err := subnetPrefix(bad); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
	_, a, _ := net.ParseCIDR("172.28.0.0/16")
	_, b, _ := net.ParseCIDR("172.28.5.0/24")
	_, c, _ := net.ParseCIDR("172.29.5.0/24")
	if !overlapsAny(b, []*net.IPNet{a}) || overlapsAny(c, []*net.IPNet{a, b}) {
		t.Error("overlapsAny")
	}
}

func TestTarFile(t *testing.T) {
	archive, err := tarFile("config.d/x.xml", []byte("<yandex/>"))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(bytes.NewReader(archive))
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		if h.Name == "config.d/x.xml" {
			b, _ := io.ReadAll(tr)
			if string(b) != "<yandex/>" {
				t.Errorf("content %q", b)
			}
		}
	}
	if strings.Join(names, ",") != "config.d/,config.d/x.xml" {
		t.Errorf("entries %v", names)
	}
}
