package main

import (
	"context"
	"fmt"
	"log/slog"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/ponix-go/ponix/ponix-all-in-one/internal/config"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/ponix-go/ponix/migrations"
	"github.com/ponix-go/ponix/ponix-all-in-one/internal/app"
	"github.com/ponix-go/ponix/ponixclickhouse"
	"github.com/ponix-go/ponix/ponixclickhouse/chcluster"
	"github.com/ponix-go/ponix/ponixclickhouse/migrate"
	"github.com/ponix-go/ponix/runner/backoff"
)

// With -cluster the benchmark runs against a ClickHouse cluster that ponixclickhouse/chcluster
// starts in Docker (2 shards x 2 replicas of ClickHouse 18.16 and ZooKeeper, from the local
// images docker/cluster/build-images.sh builds): the tables are migrated ON CLUSTER, the ponix
// phase runs the service's cluster writer, and two more phases compare the ways to write to a
// cluster from memory:
//
//   - insert (ceiling): the service's choice, client-side sharding (ShardedWriter: each batch
//     split by stream_seq, each shard's rows inserted into its local table, shards in
//     parallel);
//   - insert-distributed: one INSERT per batch into the Distributed table with
//     insert_distributed_sync=1, which splits the rows on the node that receives them and
//     forwards the other shard's part before answering.
//
// The ClickHouse CPU reported is that of every server of the cluster and ZooKeeper.

// clusterName is the cluster of the benchmark's chcluster.
const clusterName = "ponix"

// startCluster starts the benchmark's cluster and records the servers' pids for the CPU
// figures.
func (e *env) startCluster(ctx context.Context) error {
	c, err := chcluster.Start(ctx, chcluster.Config{ClusterName: clusterName, Logger: e.logger})
	if err != nil {
		return err
	}
	e.cluster = c
	seed := c.Node(1, 1)
	e.chCfg = ponixclickhouse.Config{Addr: seed.Addr(), Username: c.User(), Password: c.Password(),
		Logger: slog.New(slog.DiscardHandler)} // the driver warns that 18.16 is older than it supports
	for _, n := range append([]*chcluster.Node{c.ZooKeeper()}, c.Nodes()...) {
		out, err := exec.CommandContext(ctx, "docker", "inspect", "--format", "{{.State.Pid}}", n.Name).Output()
		if err != nil {
			continue // CPU figures only
		}
		if pid, err := strconv.Atoi(strings.TrimSpace(string(out))); err == nil && pid > 0 {
			e.serverPIDs = append(e.serverPIDs, pid)
		}
	}
	return nil
}

// freshClusterDatabase drops and creates database name ON CLUSTER, runs the migrations in it
// on the cluster and returns a connection to it on the seed node.
func (e *env) freshClusterDatabase(ctx context.Context, name string) (driver.Conn, error) {
	admin, err := ponixclickhouse.Open(ctx, e.chCfg)
	if err != nil {
		return nil, err
	}
	defer admin.Close()
	q, err := ponixclickhouse.QuoteIdentifier(name)
	if err != nil {
		return nil, err
	}
	// Tables first: 18.16 refuses a DROP DATABASE ON CLUSTER whose directories are not empty.
	stmts := []string{}
	for _, t := range []string{"processed_envelopes", "processed_envelopes_local", "goose_db_version", "goose_lock"} {
		stmts = append(stmts, "DROP TABLE IF EXISTS "+q+"."+t+" ON CLUSTER "+clusterName)
	}
	stmts = append(stmts, "DROP DATABASE IF EXISTS "+q+" ON CLUSTER "+clusterName, "CREATE DATABASE "+q+" ON CLUSTER "+clusterName)
	for _, stmt := range stmts {
		if err := admin.Exec(ctx, stmt); err != nil {
			return nil, fmt.Errorf("%s: %w", stmt, err)
		}
	}
	cfg := e.chCfg
	cfg.Database = name
	db := ponixclickhouse.OpenDB(cfg)
	defer db.Close()
	if _, err := migrate.Up(ctx, db, migrations.FS(), migrate.WithCluster(clusterName), migrate.WithDatabase(name), migrate.WithLogger(e.logger)); err != nil {
		return nil, err
	}
	return ponixclickhouse.Open(ctx, cfg)
}

