//go:build integration

package integration

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/ponix-go/ponix/ponixclickhouse"
)

// sample is a user's own row type written through declared columns.
type sample struct {
	Device string
	At     time.Time
	Value  float64
	Note   *string
	Seq    uint64
}

var sampleColumns = ponixclickhouse.Columns(
	ponixclickhouse.Column("device", func(s sample) string { return s.Device }),
	ponixclickhouse.Column("at", func(s sample) time.Time { return s.At }),
	ponixclickhouse.ColumnFunc("value", func(s sample) (float64, error) {
		if math.IsNaN(s.Value) || math.IsInf(s.Value, 0) {
			return 0, errors.New("not a finite number")
		}
		return s.Value, nil
	}),
	ponixclickhouse.Column("note", func(s sample) *string { return s.Note }),
	ponixclickhouse.Column("seq", func(s sample) uint64 { return s.Seq }),
)

// The table orders its columns otherwise than the declaration: the INSERT's column list comes
// from the declaration, and every value lands in its column.
const samplesTable = `CREATE TABLE samples (seq UInt64, value Float64, device String, note Nullable(String), at DateTime)
	ENGINE = MergeTree() ORDER BY (device, seq)`

func samples(n int) []sample {
	at := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	note := "calibrated"
	rows := make([]sample, n)
	for i := range rows {
		rows[i] = sample{Device: "dev-" + string(rune('a'+i%26)), At: at.Add(time.Duration(i) * time.Minute), Value: float64(i) * 1.5, Seq: uint64(i + 1)}
		if i%2 == 0 {
			rows[i].Note = &note
		}
	}
	return rows
}

func TestColumnSetInsertsAndReadsBack(t *testing.T) {
	db := srv.NewDatabase(t)
	if err := db.Conn.Exec(t.Context(), samplesTable); err != nil {
		t.Fatal(err)
	}
	table := ponixclickhouse.Table{Database: db.Name, Name: "samples"}
	w, err := ponixclickhouse.NewBatchWriter(t.Context(), db.Conn, table, sampleColumns.Encoder)
	if err != nil {
		t.Fatal(err)
	}
	if want := "INSERT INTO `" + db.Name + "`.`samples` (`device`, `at`, `value`, `note`, `seq`)"; w.Query() != want {
		t.Errorf("query %q, want %q", w.Query(), want)
	}
	rows := samples(300)
	for range 2 { // the second Write reuses the encoder's slices
		if err := w.Write(t.Context(), rows[:150]); err != nil {
			t.Fatal(err)
		}
		rows = rows[150:]
	}

	// A row a getter refuses fails the Write alone, naming the row and the column; nothing is sent.
	bad := samples(3)
	for i := range bad {
		bad[i].Seq += 1000
	}
	bad[1].Value = math.Inf(1)
	err = w.Write(t.Context(), bad)
	var re *ponixclickhouse.RowError
	var ce *ponixclickhouse.ColumnError
	if !errors.As(err, &re) || re.Index != 1 || !errors.As(err, &ce) || ce.Column != "value" {
		t.Fatalf("error %v, want a *RowError for row 1 naming column value", err)
	}
	if got, want := err.Error(), `row 1: column "value": not a finite number`; got != want {
		t.Errorf("error %q, want %q", got, want)
	}

	got, err := db.Conn.Query(t.Context(), "SELECT device, at, value, note, seq FROM samples ORDER BY seq")
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	want := samples(300)
	i := 0
	for ; got.Next(); i++ {
		var s sample
		if err := got.Scan(&s.Device, &s.At, &s.Value, &s.Note, &s.Seq); err != nil {
			t.Fatal(err)
		}
		if i >= len(want) {
			t.Fatalf("more than %d rows", len(want))
		}
		w := want[i]
		if s.Device != w.Device || !s.At.Equal(w.At) || s.Value != w.Value || s.Seq != w.Seq || (s.Note == nil) != (w.Note == nil) ||
			(s.Note != nil && *s.Note != *w.Note) {
			t.Errorf("row %d = %+v, want %+v", i, s, w)
		}
	}
	if err := got.Err(); err != nil {
		t.Fatal(err)
	}
	if i != len(want) {
		t.Errorf("%d rows read back, want %d", i, len(want))
	}
}

// A column whose type does not take the declared values is named, with both types and the
// table: at start-up (NewBatchWriter's schema check), and on a Write when the table changed after.
func TestColumnSetWrongTypeNamesTheColumn(t *testing.T) {
	db := srv.NewDatabase(t)
	if err := db.Conn.Exec(t.Context(), strings.Replace(samplesTable, "value Float64", "value String", 1)); err != nil {
		t.Fatal(err)
	}
	table := ponixclickhouse.Table{Database: db.Name, Name: "samples"}
	wantMsg := `column "value" (Float64 in the insert, String in table ` + db.Name + `.samples): `
	check := func(t *testing.T, err error) {
		t.Helper()
		var ce *ponixclickhouse.ColumnError
		if !errors.As(err, &ce) || ce.Column != "value" || ce.TableType != "String" || ce.InsertType != "Float64" {
			t.Fatalf("error %v, want a *ColumnError naming column value", err)
		}
		if !strings.Contains(err.Error(), wantMsg) || !strings.Contains(err.Error(), "converting []float64 to String is unsupported") {
			t.Errorf("error %q, want it to contain %q and the driver's reason", err, wantMsg)
		}
		if c := ponixclickhouse.Classify(err); c != ponixclickhouse.ClassSchema {
			t.Errorf("class %s, want schema", c)
		}
	}

	_, err := ponixclickhouse.NewBatchWriter(t.Context(), db.Conn, table, sampleColumns.Encoder)
	var se *ponixclickhouse.SchemaError
	if !errors.As(err, &se) {
		t.Fatalf("NewBatchWriter: %v, want a *SchemaError", err)
	}
	check(t, err)

	// The table fits at start-up, then a column changes type under the running writer.
	if err := db.Conn.Exec(t.Context(), "ALTER TABLE samples MODIFY COLUMN value Float64"); err != nil {
		t.Fatal(err)
	}
	w, err := ponixclickhouse.NewBatchWriter(t.Context(), db.Conn, table, sampleColumns.Encoder)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Conn.Exec(t.Context(), "ALTER TABLE samples MODIFY COLUMN value String"); err != nil {
		t.Fatal(err)
	}
	err = w.Write(t.Context(), samples(5))
	var we *ponixclickhouse.WriteError
	if !errors.As(err, &we) || we.Op != "append" {
		t.Fatalf("Write: %v, want a *WriteError at append", err)
	}
	check(t, err)
	t.Log(err)

	// The connection the failed batch held is usable again.
	var n uint64
	if err := db.Conn.QueryRow(t.Context(), "SELECT count() FROM samples").Scan(&n); err != nil || n != 0 {
		t.Fatalf("count %d, %v; want 0 rows", n, err)
	}
}
