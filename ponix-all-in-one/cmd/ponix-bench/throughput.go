package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/ponix-go/ponix/pipeline"

	envelopev1 "buf.build/gen/go/ponix/ponix/protocolbuffers/go/envelope/v1"
	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/ponix-go/ponix/ponix-all-in-one/internal/app"
	"github.com/ponix-go/ponix/ponix-all-in-one/internal/config"
	"github.com/ponix-go/ponix/ponixclickhouse"
	"github.com/ponix-go/ponix/ponixnats"
)

// result is one measured phase.
type result struct {
	Name         string  `json:"name"`
	Envelopes    int     `json:"envelopes"`
	BatchSize    int     `json:"batch_size"`
	Seconds      float64 `json:"seconds"`
	PerSecond    float64 `json:"envelopes_per_second"`
	CPUSeconds   float64 `json:"cpu_seconds"`
	NATSCPU      float64 `json:"nats_server_cpu_seconds"`
	CHCPU        float64 `json:"clickhouse_server_cpu_seconds"`
	PeakRSSMiB   float64 `json:"peak_rss_mib"`
	AllocsPerEnv float64 `json:"allocs_per_envelope"`
	RowsFinal    uint64  `json:"rows_final,omitempty"`
	RowsRaw      uint64  `json:"rows_raw,omitempty"`
	ExactlyOnce  *bool   `json:"exactly_once,omitempty"`
}

type report struct {
	Envelopes        int      `json:"envelopes"`
	PreloadPerSecond float64  `json:"preload_envelopes_per_second"`
	Phases           []result `json:"phases"`
	PonixVsReference float64  `json:"ponix_vs_reference,omitempty"`
	// AckMode is how Ponix acked (-ack): "batch" or "message".
	AckMode string `json:"ack_mode"`
	// PonixVsCeiling is ponix / min(the drain ceiling of AckMode, the insert ceiling).
	PonixVsCeiling float64 `json:"ponix_vs_min_ceiling,omitempty"`
	// PonixVsCeilingByAck is ponix / min(drain ceiling, insert ceiling) for each ack mode whose
	// drain ran ("message": drain, "batch": drain-ackall).
	PonixVsCeilingByAck map[string]float64 `json:"ponix_vs_min_ceiling_by_ack,omitempty"`
}

// Ack modes (-ack, PONIX_NATS_ACK) and the drain phase that is their ceiling.
const (
	ackBatch   = "batch"   // AckAll policy: the last message of each batch is acked
	ackMessage = "message" // AckExplicit policy: every message is acked
)

var drainPhaseOfAck = map[string]string{ackMessage: "drain", ackBatch: "drain-ackall"}

// measure runs fn as one phase: CPU, wall time and peak RSS of this process,
// and the CPU of the server processes.
func (e *env) measure(name string, batch int, fn func() error) (result, error) {
	runtime.GC()
	debug.FreeOSMemory()
	resetPeakRSS()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	cpu0, nats0, ch0 := selfCPU(), pidCPU(e.o.natsPID), e.serverCPU()
	start := time.Now()
	err := fn()
	wall := time.Since(start)
	runtime.ReadMemStats(&m1)
	r := result{
		Name: name, Envelopes: e.o.n, BatchSize: batch, Seconds: wall.Seconds(),
		PerSecond:    float64(e.o.n) / wall.Seconds(),
		CPUSeconds:   (selfCPU() - cpu0).Seconds(),
		NATSCPU:      (pidCPU(e.o.natsPID) - nats0).Seconds(),
		CHCPU:        (e.serverCPU() - ch0).Seconds(),
		PeakRSSMiB:   float64(peakRSS()) / (1 << 20),
		AllocsPerEnv: float64(m1.Mallocs-m0.Mallocs) / float64(e.o.n),
	}
	e.logger.Info("phase done", "phase", name, "seconds", r.Seconds, "envelopes_per_second", r.PerSecond)
	return r, err
}

