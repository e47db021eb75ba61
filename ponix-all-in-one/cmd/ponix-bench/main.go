// Command ponix-bench measures how fast envelopes move from JetStream into
// ClickHouse, against real servers, and compares Ponix with a reference
// measured in the same run on the same data:
//
//   - reference: a naive single goroutine that fetches a batch, decodes each
//     message (proto.Unmarshal, json.Marshal of data.AsMap), inserts the batch
//     in one native batch and acks each message;
//   - ceilings: JetStream drains with no sink, one acking every message
//     (AckExplicit, "drain") and one acking the last message of each batch
//     (AckAll, "drain-ackall"), and the ClickHouse insert of the same rows from
//     memory;
//   - ponix: the consumer path of ponix-all-in-one (the same code the service
//     runs) draining the backlog into a fresh table.
//
// It prints envelopes/s, CPU seconds (its own, and the servers'), peak RSS for
// each, the ratios ponix/reference and ponix/min(ceilings) — the drain ceiling
// of the ack mode Ponix runs with (-ack: batch, one ack per batch, or message)
// and the insert ceiling — and checks that the
// table holds every envelope exactly once. With -latency it instead publishes
// at a fixed rate and reports publish→row-committed latency percentiles.
//
// By default it starts its own servers: nats-server as a child process (this
// binary, "serve-nats") and a throwaway clickhouse-server (apt-get install
// clickhouse-server); -nats-url and -clickhouse-addr use existing ones. With -cluster it starts
// a 2 shards x 2 replicas ClickHouse cluster in Docker instead and compares the ways to write
// to it (see cluster.go).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"
)

type options struct {
	n              int
	refBatch       int
	batchSize      int
	batchWait      time.Duration
	ack            string
	natsURL        string
	chAddr         string
	chUser         string
	chPassword     string
	jsonOut        bool
	latency        bool
	rate           int
	duration       time.Duration
	phases         string
	verbose        bool
	cpuProfile     string
	memProfile     string
	cluster        bool
	clusterFaults  bool
	dir            string
	natsPID, chPID int
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "serve-nats" {
		os.Exit(serveNATS(os.Args[2:]))
	}
	os.Exit(run())
}

func run() int {
	var o options
	flag.IntVar(&o.n, "n", 1_000_000, "envelopes to preload and drain")
	flag.IntVar(&o.refBatch, "ref-batch", 10_000, "batch size of the reference and of the drain ceiling")
	flag.IntVar(&o.batchSize, "batch", 0, "Ponix batch size (PONIX_NATS_BATCH_SIZE); 0 = the service default")
	flag.DurationVar(&o.batchWait, "batch-wait", 0, "Ponix batch wait; 0 = the service default")
	flag.StringVar(&o.ack, "ack", ackBatch, "Ponix ack mode (PONIX_NATS_ACK): batch (AckAll, one ack per batch) or message (AckExplicit, one ack each); ponix/min(ceilings) uses the drain ceiling of this mode")
	flag.StringVar(&o.natsURL, "nats-url", "", "use this NATS server instead of starting one")
	flag.StringVar(&o.chAddr, "clickhouse-addr", "", "use this ClickHouse (host:port, native) instead of starting one")
	flag.StringVar(&o.chUser, "clickhouse-user", "default", "ClickHouse user (with -clickhouse-addr)")
	flag.StringVar(&o.chPassword, "clickhouse-password", "", "ClickHouse password (with -clickhouse-addr)")
	flag.BoolVar(&o.jsonOut, "json", false, "print the results as JSON")
	flag.BoolVar(&o.latency, "latency", false, "measure publish→row latency at a fixed rate instead of throughput")
	flag.IntVar(&o.rate, "rate", 5000, "envelopes per second in -latency mode")
	flag.DurationVar(&o.duration, "duration", 60*time.Second, "how long to publish in -latency mode")
	flag.StringVar(&o.phases, "phases", "", "throughput phases to run, in order (default reference,drain,drain-ackall,ponix,insert; with -cluster drain,drain-ackall,ponix,insert,insert-distributed); also drain-raw: drain-ackall through a minimal protocol reader instead of nats.go")
	flag.BoolVar(&o.clusterFaults, "cluster-faults", false, "instead of throughput: on a 2 x 2 cluster, compare the cluster writer with a synchronous Distributed insert while a replica is partitioned and while a shard is down (batch latency, failures)")
	flag.BoolVar(&o.cluster, "cluster", false, "run against a 2 shards x 2 replicas ClickHouse 18.16 cluster that it starts in Docker (ponixclickhouse/chcluster; images from docker/cluster/build-images.sh) instead of one server")
	flag.BoolVar(&o.verbose, "v", false, "log progress")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the ponix phase to this file")
	flag.StringVar(&o.memProfile, "memprofile", "", "write an allocation profile of the ponix phase to this file (and its start to this file + \".start\"; use pprof -base)")
	flag.Parse()
	if o.phases == "" {
		o.phases = "reference,drain,drain-ackall,ponix,insert"
		if o.cluster {
			o.phases = "drain,drain-ackall,ponix,insert,insert-distributed"
		}
	}
	if o.ack != ackBatch && o.ack != ackMessage {
		fmt.Fprintf(os.Stderr, "ponix-bench: -ack %q: want %s or %s\n", o.ack, ackBatch, ackMessage)
		return 2
	}
	if o.cluster && o.chAddr != "" {
		fmt.Fprintln(os.Stderr, "ponix-bench: -cluster starts its own cluster; it does not take -clickhouse-addr")
		return 2
	}

	level := slog.LevelWarn
	if o.verbose {
		level = slog.LevelInfo
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var err error
	switch {
	case o.clusterFaults:
		err = runClusterFaults(ctx, &o, logger)
	case o.latency:
		err = runLatency(ctx, &o, logger)
	default:
		err = runThroughput(ctx, &o, logger)
	}
	if err != nil {
		if errors.Is(err, context.Canceled) {
			fmt.Fprintln(os.Stderr, "ponix-bench: interrupted")
			return 130
		}
		fmt.Fprintln(os.Stderr, "ponix-bench:", err)
		return 1
	}
	return 0
}

// printJSON writes v as indented JSON to stdout.
func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
