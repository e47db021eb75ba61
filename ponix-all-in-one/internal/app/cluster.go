package app

import (
	"context"
	"fmt"

	"github.com/ponix-go/ponix/ponixclickhouse"
	"github.com/ponix-go/ponix/ponixclickhouse/migrate"
)

// ClusterOptions make the pipeline write to a ClickHouse cluster (PONIX_CLICKHOUSE_CLUSTER):
// each batch is split by shard and stored in the shard-local tables, replica by replica
// (ponixclickhouse.ShardedWriter), instead of one INSERT into one server.
type ClusterOptions struct {
	// Name is the cluster in the servers' remote_servers.
	Name string
	// Conn is how every node is connected to (user, password, database, TLS); the nodes'
	// addresses come from system.clusters.
	Conn ponixclickhouse.Config
	// NodeAddr, if set, maps a replica to the address to reach it (default host_address:port).
	NodeAddr func(ponixclickhouse.Replica) string
}

// envelopeWriter is what the pipeline writes batches with: a BatchWriter into one server, or a
// ShardedWriter into a cluster.
type envelopeWriter interface {
	Write(ctx context.Context, rows []ponixclickhouse.EnvelopeRow) error
	CheckSchema(ctx context.Context) error
}

// writerRef holds the pipeline's writer once the table fits it.
type writerRef struct{ w envelopeWriter }

// newWriter builds the writer, which checks the table (on a cluster: each shard's local table
// and the Distributed table).
func (s *Schema) newWriter(ctx context.Context) (envelopeWriter, error) {
	opts := []ponixclickhouse.WriterOption{ponixclickhouse.WithLogger(s.log), ponixclickhouse.WithInsertTimeout(s.insertTimeout)}
	if s.cluster == nil {
		return ponixclickhouse.NewEnvelopeWriter(ctx, s.conn, s.table, opts...)
	}
	return ponixclickhouse.NewShardedEnvelopeWriter(ctx, s.conn, ponixclickhouse.ClusterConfig{
		Cluster:  s.cluster.Name,
		Conn:     s.cluster.Conn,
		NodeAddr: s.cluster.NodeAddr,
	}, s.table, opts...)
}

// clusterProblem is what a table that does not fit the writer means on a cluster. Ponix holds
// and names the problem there rather than repair it: a table is usually lost on one node while
// its replica and the other shards keep theirs, and applying the migrations again would
// rebuild tables that hold data. Creating a replica's table again (with the definition it has
// on the other replica of its shard) makes it fetch its data from that replica.
func clusterProblem(cluster string, err error) error {
	return fmt.Errorf("%w: on cluster %s Ponix does not create or change tables by itself: restore the table on that node "+
		"(SHOW CREATE TABLE on another replica of its shard, run it there: the replica fetches its data from its peer) "+
		"or apply the migrations to a new database; the consumer holds until the table fits", err, cluster)
}

// clusterPipeline sets what the pipeline needs on a cluster: the cluster writer. (Its Schema
// never repairs a table there, see clusterProblem.)
func (s *service) clusterPipeline(opts *PipelineOptions) {
	if s.cfg.ClickHouseCluster == "" {
		return
	}
	opts.Cluster = &ClusterOptions{Name: s.cfg.ClickHouseCluster, Conn: s.clickHouseConfig()}
}

// migrateOptions are the options of the service's migration runs: on a cluster, its name and
// the database, whose name the cluster's ZooKeeper paths and Distributed tables carry.
func (s *service) migrateOptions() []migrate.Option {
	opts := []migrate.Option{migrate.WithLogger(s.logger)}
	if s.cfg.ClickHouseCluster != "" {
		opts = append(opts, migrate.WithCluster(s.cfg.ClickHouseCluster), migrate.WithDatabase(s.cfg.ClickHouseDatabase))
	}
	return opts
}

// checkCluster reads the cluster's topology (startup phase clickhouse): an unknown cluster
// name fails the startup, naming PONIX_CLICKHOUSE_CLUSTER.
func (s *service) checkCluster(ctx context.Context) error {
	if s.cfg.ClickHouseCluster == "" {
		return nil
	}
	topo, err := ponixclickhouse.ReadTopology(ctx, s.chConn, s.cfg.ClickHouseCluster)
	if err != nil {
		return err
	}
	nodes := 0
	for _, sh := range topo.Shards {
		nodes += len(sh.Replicas)
	}
	s.logger.Info("writing to a ClickHouse cluster", "cluster", topo.Cluster, "shards", len(topo.Shards), "nodes", nodes,
		"sharding_key", ponixclickhouse.EnvelopeShardingKey)
	return nil
}