func runThroughput(ctx context.Context, o *options, logger *slog.Logger) error {
	cfg, err := serviceConfig(o)
	if err != nil {
		return err
	}
	e, err := setup(ctx, o, logger)
	if err != nil {
		return err
	}
	defer e.close()
	logger.Info("preloading", "envelopes", o.n)
	took, err := e.preload(ctx, o.n)
	if err != nil {
		return fmt.Errorf("preload: %w", err)
	}
	rep := report{Envelopes: o.n, PreloadPerSecond: float64(o.n) / took.Seconds(), AckMode: o.ack}
	byPhase := map[string]result{}
	for _, phase := range strings.Split(o.phases, ",") {
		phase = strings.TrimSpace(phase)
		var r result
		switch phase {
		case "reference":
			r, err = e.reference(ctx)
		case "drain":
			r, err = e.drain(ctx, jetstream.AckExplicitPolicy)
		case "drain-ackall":
			r, err = e.drain(ctx, jetstream.AckAllPolicy)
		case "drain-raw":
			r, err = e.drainRaw(ctx)
		case "ponix":
			r, err = e.ponix(ctx, cfg)
		case "insert":
			r, err = e.insert(ctx, cfg.NATSBatchSize)
		case "insert-distributed":
			if e.cluster == nil {
				return fmt.Errorf("phase insert-distributed needs -cluster")
			}
			r, err = e.insertDistributed(ctx, cfg.NATSBatchSize)
		default:
			return fmt.Errorf("unknown phase %q (want reference, drain, drain-ackall, drain-raw, ponix, insert, insert-distributed)", phase)
		}
		if err != nil {
			return fmt.Errorf("phase %s: %w", phase, err)
		}
		rep.Phases = append(rep.Phases, r)
		byPhase[phase] = r
	}
	if p, ok := byPhase["ponix"]; ok {
		if ref, ok := byPhase["reference"]; ok {
			rep.PonixVsReference = p.PerSecond / ref.PerSecond
		}
		if i, ok := byPhase["insert"]; ok {
			for mode, phase := range drainPhaseOfAck {
				if d, ok := byPhase[phase]; ok {
					if rep.PonixVsCeilingByAck == nil {
						rep.PonixVsCeilingByAck = map[string]float64{}
					}
					rep.PonixVsCeilingByAck[mode] = p.PerSecond / min(d.PerSecond, i.PerSecond)
				}
			}
			rep.PonixVsCeiling = rep.PonixVsCeilingByAck[o.ack]
		}
	}
	if o.jsonOut {
		return printJSON(rep)
	}
	printReport(rep)
	for _, r := range rep.Phases {
		if r.ExactlyOnce != nil && !*r.ExactlyOnce {
			return fmt.Errorf("phase %s: table holds %d rows (%d with FINAL), want exactly %d", r.Name, r.RowsRaw, r.RowsFinal, o.n)
		}
	}
	return nil
}

func printReport(rep report) {
	fmt.Printf("ponix-bench: %d envelopes (preloaded at %.0f/s)\n\n", rep.Envelopes, rep.PreloadPerSecond)
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "phase\tbatch\tenvelopes/s\tseconds\tcpu s\tnats cpu s\tclickhouse cpu s\tpeak rss MiB\tallocs/env\trows\t")
	for _, r := range rep.Phases {
		rows := "-"
		if r.ExactlyOnce != nil {
			rows = fmt.Sprintf("%d exact=%v", r.RowsFinal, *r.ExactlyOnce)
		}
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%.2f\t%.2f\t%.2f\t%.2f\t%.1f\t%.1f\t%s\t\n", r.Name, r.BatchSize, r.PerSecond, r.Seconds, r.CPUSeconds, r.NATSCPU, r.CHCPU, r.PeakRSSMiB, r.AllocsPerEnv, rows)
	}
	_ = tw.Flush()
	if rep.PonixVsReference > 0 {
		fmt.Printf("\nponix / reference      = %.2f\n", rep.PonixVsReference)
	}
	if rep.PonixVsCeiling > 0 {
		fmt.Printf("ponix / min(ceilings)  = %.2f   (ack %s: min(%s, insert))\n", rep.PonixVsCeiling, rep.AckMode, drainPhaseOfAck[rep.AckMode])
	} else if len(rep.PonixVsCeilingByAck) > 0 {
		fmt.Printf("ponix / min(ceilings)  = -      (ack %s: phase %s did not run)\n", rep.AckMode, drainPhaseOfAck[rep.AckMode])
	}
	for _, mode := range []string{ackMessage, ackBatch} {
		if v, ok := rep.PonixVsCeilingByAck[mode]; ok && mode != rep.AckMode {
			fmt.Printf("  with the %s ceiling  = %.2f   (min(%s, insert))\n", mode, v, drainPhaseOfAck[mode])
		}
	}
}

