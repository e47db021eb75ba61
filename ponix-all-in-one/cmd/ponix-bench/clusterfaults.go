package main

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/ponix-go/ponix/ponixclickhouse"
	"github.com/ponix-go/ponix/ponixclickhouse/chcluster"
	"github.com/ponix-go/ponix/runner/backoff"
)

// With -cluster-faults the benchmark compares the two ways to write to a cluster under faults,
// on a 2 x 2 chcluster: batches of 1,000 envelopes written back to back for 30 s while one
// replica is partitioned (docker network disconnect), then while one shard is stopped, each
// way in turn; it reports the batches stored and failed and the batch latency (median, max).
// A failed batch is retried after a second, as a held batch would be.

// clusterWriter is what the comparison writes with.
type clusterWriter interface {
	Write(ctx context.Context, rows []ponixclickhouse.EnvelopeRow) error
}

// distributedWriter writes each batch with one INSERT into the Distributed table,
// insert_distributed_sync=1, bounded by the same 15 s as one attempt of the sharded writer.
type distributedWriter struct {
	w *ponixclickhouse.BatchWriter[ponixclickhouse.EnvelopeRow]
}

func (d distributedWriter) Write(ctx context.Context, rows []ponixclickhouse.EnvelopeRow) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	return d.w.Write(clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"insert_distributed_sync": 1})), rows)
}

// clusterFault is a fault and its end.
type clusterFault struct {
	name       string
	start, end func(ctx context.Context) error
}

func runClusterFaults(ctx context.Context, o *options, logger *slog.Logger) error {
	e := &env{o: o, logger: logger}
	if err := e.startCluster(ctx); err != nil {
		return err
	}
	defer e.close()
	c := e.cluster
	conn, err := e.freshDatabase(ctx, "bench_faults")
	if err != nil {
		return err
	}
	defer conn.Close()
	cfg := e.chCfg
	cfg.Database = "bench_faults"
	quiet := slog.New(slog.DiscardHandler)
	sharded, err := ponixclickhouse.NewShardedEnvelopeWriter(ctx, conn, ponixclickhouse.ClusterConfig{Cluster: clusterName, Conn: cfg},
		ponixclickhouse.Table{}, ponixclickhouse.WithLogger(quiet))
	if err != nil {
		return err
	}
	defer sharded.Close()
	bw, err := ponixclickhouse.NewEnvelopeWriter(ctx, conn, ponixclickhouse.Table{}, ponixclickhouse.WithLogger(quiet))
	if err != nil {
		return err
	}
	writers := []struct {
		name string
		w    clusterWriter
	}{{"sharded (client-side)", sharded}, {"distributed sync", distributedWriter{bw}}}

	partitioned := c.Node(2, 1)
	faults := []clusterFault{
		{"one replica partitioned 30 s", func(ctx context.Context) error { return c.Disconnect(ctx, partitioned) },
			func(ctx context.Context) error {
				if err := c.Connect(ctx, partitioned); err != nil {
					return err
				}
				return c.WaitReady(ctx, partitioned)
			}},
		{"one shard stopped 30 s", func(ctx context.Context) error {
			return forNodes(c.Shard(2), func(n *chcluster.Node) error { return c.Stop(ctx, n) })
		},
			func(ctx context.Context) error {
				return forNodes(c.Shard(2), func(n *chcluster.Node) error {
					if err := c.Start(ctx, n); err != nil {
						return err
					}
					return c.WaitReady(ctx, n)
				})
			}},
	}
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	rnd := rand.New(rand.NewPCG(1, 2))
	var seq uint64
	batch := func() []ponixclickhouse.EnvelopeRow {
		rows := make([]ponixclickhouse.EnvelopeRow, 1000)
		for i := range rows {
			seq++
			rows[i] = ponixclickhouse.EnvelopeRow{Envelope: envelope(int(seq), base, rnd), StreamSeq: seq}
		}
		return rows
	}
	fmt.Printf("ponix-bench -cluster-faults: %d x %d cluster, batches of 1,000 for 30 s per fault and writer\n\n", c.Shards(), c.Replicas())
	fmt.Printf("%-30s %-22s %8s %8s %10s %10s  %s\n", "fault", "writer", "stored", "failed", "p50", "max", "first error")
	for _, f := range faults {
		for _, w := range writers {
			for range 3 { // warm the connections up
				if err := w.w.Write(ctx, batch()); err != nil {
					return fmt.Errorf("%s before the fault: %w", w.name, err)
				}
			}
			if err := f.start(ctx); err != nil {
				return err
			}
			var (
				lat        []time.Duration
				ok, failed int
				first      string
				begin      = time.Now()
				pause      = backoff.Constant(time.Second).Start()
			)
			for time.Since(begin) < 30*time.Second {
				t0 := time.Now()
				err := w.w.Write(ctx, batch())
				lat = append(lat, time.Since(t0))
				if err == nil {
					ok++
					continue
				}
				failed++
				if first == "" {
					first = fmt.Sprintf("%s: %.120s", ponixclickhouse.Classify(err), err.Error())
				}
				if pause.Wait(ctx) != nil {
					break // stopping: end the fault below
				}
			}
			if err := f.end(ctx); err != nil {
				return err
			}
			slices.Sort(lat)
			fmt.Printf("%-30s %-22s %8d %8d %10s %10s  %s\n", f.name, w.name, ok, failed,
				lat[len(lat)/2].Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond), first)
			if err := e.settleCluster(ctx); err != nil {
				return err
			}
		}
	}
	return nil
}

func forNodes(nodes []*chcluster.Node, fn func(*chcluster.Node) error) error {
	for _, n := range nodes {
		if err := fn(n); err != nil {
			return err
		}
	}
	return nil
}
