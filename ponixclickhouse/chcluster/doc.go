// Package chcluster starts a real, replicated and sharded ClickHouse cluster in Docker for tests:
// Shards x Replicas ClickHouse servers (default 2 x 2) and one ZooKeeper, on a private Docker
// network of their own, and lets a test break it on purpose — stop, kill, restart or partition a
// node, stop ZooKeeper — and watch what ClickHouse and the client do.
//
// Only the docker command line is needed (the package runs it with os/exec) and two local images:
//
//   - PONIX_TEST_CLICKHOUSE_IMAGE, default ponix-test/clickhouse:18.16, an image with the
//     environment contract of the official clickhouse/clickhouse-server image (CLICKHOUSE_USER,
//     CLICKHOUSE_PASSWORD; config.d and users.d directories under /etc/clickhouse-server);
//   - PONIX_TEST_ZOOKEEPER_IMAGE, default ponix-test/zookeeper:3.8, a standalone ZooKeeper whose
//     client port is 2181.
//
// docker/cluster/build-images.sh builds both without a registry. Nothing is pulled: when Docker or
// an image is missing, [Start] fails with an error that says so (wrapping [ErrNoDocker] or
// [ErrNoImage]).
//
// # Topology
//
// Every container gets a fixed IPv4 address on a /24 subnet that Start picks (or
// [Config.Subnet]) and a hostname equal to its container name, written into the /etc/hosts of every
// container of the cluster, so that a node keeps its identity across stop/start, kill and
// disconnect/connect, and resolving a peer never depends on Docker's DNS (which forgets a stopped
// container). Each ClickHouse server gets a config.d file with:
//
//   - <macros> shard (1-based shard number), replica (its hostname) and cluster;
//   - <remote_servers> with the cluster ([Config.ClusterName], default "ponix"), one <shard> per
//     shard with internal_replication=true, each replica by hostname on port 9000 (with the user and
//     password, so that Distributed tables and ON CLUSTER DDL authenticate);
//   - <zookeeper> (the ZooKeeper container, port 2181) and
//     <distributed_ddl><path>/clickhouse/task_queue/ddl</path></distributed_ddl>;
//   - <listen_host>0.0.0.0</listen_host> and interserver_http_host = its hostname (replication
//     fetches parts over port 9009 from that name).
//
// # Addresses
//
// [Node.Addr] is the node's IP on the private network with the native port (IP:9000). It is the
// address system.clusters reports as host_address:port, and on a Linux Docker engine the test
// process reaches it directly through the bridge, so a client that discovers the cluster from
// system.clusters (as Ponix's sharding writer does) can connect to what it finds. host_name (the
// container's hostname) resolves only inside the cluster. Start waits for every node at its Addr;
// when connections time out instead of being refused until StartTimeout (e.g. Docker Desktop,
// where containers live in a VM), its error wraps [ErrUnreachable].
//
// # Faults
//
// [Cluster.Stop] and [Cluster.Start] (docker stop/start), [Cluster.Kill] (SIGKILL),
// [Cluster.Pause] and [Cluster.Unpause] (docker pause/unpause: a stalled node),
// [Cluster.Disconnect] and [Cluster.Connect] (docker network disconnect/connect: the node is cut
// off from its peers, from ZooKeeper and from the test process alike), [Cluster.StopZooKeeper] and
// [Cluster.StartZooKeeper]. After a node comes back, [Cluster.WaitReady] waits until it answers
// queries again. [Cluster.Close] removes every container and the network, whatever state they are
// in.
//
// # Queries
//
// [Cluster.Open] returns a clickhouse-go native connection to one node, [Cluster.Exec] runs one
// statement on one node. Insert through batches (conn.PrepareBatch("INSERT INTO t (a, b)") with
// an explicit column list, Append, Send): ClickHouse 18.16 never answers an INSERT … VALUES with
// inline data sent by clickhouse-go.
package chcluster