// serviceConfig is the service's configuration (its defaults, as the service
// would load them) pointed at the benchmark stream.
func serviceConfig(o *options) (config.Config, error) {
	environ := []string{"PONIX_NATS_STREAM=" + benchStream, "PONIX_NATS_SUBJECT=" + benchStream + ".>", "PONIX_NATS_CONSUMER=bench-ponix"}
	if o.batchSize > 0 {
		environ = append(environ, fmt.Sprintf("PONIX_NATS_BATCH_SIZE=%d", o.batchSize))
	}
	if o.batchWait > 0 {
		environ = append(environ, fmt.Sprintf("PONIX_NATS_BATCH_WAIT_SECS=%d", int(o.batchWait.Seconds())))
	}
	if o.ack != "" {
		// The service's ack mode. A config without the variable ignores it (config.Load reads
		// only the variables it knows): Ponix then acks as its default says.
		environ = append(environ, "PONIX_NATS_ACK="+o.ack)
	}
	return config.Load(environ)
}

// consumer makes a fresh durable pull consumer on the benchmark stream with the ack policy
// (AckExplicit or AckAll).
func (e *env) consumer(ctx context.Context, name string, policy jetstream.AckPolicy) (jetstream.Consumer, error) {
	_ = e.js.DeleteConsumer(ctx, benchStream, name)
	return e.js.CreateConsumer(ctx, benchStream, jetstream.ConsumerConfig{
		Durable:       name,
		AckPolicy:     policy,
		AckWait:       time.Minute,
		MaxAckPending: 2 * e.o.refBatch,
	})
}

// reference is the naive pipeline: one goroutine; fetch a batch, decode each
// message with proto.Unmarshal and json.Marshal(data.AsMap()), insert the batch
// with one native batch (row by row Append), then ack each message.
func (e *env) reference(ctx context.Context) (result, error) {
	conn, err := e.freshDatabase(ctx, "bench_reference")
	if err != nil {
		return result{}, err
	}
	defer conn.Close()
	cons, err := e.consumer(ctx, "bench-reference", jetstream.AckExplicitPolicy)
	if err != nil {
		return result{}, err
	}
	refCtx := ctx
	if e.cluster != nil { // the reference inserts through the Distributed table
		refCtx = clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"insert_distributed_sync": 1}))
	}
	r, err := e.measure("reference", e.o.refBatch, func() error {
		for done := 0; done < e.o.n; {
			b, err := cons.Fetch(e.o.refBatch, jetstream.FetchMaxWait(5*time.Second))
			if err != nil {
				return err
			}
			var msgs []jetstream.Msg
			for m := range b.Messages() {
				msgs = append(msgs, m)
			}
			if err := b.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
				return err
			}
			if len(msgs) == 0 {
				continue
			}
			batch, err := conn.PrepareBatch(refCtx, "INSERT INTO processed_envelopes (organization_id, end_device_id, occurred_at, processed_at, data, stream_seq)")
			if err != nil {
				return err
			}
			for _, m := range msgs {
				var env envelopev1.ProcessedEnvelope
				if err := proto.Unmarshal(m.Data(), &env); err != nil {
					return err
				}
				data, err := json.Marshal(env.GetData().AsMap())
				if err != nil {
					return err
				}
				meta, err := m.Metadata()
				if err != nil {
					return err
				}
				if err := batch.Append(env.GetOrganizationId(), env.GetEndDeviceId(), env.GetOccurredAt().AsTime(),
					env.GetProcessedAt().AsTime(), string(data), meta.Sequence.Stream); err != nil {
					return err
				}
			}
			if err := batch.Send(); err != nil {
				return err
			}
			for _, m := range msgs {
				if err := m.Ack(); err != nil {
					return err
				}
			}
			done += len(msgs)
		}
		return e.flush(ctx)
	})
	if err != nil {
		return r, err
	}
	return r, e.verify(ctx, conn, &r)
}

