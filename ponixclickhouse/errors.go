package ponixclickhouse

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/column"
)

// Class says what a failed write says about its rows and about the sink. [Classify] gives the
// class of any error a [BatchWriter] (or [Open]) returns. Only [ClassRow] and [ClassData] say
// anything about the rows; every other class is a failure of the sink (see [Class.SinkFault]):
// the rows are fine, the server, the network, the credentials or the schema are not, and the
// rows must be kept and written again once a person or time has fixed the sink.
type Class string

// Classes of write errors.
const (
	// ClassRow: the encoder rejected one row ([*RowError]); nothing was sent. That row can never
	// be stored; the others can.
	ClassRow Class = "row"
	// ClassData: the server (or the driver's column encoder) refused the data of the batch: a
	// parse, conversion or value error that one or more rows may cause (for example a
	// MATERIALIZED column whose expression fails on some rows, a FixedString too short for a
	// value). Split the batch to find the rows that fail alone; if no part of the batch can be
	// stored, treat it as a sink fault.
	ClassData Class = "data"
	// ClassUnreachable: no answer from the server: refused, reset, timed out, TLS failure.
	ClassUnreachable Class = "unreachable"
	// ClassUnresponsive: the server accepted the connection but made no progress within the
	// bound set for it ([WithInsertTimeout], a ping's timeout): stopped, hung, or overloaded
	// past the point of answering. The attempt was cancelled ([ErrUnresponsive]).
	ClassUnresponsive Class = "unresponsive"
	// ClassAuthentication: the server refused the user name or password.
	ClassAuthentication Class = "authentication"
	// ClassPermission: the user may not insert (readonly user, missing grant).
	ClassPermission Class = "permission"
	// ClassSchema: the table, a column or the database is missing, or a column's type does not
	// take what the encoder sends.
	ClassSchema Class = "schema"
	// ClassStorage: the server cannot write: disk full, I/O error.
	ClassStorage Class = "storage"
	// ClassOverload: not now: too many parts, memory limit, too many queries, quota.
	ClassOverload Class = "overload"
	// ClassReadOnly: the table is read-only (a replica that lost ZooKeeper/Keeper, a quorum that
	// cannot be reached).
	ClassReadOnly Class = "read_only"
	// ClassCanceled: the caller's context ended; nothing is known about the rows or the sink.
	ClassCanceled Class = "canceled"
	// ClassUnknown: an error this package cannot place. It is a sink fault: when unsure, keep
	// the rows.
	ClassUnknown Class = "unknown"
)

// SinkClasses lists the classes that are sink faults, for metrics that report each.
func SinkClasses() []Class {
	return []Class{ClassUnreachable, ClassUnresponsive, ClassAuthentication, ClassPermission, ClassSchema, ClassStorage,
		ClassOverload, ClassReadOnly, ClassUnknown}
}

// SinkFault reports whether c is a failure of the sink rather than of the rows: every class but
// [ClassRow], [ClassData] and [ClassCanceled].
func (c Class) SinkFault() bool {
	switch c {
	case ClassRow, ClassData, ClassCanceled, "":
		return false
	}
	return true
}

// ClickHouse exception codes by class (ErrorCodes.cpp; 18.16 and 25.x agree on these numbers).
var classByCode = map[int32]Class{
	// Values the server could not parse, convert or accept: one row may be at fault.
	6: ClassData, 25: ClassData, 26: ClassData, 27: ClassData, 36: ClassData, 38: ClassData,
	41: ClassData, 53: ClassData, 69: ClassData, 70: ClassData, 72: ClassData, 117: ClassData,
	128: ClassData, 131: ClassData, 190: ClassData, 321: ClassData, 349: ClassData,
	395: ClassData, 407: ClassData, 469: ClassData, 691: ClassData,
	// The server cannot be reached or did not answer in time.
	3: ClassUnreachable, 32: ClassUnreachable, 33: ClassUnreachable, 159: ClassUnreachable,
	209: ClassUnreachable, 210: ClassUnreachable, 279: ClassUnreachable, 369: ClassUnreachable,
	// Credentials and permissions.
	192: ClassAuthentication, 193: ClassAuthentication, 194: ClassAuthentication, 516: ClassAuthentication,
	164: ClassPermission, 497: ClassPermission,
	// Schema: database, table or column missing, the INSERT does not fit the table.
	8: ClassSchema, 10: ClassSchema, 15: ClassSchema, 16: ClassSchema, 43: ClassSchema,
	44: ClassSchema, 47: ClassSchema, 60: ClassSchema, 62: ClassSchema, 81: ClassSchema,
	// Storage.
	74: ClassStorage, 75: ClassStorage, 76: ClassStorage, 77: ClassStorage, 243: ClassStorage,
	425: ClassStorage, 1000: ClassStorage,
	// Not now.
	160: ClassOverload, 201: ClassOverload, 202: ClassOverload, 203: ClassOverload,
	236: ClassOverload, 241: ClassOverload, 252: ClassOverload, 290: ClassOverload,
	305: ClassOverload, 394: ClassOverload, 439: ClassOverload,
	// Read-only tables and replication.
	225: ClassReadOnly, 242: ClassReadOnly, 285: ClassReadOnly, 286: ClassReadOnly,
	319: ClassReadOnly, 999: ClassReadOnly,
}

