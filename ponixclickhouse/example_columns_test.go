package ponixclickhouse_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/ponix-go/ponix/ponixclickhouse"
)

// sensorReading is an application's own row type.
type sensorReading struct {
	DeviceID string
	At       time.Time
	Value    float64
	Unit     string
}

// readingColumns declares each column of the readings table once: its name next to its value.
// The order is the INSERT's column list; the table may order its columns otherwise.
var readingColumns = ponixclickhouse.Columns(
	ponixclickhouse.Column("device_id", func(r sensorReading) string { return r.DeviceID }),
	// A value that can be refused: the row is rejected alone (a *RowError naming the row and
	// a *ColumnError naming the column), and nothing of the Write is sent.
	ponixclickhouse.ColumnFunc("at", func(r sensorReading) (time.Time, error) {
		if r.At.IsZero() {
			return time.Time{}, errors.New("no time")
		}
		return r.At.UTC(), nil
	}),
	ponixclickhouse.Column("value", func(r sensorReading) float64 { return r.Value }),
	ponixclickhouse.Column("unit", func(r sensorReading) string { return r.Unit }),
)

// storeReadings writes rows with one native batch INSERT. A real program makes the writer once
// at start-up: NewBatchWriter checks there that the table has the columns and that their types
// take the declared values (a *SchemaError naming the column otherwise).
func storeReadings(ctx context.Context, conn driver.Conn, rows []sensorReading) error {
	w, err := ponixclickhouse.NewBatchWriter(ctx, conn, ponixclickhouse.Table{Name: "readings"}, readingColumns.Encoder)
	if err != nil {
		return err
	}
	return w.Write(ctx, rows)
}

// Declare the columns once, each with its value, and write rows through the set's encoder.
func ExampleColumns() {
	_ = storeReadings // it needs a server; here the encoder runs alone

	fmt.Println(readingColumns.Names())

	enc := readingColumns.Encoder()
	enc.Reset(1)
	err := enc.Encode(sensorReading{DeviceID: "d1", Value: 21.5})
	var ce *ponixclickhouse.ColumnError
	fmt.Println(err, errors.As(err, &ce) && ce.Column == "at")
	// Output:
	// [device_id at value unit]
	// column "at": no time true
}