// drain is a JetStream ceiling: fetch every message, no sink. With AckExplicitPolicy
// ("drain") every message is acked; with AckAllPolicy ("drain-ackall") only the last message
// of each fetched batch, which acks the batch (one ack per batch, as PONIX_NATS_ACK=batch).
func (e *env) drain(ctx context.Context, policy jetstream.AckPolicy) (result, error) {
	name, consumer := "drain (ceiling)", "bench-drain"
	if policy == jetstream.AckAllPolicy {
		name, consumer = "drain-ackall (ceiling)", "bench-drain-ackall"
	}
	cons, err := e.consumer(ctx, consumer, policy)
	if err != nil {
		return result{}, err
	}
	return e.drainWith(ctx, name, cons, policy)
}

// drainWith fetches every message through cons and acks each (AckExplicit) or the last of
// each batch (AckAll).
func (e *env) drainWith(ctx context.Context, name string, cons jetstream.Consumer, policy jetstream.AckPolicy) (result, error) {
	return e.measure(name, e.o.refBatch, func() error {
		for done := 0; done < e.o.n; {
			b, err := cons.Fetch(e.o.refBatch, jetstream.FetchMaxWait(5*time.Second))
			if err != nil {
				return err
			}
			var last jetstream.Msg
			for m := range b.Messages() {
				if policy != jetstream.AckAllPolicy {
					if err := m.Ack(); err != nil {
						return err
					}
				}
				last = m
				done++
			}
			if err := b.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
				return err
			}
			if policy == jetstream.AckAllPolicy && last != nil {
				if err := last.Ack(); err != nil {
					return err
				}
			}
		}
		return e.flush(ctx)
	})
}

// insert is the ClickHouse ceiling: the same rows, decoded beforehand, written
// from memory with the Ponix writer in batches of the Ponix batch size.
func (e *env) insert(ctx context.Context, batch int) (result, error) {
	conn, err := e.freshDatabase(ctx, "bench_insert")
	if err != nil {
		return result{}, err
	}
	defer conn.Close()
	rows, err := e.decodeAll(ctx)
	if err != nil {
		return result{}, err
	}
	if e.cluster != nil {
		return e.insertSharded(ctx, conn, "bench_insert", rows, batch)
	}
	w, err := ponixclickhouse.NewEnvelopeWriter(ctx, conn, ponixclickhouse.Table{})
	if err != nil {
		return result{}, err
	}
	return e.measureWrites(ctx, conn, "insert (ceiling)", rows, batch, w.Write)
}

