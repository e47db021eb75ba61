package envelope

import (
	"errors"
	"fmt"
)

// The dead-letter reasons of the errors of this package (ponixnats.ReasonDecode and
// ponixnats.ReasonInvalid: the values are that package's, this one does not import it).
const (
	reasonDecode  = "decode"
	reasonInvalid = "invalid"
)

// reasonError is a sentinel error that also says why a pipeline that refuses a message for it
// dead-letters the message: DeadLetterReason, which ponixnats reads from a store's rejection.
type reasonError struct{ msg, reason string }

func (e *reasonError) Error() string { return e.msg }

// DeadLetterReason is the dead-letter reason of a message refused for this error.
func (e *reasonError) DeadLetterReason() string { return e.reason }

// Errors of this package; match with errors.Is. An error that wraps [ErrMalformed] or
// [ErrInvalid] (every [*ValidationError] does) has a method DeadLetterReason() string in its
// chain, "decode" or "invalid": ponixnats' store processors dead-letter a message refused
// for it with that reason.
var (
	// ErrMalformed: bytes that should hold a protobuf message do not (proto.Unmarshal refuses
	// them too). Its dead-letter reason is "decode".
	ErrMalformed error = &reasonError{msg: "malformed protobuf", reason: reasonDecode}
	// ErrInvalid matches every [*ValidationError]: the envelope decodes but breaks a rule
	// of [Validate]. Its dead-letter reason is "invalid".
	ErrInvalid error = &reasonError{msg: "invalid envelope", reason: reasonInvalid}
	// ErrIrregular: a valid encoding that the wire reader does not take apart itself — a
	// message field of data given more than once, which protobuf merges; a key of a Struct
	// given twice; a Value with more than one kind — none of which protobuf encoders write.
	// Decode the envelope with proto.Unmarshal instead.
	ErrIrregular = errors.New("irregular protobuf encoding")
	// ErrNilTimestamp: a timestamp the envelope needs is missing (the Err of its
	// [*ValidationError]).
	ErrNilTimestamp = errors.New("timestamp is nil")
	// ErrTimestampOutOfRange: a timestamp is outside google.protobuf.Timestamp's valid range
	// (the Err of its [*ValidationError]), or outside the range a sink can store (wrapped by
	// the sink's error, e.g. ponixclickhouse's DateTime range, 1970 to 2106).
	ErrTimestampOutOfRange = errors.New("timestamp out of range")
)

// FieldError names the field of an envelope that is wrong, e.g. "envelope", "occurred_at" or
// "data.readings[3]", and what is wrong with it. It is the one field error of Ponix: this
// package's reader gives it for bytes that are not an envelope (Err wrapping [ErrMalformed]),
// and ponixclickhouse's envelope encoder for a value it cannot store (Err wrapping
// [ErrNonFiniteNumber], [ErrTimestampOutOfRange], ...). errors.As finds one in the chain of
// a [*ValidationError] too.
type FieldError struct {
	// Field is the field's path in the envelope.
	Field string
	// Err says what is wrong with it.
	Err error
}

// Error names the field and the problem.
func (e *FieldError) Error() string { return e.Field + ": " + e.Err.Error() }

// Unwrap returns the cause.
func (e *FieldError) Unwrap() error { return e.Err }

// ValidationError names the envelope field that is invalid, its value and why. It matches
// [ErrInvalid].
type ValidationError struct {
	Field  string
	Value  string
	Reason string
	// Err is the kind of problem where one has a sentinel: [ErrNilTimestamp] or
	// [ErrTimestampOutOfRange] for a timestamp; nil otherwise.
	Err error
}

// Error names the field, value and reason.
func (e *ValidationError) Error() string {
	return fmt.Sprintf("invalid envelope: %s %q: %s", e.Field, e.Value, e.Reason)
}

// Is matches [ErrInvalid].
func (e *ValidationError) Is(target error) bool { return target == ErrInvalid }

// Unwrap returns the kind of problem (Err), if any.
func (e *ValidationError) Unwrap() error { return e.Err }

// As lets errors.As see a ValidationError as the [*FieldError] of its field (Err being the
// ValidationError), so that a caller looking for the field of any envelope error finds it.
func (e *ValidationError) As(target any) bool {
	fe, ok := target.(**FieldError)
	if ok {
		*fe = &FieldError{Field: e.Field, Err: e}
	}
	return ok
}

// DeadLetterReason is "invalid": ponixnats dead-letters an envelope refused for it with
// reason invalid.
func (e *ValidationError) DeadLetterReason() string { return reasonInvalid }
