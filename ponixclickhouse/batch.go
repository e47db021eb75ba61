package ponixclickhouse

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Encoder turns rows of type T into column data for one INSERT. A [BatchWriter] takes an
// Encoder from its pool for each Write, calls Reset, Encode for every row, then AppendTo once,
// so an Encoder can keep per-column slices and reuse them from batch to batch. An Encoder is
// used by one goroutine at a time.
type Encoder[T any] interface {
	// Columns are the column names of the INSERT, in the order AppendTo fills them. They must
	// be plain identifiers (see [ValidateIdentifier]).
	Columns() []string
	// Reset starts a new batch of n rows, forgetting the previous one.
	Reset(n int)
	// Encode adds one row to the batch. An error rejects the whole Write with a [*RowError]
	// before anything is sent.
	Encode(row T) error
	// AppendTo appends the encoded data to b, typically with one
	// b.Column(i).Append(slice) per column (the fastest path of clickhouse-go).
	AppendTo(b driver.Batch) error
}

// Option configures a writer.
type Option func(*writerOptions)

type writerOptions struct {
	logger *slog.Logger
	table  Table
}

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option {
	return func(o *writerOptions) {
		if l != nil {
			o.logger = l
		}
	}
}

// WithTable sets the table a writer inserts into (used by [NewEnvelopeWriter]; default
// processed_envelopes in the connection's database).
func WithTable(t Table) Option {
	return func(o *writerOptions) { o.table = t }
}

// BatchWriter writes slices of rows of type T with one native batch INSERT per call. It is
// safe for concurrent use; concurrent Writes run as concurrent INSERTs on the connection pool.
type BatchWriter[T any] struct {
	conn   driver.Conn
	table  Table
	query  string
	logger *slog.Logger
	pool   sync.Pool
}

// NewBatchWriter returns a writer that inserts into table through encoders made by newEncoder.
// The table and column names are validated here, so a bad name in configuration fails at
// start-up, not at the first Write.
func NewBatchWriter[T any](conn driver.Conn, table Table, newEncoder func() Encoder[T], opts ...Option) (*BatchWriter[T], error) {
	o := writerOptions{logger: slog.New(slog.DiscardHandler)}
	for _, opt := range opts {
		opt(&o)
	}
	quoted, err := table.Quoted()
	if err != nil {
		return nil, fmt.Errorf("clickhouse writer: %w", err)
	}
	enc := newEncoder()
	cols := enc.Columns()
	if len(cols) == 0 {
		return nil, fmt.Errorf("clickhouse writer for %s: encoder has no columns", table)
	}
	var q strings.Builder
	q.WriteString("INSERT INTO ")
	q.WriteString(quoted)
	q.WriteString(" (")
	for i, c := range cols {
		qc, err := QuoteIdentifier(c)
		if err != nil {
			return nil, fmt.Errorf("clickhouse writer for %s: column %d: %w", table, i, err)
		}
		if i > 0 {
			q.WriteString(", ")
		}
		q.WriteString(qc)
	}
	q.WriteString(")")
	w := &BatchWriter[T]{conn: conn, table: table, query: q.String(), logger: o.logger}
	w.pool.New = func() any { return newEncoder() }
	w.pool.Put(enc)
	return w, nil
}

// Table is the table the writer inserts into.
func (w *BatchWriter[T]) Table() Table { return w.table }

// Query is the INSERT statement the writer prepares, with its explicit column list.
func (w *BatchWriter[T]) Query() string { return w.query }

// Write inserts rows with one batch INSERT. It encodes every row before it contacts the server:
// a row the encoder rejects fails the call with a [*RowError] and nothing is sent. An error
// from the server or the network aborts the batch; see the package documentation for what
// ClickHouse guarantees about it, and [IsRetryable] for whether to try again. A retry must call
// Write again with the rows; Write never reuses a failed batch. Writing zero rows does nothing.
func (w *BatchWriter[T]) Write(ctx context.Context, rows []T) error {
	if len(rows) == 0 {
		return nil
	}
	enc := w.pool.Get().(Encoder[T])
	defer w.pool.Put(enc)
	enc.Reset(len(rows))
	for i, r := range rows {
		if err := enc.Encode(r); err != nil {
			return &RowError{Index: i, Err: err}
		}
	}
	start := time.Now()
	batch, err := w.conn.PrepareBatch(ctx, w.query)
	if err != nil {
		return fmt.Errorf("clickhouse: prepare insert into %s: %w", w.table, err)
	}
	defer func() {
		if !batch.IsSent() {
			_ = batch.Abort()
		}
	}()
	if err := enc.AppendTo(batch); err != nil {
		return fmt.Errorf("clickhouse: append %d rows for %s: %w", len(rows), w.table, err)
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("clickhouse: insert %d rows into %s: %w", len(rows), w.table, err)
	}
	w.logger.DebugContext(ctx, "clickhouse batch inserted", "table", w.table.String(), "rows", len(rows), "duration", time.Since(start))
	return nil
}
