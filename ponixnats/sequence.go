package ponixnats

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ErrNotJetStreamMsg: the message carries no JetStream ack subject, so it has
// no stream sequence.
var ErrNotJetStreamMsg = errors.New("not a JetStream message")

// StreamSequence returns the stream sequence of a message delivered by a
// JetStream consumer: the message's identity in its stream, the same on every
// redelivery. It reads the ack subject without allocating, unlike
// jetstream.Msg.Metadata, which makes it cheap enough for the per-message hot
// path (e.g. as a de-duplication key).
func StreamSequence(m jetstream.Msg) (uint64, error) {
	s, err := ackSeqsOf(m)
	return s.stream, err
}

// consumerSequence returns the consumer (delivery) sequence of a delivered message: it grows
// with every delivery of one consumer, so a smaller one means the consumer was created anew.
func consumerSequence(m jetstream.Msg) (uint64, error) {
	s, err := ackSeqsOf(m)
	return s.consumer, err
}

// numDelivered returns how many times a delivered message was delivered, this delivery
// included, from its ack subject, without allocating.
func numDelivered(m jetstream.Msg) (uint64, error) {
	s, err := ackSeqsOf(m)
	return s.delivered, err
}

// ackSeqs are the numbers of a JetStream ack subject that a consumer reads per message.
type ackSeqs struct {
	delivered, stream, consumer uint64
}

// ackSeqsOf returns the numbers of m's ack subject: read when a [puller] fetched m (once per
// message, however many of them are asked for), or now for a message from elsewhere or whose
// subject could not be read then (stream sequences start at 1, so zero says so; the error is
// made again).
func ackSeqsOf(m jetstream.Msg) (ackSeqs, error) {
	if pm, ok := m.(*pulledMsg); ok && pm.seqs.stream != 0 {
		return pm.seqs, nil
	}
	return parseAckSeqs(m.Reply())
}

// parseAckSeqs reads the delivery count, stream sequence and consumer sequence of a JetStream
// ack subject in one pass, without allocating.
func parseAckSeqs[T string | []byte](reply T) (ackSeqs, error) {
	rest, pos, err := ackTokens(reply)
	if err != nil {
		return ackSeqs{}, err
	}
	for range pos - 1 {
		_, rest = cutDot(rest)
	}
	deliveredTok, rest := cutDot(rest)
	streamTok, rest := cutDot(rest)
	consumerTok, _ := cutDot(rest)
	var s ackSeqs
	if s.delivered, err = parseSeq(deliveredTok); err != nil {
		return ackSeqs{}, ackSeqError(reply, "delivery count", err)
	}
	if s.stream, err = parseSeq(streamTok); err != nil {
		return ackSeqs{}, ackSeqError(reply, "stream sequence", err)
	}
	if s.consumer, err = parseSeq(consumerTok); err != nil {
		return ackSeqs{}, ackSeqError(reply, "consumer sequence", err)
	}
	return s, nil
}

// cutDot is strings.Cut(s, ".") for a string or bytes, without its third result.
func cutDot[T string | []byte](s T) (before, after T) {
	for i := 0; i < len(s); i++ {
		if s[i] == '.' {
			return s[:i], s[i+1:]
		}
	}
	return s, s[len(s):]
}

// parseSeq is strconv.ParseUint(tok, 10, 64) with the usual numbers of an ack subject (1 to
// 19 digits) read inline; anything else goes to strconv, for its result and error.
func parseSeq[T string | []byte](tok T) (uint64, error) {
	if len(tok) == 0 || len(tok) > 19 { // 19 digits cannot overflow a uint64
		return strconv.ParseUint(string(tok), 10, 64)
	}
	var v uint64
	for i := 0; i < len(tok); i++ {
		d := tok[i] - '0'
		if d > 9 {
			return strconv.ParseUint(string(tok), 10, 64)
		}
		v = v*10 + uint64(d)
	}
	return v, nil
}

// ackSeqError says which number of the ack subject reply could not be read.
func ackSeqError[T string | []byte](reply T, what string, err error) error {
	return fmt.Errorf("%w: reply subject %q: %s: %w", ErrNotJetStreamMsg, reply, what, err)
}

// ackTokens returns the tokens of a JetStream ack subject after "$JS.ACK." and the index of the
// stream sequence among them.
func ackTokens[T string | []byte](reply T) (rest T, pos int, err error) {
	const prefix = "$JS.ACK."
	if len(reply) < len(prefix) || string(reply[:len(prefix)]) != prefix {
		return rest, 0, fmt.Errorf("%w: reply subject %q", ErrNotJetStreamMsg, reply)
	}
	rest = reply[len(prefix):]
	// v1: <stream>.<consumer>.<delivered>.<sseq>.<cseq>.<tm>.<pending>
	// v2: <domain>.<account hash>.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<tm>.<pending>[.<token>]
	n := 1
	for i := 0; i < len(rest); i++ {
		if rest[i] == '.' {
			n++
		}
	}
	switch {
	case n == 7:
		return rest, 3, nil
	case n >= 9:
		return rest, 5, nil
	default:
		return rest[:0], 0, fmt.Errorf("%w: reply subject %q has %d tokens", ErrNotJetStreamMsg, reply, n+2)
	}
}

// Delivery is where a delivered JetStream message stands: its stream sequence and how many
// times it was delivered, this delivery included.
type Delivery struct {
	StreamSeq uint64
	Delivered uint64
}

// DeliveryOf reads a delivered message's [Delivery] from its ack subject in one pass, without
// allocating (see [StreamSequence]). A Delivered above 1 means the message was
// delivered before (a crash, an expired AckWait, a restart): its row may already be stored.
func DeliveryOf(m jetstream.Msg) (Delivery, error) {
	s, err := ackSeqsOf(m)
	if err != nil {
		return Delivery{}, err
	}
	return Delivery{StreamSeq: s.stream, Delivered: s.delivered}, nil
}

// metadataOf parses a JetStream ack subject into a message's metadata, as
// jetstream.Msg.Metadata does.
func metadataOf(reply string) (*jetstream.MsgMetadata, error) {
	rest, pos, err := ackTokens(reply)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", jetstream.ErrNotJSMessage, err)
	}
	tokens := strings.Split(rest, ".")
	md := &jetstream.MsgMetadata{Stream: tokens[pos-3], Consumer: tokens[pos-2]}
	if pos == 5 && tokens[0] != "_" {
		md.Domain = tokens[0]
	}
	nums := [5]uint64{}
	for i, what := range [5]string{"delivery count", "stream sequence", "consumer sequence", "timestamp", "pending count"} {
		if nums[i], err = strconv.ParseUint(tokens[pos+i-1], 10, 64); err != nil {
			return nil, fmt.Errorf("%w: %w: reply subject %q: %s: %w", jetstream.ErrNotJSMessage, ErrNotJetStreamMsg, reply, what, err)
		}
	}
	md.NumDelivered, md.Sequence.Stream, md.Sequence.Consumer = nums[0], nums[1], nums[2]
	md.Timestamp, md.NumPending = time.Unix(0, int64(nums[3])), nums[4]
	return md, nil
}