// pipelineOptions point the ponix phase at database, and at the cluster when there is one, as
// the service does with PONIX_CLICKHOUSE_DATABASE and PONIX_CLICKHOUSE_CLUSTER.
func (e *env) pipelineOptions(cfg *config.Config, database string, conn driver.Conn, logger *slog.Logger) app.PipelineOptions {
	ch := e.chCfg
	ch.Database = database
	cfg.ClickHouseDatabase = database
	if e.cluster != nil {
		cfg.ClickHouseCluster = clusterName
	}
	return app.PipelineOptions{Logger: logger, ClickHouse: ch, Conn: conn}
}

// insertDistributed is the alternative to client-side sharding: the same rows as the insert
// ceiling, each batch one INSERT into the Distributed table with insert_distributed_sync=1.
func (e *env) insertDistributed(ctx context.Context, batch int) (result, error) {
	conn, err := e.freshDatabase(ctx, "bench_insert_distributed")
	if err != nil {
		return result{}, err
	}
	defer conn.Close()
	rows, err := e.decodeAll(ctx)
	if err != nil {
		return result{}, err
	}
	w, err := ponixclickhouse.NewEnvelopeWriter(ctx, conn, ponixclickhouse.Table{})
	if err != nil {
		return result{}, err
	}
	syncCtx := clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"insert_distributed_sync": 1}))
	return e.measureWrites(syncCtx, conn, "insert-distributed (sync)", rows, batch, w.Write)
}

// insertSharded is the insert ceiling on a cluster: the service's ShardedWriter.
func (e *env) insertSharded(ctx context.Context, conn driver.Conn, database string, rows []ponixclickhouse.EnvelopeRow, batch int) (result, error) {
	cfg := e.chCfg
	cfg.Database = database
	w, err := ponixclickhouse.NewShardedEnvelopeWriter(ctx, conn, ponixclickhouse.ClusterConfig{Cluster: clusterName, Conn: cfg}, ponixclickhouse.Table{})
	if err != nil {
		return result{}, err
	}
	defer w.Close()
	return e.measureWrites(ctx, conn, "insert (ceiling, sharded)", rows, batch, w.Write)
}

// serverCPU is the CPU time of the ClickHouse servers: the local one, or every node of the
// cluster and its ZooKeeper.
func (e *env) serverCPU() time.Duration {
	total := pidCPU(e.o.chPID)
	for _, pid := range e.serverPIDs {
		total += pidCPU(pid)
	}
	return total
}

// settleCluster waits until every replica of every Replicated table has fetched what its log
// holds (SYSTEM SYNC REPLICA) and no merge runs on any node, at most two minutes.
func (e *env) settleCluster(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for _, n := range e.cluster.Nodes() {
		conn, err := e.cluster.Open(ctx, n)
		if err != nil {
			return err
		}
		err = settleNode(ctx, conn)
		conn.Close()
		if err != nil {
			return fmt.Errorf("settle %s: %w", n.Name, err)
		}
	}
	return nil
}

func settleNode(ctx context.Context, conn driver.Conn) error {
	rows, err := conn.Query(ctx, "SELECT database, table FROM system.replicas")
	if err != nil {
		return err
	}
	var tables []string
	for rows.Next() {
		var db, table string
		if err := rows.Scan(&db, &table); err != nil {
			rows.Close()
			return err
		}
		tables = append(tables, db+"."+table)
	}
	rows.Close()
	for _, t := range tables {
		// A replica whose ZooKeeper session expired (a partition, ZooKeeper restarted) answers
		// "Session expired" until it has opened a new one, some seconds later.
		retry := backoff.Constant(500 * time.Millisecond).Start()
		for {
			err := conn.Exec(ctx, "SYSTEM SYNC REPLICA "+t)
			if err == nil {
				break
			}
			if retry.Wait(ctx) != nil {
				return fmt.Errorf("SYSTEM SYNC REPLICA %s: %w", t, err)
			}
		}
	}
	poll := backoff.Constant(200 * time.Millisecond).Start()
	for {
		var merges uint64
		if err := conn.QueryRow(ctx, "SELECT count() FROM system.merges").Scan(&merges); err != nil {
			return err
		}
		if merges == 0 {
			return nil
		}
		if err := poll.Wait(ctx); err != nil {
			return err
		}
	}
}