// measureWrites times writing rows from memory in batches of batch through write, then checks
// the table holds them.
func (e *env) measureWrites(ctx context.Context, conn driver.Conn, name string, rows []ponixclickhouse.EnvelopeRow, batch int,
	write func(context.Context, []ponixclickhouse.EnvelopeRow) error) (result, error) {
	r, err := e.measure(name, batch, func() error {
		for i := 0; i < len(rows); i += batch {
			if err := write(ctx, rows[i:min(i+batch, len(rows))]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return r, err
	}
	return r, e.verify(ctx, conn, &r)
}

// decodeAll reads every envelope of the stream into rows (not measured).
func (e *env) decodeAll(ctx context.Context) ([]ponixclickhouse.EnvelopeRow, error) {
	cons, err := e.js.OrderedConsumer(ctx, benchStream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil, err
	}
	rows := make([]ponixclickhouse.EnvelopeRow, 0, e.o.n)
	for len(rows) < e.o.n {
		b, err := cons.Fetch(10_000, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return nil, err
		}
		for m := range b.Messages() {
			env := new(envelopev1.ProcessedEnvelope)
			if err := proto.Unmarshal(m.Data(), env); err != nil {
				return nil, err
			}
			seq, err := ponixnats.StreamSequence(m)
			if err != nil {
				meta, merr := m.Metadata()
				if merr != nil {
					return nil, err
				}
				seq = meta.Sequence.Stream
			}
			rows = append(rows, ponixclickhouse.EnvelopeRow{Envelope: env, StreamSeq: seq})
		}
		if err := b.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return nil, err
		}
	}
	return rows, nil
}

// ponix drains the backlog through the service's own consumer path.
func (e *env) ponix(ctx context.Context, cfg config.Config) (result, error) {
	conn, err := e.freshDatabase(ctx, "bench_ponix")
	if err != nil {
		return result{}, err
	}
	defer conn.Close()
	_ = e.js.DeleteConsumer(ctx, benchStream, cfg.NATSConsumer)
	var stored atomic.Int64
	done := make(chan struct{})
	quiet := slog.New(slog.DiscardHandler)
	if e.o.verbose {
		quiet = e.logger
	}
	opts := e.pipelineOptions(&cfg, "bench_ponix", conn, quiet)
	opts.Observe = func(ins pipeline.Insert[[]byte]) {
		if ins.Err == nil && stored.Add(int64(len(ins.Records))) >= int64(e.o.n) {
			select {
			case <-done:
			default:
				close(done)
			}
		}
	}
	cons, err := app.NewPipeline(cfg, e.js, opts)
	if err != nil {
		return result{}, err
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var runErr error
	runDone := make(chan struct{})
	if e.o.memProfile != "" {
		if err := writeAllocProfile(e.o.memProfile + ".start"); err != nil {
			return result{}, err
		}
	}
	r, err := e.measure("ponix", cfg.NATSBatchSize, func() error {
		go func() {
			defer close(runDone)
			runErr = cons.Run(runCtx)
		}()
		if e.o.cpuProfile != "" {
			f, err := os.Create(e.o.cpuProfile)
			if err != nil {
				return err
			}
			defer f.Close()
			if err := pprof.StartCPUProfile(f); err != nil {
				return err
			}
			defer pprof.StopCPUProfile()
		}
		select {
		case <-done:
		case <-runDone:
			return fmt.Errorf("consumer stopped early: %w", runErr)
		case <-ctx.Done():
			return ctx.Err()
		}
		// Every envelope is stored. As for the reference, the clock stops when the
		// acks of the last batch have reached the server. Stopping the consumer is
		// not part of the drain: its last pull request, which finds the stream
		// empty, runs out its batch wait before Run returns (a pull request in
		// flight is never abandoned).
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for cons.Consumer().Stats().Acked < uint64(e.o.n) {
			select {
			case <-runDone:
				return fmt.Errorf("consumer stopped before acking the backlog: %w", runErr)
			case <-ctx.Done():
				return ctx.Err()
			case <-tick.C:
			}
		}
		return e.flush(ctx)
	})
	cancel()
	<-runDone
	if e.o.memProfile != "" && err == nil {
		err = writeAllocProfile(e.o.memProfile)
	}
	if err == nil && runErr != nil {
		err = fmt.Errorf("consumer: %w", runErr)
	}
	if err != nil {
		return r, err
	}
	return r, e.verify(ctx, conn, &r)
}

// writeAllocProfile writes the allocations since the process started and the heap in use at
// the last GC. The ponix phase writes one as it starts (-memprofile's file + ".start") and
// one as it ends: `go tool pprof -base f.start f` shows the phase's own allocations.
func writeAllocProfile(path string) error {
	runtime.GC() // the profile holds the allocations up to the last collection: up to now
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// verify checks that the phase's table holds every envelope exactly once.
func (e *env) verify(ctx context.Context, conn driver.Conn, r *result) error {
	if e.cluster != nil {
		// Every replica holds every part, and no merge runs, before the rows are counted (a
		// Distributed query reads one replica per shard) and before the next phase starts.
		if err := e.settleCluster(ctx); err != nil {
			return err
		}
	}
	raw, final, distinct, err := countRows(ctx, conn)
	if err != nil {
		return err
	}
	exact := final == uint64(e.o.n) && distinct == uint64(e.o.n)
	r.RowsRaw, r.RowsFinal, r.ExactlyOnce = raw, final, &exact
	return nil
}

// flush waits until the server has received every ack sent so far.
func (e *env) flush(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return e.nc.FlushWithContext(ctx)
}
