package main

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/ponix-go/ponix/pipeline"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/ponix-go/ponix/ponix-all-in-one/internal/app"
)

type latencyReport struct {
	Rate        int     `json:"rate_per_second"`
	Seconds     float64 `json:"seconds"`
	Published   int     `json:"published"`
	Stored      int     `json:"stored"`
	BatchSize   int     `json:"batch_size"`
	BatchWaitS  float64 `json:"batch_wait_seconds"`
	P50Millis   float64 `json:"p50_ms"`
	P99Millis   float64 `json:"p99_ms"`
	MaxMillis   float64 `json:"max_ms"`
	TargetP99Ms float64 `json:"target_p99_ms"`
}

// runLatency publishes at a fixed rate while the Ponix consumer path runs, and
// measures for each envelope the time from its publish to the commit of the
// insert that stored it (the row is visible to queries from then on).
func runLatency(ctx context.Context, o *options, logger *slog.Logger) error {
	cfg, err := serviceConfig(o)
	if err != nil {
		return err
	}
	e, err := setup(ctx, o, logger)
	if err != nil {
		return err
	}
	defer e.close()
	conn, err := e.freshDatabase(ctx, "bench_latency")
	if err != nil {
		return err
	}
	defer conn.Close()

	total := o.rate * int(o.duration/time.Second)
	var (
		mu        sync.Mutex
		published = make(map[uint64]time.Time, total) // stream sequence → publish time
		latencies = make([]time.Duration, 0, total)
		allStored = make(chan struct{})
	)
	opts := e.pipelineOptions(&cfg, "bench_latency", conn, slog.New(slog.DiscardHandler))
	opts.Observe = func(ins pipeline.Insert[[]byte]) {
		if ins.Err != nil {
			return
		}
		now := time.Now()
		mu.Lock()
		defer mu.Unlock()
		for _, r := range ins.Records {
			if t, ok := published[r.Seq]; ok {
				latencies = append(latencies, now.Sub(t))
				delete(published, r.Seq)
			}
		}
		if len(latencies) == total {
			close(allStored)
		}
	}
	cons, err := app.NewPipeline(cfg, e.js, opts)
	if err != nil {
		return err
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- cons.Run(runCtx) }()

	// Publish in ticks of 10 ms; a pub ack tells the sequence, the publish time
	// is taken just before the publish.
	rnd := rand.New(rand.NewPCG(3, 4))
	perTick := max(1, o.rate/100)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	base := time.Now()
	start := time.Now()
	var pubWG sync.WaitGroup
	for i := 0; i < total; {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		for j := 0; j < perTick && i < total; j, i = j+1, i+1 {
			b, err := proto.Marshal(envelope(i, base, rnd))
			if err != nil {
				return err
			}
			m := nats.NewMsg(benchStream + fmt.Sprintf(".device-%04d", i%benchDevices))
			m.Data = b
			at := time.Now()
			f, err := e.js.PublishMsgAsync(m)
			if err != nil {
				return err
			}
			pubWG.Add(1)
			go func() {
				defer pubWG.Done()
				select {
				case ack := <-f.Ok():
					mu.Lock()
					published[ack.Sequence] = at
					mu.Unlock()
				case err := <-f.Err():
					logger.Error("publish failed", "error", err)
				}
			}()
		}
	}
	pubWG.Wait()
	elapsed := time.Since(start)
	select {
	case <-allStored:
	case <-time.After(30 * time.Second):
		logger.Warn("not every envelope was stored within 30 s of the last publish")
	case err := <-errc:
		return fmt.Errorf("consumer stopped: %w", err)
	}
	cancel()
	<-errc

	mu.Lock()
	defer mu.Unlock()
	slices.Sort(latencies)
	pct := func(p float64) float64 {
		if len(latencies) == 0 {
			return 0
		}
		return float64(latencies[min(len(latencies)-1, int(p*float64(len(latencies))))].Microseconds()) / 1000
	}
	rep := latencyReport{
		Rate: o.rate, Seconds: elapsed.Seconds(), Published: total, Stored: len(latencies),
		BatchSize: cfg.NATSBatchSize, BatchWaitS: cfg.BatchWait().Seconds(),
		P50Millis: pct(0.50), P99Millis: pct(0.99), MaxMillis: pct(1),
		TargetP99Ms: float64((cfg.BatchWait() + time.Second).Milliseconds()),
	}
	if o.jsonOut {
		return printJSON(rep)
	}
	fmt.Printf("ponix-bench latency: %d envelopes at %d/s over %.1fs (batch %d, wait %.0fs)\n",
		rep.Published, rep.Rate, rep.Seconds, rep.BatchSize, rep.BatchWaitS)
	fmt.Printf("stored %d; publish→row latency p50 %.0f ms, p99 %.0f ms, max %.0f ms (target p99 ≤ %.0f ms)\n",
		rep.Stored, rep.P50Millis, rep.P99Millis, rep.MaxMillis, rep.TargetP99Ms)
	if rep.Stored != total {
		return fmt.Errorf("stored %d of %d envelopes", rep.Stored, total)
	}
	return nil
}
