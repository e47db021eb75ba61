package ponixnats

import "errors"

// Reason classifies why a message was terminated or dead-lettered. It is sent
// in the Ponix-Dlq-Reason header; count on it.
type Reason string

// Reasons used by this package. Processors may use their own values.
const (
	// ReasonDecode: the message payload could not be decoded.
	ReasonDecode Reason = "decode"
	// ReasonInvalid: the message decoded but failed validation.
	ReasonInvalid Reason = "invalid"
	// ReasonMaxDeliver: the processor asked for a redelivery but the message
	// already reached the consumer's MaxDeliver.
	ReasonMaxDeliver Reason = "max_deliver"
	// ReasonRejected: the sink rejected this one message (see [Rejection]).
	ReasonRejected Reason = "rejected"
	// ReasonPermanent: the sink reported an error that retrying cannot fix.
	ReasonPermanent Reason = "permanent_error"
)

// Sentinel errors; match with errors.Is.
var (
	// ErrServerUnreachable: the NATS server at the URL could not be reached.
	ErrServerUnreachable = errors.New("NATS server unreachable")
	// ErrAuthorization: the server refused the credentials.
	ErrAuthorization = errors.New("NATS authorization refused")
	// ErrTLS: the TLS handshake or TLS configuration failed.
	ErrTLS = errors.New("NATS TLS failure")
	// ErrStreamConfigMismatch: an existing stream differs in a field JetStream
	// cannot update. The error is a *StreamMismatchError.
	ErrStreamConfigMismatch = errors.New("stream configuration mismatch")
	// ErrDecode: a message payload could not be decoded.
	ErrDecode = errors.New("decode failed")
	// ErrInvalidConfig: a configuration value is invalid.
	ErrInvalidConfig = errors.New("invalid configuration")
	// ErrDeadLetter: publishing to the dead-letter stream failed.
	ErrDeadLetter = errors.New("dead-letter publish failed")
	// ErrMaxDeliver: the message reached MaxDeliver (the Ponix-Dlq-Error of
	// messages dead-lettered with ReasonMaxDeliver wraps it).
	ErrMaxDeliver = errors.New("maximum deliveries reached")
)

// ErrServerTooOld is wrapped by [NewConsumer]'s error when the server lacks what the
// configuration needs ([AckPerBatch] needs nats-server 2.14 or later).
var ErrServerTooOld = errors.New("nats-server too old")
