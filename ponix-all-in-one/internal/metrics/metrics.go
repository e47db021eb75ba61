// Package metrics holds the Prometheus metrics of ponix-all-in-one: envelope
// counters of the producer, the consumer and the ClickHouse writer, batch size
// and insert latency histograms, the lag in time of what is stored (end-to-end
// latency, age of the newest stored envelope), the JetStream consumer's backlog, build
// information, and the Go runtime and process collectors, all in a registry of
// its own (never the global default registry).
package metrics

import (
	"context"
	"log/slog"
	"net/http"
	"runtime"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ponix-go/ponix/ponixclickhouse"
	"github.com/ponix-go/ponix/ponixnats"
)

// Namespace prefixes every metric name.
const Namespace = "ponix"

// DefaultInfoTimeout bounds the JetStream consumer info request made at each
// scrape.
const DefaultInfoTimeout = time.Second

// BatchSizeBuckets are the buckets of ponix_insert_batch_size (envelopes per
// ClickHouse insert).
var BatchSizeBuckets = []float64{1, 5, 10, 30, 100, 300, 1000, 3000, 10_000, 30_000, 100_000}

// InsertDurationBuckets are the buckets of ponix_insert_duration_seconds.
var InsertDurationBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

// Metrics are the service's metrics. The zero value is not usable; call New.
// A nil *Metrics is valid and records nothing, so code paths without metrics
// need no checks.
type Metrics struct {
	reg *prometheus.Registry

	published      prometheus.Counter
	publishErrors  prometheus.Counter
	stored         prometheus.Counter
	insertErrors   prometheus.Counter
	refusedParts   prometheus.Counter
	alreadyStored  prometheus.Counter
	batchSize      prometheus.Histogram
	insertDuration prometheus.Histogram
	lag            *lag
}

// New returns the metrics registered in a new registry, with the Go runtime
// and process collectors and ponix_build_info{version,goversion} = 1.
func New(version string) *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		reg: reg,
		lag: newLag(time.Now),
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: Namespace, Name: "envelopes_published_total",
			Help: "Envelopes published to JetStream by the sample producer (acknowledged by the stream).",
		}),
		publishErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: Namespace, Name: "publish_errors_total",
			Help: "Failed publishes of the sample producer.",
		}),
		stored: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: Namespace, Name: "envelopes_stored_total",
			Help: "Envelopes committed to ClickHouse (before their messages are acked).",
		}),
		insertErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: Namespace, Name: "insert_errors_total",
			Help: "ClickHouse batch insert attempts that failed for a fault of the sink (a failing sink holds the batch and tries again; see ponix_sink_blocked). Parts of a batch refused as data while its bad records are isolated count in ponix_insert_refused_parts_total instead.",
		}),
		refusedParts: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: Namespace, Name: "insert_refused_parts_total",
			Help: "Insert attempts that ClickHouse refused as data (a parse, type or value error) while the batch is split to find the records it refuses alone; those records are dead-lettered (ponix_envelopes_dead_lettered_total).",
		}),
		alreadyStored: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: Namespace, Name: "envelopes_already_stored_total",
			Help: "Envelopes delivered again (after a crash between an insert and its acks, an expired AckWait, a NATS restart, a consumer created anew) whose row was stored already: acknowledged without a second insert. They also count in ponix_envelopes_stored_total.",
		}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "insert_batch_size",
			Help:    "Envelopes per ClickHouse batch insert attempt.",
			Buckets: BatchSizeBuckets,
		}),
		insertDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "insert_duration_seconds",
			Help:    "Duration of ClickHouse batch inserts, successful or not.",
			Buckets: InsertDurationBuckets,
		}),
	}
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "build_info",
		Help:        "Build information of ponix-all-in-one; the value is always 1.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": runtime.Version()},
	})
	buildInfo.Set(1)
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		buildInfo,
		m.published, m.publishErrors, m.stored, m.insertErrors, m.refusedParts, m.alreadyStored, m.batchSize, m.insertDuration,
		m.lag,
	)
	return m
}

