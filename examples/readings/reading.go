package main

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"google.golang.org/protobuf/types/known/timestamppb"

	metricsv1 "github.com/ponix-go/ponix/examples/readings/proto/metrics/v1"
)

// maxDateTime is the last second a ClickHouse DateTime holds (2106-02-07).
const maxDateTime = math.MaxUint32

// validate is the processor's check of a decoded reading: a reading it refuses is
// dead-lettered (reason "invalid") with the error in the Ponix-Dlq-Error header.
func validate(r *metricsv1.Reading) error {
	// The sensor id is the last token of the reading's subject, readings.<sensor_id>.
	if id := r.GetSensorId(); id == "" || strings.ContainsAny(id, ".*>") || strings.IndexFunc(id, unicode.IsSpace) >= 0 {
		return fmt.Errorf("sensor_id %q: want a NATS subject token (not empty, no '.', '*', '>' or spaces)", id)
	}
	if _, err := dateTime(r.GetAt()); err != nil {
		return err
	}
	if v := r.GetValue(); math.IsNaN(v) || math.IsInf(v, 0) {
		return fmt.Errorf("value %v: not a finite number", v)
	}
	return nil
}

// dateTime turns a reading's timestamp into the second a ClickHouse DateTime stores.
func dateTime(ts *timestamppb.Timestamp) (time.Time, error) {
	if err := ts.CheckValid(); err != nil {
		return time.Time{}, fmt.Errorf("at: %w", err)
	}
	if s := ts.GetSeconds(); s < 0 || s > maxDateTime {
		return time.Time{}, fmt.Errorf("at %s: outside ClickHouse DateTime (1970 to 2106)", ts.AsTime().Format(time.RFC3339))
	}
	return time.Unix(ts.GetSeconds(), 0).UTC(), nil
}

// row is a reading with its place in the stream: the stream's creation time and the stream
// sequence end the table's sorting key, so that a message stored twice collapses.
type row struct {
	Reading       *metricsv1.Reading
	StreamCreated time.Time
	StreamSeq     uint64
}

// encoder is the ponixclickhouse.Encoder of rows: one slice per column, reused from batch to
// batch by the writer's pool.
type encoder struct {
	sensors []string
	at      []time.Time
	values  []float64
	units   []string
	created []uint64
	seqs    []uint64
}

// Columns implements ponixclickhouse.Encoder, in the order AppendTo fills them.
func (e *encoder) Columns() []string {
	return []string{"sensor_id", "at", "value", "unit", "stream_created_ns", "stream_seq"}
}

// Reset implements ponixclickhouse.Encoder.
func (e *encoder) Reset(n int) {
	e.sensors = reuse(e.sensors, n)
	e.at = reuse(e.at, n)
	e.values = reuse(e.values, n)
	e.units = reuse(e.units, n)
	e.created = reuse(e.created, n)
	e.seqs = reuse(e.seqs, n)
}

// reuse empties s, with room for n elements.
func reuse[S ~[]E, E any](s S, n int) S {
	if cap(s) < n {
		return make(S, 0, n)
	}
	clear(s[:cap(s)]) // let the previous batch's strings go
	return s[:0]
}

// Encode implements ponixclickhouse.Encoder. Its error rejects the row alone: the writer
// wraps it in a *ponixclickhouse.RowError naming the row, and the processor dead-letters that
// message and stores the others.
func (e *encoder) Encode(r row) error {
	if r.Reading == nil {
		return errors.New("no reading")
	}
	at, err := dateTime(r.Reading.GetAt())
	if err != nil {
		return err
	}
	var created uint64
	if !r.StreamCreated.IsZero() {
		created = uint64(r.StreamCreated.UnixNano())
	}
	e.sensors = append(e.sensors, r.Reading.GetSensorId())
	e.at = append(e.at, at)
	e.values = append(e.values, r.Reading.GetValue())
	e.units = append(e.units, r.Reading.GetUnit())
	e.created = append(e.created, created)
	e.seqs = append(e.seqs, r.StreamSeq)
	return nil
}

// AppendTo implements ponixclickhouse.Encoder: one Append per column.
func (e *encoder) AppendTo(b driver.Batch) error {
	cols := e.Columns()
	for i, data := range []any{e.sensors, e.at, e.values, e.units, e.created, e.seqs} {
		if err := b.Column(i).Append(data); err != nil {
			return fmt.Errorf("column %s: %w", cols[i], err)
		}
	}
	return nil
}