// Classify returns the class of err (a nil error has the empty class). Errors of this package
// carry their class; server exceptions are classified by code; the driver's column conversion
// errors are [ClassSchema] (the column's type does not take what the encoder sends) or
// [ClassData] (one value does not fit, e.g. a string longer than a FixedString); network errors
// are [ClassUnreachable]. Anything else is [ClassUnknown], a sink fault.
func Classify(err error) Class {
	if err == nil {
		return ""
	}
	var (
		rowErr    *RowError
		schemaErr *SchemaError
		cfgErr    *ConfigError
		ex        *clickhouse.Exception
		convErr   *column.ColumnConverterError
		typeErr   *column.UnsupportedColumnTypeError
		colErr    *column.Error
	)
	switch {
	case errors.As(err, &rowErr):
		return ClassRow
	case errors.Is(err, ErrUnresponsive):
		return ClassUnresponsive
	case errors.Is(err, context.Canceled):
		return ClassCanceled
	case errors.As(err, &schemaErr):
		return ClassSchema
	case errors.As(err, &cfgErr):
		switch cfgErr.Setting {
		case "Username/Password", "TLS":
			return ClassAuthentication
		case "Database":
			return ClassSchema
		}
		return ClassUnreachable
	case errors.As(err, &ex):
		if c, ok := classByCode[ex.Code]; ok {
			return c
		}
		return ClassUnknown
	case errors.As(err, &convErr), errors.As(err, &typeErr), errors.Is(err, ErrInvalidIdentifier):
		return ClassSchema
	case errors.As(err, &colErr):
		return ClassData
	case stalled(err):
		return ClassUnresponsive
	case IsNetworkError(err), isTLSError(err):
		return ClassUnreachable
	}
	return ClassUnknown
}

// ErrUnresponsive is wrapped by the error of an insert (or ping) that made no progress within
// its bound and was cancelled: the server is stopped or hung. Its class is
// [ClassUnresponsive], a sink fault.
var ErrUnresponsive = errors.New("ClickHouse did not answer in time (server stopped, hung or overloaded)")

// stalled reports whether err is a read or write on an open connection that timed out: the
// server accepted the connection (its kernel did) but does not answer.
func stalled(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Timeout() && (op.Op == "read" || op.Op == "write")
}

// IsNetworkError reports whether err comes from the network (refused, reset, timeout, EOF)
// rather than from the server.
func IsNetworkError(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, driver.ErrBadConn) ||
		errors.Is(err, clickhouse.ErrAcquireConnTimeout) || errors.Is(err, context.DeadlineExceeded)
}

// WriteError is a failed [BatchWriter.Write] after its rows were encoded: the server, the
// network or the driver refused the INSERT. Nothing of the batch is known to be stored (see
// the package documentation for the exceptions ClickHouse makes).
type WriteError struct {
	// Table is the table written to.
	Table Table
	// Rows is the number of rows in the batch.
	Rows int
	// Op is the step that failed: "prepare" (the INSERT was refused before any data was sent:
	// connection, credentials, table, columns), "append" (the driver could not put a column's
	// values into the native block), or "send" (the server refused or lost the block).
	Op string
	// Err is the cause: a *clickhouse.Exception, a network error, a column error of the driver.
	Err error
}

func (e *WriteError) Error() string {
	verb := map[string]string{"prepare": "prepare insert of", "append": "encode", "send": "insert"}[e.Op]
	if verb == "" {
		verb = e.Op
	}
	return fmt.Sprintf("clickhouse: %s %d rows into %s: %v", verb, e.Rows, e.Table, e.Err)
}

// Unwrap returns the cause.
func (e *WriteError) Unwrap() error { return e.Err }

// Class returns [Classify] of the cause.
func (e *WriteError) Class() Class { return Classify(e.Err) }

// RecordFault reports whether the rows, not the sink, may be at fault ([ClassData]): a batch
// consumer should split the batch to find the rows that fail alone. It makes WriteError a
// ponixnats.RecordFault.
func (e *WriteError) RecordFault() bool { return e.Class() == ClassData }

// RowError is a row that its encoder rejected. Nothing of the Write that returned it was
// sent, so the caller can set the row aside (dead-letter it) and write the others again.
// Its class is [ClassRow].
type RowError struct {
	// Index is the row's position in the slice given to Write.
	Index int
	// Err is the encoder's error: a [*ColumnError] for rows declared with [Columns]; for
	// envelopes an *envelope.FieldError naming the field (errors.As finds one for an
	// *envelope.ValidationError too).
	Err error
}

func (e *RowError) Error() string { return fmt.Sprintf("row %d: %v", e.Index, e.Err) }

// Unwrap returns the encoder's error.
func (e *RowError) Unwrap() error { return e.Err }

// RejectedIndex is the row's index, so that a batch consumer can set this one row aside and
// store the others (it makes RowError a ponixnats.Rejection).
func (e *RowError) RejectedIndex() int { return e.Index }
