package statuscmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/ponix-go/ponix/ponix-all-in-one/internal/config"
	"github.com/ponix-go/ponix/ponixclickhouse"
	"github.com/ponix-go/ponix/ponixnats"
	"github.com/ponix-go/ponix/ponixnats/dlqadmin"
)

// collector takes snapshots. It keeps the NATS connection between snapshots (a watch
// reconnects by itself) and the previous stored count, for the rate.
type collector struct {
	cfg     config.Config
	service string // the service's base URL ("http://host:port"); "" when not given
	timeout time.Duration
	client  *http.Client
	quiet   *slog.Logger // the connections' own logging: nothing, status shows their errors

	nc   *nats.Conn
	prev *counterSample
}

// counterSample is a stored count at a time, from one source.
type counterSample struct {
	at     time.Time
	value  float64
	source string
}

// close closes the NATS connection.
func (c *collector) close() {
	if c.nc != nil {
		c.nc.Close()
	}
}

// collect reads NATS, ClickHouse and the service concurrently, each bounded by c.timeout.
func (c *collector) collect(ctx context.Context) *Snapshot {
	s := &Snapshot{Time: time.Now().UTC()}
	var (
		wg                        sync.WaitGroup
		natsErrs, chErrs, svcErrs []string
		newestTable               time.Time
		svcMetrics                map[string]*dto.MetricFamily
	)
	wg.Go(func() { natsErrs = c.readNATS(ctx, s) })
	wg.Go(func() { newestTable, chErrs = c.readClickHouse(ctx, s) })
	if c.service != "" {
		wg.Go(func() { svcMetrics, svcErrs = c.readService(ctx, s) })
	}
	wg.Wait()
	c.fillFromMetrics(s, svcMetrics, newestTable)
	s.judge(append(append(natsErrs, chErrs...), svcErrs...))
	return s
}

// readNATS fills the stream, consumer and dead letters.
func (c *collector) readNATS(ctx context.Context, s *Snapshot) []string {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	if c.nc == nil || c.nc.IsClosed() {
		url := c.cfg.NATSURL
		if url == "" {
			url = "nats://" + c.cfg.NATSEmbeddedAddr
		}
		nc, err := ponixnats.Connect(ctx, url, append(c.cfg.NATSOptions("ponix-all-in-one-status", c.quiet), ponixnats.WithTimeout(c.timeout))...)
		if err != nil {
			return []string{fmt.Sprintf("NATS: %v", err)}
		}
		c.nc = nc
	}
	if st := c.nc.Status(); st != nats.CONNECTED {
		return []string{"NATS: connection " + st.String()}
	}
	js, err := jetstream.New(c.nc)
	if err != nil {
		return []string{fmt.Sprintf("NATS: jetstream: %v", err)}
	}
	var errs []string
	stream, err := js.Stream(ctx, c.cfg.NATSStream)
	if err != nil {
		return []string{fmt.Sprintf("NATS: stream %s: %v", c.cfg.NATSStream, err)}
	}
	si := stream.CachedInfo()
	s.Stream = &StreamStatus{Name: si.Config.Name, Messages: si.State.Msgs, Bytes: si.State.Bytes,
		FirstSeq: si.State.FirstSeq, LastSeq: si.State.LastSeq, Created: si.Created.UTC()}
	if cons, err := stream.Consumer(ctx, c.cfg.NATSConsumer); err != nil {
		errs = append(errs, fmt.Sprintf("NATS: consumer %s of stream %s: %v", c.cfg.NATSConsumer, c.cfg.NATSStream, err))
	} else {
		ci := cons.CachedInfo()
		s.Consumer = &ConsumerStatus{Name: ci.Name, Pending: ci.NumPending, AckPending: ci.NumAckPending,
			Redelivered: ci.NumRedelivered, AckFloor: ci.AckFloor.Stream}
	}
	dlqName := c.cfg.NATSStream + "_dlq"
	dlqStream, err := js.Stream(ctx, dlqName)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		s.DeadLetters = &DeadLetterStatus{Stream: dlqName, ByReason: map[string]int{}} // none yet
	case err != nil:
		errs = append(errs, fmt.Sprintf("NATS: dead-letter stream %s: %v", dlqName, err))
	case dlqStream.CachedInfo().State.Msgs > maxDeadLettersByReason:
		// Counting by reason reads every dead letter's headers: too long for a screen.
		s.DeadLetters = &DeadLetterStatus{Stream: dlqName, Total: int(dlqStream.CachedInfo().State.Msgs)}
	case dlqStream.CachedInfo().State.Msgs == 0:
		s.DeadLetters = &DeadLetterStatus{Stream: dlqName, ByReason: map[string]int{}}
	default:
		errs = append(errs, c.deadLettersByReason(ctx, js, dlqName, s)...)
	}
	return errs
}

