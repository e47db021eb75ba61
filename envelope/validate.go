package envelope

import (
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"

	envelopev1 "buf.build/gen/go/ponix/ponix/protocolbuffers/go/envelope/v1"
	"google.golang.org/protobuf/proto"
)

// ErrInvalid matches every [*ValidationError].
var ErrInvalid = errors.New("invalid envelope")

// ValidationError names the envelope field that is invalid and why.
type ValidationError struct {
	Field  string
	Value  string
	Reason string
}

// Error names the field, value and reason.
func (e *ValidationError) Error() string {
	return fmt.Sprintf("invalid envelope: %s %q: %s", e.Field, e.Value, e.Reason)
}

// Is matches [ErrInvalid].
func (e *ValidationError) Is(target error) bool { return target == ErrInvalid }

const reasonNotToken = "not a valid subject token (empty, or contains '.', '*', '>' or whitespace)"

// Validate checks what a pipeline needs of an envelope: end_device_id a valid subject token
// (envelopes are published to "<base>.<end_device_id>"), organization_id not empty, both
// timestamps present and valid. It returns a [*ValidationError] naming the field.
func Validate(env *envelopev1.ProcessedEnvelope) error {
	if env == nil {
		return &ValidationError{Field: "envelope", Reason: "is nil"}
	}
	if !ValidSubjectToken(env.GetEndDeviceId()) {
		return &ValidationError{Field: "end_device_id", Value: env.GetEndDeviceId(), Reason: reasonNotToken}
	}
	if env.GetOrganizationId() == "" {
		return &ValidationError{Field: "organization_id", Reason: "is empty"}
	}
	if env.GetOccurredAt() == nil {
		return &ValidationError{Field: "occurred_at", Reason: "is missing"}
	}
	if err := env.GetOccurredAt().CheckValid(); err != nil {
		return &ValidationError{Field: "occurred_at", Value: env.GetOccurredAt().String(), Reason: err.Error()}
	}
	if env.GetProcessedAt() == nil {
		return &ValidationError{Field: "processed_at", Reason: "is missing"}
	}
	if err := env.GetProcessedAt().CheckValid(); err != nil {
		return &ValidationError{Field: "processed_at", Value: env.GetProcessedAt().String(), Reason: err.Error()}
	}
	return nil
}

// ValidateWire is [Validate] for an envelope in protobuf wire format: it applies the same
// rules to the envelope the bytes decode to, reading only the ids and timestamps, without
// decoding the bytes into a message (it does not allocate for a valid envelope). Bytes that
// are not an envelope give a [*FieldError] wrapping [ErrMalformed]; an invalid envelope gives
// the [*ValidationError] Validate gives. The data field is not looked into.
func ValidateWire(b []byte) error {
	var w Wire
	if err := w.Parse(b); err != nil {
		return err
	}
	if w.valid() {
		return nil
	}
	// Invalid: decode it for the exact error (the slow path, for bad messages only).
	env := new(envelopev1.ProcessedEnvelope)
	if err := proto.Unmarshal(b, env); err != nil {
		return &FieldError{Field: "envelope", Err: fmt.Errorf("%w: %w", ErrMalformed, err)}
	}
	return Validate(env)
}

// valid applies Validate's rules.
func (w *Wire) valid() bool {
	return len(w.OrganizationID) > 0 && ValidSubjectToken(bytesString(w.EndDeviceID)) &&
		w.OccurredAt.Valid() && w.ProcessedAt.Valid()
}

// ValidSubjectToken reports whether s can be one token of a NATS subject, as end_device_id
// must: non-empty, without '.', '*', '>' and without whitespace or control characters.
func ValidSubjectToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '.' || c == '*' || c == '>':
			return false
		case c <= ' ' || c == 0x7f:
			return false
		}
	}
	// Reject non-ASCII whitespace too (e.g. U+00A0, U+2028).
	return strings.IndexFunc(s, isUnicodeSpace) < 0
}

func isUnicodeSpace(r rune) bool {
	switch r {
	case 0x85, 0xA0, 0x1680, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000:
		return true
	}
	return r >= 0x2000 && r <= 0x200A
}

// Subject returns the subject an envelope is published to, "<base>.<end_device_id>", or a
// [*ValidationError] if its end_device_id is not a valid subject token.
func Subject(base string, env *envelopev1.ProcessedEnvelope) (string, error) {
	if env == nil {
		return "", &ValidationError{Field: "envelope", Reason: "is nil"}
	}
	if !ValidSubjectToken(env.GetEndDeviceId()) {
		return "", &ValidationError{Field: "end_device_id", Value: env.GetEndDeviceId(), Reason: reasonNotToken}
	}
	return base + "." + env.GetEndDeviceId(), nil
}

// MsgID is the default de-duplication id (Nats-Msg-Id) of an envelope whose deterministic
// encoding is data: "<organization_id>:<end_device_id>:<occurred_at unix nanos>:<fnv64a of
// data>". The same envelope always gets the same id; two different readings of one device at
// the same instant get different ids.
func MsgID(env *envelopev1.ProcessedEnvelope, data []byte) string {
	h := fnv.New64a()
	h.Write(data)
	var sum [8]byte
	occurred := int64(0)
	if t := env.GetOccurredAt(); t != nil {
		occurred = t.GetSeconds()*1e9 + int64(t.GetNanos())
	}
	return env.GetOrganizationId() + ":" + env.GetEndDeviceId() + ":" + strconv.FormatInt(occurred, 10) + ":" +
		hex.EncodeToString(h.Sum(sum[:0]))
}
