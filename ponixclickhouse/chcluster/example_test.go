package chcluster_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/ponix-go/ponix/ponixclickhouse/chcluster"
)

// Example starts a 2 x 2 cluster, creates a replicated table and a Distributed table over it,
// inserts into one replica, kills the other replica of the shard and brings it back, then reads
// through the Distributed table. It needs Docker and the images that
// docker/cluster/build-images.sh builds, so it is compiled but not run by go test.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	c, err := chcluster.Start(ctx, chcluster.Config{}) // 2 shards x 2 replicas, cluster "ponix"
	if err != nil {
		log.Fatal(err) // wraps chcluster.ErrNoImage when the images are missing
	}
	defer c.Close() // removes the containers and the network

	first := c.Node(1, 1)
	for _, ddl := range []string{
		`CREATE TABLE default.events_local ON CLUSTER ponix (id UInt64, v String)
		 ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/events_local', '{replica}')
		 ORDER BY id`,
		`CREATE TABLE default.events ON CLUSTER ponix (id UInt64, v String)
		 ENGINE = Distributed(ponix, default, events_local, id)`,
	} {
		if err := c.Exec(ctx, first, ddl); err != nil {
			log.Fatal(err)
		}
	}

	// Insert with a native batch (never INSERT … VALUES against 18.16).
	conn, err := c.Open(ctx, first)
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	batch, err := conn.PrepareBatch(ctx, "INSERT INTO default.events_local (id, v)")
	if err != nil {
		log.Fatal(err)
	}
	for id := range uint64(10) {
		if err := batch.Append(id, fmt.Sprint("value ", id)); err != nil {
			log.Fatal(err)
		}
	}
	if err := batch.Send(); err != nil {
		log.Fatal(err)
	}

	// Crash the other replica of shard 1, bring it back: it fetches the part it missed.
	second := c.Node(1, 2)
	if err := c.Kill(ctx, second); err != nil {
		log.Fatal(err)
	}
	if err := c.Start(ctx, second); err != nil {
		log.Fatal(err)
	}
	if err := c.WaitReady(ctx, second); err != nil {
		log.Fatal(err)
	}

	// Read through the Distributed table from any node, at the address system.clusters reports.
	var n uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM default.events FINAL").Scan(&n); err != nil {
		log.Fatal(err)
	}
	fmt.Println(n, "rows; shard 1 is", c.Shard(1)[0].Addr(), "and", c.Shard(1)[1].Addr())
}