// Registry returns the registry holding every metric.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Published counts one envelope published by the producer, or a failed
// publish when err is not nil.
func (m *Metrics) Published(err error) {
	if m == nil {
		return
	}
	if err != nil {
		m.publishErrors.Inc()
		return
	}
	m.published.Inc()
}

// ObserveInsert records one ClickHouse batch insert attempt of n envelopes
// that took d; on success (err == nil) the n envelopes count as stored, of which
// already were found stored before (not inserted again).
func (m *Metrics) ObserveInsert(n, already int, d time.Duration, err error) {
	if m == nil {
		return
	}
	c := ponixclickhouse.Classify(err)
	if err == nil || c != ponixclickhouse.ClassRow {
		// A row the encoder refuses is refused before anything is sent: no insert to measure.
		m.batchSize.Observe(float64(n))
		m.insertDuration.Observe(d.Seconds())
	}
	if err != nil {
		if c == ponixclickhouse.ClassData || c == ponixclickhouse.ClassRow {
			m.refusedParts.Inc()
		} else {
			m.insertErrors.Inc()
		}
		return
	}
	m.stored.Add(float64(n))
	m.alreadyStored.Add(float64(already))
}

// ConsumerSource is what the consumer collector reads: *ponixnats.Consumer
// implements it.
type ConsumerSource interface {
	Stats() ponixnats.Stats
	Info(ctx context.Context) (*jetstream.ConsumerInfo, error)
	Owner() bool
}

// WatchConsumer registers a collector that reports, at each scrape, the
// cumulative counters of src and its backlog from the JetStream consumer info
// (requested with infoTimeout, DefaultInfoTimeout when zero), labelled with
// stream and consumer. When the info request fails, the backlog gauges are
// left out of that scrape and ponix_consumer_info_ok is 0.
func (m *Metrics) WatchConsumer(src ConsumerSource, stream, consumer string, infoTimeout time.Duration, logger *slog.Logger) error {
	if infoTimeout <= 0 {
		infoTimeout = DefaultInfoTimeout
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return m.reg.Register(newConsumerCollector(src, stream, consumer, infoTimeout, logger))
}

type consumerCollector struct {
	src     ConsumerSource
	labels  []string
	timeout time.Duration
	log     *slog.Logger

	counters   []counterDesc
	pending    *prometheus.Desc
	ackPending *prometheus.Desc
	redeliv    *prometheus.Desc
	infoOK     *prometheus.Desc
	owner      *prometheus.Desc
}

type counterDesc struct {
	desc  *prometheus.Desc
	value func(ponixnats.Stats) uint64
}

func newConsumerCollector(src ConsumerSource, stream, consumer string, timeout time.Duration, logger *slog.Logger) *consumerCollector {
	labels := []string{"stream", "consumer"}
	desc := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(Namespace, "", name), help, labels, nil)
	}
	return &consumerCollector{
		src:     src,
		labels:  []string{stream, consumer},
		timeout: timeout,
		log:     logger,
		counters: []counterDesc{
			{desc("envelopes_consumed_total", "Messages fetched from the JetStream consumer and handed to the processor (redeliveries included)."), func(s ponixnats.Stats) uint64 { return s.Messages }},
			{desc("envelopes_acked_total", "Messages acknowledged after their rows were committed."), func(s ponixnats.Stats) uint64 { return s.Acked }},
			{desc("envelopes_nakd_total", "Messages nak'd by the processor's verdict on them (counted towards MaxDeliver)."), func(s ponixnats.Stats) uint64 { return s.Naked }},
			{desc("envelopes_released_total", "Messages given back for redelivery without a verdict on them (a hold given back after PONIX_CLICKHOUSE_RETRY_SECS, a stop while held, a processor failure); never counted towards MaxDeliver."), func(s ponixnats.Stats) uint64 { return s.Released }},
			{desc("envelopes_redelivered_total", "Messages handed to the processor that had been delivered before (a restart, a crash, an expired AckWait, a release): their rows may already be stored."), func(s ponixnats.Stats) uint64 { return s.Redelivered }},
			{desc("envelopes_dead_lettered_total", "Messages published to the dead-letter stream, then terminated (undecodable, invalid, refused alone by ClickHouse, max deliveries)."), func(s ponixnats.Stats) uint64 { return s.DeadLettered }},
			{desc("envelopes_terminated_total", "Messages terminated without dead-lettering."), func(s ponixnats.Stats) uint64 { return s.Termed }},
			{desc("consumer_batches_total", "Batches fetched and handed to the processor."), func(s ponixnats.Stats) uint64 { return s.Batches }},
			{desc("consumer_fetch_errors_total", "Failed fetches from JetStream (retried)."), func(s ponixnats.Stats) uint64 { return s.FetchErrors }},
			{desc("consumer_ack_errors_total", "Failed ack/nak/term sends (the server redelivers after AckWait)."), func(s ponixnats.Stats) uint64 { return s.AckErrors }},
			{desc("consumer_processor_errors_total", "Batches released whole because the processor failed."), func(s ponixnats.Stats) uint64 { return s.ProcessorErrors }},
			{desc("consumer_dead_letter_failures_total", "Dead-letter publishes that failed (the message was nak'd instead)."), func(s ponixnats.Stats) uint64 { return s.DeadLetterFailed }},
			{desc("consumer_recoveries_total", "Times the durable consumer (or its stream) was found deleted and created again."), func(s ponixnats.Stats) uint64 { return s.Recoveries }},
			{desc("consumer_takeovers_total", "Times this instance became the owner of the durable (one ack per batch) and had what an earlier owner left unacknowledged delivered again."), func(s ponixnats.Stats) uint64 { return s.Takeovers }},
			{desc("consumer_rewinds_total", "Times delivery rewound to a message of a batch that must come again (one ack per batch: the batch was acknowledged up to it)."), func(s ponixnats.Stats) uint64 { return s.Rewinds }},
			{desc("consumer_expired_total", "Messages of batches dropped unprocessed because they waited 3/4 of their AckWait unrenewed (this process stalled) and may have been delivered to another instance (one ack per message); they come again."), func(s ponixnats.Stats) uint64 { return s.Expired }},
		},
		pending:    desc("consumer_pending_messages", "Messages in the stream not yet delivered to the consumer (JetStream num_pending)."),
		ackPending: desc("consumer_ack_pending_messages", "Messages delivered and not yet acknowledged (JetStream num_ack_pending)."),
		redeliv:    desc("consumer_redelivered_messages", "Messages delivered more than once and not yet acknowledged (JetStream num_redelivered)."),
		infoOK:     desc("consumer_info_ok", "1 when the last consumer info request succeeded, 0 when it failed."),
		owner:      desc("consumer_owner", "1 while this instance consumes the durable (owns it, one ack per batch; always, one ack per message), 0 while it stands by."),
	}
}

