package ponixclickhouse

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Encoder turns rows of type T into column data for one INSERT. Most row types need not
// implement it: declare the columns once with [Columns] and pass the set's Encoder method,
// which keeps each column's name with its value. A [BatchWriter] takes an
// Encoder from its pool for each Write, calls Reset, Encode for every row, then AppendTo once,
// so an Encoder can keep per-column slices and reuse them from batch to batch. An Encoder is
// used by one goroutine at a time. A writer neither resets nor reuses an Encoder before the
// batch its AppendTo filled is sent or abandoned, so AppendTo may append values that point
// into the Encoder's buffers (clickhouse-go's columns copy what they are given).
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

// WriterOption configures a writer.
type WriterOption func(*writerOptions)

type writerOptions struct {
	logger        *slog.Logger
	insertTimeout time.Duration
	stallTimeout  time.Duration
}

// WithLogger sets the logger (default: slog.Default(), as every Ponix module).
func WithLogger(l *slog.Logger) WriterOption {
	return func(o *writerOptions) {
		if l != nil {
			o.logger = l
		}
	}
}

// WithInsertTimeout bounds one insert (preparing it, sending the rows and the server's answer)
// to d. An insert that has not finished by then is cancelled and fails with a [*WriteError]
// wrapping [ErrUnresponsive] (class [ClassUnresponsive]): a server that stopped (SIGSTOP, a
// hung disk) keeps its TCP connections open, and without a bound the insert would wait for the
// driver's read timeout (minutes). Choose d well above the slowest insert of a healthy server
// (a 10,000-row insert takes well under a second): a bound too tight makes healthy but slow
// inserts fail and be retried. Zero (the default) sets no bound of the writer's own.
func WithInsertTimeout(d time.Duration) WriterOption {
	return func(o *writerOptions) { o.insertTimeout = d }
}

// WithStallTimeout has ClickHouse give up an insert it has waited on for d while the writer sent
// nothing more of it (its settings send_timeout and receive_timeout, set on each INSERT: the
// server's wait for the rest of a data block, and for the next block). The server then stores
// none of the insert's rows and closes the connection. Without it the server waits for the
// writer as long as its own send_timeout/receive_timeout say (300 s by default), and the insert
// of a writer stalled in the middle of it — a paused process (SIGSTOP), a frozen VM, a long
// pause — commits when the writer goes on, however late. A consumer that hands a stalled
// instance's messages to another after a while (AckWait, an owner's lease) bounds that wait
// below it so that a stalled instance's insert can never commit after another instance stored the
// same rows: the pipeline package sets it from the consumer's takeover time. The server counts
// whole seconds: d is rounded down to seconds and must be at least 1 s. It also bounds the
// writer's own pauses in a healthy insert — between the server's answer to the INSERT
// statement and the rows (their copy into the driver's columns: milliseconds per 10,000 rows)
// — and a link whose one-way trip takes longer: keep d well above both. Zero (the default)
// sets nothing.
func WithStallTimeout(d time.Duration) WriterOption {
	return func(o *writerOptions) { o.stallTimeout = d }
}

// stallSettings are the settings of an insert that ClickHouse gives up after d without data
// from the client (nil for d = 0). ClickHouse applies send_timeout to the socket's reads while
// it receives a block (the setting is named from the client's side) and receive_timeout to its
// wait for the next block; both are whole seconds.
func stallSettings(d time.Duration) (clickhouse.Settings, error) {
	switch {
	case d == 0:
		return nil, nil
	case d < time.Second:
		return nil, fmt.Errorf("stall timeout %s: must be at least 1s (ClickHouse counts whole seconds)", d)
	}
	secs := int(d / time.Second)
	return clickhouse.Settings{"send_timeout": secs, "receive_timeout": secs}, nil
}

// BatchWriter writes slices of rows of type T with one native batch INSERT per call. It is
// safe for concurrent use; concurrent Writes run as concurrent INSERTs on the connection pool.
type BatchWriter[T any] struct {
	conn    driver.Conn
	table   Table
	columns []string
	query   string
	logger  *slog.Logger
	timeout time.Duration
	// settings go with each INSERT (WithStallTimeout); nil: none.
	settings clickhouse.Settings
	pool     encoderPool[T]
	// renew: the last Write met a credential or permission fault; the next one renews the
	// connection pool first (see renewAfter).
	renew atomic.Bool
}