// maxDeadLettersByReason is the most dead letters status counts by reason; above it, the
// total only (ponix-all-in-one dlq list counts them).
const maxDeadLettersByReason = 20_000

// deadLettersByReason fills the dead letters of the stream dlqName, counted by reason.
func (c *collector) deadLettersByReason(ctx context.Context, js jetstream.JetStream, dlqName string, s *Snapshot) []string {
	d, err := dlqadmin.Open(ctx, js, dlqName)
	if err != nil {
		return []string{fmt.Sprintf("NATS: dead-letter stream: %v", err)}
	}
	sum, err := d.Summary(ctx, dlqadmin.Filter{})
	if err != nil {
		return []string{fmt.Sprintf("NATS: dead letters: %v", err)}
	}
	s.DeadLetters = &DeadLetterStatus{Stream: dlqName, Total: sum.Total, ByReason: make(map[string]int, len(sum.ByReason))}
	for r, n := range sum.ByReason {
		s.DeadLetters.ByReason[string(r)] = n
	}
	return nil
}

// readClickHouse fills the table and returns the newest processed_at stored (zero: none).
// A fresh connection each time: a restarted server is seen at once.
func (c *collector) readClickHouse(ctx context.Context, s *Snapshot) (time.Time, []string) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	addrs, _ := c.cfg.ClickHouseAddrs() // validated by config.Load
	tlsCfg, _ := c.cfg.ClickHouseTLSConfig()
	conn, err := ponixclickhouse.Open(ctx, ponixclickhouse.Config{
		Addr: addrs[0], Addrs: addrs, Database: c.cfg.ClickHouseDatabase,
		Username: c.cfg.ClickHouseUser(), Password: c.cfg.ClickHouseSecret(), TLS: tlsCfg,
		DialTimeout: c.timeout, ReadTimeout: c.timeout, PingTimeout: c.timeout, MaxOpenConns: 1,
	})
	if err != nil {
		return time.Time{}, []string{fmt.Sprintf("ClickHouse: %v", err)}
	}
	defer conn.Close()
	var (
		rows   uint64
		newest time.Time
	)
	// max(processed_at) reads a column of the whole table: only without the service, whose
	// metrics say it for free.
	q, dest := "SELECT count(), max(processed_at) FROM "+ponixclickhouse.DefaultEnvelopeTable, []any{&rows, &newest}
	if c.service != "" {
		q, dest = "SELECT count() FROM "+ponixclickhouse.DefaultEnvelopeTable, []any{&rows}
	}
	if err := conn.QueryRow(ctx, q).Scan(dest...); err != nil {
		return time.Time{}, []string{fmt.Sprintf("ClickHouse: table %s.%s: %v", c.cfg.ClickHouseDatabase, ponixclickhouse.DefaultEnvelopeTable, err)}
	}
	s.Table = &TableStatus{Database: c.cfg.ClickHouseDatabase, Name: ponixclickhouse.DefaultEnvelopeTable, Rows: rows}
	if rows == 0 || newest.Unix() <= 0 {
		newest = time.Time{}
	}
	return newest, nil
}

