package ponixclickhouse

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/column"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// colBatch is a driver.Batch over real clickhouse-go columns (their Append converts and refuses
// values as it does on a connection), made from "name Type" pairs as in a CREATE TABLE.
type colBatch struct {
	driver.Batch
	cols []column.Interface
	sent bool
}

func newColBatch(tb testing.TB, defs ...string) *colBatch {
	tb.Helper()
	b := &colBatch{}
	for _, d := range defs {
		name, typ, _ := strings.Cut(d, " ")
		c, err := column.Type(typ).Column(name, &column.ServerContext{Timezone: time.UTC})
		if err != nil {
			tb.Fatal(err)
		}
		b.cols = append(b.cols, c)
	}
	return b
}

func (b *colBatch) Column(i int) driver.BatchColumn { return colAppender{b.cols[i]} }
func (b *colBatch) Columns() []column.Interface     { return slices.Clone(b.cols) }
func (b *colBatch) Send() error                     { b.sent = true; return nil }
func (b *colBatch) IsSent() bool                    { return b.sent }
func (b *colBatch) Abort() error                    { b.sent = true; return nil }
func (b *colBatch) value(col, row int) any          { return b.cols[col].Row(row, false) }
func (b *colBatch) reset() {
	for _, c := range b.cols {
		c.Reset()
	}
}
func (b *colBatch) rows() int               { return b.cols[0].Rows() }
func (a colAppender) Append(v any) error    { _, err := a.c.Append(v); return err }
func (a colAppender) AppendRow(v any) error { return a.c.AppendRow(v) }
func (c colConn) PrepareBatch(context.Context, string, ...driver.PrepareBatchOption) (driver.Batch, error) {
	*c.last = newColBatch(c.tb, c.defs...)
	return *c.last, nil
}

type colAppender struct{ c column.Interface }

// colConn prepares colBatches of the given columns.
type colConn struct {
	driver.Conn
	tb   testing.TB
	defs []string
	last **colBatch
}

type reading struct {
	Sensor string
	At     time.Time
	Value  float64
	Unit   string
	Seq    uint64
}

var readingColumns = Columns(
	Column("sensor", func(r reading) string { return r.Sensor }),
	ColumnFunc("at", func(r reading) (time.Time, error) {
		if r.At.IsZero() {
			return time.Time{}, errors.New("no time")
		}
		return r.At, nil
	}),
	ColumnFunc("value", func(r reading) (float64, error) {
		if math.IsNaN(r.Value) {
			return 0, errors.New("NaN")
		}
		return r.Value, nil
	}),
	Column("unit", func(r reading) string { return r.Unit }),
	Column("seq", func(r reading) uint64 { return r.Seq }),
)

var readingTable = []string{"sensor String", "at DateTime", "value Float64", "unit String", "seq UInt64"}

func testReadings(n int) []reading {
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	rows := make([]reading, n)
	for i := range rows {
		rows[i] = reading{Sensor: fmt.Sprintf("s%d", i), At: at.Add(time.Duration(i) * time.Second), Value: float64(i) / 2, Unit: "C", Seq: uint64(i + 1)}
	}
	return rows
}

// The names come from the declarations, in order, and each column gets its own values, whether
// the rows are encoded one by one (ShardedWriter) or all at once (BatchWriter).
func TestColumnSetOrderAndValues(t *testing.T) {
	if got, want := readingColumns.Names(), []string{"sensor", "at", "value", "unit", "seq"}; !slices.Equal(got, want) {
		t.Fatalf("Names = %v, want %v", got, want)
	}
	rows := testReadings(3)
	for _, mode := range []string{"rows", "batch"} {
		t.Run(mode, func(t *testing.T) {
			enc := readingColumns.Encoder()
			if !slices.Equal(enc.Columns(), readingColumns.Names()) {
				t.Fatalf("Encoder.Columns = %v", enc.Columns())
			}
			for range 2 { // the second round reuses the slices
				enc.Reset(len(rows))
				if mode == "rows" {
					for _, r := range rows {
						if err := enc.Encode(r); err != nil {
							t.Fatal(err)
						}
					}
				} else if err := enc.(batchEncoder[reading]).encodeRows(rows); err != nil {
					t.Fatal(err)
				}
				b := newColBatch(t, readingTable...)
				if err := enc.AppendTo(b); err != nil {
					t.Fatal(err)
				}
				if b.rows() != len(rows) {
					t.Fatalf("%d rows appended, want %d", b.rows(), len(rows))
				}
				for i, r := range rows {
					got := []any{b.value(0, i), b.value(1, i), b.value(2, i), b.value(3, i), b.value(4, i)}
					want := []any{r.Sensor, r.At, r.Value, r.Unit, r.Seq}
					for c := range got {
						if g, ok := got[c].(time.Time); ok {
							got[c] = g.UTC()
						}
						if got[c] != want[c] {
							t.Errorf("row %d column %d = %v, want %v", i, c, got[c], want[c])
						}
					}
				}
			}
		})
	}
}

