package main

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode"

	"google.golang.org/protobuf/types/known/timestamppb"

	metricsv1 "github.com/ponix-go/ponix/examples/readings/proto/metrics/v1"
	"github.com/ponix-go/ponix/ponixclickhouse"
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
		return fmt.Errorf("at: %w", err)
	}
	if v := r.GetValue(); math.IsNaN(v) || math.IsInf(v, 0) {
		return fmt.Errorf("value %v: not a finite number", v)
	}
	return nil
}

// dateTime turns a reading's timestamp into the second a ClickHouse DateTime stores.
func dateTime(ts *timestamppb.Timestamp) (time.Time, error) {
	if err := ts.CheckValid(); err != nil {
		return time.Time{}, err
	}
	if s := ts.GetSeconds(); s < 0 || s > maxDateTime {
		return time.Time{}, fmt.Errorf("%s: outside ClickHouse DateTime (1970 to 2106)", ts.AsTime().Format(time.RFC3339))
	}
	return time.Unix(ts.GetSeconds(), 0).UTC(), nil
}

// row is a reading with its place in the stream: the stream's creation time and the stream
// sequence end the table's sorting key, so that a message stored twice collapses.
type row struct {
	Reading       *metricsv1.Reading
	StreamCreated uint64 // the stream's creation time, Unix nanoseconds
	StreamSeq     uint64
}

// rowColumns returns the columns the service inserts into the readings table, each declared
// once: its name next to its value, so that names and values cannot drift apart. The writer
// sends them in this order, with one Append of a reused slice per column.
func rowColumns() *ponixclickhouse.ColumnSet[row] {
	return ponixclickhouse.Columns(
		ponixclickhouse.Column("sensor_id", func(r row) string { return r.Reading.GetSensorId() }),
		// A reading without a valid time is refused alone: the writer's *ponixclickhouse.RowError
		// names the row (and a *ponixclickhouse.ColumnError the column), and the processor
		// dead-letters that message and stores the others.
		ponixclickhouse.ColumnFunc("at", func(r row) (time.Time, error) {
			if r.Reading == nil {
				return time.Time{}, errors.New("no reading")
			}
			return dateTime(r.Reading.GetAt())
		}),
		ponixclickhouse.Column("value", func(r row) float64 { return r.Reading.GetValue() }),
		ponixclickhouse.Column("unit", func(r row) string { return r.Reading.GetUnit() }),
		ponixclickhouse.Column("stream_created_ns", func(r row) uint64 { return r.StreamCreated }),
		ponixclickhouse.Column("stream_seq", func(r row) uint64 { return r.StreamSeq }),
	)
}