// Describe implements prometheus.Collector.
func (c *consumerCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, cd := range c.counters {
		ch <- cd.desc
	}
	ch <- c.pending
	ch <- c.ackPending
	ch <- c.redeliv
	ch <- c.infoOK
	ch <- c.owner
}

// Collect implements prometheus.Collector.
func (c *consumerCollector) Collect(ch chan<- prometheus.Metric) {
	stats := c.src.Stats()
	for _, cd := range c.counters {
		ch <- prometheus.MustNewConstMetric(cd.desc, prometheus.CounterValue, float64(cd.value(stats)), c.labels...)
	}
	owner := 0.0
	if c.src.Owner() {
		owner = 1
	}
	ch <- prometheus.MustNewConstMetric(c.owner, prometheus.GaugeValue, owner, c.labels...)
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	info, err := c.src.Info(ctx)
	if err != nil {
		c.log.Debug("consumer info for metrics failed", "stream", c.labels[0], "consumer", c.labels[1], "error", err)
		ch <- prometheus.MustNewConstMetric(c.infoOK, prometheus.GaugeValue, 0, c.labels...)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.infoOK, prometheus.GaugeValue, 1, c.labels...)
	ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(info.NumPending), c.labels...)
	ch <- prometheus.MustNewConstMetric(c.ackPending, prometheus.GaugeValue, float64(info.NumAckPending), c.labels...)
	ch <- prometheus.MustNewConstMetric(c.redeliv, prometheus.GaugeValue, float64(info.NumRedelivered), c.labels...)
}
