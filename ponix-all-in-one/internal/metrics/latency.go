package metrics

import (
	"math"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ponix-go/ponix/envelope"
)

// EndToEndLatencyBuckets are the buckets of ponix_end_to_end_latency_seconds: from a quiet
// stream's batch wait (seconds) to a backlog of a day.
var EndToEndLatencyBuckets = []float64{.1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 24 * 3600}

// lagHelp explains what the lag metrics sample, in their help texts.
const lagHelp = " Sampled from one envelope per stored batch, the batch's last message (the newest delivered): its processed_at is read from the wire, so the hot path parses one envelope per batch, not every one."

// lag holds the metrics of lag in time: how old stored envelopes were when their batch was
// committed, and the processed_at of the newest envelope stored.
type lag struct {
	latency prometheus.Histogram
	// newest is the largest processed_at seen, in Unix nanoseconds; 0 before the first.
	newest atomic.Int64

	newestDesc, ageDesc *prometheus.Desc
	now                 func() time.Time
}

func newLag(now func() time.Time) *lag {
	return &lag{
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "end_to_end_latency_seconds",
			Help:    "End-to-end latency: from an envelope's processed_at to the commit of its batch in ClickHouse." + lagHelp,
			Buckets: EndToEndLatencyBuckets,
		}),
		newestDesc: prometheus.NewDesc(prometheus.BuildFQName(Namespace, "", "newest_stored_envelope_timestamp_seconds"),
			"processed_at (Unix time) of the newest envelope stored in ClickHouse; absent until one is."+lagHelp, nil, nil),
		ageDesc: prometheus.NewDesc(prometheus.BuildFQName(Namespace, "", "newest_stored_envelope_age_seconds"),
			"Age at scrape time of the newest envelope stored in ClickHouse (now - its processed_at): the lag in time of what is stored; it grows while nothing newer is stored. Absent until one is."+lagHelp, nil, nil),
		now: now,
	}
}

// Describe implements prometheus.Collector.
func (l *lag) Describe(ch chan<- *prometheus.Desc) {
	l.latency.Describe(ch)
	ch <- l.newestDesc
	ch <- l.ageDesc
}

// Collect implements prometheus.Collector.
func (l *lag) Collect(ch chan<- prometheus.Metric) {
	l.latency.Collect(ch)
	ns := l.newest.Load()
	if ns == 0 {
		return
	}
	newest := time.Unix(0, ns)
	ch <- prometheus.MustNewConstMetric(l.newestDesc, prometheus.GaugeValue, float64(ns)/1e9)
	ch <- prometheus.MustNewConstMetric(l.ageDesc, prometheus.GaugeValue, math.Max(0, l.now().Sub(newest).Seconds()))
}

// observe records a stored batch whose last envelope is newest, committed at committed.
func (l *lag) observe(newest []byte, committed time.Time) {
	if newest == nil {
		return
	}
	var w envelope.Wire
	if err := w.Parse(newest); err != nil || !w.ProcessedAt.Valid() {
		return // not an envelope of ours (it was stored, so rare): nothing to sample
	}
	processed := time.Unix(w.ProcessedAt.Seconds, int64(w.ProcessedAt.Nanos))
	l.latency.Observe(math.Max(0, committed.Sub(processed).Seconds()))
	ns := processed.UnixNano()
	for {
		old := l.newest.Load()
		if ns <= old || l.newest.CompareAndSwap(old, ns) {
			return
		}
	}
}

// ObserveStored records the lag in time of a batch just committed to ClickHouse at committed,
// from newest, the wire bytes of the batch's last envelope: ponix_end_to_end_latency_seconds,
// and the newest stored envelope (ponix_newest_stored_envelope_timestamp_seconds and
// _age_seconds). One envelope per batch is parsed (its processed_at), to keep the store path
// fast; nil records nothing.
func (m *Metrics) ObserveStored(newest []byte, committed time.Time) {
	if m == nil {
		return
	}
	m.lag.observe(newest, committed)
}