// readService fills the service's readiness and returns its metrics.
func (c *collector) readService(ctx context.Context, s *Snapshot) (map[string]*dto.MetricFamily, []string) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	s.Service = &ServiceStatus{Address: c.service}
	fail := func(err error) (map[string]*dto.MetricFamily, []string) {
		s.Service.Error = err.Error()
		return nil, []string{fmt.Sprintf("service at %s: %v", c.service, err)}
	}
	body, code, err := c.get(ctx, "/readyz")
	if err != nil {
		return fail(err)
	}
	var rd struct {
		Status string            `json:"status"`
		Checks map[string]string `json:"checks"`
	}
	if err := json.Unmarshal(body, &rd); err != nil {
		return fail(fmt.Errorf("/readyz answered %d, not its JSON: %w", code, err))
	}
	s.Service.Ready, s.Service.Checks = code == http.StatusOK, rd.Checks
	body, code, err = c.get(ctx, "/metrics")
	if err != nil {
		return fail(err)
	}
	if code != http.StatusOK {
		return fail(fmt.Errorf("/metrics answered %d", code))
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		return fail(fmt.Errorf("/metrics: %w", err))
	}
	return mfs, nil
}

// get fetches path of the service (its body, at most 4 MiB).
func (c *collector) get(ctx context.Context, path string) ([]byte, int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.service+path, nil)
	if err != nil {
		return nil, 0, err
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", path, err)
	}
	return body, resp.StatusCode, nil
}

// fillFromMetrics fills the hold, the stored rate and the newest stored envelope: from the
// service's metrics when there are some, else from the table.
func (c *collector) fillFromMetrics(s *Snapshot, mfs map[string]*dto.MetricFamily, newestTable time.Time) {
	var count *counterSample
	if mfs != nil {
		s.Hold.Known = true
		for _, m := range mfs["ponix_sink_blocked"].GetMetric() {
			if m.GetGauge().GetValue() == 1 {
				s.Hold.Held, s.Hold.Class = true, labelValue(m, "class")
			}
		}
		if s.Hold.Held {
			s.Hold.Seconds = sum(mfs["ponix_sink_blocked_seconds"])
			s.Hold.Cause = s.Service.Checks["sink"]
		}
		if mf := mfs["ponix_envelopes_stored_total"]; mf != nil {
			count = &counterSample{at: s.Time, value: sum(mf), source: "service"}
		}
		if mf := mfs["ponix_newest_stored_envelope_timestamp_seconds"]; mf != nil {
			sec, frac := math.Modf(sum(mf))
			t := time.Unix(int64(sec), int64(frac*1e9)).UTC()
			age := math.Max(0, s.Time.Sub(t).Seconds())
			s.Stored.NewestProcessedAt, s.Stored.NewestAgeSeconds, s.Stored.NewestSource = &t, &age, "service"
		}
	}
	if count == nil && s.Table != nil {
		count = &counterSample{at: s.Time, value: float64(s.Table.Rows), source: "table"}
	}
	if s.Stored.NewestProcessedAt == nil && !newestTable.IsZero() {
		t := newestTable.UTC()
		age := math.Max(0, s.Time.Sub(t).Seconds())
		s.Stored.NewestProcessedAt, s.Stored.NewestAgeSeconds, s.Stored.NewestSource = &t, &age, "table"
	}
	if count != nil && c.prev != nil && c.prev.source == count.source && count.value >= c.prev.value {
		if dt := count.at.Sub(c.prev.at).Seconds(); dt > 0 {
			rate := (count.value - c.prev.value) / dt
			s.Stored.PerSecond, s.Stored.WindowSeconds, s.Stored.RateSource = &rate, dt, count.source
		}
	}
	if count != nil {
		c.prev = count
	}
}

func sum(mf *dto.MetricFamily) float64 {
	var v float64
	for _, m := range mf.GetMetric() {
		switch {
		case m.Counter != nil:
			v += m.GetCounter().GetValue()
		case m.Gauge != nil:
			v += m.GetGauge().GetValue()
		case m.Untyped != nil:
			v += m.GetUntyped().GetValue()
		}
	}
	return v
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
