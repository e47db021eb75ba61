package ponixclickhouse

import (
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// ColumnDef declares one column of an INSERT: its name and how to get its value from a row of
// type T. Make one with [Column] or [ColumnFunc] and put it in a [ColumnSet] with [Columns].
type ColumnDef[T any] struct {
	name string
	// insertType is the ClickHouse type the values are meant for (String for a Go string, ...),
	// or the Go type when there is no obvious one; it only goes into error messages.
	insertType string
	newBuf     func() columnBuf[T]
}

// Name is the column's name.
func (d ColumnDef[T]) Name() string { return d.name }

// Column declares the column name whose value in each row is get(row). The values of a batch
// are collected in a []V and handed to clickhouse-go in one Append, so V must be a type the
// driver takes for the table's column type: string for String, float64 for Float64, uint64 for
// UInt64, time.Time for DateTime, *string for Nullable(String), and so on. A V the column does
// not take fails [NewBatchWriter] (and a Write, if the table changed since) with a
// [*ColumnError] that names the column and both types.
func Column[T, V any](name string, get func(T) V) ColumnDef[T] {
	if get == nil {
		panic(fmt.Sprintf("ponixclickhouse.Column(%q): nil getter", name))
	}
	return ColumnDef[T]{name: name, insertType: insertType[V](), newBuf: func() columnBuf[T] { return &valueBuf[T, V]{get: get} }}
}

// ColumnFunc declares the column name whose value in each row is get(row), where getting the
// value can fail: a timestamp that a DateTime cannot hold, a value out of range, a required
// field missing. An error rejects that row alone: the Write fails with a [*RowError] naming the
// row, wrapping a [*ColumnError] naming the column and wrapping get's error, before anything is
// sent (ponixnats' store processors dead-letter that one message and store the others).
func ColumnFunc[T, V any](name string, get func(T) (V, error)) ColumnDef[T] {
	if get == nil {
		panic(fmt.Sprintf("ponixclickhouse.ColumnFunc(%q): nil getter", name))
	}
	return ColumnDef[T]{name: name, insertType: insertType[V](), newBuf: func() columnBuf[T] { return &checkedBuf[T, V]{get: get} }}
}

// ColumnSet is the columns of an INSERT, each declared once with its name and its value, so that
// names and values cannot drift apart. Its [ColumnSet.Encoder] method is the encoder factory
// that [NewBatchWriter] and [NewShardedWriter] take. A ColumnSet is immutable and safe for
// concurrent use; declare it once (e.g. as a package variable) and share it.
type ColumnSet[T any] struct {
	defs  []ColumnDef[T]
	names []string
}

// Columns returns the set of the given columns, in the order of the INSERT's column list. It
// panics when there are none, when two share a name, or when a ColumnDef was not made by
// [Column] or [ColumnFunc]: these are mistakes in the program, found when it declares the set.
// Names that are not plain identifiers are refused by [NewBatchWriter].
func Columns[T any](defs ...ColumnDef[T]) *ColumnSet[T] {
	if len(defs) == 0 {
		panic("ponixclickhouse.Columns: no columns")
	}
	s := &ColumnSet[T]{defs: slices.Clone(defs), names: make([]string, len(defs))}
	for i, d := range defs {
		if d.newBuf == nil {
			panic(fmt.Sprintf("ponixclickhouse.Columns: column %d: not made by Column or ColumnFunc", i))
		}
		if slices.Contains(s.names[:i], d.name) {
			panic(fmt.Sprintf("ponixclickhouse.Columns: column %q declared twice", d.name))
		}
		s.names[i] = d.name
	}
	return s
}

// Names returns the column names, in order.
func (s *ColumnSet[T]) Names() []string { return slices.Clone(s.names) }

// Encoder returns a new [Encoder] for the set: one slice of values per column, reused from batch
// to batch, each given to the driver with one Append. Pass the method value (cols.Encoder) to
// [NewBatchWriter].
func (s *ColumnSet[T]) Encoder() Encoder[T] {
	e := &columnEncoder[T]{set: s, bufs: make([]columnBuf[T], len(s.defs))}
	for i, d := range s.defs {
		e.bufs[i] = d.newBuf()
	}
	return e
}

// columnBuf holds one column's values for a batch.
type columnBuf[T any] interface {
	// reset empties the buffer with room for n values.
	reset(n int)
	// truncate drops the values past the first n.
	truncate(n int)
	// addRows appends the values of rows, stopping at the first that fails: it returns that
	// row's index and the error.
	addRows(rows []T) (int, error)
	// appendTo hands the values to the driver's column.
	appendTo(c driver.BatchColumn) error
}

// values is the typed slice of one column.
type values[V any] []V

// The elements between len and cap of a values are always zero: reset and truncate clear what
// they drop, and addRows writes only below the length it sets.
func (v *values[V]) reset(n int) {
	clear(*v) // let the previous batch's strings and pointers go
	if cap(*v) < n {
		*v = make([]V, 0, n)
		return
	}
	*v = (*v)[:0]
}

func (v *values[V]) truncate(n int) {
	if n < len(*v) {
		clear((*v)[n:])
		*v = (*v)[:n]
	}
}

func (v *values[V]) appendTo(c driver.BatchColumn) error { return c.Append([]V(*v)) }

// valueBuf is a column whose getter cannot fail.
type valueBuf[T, V any] struct {
	values[V]
	get func(T) V
}

func (b *valueBuf[T, V]) addRows(rows []T) (int, error) {
	n := len(b.values)
	b.values = slices.Grow(b.values, len(rows))[:n+len(rows)]
	vals, get := b.values[n:], b.get
	for i := range rows {
		vals[i] = get(rows[i])
	}
	return 0, nil
}

// checkedBuf is a column whose getter can refuse a row.
type checkedBuf[T, V any] struct {
	values[V]
	get func(T) (V, error)
}

func (b *checkedBuf[T, V]) addRows(rows []T) (int, error) {
	n := len(b.values)
	b.values = slices.Grow(b.values, len(rows))[:n+len(rows)]
	vals, get := b.values[n:], b.get
	for i := range rows {
		v, err := get(rows[i])
		if err != nil {
			b.values = b.values[:n+i] // the values past it are still zero
			return i, err
		}
		vals[i] = v
	}
	return 0, nil
}

// columnEncoder is the Encoder of a ColumnSet.
type columnEncoder[T any] struct {
	set  *ColumnSet[T]
	bufs []columnBuf[T]
	rows int // rows fully encoded since the last Reset
	one  [1]T
}

// Columns implements [Encoder].
func (e *columnEncoder[T]) Columns() []string { return e.set.names }

// Reset implements [Encoder].
func (e *columnEncoder[T]) Reset(n int) {
	for _, b := range e.bufs {
		b.reset(n)
	}
	e.rows = 0
}

// Encode implements [Encoder]. An error is a [*ColumnError] naming the column whose getter
// refused the row; the row is not added.
func (e *columnEncoder[T]) Encode(row T) error {
	// One row is a batch of one: the row is copied once, into e.one, rather than into the
	// arguments of a call per column.
	e.one[0] = row
	for i, b := range e.bufs {
		if _, err := b.addRows(e.one[:]); err != nil {
			clear(e.one[:])
			for _, b := range e.bufs[:i] {
				b.truncate(e.rows)
			}
			return &ColumnError{Column: e.set.names[i], Err: err}
		}
	}
	clear(e.one[:]) // let the row's strings and pointers go
	e.rows++
	return nil
}

// encodeRows encodes rows after a Reset column by column (one call per column rather than one
// per column and row): the error, if any, is the [*RowError] that encoding row by row would
// return, the first failing row and, in that row, the first failing column. The encoder's
// content after an error is undefined until the next Reset.
func (e *columnEncoder[T]) encodeRows(rows []T) error {
	var rowErr *RowError
	n := len(rows) // the rows still to encode: those before the first failure found so far
	for i, b := range e.bufs {
		if at, err := b.addRows(rows[:n]); err != nil {
			n = at
			rowErr = &RowError{Index: at, Err: &ColumnError{Column: e.set.names[i], Err: err}}
		}
	}
	if rowErr != nil {
		return rowErr
	}
	e.rows += len(rows)
	return nil
}

// AppendTo implements [Encoder]: one Append per column. A column the driver refuses is a
// [*ColumnError] naming it, with the type it was given and the table's type of the column.
func (e *columnEncoder[T]) AppendTo(b driver.Batch) error {
	for i, buf := range e.bufs {
		if err := buf.appendTo(b.Column(i)); err != nil {
			return columnAppendError(b, i, e.set.names[i], e.set.defs[i].insertType, err)
		}
	}
	return nil
}

// batchEncoder is an Encoder that encodes a whole batch in one call, faster than row by row.
type batchEncoder[T any] interface {
	// encodeRows adds rows, as calling Encode for each would, and returns the [*RowError] of
	// the first row that fails.
	encodeRows(rows []T) error
}

// AppendColumn appends data, a slice of values, to column i (named name) of b, in one call to
// the driver's fastest path. An error names the column: a [*ColumnError] with the table's type of
// the column. Hand-written [Encoder]s can use it in AppendTo; a [ColumnSet] does.
func AppendColumn(b driver.Batch, i int, name string, data any) error {
	if err := b.Column(i).Append(data); err != nil {
		return columnAppendError(b, i, name, fmt.Sprintf("%T", data), err)
	}
	return nil
}

func columnAppendError(b driver.Batch, i int, name, insertType string, err error) *ColumnError {
	ce := &ColumnError{Column: name, InsertType: insertType, Err: err}
	if cols := b.Columns(); i < len(cols) && cols[i] != nil {
		ce.TableType = string(cols[i].Type())
	}
	return ce
}

// ColumnError names the column of a failure. In a [*RowError] (class [ClassRow]) it is the
// column whose [ColumnFunc] getter refused the row, and Err is the getter's error. In a
// [*WriteError] (Op "append") or a [*SchemaError], it is a column whose values the driver could
// not put into the INSERT, and Err is the driver's error: most often the table's type of the
// column does not take the declared values (class [ClassSchema]), e.g.
//
//	column "value" (Float64 in the insert, String in table readings): clickhouse [Append]: converting []float64 to String is unsupported
type ColumnError struct {
	// Table is the table of the INSERT, when known (a [BatchWriter] sets it).
	Table Table
	// Column is the column's name.
	Column string
	// InsertType is the type of the values the encoder gave the column: the ClickHouse type
	// they are meant for (String, Float64, DateTime, ...) or else their Go type.
	InsertType string
	// TableType is the column's type in the table, as the server reported it for the INSERT.
	TableType string
	// Err is the cause.
	Err error
}

func (e *ColumnError) Error() string {
	s := "column " + strconv.Quote(e.Column)
	if e.InsertType != "" || e.TableType != "" {
		s += " (" + orUnknown(e.InsertType) + " in the insert, " + orUnknown(e.TableType) + " in "
		if e.Table.Name != "" {
			s += "table " + e.Table.String()
		} else {
			s += "the table"
		}
		s += ")"
	}
	return s + ": " + e.Err.Error()
}

func orUnknown(s string) string {
	if s == "" {
		return "?"
	}
	return s
}

// Unwrap returns the cause.
func (e *ColumnError) Unwrap() error { return e.Err }

// setTable fills in the table of a *ColumnError in err's chain that does not name one.
func setTable(err error, t Table) {
	for err != nil {
		if ce, ok := err.(*ColumnError); ok {
			if ce.Table.Name == "" {
				ce.Table = t
			}
			return
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return
		}
		err = u.Unwrap()
	}
}

// insertType names the ClickHouse type that values of V are meant for, or else V's Go type.
func insertType[V any]() string {
	var zero V
	switch any(zero).(type) {
	case string:
		return "String"
	case []byte:
		return "String ([]byte)"
	case bool:
		return "Bool"
	case int8:
		return "Int8"
	case int16:
		return "Int16"
	case int32:
		return "Int32"
	case int64:
		return "Int64"
	case uint8:
		return "UInt8"
	case uint16:
		return "UInt16"
	case uint32:
		return "UInt32"
	case uint64:
		return "UInt64"
	case float32:
		return "Float32"
	case float64:
		return "Float64"
	case time.Time:
		return "DateTime"
	case *string:
		return "Nullable(String)"
	case *int64:
		return "Nullable(Int64)"
	case *uint64:
		return "Nullable(UInt64)"
	case *float64:
		return "Nullable(Float64)"
	case *time.Time:
		return "Nullable(DateTime)"
	case []string:
		return "Array(String)"
	}
	return "Go " + reflect.TypeFor[V]().String()
}