func TestColumnsRefusesMistakes(t *testing.T) {
	for name, f := range map[string]func(){
		"none": func() { Columns[reading]() },
		"duplicate": func() {
			Columns(Column("a", func(r reading) string { return "" }), Column("a", func(r reading) int { return 0 }))
		},
		"zero def": func() { Columns(ColumnDef[reading]{}) },
		"nil get":  func() { Column[reading, string]("a", nil) },
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			f()
		})
	}
}

// A getter's error rejects that row: a *RowError with the row's index wrapping a *ColumnError
// with the column's name, the same whether encoded row by row or as a batch, and the first
// failing row wins (in it, the first failing column).
func TestColumnSetRowError(t *testing.T) {
	rows := testReadings(6)
	rows[4].At = time.Time{}   // column "at" fails on row 4
	rows[2].Value = math.NaN() // column "value" fails on row 2: the first row to fail
	rows[5].At, rows[5].Value = time.Time{}, math.NaN()
	check := func(t *testing.T, err error, row int, col, msg string) {
		t.Helper()
		var re *RowError
		var ce *ColumnError
		if !errors.As(err, &re) || re.Index != row || !errors.As(err, &ce) || ce.Column != col {
			t.Fatalf("error %v (%T), want row %d column %q", err, err, row, col)
		}
		if Classify(err) != ClassRow {
			t.Errorf("class %s, want row", Classify(err))
		}
		if err.Error() != msg {
			t.Errorf("error %q, want %q", err, msg)
		}
	}
	enc := readingColumns.Encoder()
	enc.Reset(len(rows))
	err := enc.(batchEncoder[reading]).encodeRows(rows)
	check(t, err, 2, "value", `row 2: column "value": NaN`)

	// Row by row, as ShardedWriter does: the failing row is not added.
	enc.Reset(len(rows))
	for i, r := range rows {
		err := enc.Encode(r)
		if i == 2 {
			check(t, &RowError{Index: i, Err: err}, 2, "value", `row 2: column "value": NaN`)
			continue
		}
		if i == 5 {
			check(t, &RowError{Index: i, Err: err}, 5, "at", `row 5: column "at": no time`)
			break
		}
		if i == 4 {
			check(t, &RowError{Index: i, Err: err}, 4, "at", `row 4: column "at": no time`)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	b := newColBatch(t, readingTable...)
	if err := enc.AppendTo(b); err != nil {
		t.Fatal(err)
	}
	if b.rows() != 3 || b.value(0, 2) != "s3" {
		t.Errorf("after refused rows: %d rows appended, row 2 is %v; want the 3 good rows", b.rows(), b.value(0, 2))
	}
}

// A column whose table type does not take the declared values fails with the column's name,
// both types and the table, as a schema fault of the sink; a row the getters refuse fails the
// Write before anything is prepared.
func TestBatchWriterNamesTheColumn(t *testing.T) {
	var last *colBatch
	table := Table{Database: "db", Name: "readings"}
	wrong := slices.Clone(readingTable)
	wrong[2] = "value String"
	w, err := newBatchWriter(colConn{tb: t, defs: wrong, last: &last}, table, readingColumns.Encoder)
	if err != nil {
		t.Fatal(err)
	}
	if want := "INSERT INTO `db`.`readings` (`sensor`, `at`, `value`, `unit`, `seq`)"; w.Query() != want {
		t.Errorf("query %q, want %q", w.Query(), want)
	}
	err = w.Write(t.Context(), testReadings(2))
	var we *WriteError
	var ce *ColumnError
	if !errors.As(err, &we) || we.Op != "append" || !errors.As(err, &ce) {
		t.Fatalf("error %v (%T), want a *WriteError wrapping a *ColumnError", err, err)
	}
	if ce.Column != "value" || ce.InsertType != "Float64" || ce.TableType != "String" || ce.Table != table {
		t.Errorf("ColumnError %+v", ce)
	}
	want := `column "value" (Float64 in the insert, String in table db.readings): `
	if !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "converting []float64 to String is unsupported") {
		t.Errorf("error %q, want it to contain %q and the driver's reason", err, want)
	}
	t.Log(err)
	if c := Classify(err); c != ClassSchema {
		t.Errorf("class %s, want schema", c)
	}
	if !last.sent {
		t.Error("the failed batch was not aborted")
	}

	last = nil
	w, err = newBatchWriter(colConn{tb: t, defs: readingTable, last: &last}, table, readingColumns.Encoder)
	if err != nil {
		t.Fatal(err)
	}
	rows := testReadings(3)
	rows[1].At = time.Time{}
	err = w.Write(t.Context(), rows)
	var re *RowError
	if !errors.As(err, &re) || re.Index != 1 || re.RejectedIndex() != 1 || !errors.As(err, &ce) || ce.Column != "at" {
		t.Fatalf("error %v, want row 1, column at", err)
	}
	if last != nil {
		t.Error("an INSERT was prepared for a batch with a refused row")
	}
	if err := w.Write(t.Context(), testReadings(3)); err != nil || last.rows() != 3 {
		t.Fatalf("Write: %v", err)
	}
}

// AppendColumn is the same for hand-written encoders.
func TestAppendColumnNamesTheColumn(t *testing.T) {
	b := newColBatch(t, "a UInt64", "b DateTime")
	if err := AppendColumn(b, 0, "a", []uint64{1}); err != nil {
		t.Fatal(err)
	}
	err := AppendColumn(b, 1, "b", []string{"x"})
	want := `column "b" ([]string in the insert, DateTime in the table): `
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("error %v, want prefix %q", err, want)
	}
}