// NewBatchWriter returns a writer that inserts into table through encoders made by newEncoder.
// It checks here, with the server, that the table exists and takes the encoder's columns
// (see [BatchWriter.CheckSchema]): a bad name in configuration or a table that does not fit the
// encoder fails at start-up with a [*SchemaError], not at the first Write.
func NewBatchWriter[T any](ctx context.Context, conn driver.Conn, table Table, newEncoder func() Encoder[T], opts ...WriterOption) (*BatchWriter[T], error) {
	w, err := newBatchWriter(conn, table, newEncoder, opts...)
	if err != nil {
		return nil, err
	}
	if err := w.CheckSchema(ctx); err != nil {
		return nil, err
	}
	return w, nil
}

func newBatchWriter[T any](conn driver.Conn, table Table, newEncoder func() Encoder[T], opts ...WriterOption) (*BatchWriter[T], error) {
	o := writerOptions{logger: slog.Default()}
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
	if o.insertTimeout < 0 {
		return nil, fmt.Errorf("clickhouse writer for %s: negative insert timeout %s", table, o.insertTimeout)
	}
	settings, err := stallSettings(o.stallTimeout)
	if err != nil {
		return nil, fmt.Errorf("clickhouse writer for %s: %w", table, err)
	}
	w := &BatchWriter[T]{conn: conn, table: table, columns: cols, query: q.String(), logger: o.logger, timeout: o.insertTimeout, settings: settings}
	w.pool.newEncoder = newEncoder
	w.pool.put(enc)
	return w, nil
}

// Table is the table the writer inserts into.
func (w *BatchWriter[T]) Table() Table { return w.table }

// Query is the INSERT statement the writer prepares, with its explicit column list.
func (w *BatchWriter[T]) Query() string { return w.query }

// Write inserts rows with one batch INSERT. It encodes every row before it contacts the server:
// a row the encoder rejects fails the call with a [*RowError] and nothing is sent. Any other
// failure is a [*WriteError]; see the package documentation for what ClickHouse guarantees about
// it, and [Classify] for what it says about the rows and the sink. A retry must call Write again
// with the rows; Write never reuses a failed batch. Writing zero rows does nothing.
func (w *BatchWriter[T]) Write(ctx context.Context, rows []T) (err error) {
	if len(rows) == 0 {
		return nil
	}
	enc := w.pool.get()
	defer w.pool.put(enc)
	if w.renew.Swap(false) {
		if c, ok := w.conn.(*Conn); ok {
			c.Renew()
		}
	}
	enc.Reset(len(rows))
	if be, ok := enc.(batchEncoder[T]); ok {
		if err := be.encodeRows(rows); err != nil {
			return err
		}
	} else {
		for i, r := range rows {
			if err := enc.Encode(r); err != nil {
				return &RowError{Index: i, Err: err}
			}
		}
	}
	start := time.Now()
	if w.timeout > 0 {
		var cancel context.CancelFunc
		parent := ctx
		ctx, cancel = context.WithTimeout(ctx, w.timeout)
		defer cancel()
		defer func() {
			// Our bound ran out, not the caller's context: the server made no progress.
			if err != nil && parent.Err() == nil && ctx.Err() != nil {
				var we *WriteError
				if errors.As(err, &we) {
					we.Err = fmt.Errorf("%w: no answer within %s: %w", ErrUnresponsive, w.timeout, we.Err)
				}
			}
		}()
	}
	qctx := ctx
	if w.settings != nil {
		qctx = clickhouse.Context(ctx, clickhouse.WithSettings(w.settings))
	}
	batch, err := w.conn.PrepareBatch(qctx, w.query)
	if err != nil {
		w.renewAfter(err)
		return &WriteError{Table: w.table, Rows: len(rows), Op: "prepare", Err: err}
	}
	defer func() {
		if !batch.IsSent() {
			_ = batch.Abort()
		}
	}()
	if err := enc.AppendTo(batch); err != nil {
		setTable(err, w.table)
		return &WriteError{Table: w.table, Rows: len(rows), Op: "append", Err: err}
	}
	if err := batch.Send(); err != nil {
		w.renewAfter(err)
		return &WriteError{Table: w.table, Rows: len(rows), Op: "send", Err: err}
	}
	w.logger.DebugContext(ctx, "clickhouse batch inserted", "table", w.table.String(), "rows", len(rows), "duration", time.Since(start))
	return nil
}

// encoderPool keeps the encoders of finished Writes for the next ones, up to maxIdleEncoders.
// A sync.Pool would drop them at every garbage collection — several per 10,000-row batch —
// and the next Write would grow an encoder's buffers anew (megabytes per batch).
type encoderPool[T any] struct {
	newEncoder func() Encoder[T]
	mu         sync.Mutex
	idle       []Encoder[T]
}

// maxIdleEncoders bounds the encoders an idle writer keeps: one per Write that ran at once,
// up to this many.
const maxIdleEncoders = 4

