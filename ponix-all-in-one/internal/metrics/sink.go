package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ponix-go/ponix/ponixclickhouse"
	"github.com/ponix-go/ponix/ponixnats"
)

// HoldSource is what the sink collector reads: *ponixnats.Hold implements it.
type HoldSource interface {
	State() ponixnats.HoldState
}

// WatchSink registers a collector that reports, at each scrape, whether a batch is held
// because the sink fails, with the class of the failure, how long it has been held, and the
// time since the last stored batch:
//
//	ponix_sink_blocked{class}                 1 for the class of the current hold, 0 for the others
//	ponix_sink_blocked_seconds                how long the current hold has lasted (0: none)
//	ponix_sink_holds_total                    holds started
//	ponix_seconds_since_last_stored_batch     since the last successful insert (or since start)
//	ponix_last_stored_batch_timestamp_seconds Unix time of the last successful insert (0: none)
//
// classes are the sink classes always reported (at 0 when not held), so that a query sees
// every series from the first scrape on.
func (m *Metrics) WatchSink(src HoldSource, classes []ponixclickhouse.Class) error {
	names := make([]string, len(classes))
	for i, c := range classes {
		names[i] = string(c)
	}
	return m.reg.Register(&sinkCollector{src: src, classes: names, started: time.Now(),
		blocked: prometheus.NewDesc(prometheus.BuildFQName(Namespace, "", "sink_blocked"),
			"1 while a batch is held because ClickHouse fails with this class of error (unreachable, authentication, schema, storage, ...), else 0.", []string{"class"}, nil),
		blockedFor: prometheus.NewDesc(prometheus.BuildFQName(Namespace, "", "sink_blocked_seconds"),
			"How long the current hold has lasted, in seconds; 0 when no batch is held.", nil, nil),
		holds: prometheus.NewDesc(prometheus.BuildFQName(Namespace, "", "sink_holds_total"),
			"Holds started: times a batch was held because ClickHouse failed.", nil, nil),
		since: prometheus.NewDesc(prometheus.BuildFQName(Namespace, "", "seconds_since_last_stored_batch"),
			"Seconds since the last batch was stored in ClickHouse (since the start when none was).", nil, nil),
		last: prometheus.NewDesc(prometheus.BuildFQName(Namespace, "", "last_stored_batch_timestamp_seconds"),
			"Unix time of the last batch stored in ClickHouse; 0 when none was.", nil, nil),
	})
}

type sinkCollector struct {
	src                                     HoldSource
	classes                                 []string
	started                                 time.Time
	blocked, blockedFor, holds, since, last *prometheus.Desc
}

// Describe implements prometheus.Collector.
func (c *sinkCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.blocked, c.blockedFor, c.holds, c.since, c.last} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *sinkCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.src.State()
	seen := false
	for _, class := range c.classes {
		v := 0.0
		if st.Held && st.Class == class {
			v, seen = 1, true
		}
		ch <- prometheus.MustNewConstMetric(c.blocked, prometheus.GaugeValue, v, class)
	}
	if st.Held && !seen {
		ch <- prometheus.MustNewConstMetric(c.blocked, prometheus.GaugeValue, 1, st.Class)
	}
	held := 0.0
	if st.Held {
		held = time.Since(st.Since).Seconds()
	}
	ch <- prometheus.MustNewConstMetric(c.blockedFor, prometheus.GaugeValue, held)
	ch <- prometheus.MustNewConstMetric(c.holds, prometheus.CounterValue, float64(st.Holds))
	last, from := 0.0, c.started
	if !st.LastStored.IsZero() {
		last, from = float64(st.LastStored.UnixNano())/1e9, st.LastStored
	}
	ch <- prometheus.MustNewConstMetric(c.since, prometheus.GaugeValue, time.Since(from).Seconds())
	ch <- prometheus.MustNewConstMetric(c.last, prometheus.GaugeValue, last)
}
