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
)

// ClickHouse exception codes this package branches on.
const (
	codeUnexpectedEndOfFile       = 3
	codeAttemptToReadAfterEOF     = 32
	codeUnknownDatabase           = 81
	codeTimeoutExceeded           = 159
	codeTooManySimultaneous       = 202
	codeNoFreeConnection          = 203
	codeSocketTimeout             = 209
	codeNetworkError              = 210
	codeAborted                   = 236
	codeMemoryLimitExceeded       = 241
	codeTableIsReadOnly           = 242
	codeTooManyParts              = 252
	codeUnknownStatusOfInsert     = 319
	codeQueryWasCancelled         = 394
	codeAllConnectionTriesFailed  = 279
	codeAllReplicasAreStale       = 369
	codeCannotScheduleTask        = 439
	codeUnknownUser               = 192
	codeWrongPassword             = 193
	codeRequiredPassword          = 194
	codeAuthenticationFailed      = 516
	codeKeeperException           = 999
	codeSystemError               = 425
	codeDistributedTooManyPending = 305
)

// transientCodes are server exceptions that a later retry can overcome.
var transientCodes = map[int32]bool{
	codeUnexpectedEndOfFile:       true,
	codeAttemptToReadAfterEOF:     true,
	codeTimeoutExceeded:           true,
	codeTooManySimultaneous:       true,
	codeNoFreeConnection:          true,
	codeSocketTimeout:             true,
	codeNetworkError:              true,
	codeAborted:                   true,
	codeMemoryLimitExceeded:       true,
	codeTableIsReadOnly:           true,
	codeTooManyParts:              true,
	codeAllConnectionTriesFailed:  true,
	codeUnknownStatusOfInsert:     true,
	codeAllReplicasAreStale:       true,
	codeQueryWasCancelled:         true,
	codeCannotScheduleTask:        true,
	codeSystemError:               true,
	codeKeeperException:           true,
	codeDistributedTooManyPending: true,
}

// IsRetryable reports whether err is worth retrying later with the same rows: network failures,
// timeouts, a refused connection, and server exceptions that say "not now" (too many parts,
// too many simultaneous queries, memory limit, read-only replica, ...). It reports false for
// errors that a retry cannot fix: a row that cannot be encoded ([*RowError]), a wrong setting
// ([*ConfigError]) and every other server exception (unknown table or column, type mismatch,
// syntax, authentication). A nil error is not retryable. An error this package cannot place
// (neither a server exception nor a known permanent error) counts as retryable, so that a
// caller with bounded redelivery tries again rather than dropping data.
func IsRetryable(err error) bool {
	if err == nil {
		return false
	}
	var rowErr *RowError
	if errors.As(err, &rowErr) {
		return false
	}
	var cfgErr *ConfigError
	if errors.As(err, &cfgErr) {
		return errors.Is(cfgErr, ErrUnreachable)
	}
	if errors.Is(err, ErrInvalidIdentifier) || errors.Is(err, context.Canceled) {
		return false
	}
	var ex *clickhouse.Exception
	if errors.As(err, &ex) {
		return transientCodes[ex.Code]
	}
	return true
}

// IsPermanent reports whether err says that the rows or the sink are wrong in a way that
// waiting cannot fix, so the rows should be set aside (dead-lettered) rather than retried: a
// row that cannot be encoded, a wrong setting other than an unreachable address, or a server
// exception that is not transient. Context errors (the caller gave up) and errors this package
// cannot place are not permanent.
func IsPermanent(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	return !IsRetryable(err)
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

// Sentinel errors for rows that cannot be stored; they arrive wrapped in [*RowError] and
// [*FieldError].
var (
	// ErrNilTimestamp: a required timestamp is nil.
	ErrNilTimestamp = errors.New("timestamp is nil")
	// ErrTimestampOutOfRange: a timestamp is invalid or outside the DateTime range
	// (1970-01-01 00:00:00 to 2106-02-07 06:28:15 UTC).
	ErrTimestampOutOfRange = errors.New("timestamp outside the ClickHouse DateTime range")
	// ErrNonFiniteNumber: a number is NaN or ±Inf, which JSON cannot represent.
	ErrNonFiniteNumber = errors.New("number is NaN or infinite, which JSON cannot represent")
)

// RowError is a row that its encoder rejected. Nothing of the Write that returned it was
// sent, so the caller can set the row aside (dead-letter it) and write the others again.
// It is never retryable.
type RowError struct {
	// Index is the row's position in the slice given to Write.
	Index int
	// Err is the encoder's error, usually a [*FieldError].
	Err error
}

func (e *RowError) Error() string { return fmt.Sprintf("row %d: %v", e.Index, e.Err) }

// Unwrap returns the encoder's error.
func (e *RowError) Unwrap() error { return e.Err }

// RejectedIndex is the row's index, so that a batch consumer can set this one row aside and
// store the others (it makes RowError a ponixnats.Rejection).
func (e *RowError) RejectedIndex() int { return e.Index }

// FieldError names the field of a row that cannot be stored, e.g. "occurred_at" or
// "data.readings[3]".
type FieldError struct {
	// Field is the field's path in the message.
	Field string
	// Err says what is wrong with it.
	Err error
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Err.Error() }

// Unwrap returns the cause.
func (e *FieldError) Unwrap() error { return e.Err }