func (p *encoderPool[T]) get() Encoder[T] {
	p.mu.Lock()
	if n := len(p.idle); n > 0 {
		enc := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		return enc
	}
	p.mu.Unlock()
	return p.newEncoder()
}

func (p *encoderPool[T]) put(enc Encoder[T]) {
	p.mu.Lock()
	if len(p.idle) < maxIdleEncoders {
		p.idle = append(p.idle, enc)
	}
	p.mu.Unlock()
}

// renewAfter makes the next Write renew the writer's connections after a credential or
// permission fault, when its connection is a [*Conn]: connections opened before a fix keep
// the user's old rights (a user made read-only stays read-only on its pooled connections, and
// readiness probes keep opening such connections while the fault lasts), so the first Write
// after the fix must log in anew.
func (w *BatchWriter[T]) renewAfter(err error) {
	switch Classify(err) {
	case ClassAuthentication, ClassPermission:
		w.renew.Store(true)
	}
}

// CheckSchema compares the table with what the writer needs: the table exists, has every column
// of the encoder, and each column takes the encoder's values (checked by preparing an INSERT
// and appending an empty batch, then abandoning it: nothing is written). A mismatch is a
// [*SchemaError] naming the table and each missing or unfit column; a failure to ask the server
// is returned as it is (see [Classify]).
func (w *BatchWriter[T]) CheckSchema(ctx context.Context) error {
	have, err := TableColumns(ctx, w.conn, w.table)
	if err != nil {
		return err
	}
	if len(have) == 0 {
		return &SchemaError{Table: w.table, TableMissing: true}
	}
	se := &SchemaError{Table: w.table}
	for _, c := range w.columns {
		if _, ok := have[c]; !ok {
			se.MissingColumns = append(se.MissingColumns, c)
		}
	}
	if len(se.MissingColumns) > 0 {
		return se
	}
	batch, err := w.conn.PrepareBatch(ctx, w.query)
	if err != nil {
		if Classify(err) == ClassSchema {
			se.Err = err
			return se
		}
		return err
	}
	defer func() { _ = batch.Abort() }()
	enc := w.pool.get()
	defer w.pool.put(enc)
	enc.Reset(0)
	if err := enc.AppendTo(batch); err != nil {
		setTable(err, w.table)
		se.Err = err
		return se
	}
	return nil
}

// TableColumns returns the columns of table and their types as the server reports them
// (system.columns), or an empty map when the table does not exist.
func TableColumns(ctx context.Context, conn driver.Conn, table Table) (map[string]string, error) {
	if err := table.Validate(); err != nil {
		return nil, err
	}
	db := "currentDatabase()"
	if table.Database != "" {
		db = "'" + table.Database + "'" // a validated identifier: no quoting needed
	}
	rows, err := conn.Query(ctx, "SELECT name, type FROM system.columns WHERE database = "+db+" AND table = '"+table.Name+"'")
	if err != nil {
		return nil, fmt.Errorf("clickhouse: reading the columns of %s: %w", table, err)
	}
	defer rows.Close()
	cols := map[string]string{}
	for rows.Next() {
		var name, typ string
		if err := rows.Scan(&name, &typ); err != nil {
			return nil, fmt.Errorf("clickhouse: reading the columns of %s: %w", table, err)
		}
		cols[name] = typ
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("clickhouse: reading the columns of %s: %w", table, err)
	}
	return cols, nil
}

// SchemaError says how a table does not fit a writer. Its class is [ClassSchema]: a sink fault
// that a person fixes (or that migrations repair), after which writes succeed again.
type SchemaError struct {
	// Table is the table the writer inserts into.
	Table Table
	// TableMissing: the table does not exist.
	TableMissing bool
	// MissingColumns are the writer's columns the table lacks.
	MissingColumns []string
	// Err is the server's or the driver's error when the columns exist but do not take the
	// writer's values (a type mismatch), or when the INSERT itself was refused.
	Err error
}

func (e *SchemaError) Error() string {
	switch {
	case e.TableMissing:
		return fmt.Sprintf("clickhouse: table %s does not exist", e.Table)
	case len(e.MissingColumns) > 0:
		return fmt.Sprintf("clickhouse: table %s has no column %s", e.Table, strings.Join(e.MissingColumns, ", "))
	case e.Err != nil:
		return fmt.Sprintf("clickhouse: table %s does not take the writer's rows: %v", e.Table, e.Err)
	}
	return fmt.Sprintf("clickhouse: table %s does not fit the writer", e.Table)
}

// Unwrap returns the server's or driver's error, if any.
func (e *SchemaError) Unwrap() error { return e.Err }
