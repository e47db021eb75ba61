//go:build integration

package integration

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/ponix-go/ponix/ponixclickhouse"
)

// reading is a user's own row type written through the generic core.
type reading struct {
	Sensor string
	Value  float64
	At     time.Time
}

type readingEncoder struct {
	sensors []string
	values  []float64
	ats     []time.Time
}

func (e *readingEncoder) Columns() []string { return []string{"sensor", "value", "at"} }
func (e *readingEncoder) Reset(n int) {
	e.sensors, e.values, e.ats = e.sensors[:0], e.values[:0], e.ats[:0]
}
func (e *readingEncoder) Encode(r reading) error {
	if r.Sensor == "" {
		return &ponixclickhouse.ColumnError{Column: "sensor", Err: errors.New("empty")}
	}
	e.sensors, e.values, e.ats = append(e.sensors, r.Sensor), append(e.values, r.Value), append(e.ats, r.At)
	return nil
}
func (e *readingEncoder) AppendTo(b driver.Batch) error {
	for i, col := range []any{e.sensors, e.values, e.ats} {
		if err := b.Column(i).Append(col); err != nil {
			return err
		}
	}
	return nil
}

func TestBatchWriterWithUserRowType(t *testing.T) {
	db := srv.NewDatabase(t)
	if err := db.Conn.Exec(t.Context(), `CREATE TABLE readings (at DateTime, value Float64, sensor String)
		ENGINE = MergeTree() ORDER BY (sensor, at)`); err != nil {
		t.Fatal(err)
	}
	w, err := ponixclickhouse.NewBatchWriter(t.Context(), db.Conn, ponixclickhouse.Table{Database: db.Name, Name: "readings"},
		func() ponixclickhouse.Encoder[reading] { return &readingEncoder{} })
	if err != nil {
		t.Fatal(err)
	}
	if want := "INSERT INTO `" + db.Name + "`.`readings` (`sensor`, `value`, `at`)"; w.Query() != want {
		t.Errorf("query = %q, want %q", w.Query(), want)
	}
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	// Concurrent writes share the encoder pool safely.
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for g := range 4 {
		wg.Go(func() {
			rows := make([]reading, 250)
			for i := range rows {
				rows[i] = reading{Sensor: fmt.Sprintf("s%d-%03d", g, i), Value: float64(g*1000 + i), At: at}
			}
			errs <- w.Write(t.Context(), rows)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	var n uint64
	var sum float64
	if err := db.Conn.QueryRow(t.Context(), "SELECT count(), sum(value) FROM readings WHERE at = ?", at).Scan(&n, &sum); err != nil {
		t.Fatal(err)
	}
	if n != 1000 || sum != float64(250*(0+1000+2000+3000)+4*(249*250/2)) {
		t.Fatalf("count=%d sum=%v", n, sum)
	}
}

// proxy forwards TCP connections to a server until closed, then drops them all: a server
