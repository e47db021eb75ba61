package envelope

import (
	"encoding/hex"
	"hash/fnv"
	"strconv"
	"strings"
	"unicode/utf8"

	envelopev1 "buf.build/gen/go/ponix/ponix/protocolbuffers/go/envelope/v1"
)

const reasonNotToken = "not a valid subject token (empty, or contains '.', '*', '>' or whitespace)"

// Validate checks what a pipeline needs of an envelope: end_device_id a valid subject token
// (envelopes are published to "<base>.<end_device_id>"), organization_id not empty, both
// timestamps present and valid. It returns a [*ValidationError] naming the field.
func Validate(env *envelopev1.ProcessedEnvelope) error {
	if env == nil {
		return &ValidationError{Field: "envelope", Reason: "is nil"}
	}
	return check(env.GetEndDeviceId(), env.GetOrganizationId(), TimestampOf(env.GetOccurredAt()), TimestampOf(env.GetProcessedAt()))
}

// ValidateWire is [Validate] for an envelope in protobuf wire format: [Wire.Parse], then
// [Wire.Validate]. It reads only the ids and timestamps, and does not allocate for a valid
// envelope. Bytes that are not an envelope give a [*FieldError] wrapping [ErrMalformed]; an
// invalid envelope gives the [*ValidationError] Validate gives. The data field is not looked
// into. A reader that goes on to read data (an encoder) calls Parse and Validate itself, so
// that the bytes are read once.
func ValidateWire(b []byte) error {
	var w Wire
	if err := w.Parse(b); err != nil {
		return err
	}
	return w.Validate()
}

// Validate applies [Validate]'s rules to the envelope w was parsed from: it gives what
// Validate gives for the decoded envelope, without reading the bytes again. The error keeps
// copies of the values it names, not views into the bytes.
func (w *Wire) Validate() error {
	return check(bytesString(w.EndDeviceID), bytesString(w.OrganizationID), w.OccurredAt, w.ProcessedAt)
}

// check holds the rules of Validate, for a decoded envelope and for one read from the wire.
// device and org may be views into bytes: an error copies what it keeps.
func check(device, org string, occurred, processed Timestamp) error {
	if err := checkDevice(device); err != nil {
		return err
	}
	if org == "" {
		return &ValidationError{Field: "organization_id", Reason: "is empty"}
	}
	if err := occurred.check("occurred_at"); err != nil {
		return err
	}
	return processed.check("processed_at")
}

// checkDevice checks that an end_device_id can be a subject token.
func checkDevice(id string) error {
	if ValidSubjectToken(id) {
		return nil
	}
	return &ValidationError{Field: "end_device_id", Value: strings.Clone(id), Reason: reasonNotToken}
}

// ValidSubjectToken reports whether s can be one token of a NATS subject, as end_device_id
// must: non-empty, without '.', '*', '>' and without whitespace or control characters.
func ValidSubjectToken(s string) bool {
	if s == "" {
		return false
	}
	ascii := true
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '.' || c == '*' || c == '>':
			return false
		case c <= ' ' || c == 0x7f:
			return false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	// Reject non-ASCII whitespace too (e.g. U+00A0, U+2028).
	return ascii || strings.IndexFunc(s, isUnicodeSpace) < 0
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
	if err := checkDevice(env.GetEndDeviceId()); err != nil {
		return "", err
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