func TestInsertTypeNames(t *testing.T) {
	for got, want := range map[string]string{
		insertType[string]():     "String",
		insertType[time.Time]():  "DateTime",
		insertType[*float64]():   "Nullable(Float64)",
		insertType[any]():        "Go interface {}",
		insertType[[]uint16]():   "Go []uint16",
		insertType[struct{}]():   "Go struct {}",
		insertType[[]string]():   "Array(String)",
		insertType[uint8]():      "UInt8",
		insertType[[]byte]():     "String ([]byte)",
		insertType[float32]():    "Float32",
		insertType[*time.Time](): "Nullable(DateTime)",
	} {
		if got != want {
			t.Errorf("insertType = %q, want %q", got, want)
		}
	}
}

// handReadingEncoder is the same encoder written by hand, as examples/readings had it: the
// baseline of BenchmarkColumnSet.
type handReadingEncoder struct {
	sensors, units []string
	at             []time.Time
	values         []float64
	seqs           []uint64
}

func (e *handReadingEncoder) Columns() []string {
	return []string{"sensor", "at", "value", "unit", "seq"}
}
func (e *handReadingEncoder) Reset(n int) {
	e.sensors, e.units = reuseTest(e.sensors, n), reuseTest(e.units, n)
	e.at, e.values, e.seqs = reuseTest(e.at, n), reuseTest(e.values, n), reuseTest(e.seqs, n)
}

func reuseTest[S ~[]E, E any](s S, n int) S {
	clear(s)
	if cap(s) < n {
		return make(S, 0, n)
	}
	return s[:0]
}

func (e *handReadingEncoder) Encode(r reading) error {
	if r.At.IsZero() {
		return errors.New("no time")
	}
	if math.IsNaN(r.Value) {
		return errors.New("NaN")
	}
	e.sensors = append(e.sensors, r.Sensor)
	e.at = append(e.at, r.At)
	e.values = append(e.values, r.Value)
	e.units = append(e.units, r.Unit)
	e.seqs = append(e.seqs, r.Seq)
	return nil
}

func (e *handReadingEncoder) AppendTo(b driver.Batch) error {
	for i, data := range []any{e.sensors, e.at, e.values, e.units, e.seqs} {
		if err := b.Column(i).Append(data); err != nil {
			return err
		}
	}
	return nil
}

// BenchmarkColumnSet compares, for 1,000 five-column rows, the hand-written encoder with a
// ColumnSet encoding row by row (as ShardedWriter does) and a batch at once (as BatchWriter
// does): "encode" is Reset and the rows, "append" adds AppendTo into real driver columns.
func BenchmarkColumnSet(b *testing.B) {
	rows := testReadings(1000)
	for _, step := range []string{"encode", "append"} {
		for _, impl := range []string{"hand", "columns-rows", "columns-batch"} {
			b.Run(step+"/"+impl, func(b *testing.B) {
				var enc Encoder[reading] = &handReadingEncoder{}
				if impl != "hand" {
					enc = readingColumns.Encoder()
				}
				batch := newColBatch(b, readingTable...)
				b.ReportAllocs()
				for b.Loop() {
					enc.Reset(len(rows))
					if impl == "columns-batch" {
						if err := enc.(batchEncoder[reading]).encodeRows(rows); err != nil {
							b.Fatal(err)
						}
					} else {
						for _, r := range rows {
							if err := enc.Encode(r); err != nil {
								b.Fatal(err)
							}
						}
					}
					if step == "append" {
						batch.reset()
						if err := enc.AppendTo(batch); err != nil {
							b.Fatal(err)
						}
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(rows)), "ns/row")
			})
		}
	}
}
