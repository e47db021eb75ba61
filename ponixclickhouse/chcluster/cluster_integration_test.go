//go:build integration

package chcluster_test

import (
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/ponix-go/ponix/ponixclickhouse/chcluster"
)

// TestTopology checks what a client that discovers the cluster sees: system.clusters on any node
// lists every node with its shard and replica number, its hostname and an address that this
// process reaches directly (no published ports), and each node's macros match.
func TestTopology(t *testing.T) {
	ctx := ctxFor(t, 2*time.Minute)
	conn, err := cl.Open(ctx, cl.Node(2, 2))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rs, err := conn.Query(ctx, "SELECT shard_num, replica_num, host_name, host_address, port, is_local "+
		"FROM system.clusters WHERE cluster = '"+cl.ClusterName()+"' ORDER BY shard_num, replica_num")
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	var seen int
	for rs.Next() {
		var shard, replica uint32
		var host, address string
		var port uint16
		var local uint8
		if err := rs.Scan(&shard, &replica, &host, &address, &port, &local); err != nil {
			t.Fatal(err)
		}
		seen++
		n := cl.Node(int(shard), int(replica))
		if n == nil {
			t.Fatalf("system.clusters lists shard %d replica %d, which the cluster does not have", shard, replica)
		}
		if host != n.Name || address != n.IP || int(port) != chcluster.NativePort {
			t.Errorf("system.clusters: shard %d replica %d is %s (%s:%d), want %s (%s)", shard, replica, host, address, port, n.Name, n.Addr())
		}
		// On 18.16 is_local is a property of the shard: 1 for every replica of the shard that
		// holds the queried node.
		if wantLocal := shard == 2; (local == 1) != wantLocal {
			t.Errorf("system.clusters: %s is_local=%d", host, local)
		}
		// The address ClickHouse reports is where this process reaches the node.
		addr := net.JoinHostPort(address, strconv.Itoa(int(port)))
		c, err := cl.Open(ctx, &chcluster.Node{Name: host, Shard: int(shard), Replica: int(replica), IP: address, Port: int(port)})
		if err != nil {
			t.Fatalf("host_address:port %s from system.clusters is not reachable from the test process: %v", addr, err)
		}
		var name, macroShard, macroReplica string
		if err := c.QueryRow(ctx, "SELECT hostName(), "+
			"(SELECT substitution FROM system.macros WHERE macro = 'shard'), "+
			"(SELECT substitution FROM system.macros WHERE macro = 'replica')").Scan(&name, &macroShard, &macroReplica); err != nil {
			t.Fatal(err)
		}
		_ = c.Close()
		if name != host || macroShard != strconv.Itoa(int(shard)) || macroReplica != host {
			t.Errorf("%s answers as hostName()=%s shard=%s replica=%s", addr, name, macroShard, macroReplica)
		}
		t.Logf("system.clusters: shard %d replica %d host_name %s host_address:port %s reachable from the test process", shard, replica, host, addr)
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	if seen != len(cl.Nodes()) {
		t.Fatalf("system.clusters lists %d nodes, want %d", seen, len(cl.Nodes()))
	}
	// host_name resolves only inside the cluster's containers.
	if _, err := net.DefaultResolver.LookupHost(ctx, cl.Node(1, 1).Name); err == nil {
		t.Logf("note: host_name %s also resolves on this machine", cl.Node(1, 1).Name)
	} else {
		t.Logf("host_name %s does not resolve outside the cluster (%v): connect to host_address", cl.Node(1, 1).Name, err)
	}
}
