package ponixnats

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ponix-go/ponix/runner/backoff"
)

// Consumer defaults.
const (
	// DefaultBatchSize suits sinks that pay per insert, such as ClickHouse, which wants
	// thousands of rows per INSERT.
	DefaultBatchSize    = 10_000
	DefaultMaxWait      = 5 * time.Second
	DefaultAckWait      = 30 * time.Second
	DefaultMaxDeliver   = 10
	DefaultNakDelay     = time.Second
	DefaultMaxNakDelay  = time.Minute
	DefaultDrainTimeout = 30 * time.Second
	// DefaultOwnerBucket is the key-value bucket in which instances of an [AckPerBatch]
	// consumer record which of them owns the durable.
	DefaultOwnerBucket = "ponixnats_owners"
)

// AckMode says how a [Consumer] acknowledges what its processor decided.
type AckMode int

const (
	// AckPerMessage acknowledges every message on its own (JetStream's AckExplicit policy):
	// one ack, nak or term per message. Instances that share the durable split its messages
	// and work side by side. It fits processors that decide per message — a nak that retries
	// one message later while the others go on — and servers older than nats-server 2.14.
	AckPerMessage AckMode = iota
	// AckPerBatch acknowledges a batch with one ack of its last message (JetStream's AckAll
	// policy: an ack covers every earlier message delivered to the consumer). The broker's
	// work per message, its largest cost, drops to a fraction. Because an ack covers every
	// earlier message, one instance at a time owns the durable: it holds a lease, a key in
	// the key-value bucket [ConsumerConfig].OwnerBucket that it writes again every third of
	// OwnerTTL; the others stand by and one of them takes over when the key has not been
	// written for OwnerTTL (the owner died, stalled or was cut off) or at once when the owner
	// gave it up at a stop. A starting instance takes the key at once. A new owner first has
	// the server deliver again everything the previous one left unacknowledged (a consumer
	// reset to where [ConsumerConfig].ResumeAt says, by default the ack floor), and an owner
	// processes only deliveries whose consumer sequences continue its own without a gap
	// (another client's pull, a reset by another owner, make it reset or stand by), so that
	// no ack of its own ever covers a message it did not process. A batch with a message that must be
	// delivered again (a nak, a release) is acknowledged up to that message, and delivery
	// rewinds to it after its delay: the durable waits for it, messages after it are
	// delivered again, and those already dead-lettered are not published twice (within this
	// process's memory). Needs nats-server 2.14 or later.
	AckPerBatch
)

// String returns "message" or "batch", as [ParseAckMode] reads them.
func (m AckMode) String() string {
	switch m {
	case AckPerMessage:
		return "message"
	case AckPerBatch:
		return "batch"
	}
	return fmt.Sprintf("AckMode(%d)", int(m))
}

// ParseAckMode reads "message" ([AckPerMessage]) or "batch" ([AckPerBatch]).
func ParseAckMode(s string) (AckMode, error) {
	switch s {
	case "message":
		return AckPerMessage, nil
	case "batch":
		return AckPerBatch, nil
	}
	return 0, fmt.Errorf("%w: ack mode %q: want \"batch\" or \"message\"", ErrInvalidConfig, s)
}

// Internal timings of the fetch loop.
const (
	// pullExpiry bounds one pull request; a batch is filled by re-issuing requests until
	// MaxWait is used up, so that a stop never waits more than this for a request in flight.
	pullExpiry = time.Second
	logEvery   = 10 * time.Second
	// infoEvery is how often the consumer reads its own info (ack floor) while fetching works.
	infoEvery = 5 * time.Second
	// unhealthyAfter: fetching that has failed this long makes [Consumer.Health] report it.
	unhealthyAfter = 3 * time.Second
)

// fetchRetry starts the back-off of a failed fetch or of creating a deleted consumer again,
// sleeping its waits with sleep.
func fetchRetry(sleep func(ctx context.Context, d time.Duration) error) *backoff.Backoff {
	return backoff.Policy{Initial: 100 * time.Millisecond, Max: 5 * time.Second, Sleep: sleep}.Start()
}

// ConsumerConfig configures a [Consumer]. Stream and Durable are required; other zero values
// take the defaults noted per field.
type ConsumerConfig struct {
	// Stream to consume (required).
	Stream string
	// Durable consumer name (required). Instances that share a Durable split the work.
	Durable string
	// FilterSubjects restricts the consumer to these subjects (wildcards allowed); empty
	// means the whole stream.
	FilterSubjects []string
	// BatchSize is the most messages fetched (and handed to the processor) at once. Default
	// [DefaultBatchSize].
	BatchSize int
	// MaxWait is the longest a fetch waits for BatchSize messages before handing over what it
	// has. Default [DefaultMaxWait].
	MaxWait time.Duration
	// FetchMaxBytes bounds the bytes of one fetch (0: no byte bound), so the memory held per
	// batch is bounded whatever the message sizes.
	FetchMaxBytes int
	// MaxAckPending bounds messages delivered but not yet acknowledged. Default: the larger
	// of 1000 and 2*BatchSize.
	MaxAckPending int
	// AckWait is how long the server waits for an ack before redelivering. It should exceed
	// MaxWait plus the slowest processing; slow batches are kept alive with in-progress acks
	// every AckWait/3. Default [DefaultAckWait].
	AckWait time.Duration
	// MaxDeliver is the most times the processor may nak one message (an [ActionNak], its
	// verdict on that message) before the message is dead-lettered instead (reason
	// [ReasonMaxDeliver]); -1 means unlimited. Default [DefaultMaxDeliver].
	//
	// Only a record can spend a record's deliveries: a release ([ActionRelease]: a sink fault,
	// a stop during a hold, a processor that failed as a whole) and a delivery that ended
	// without an answer (a crash, a SIGKILL, an expired AckWait) never count. JetStream's own
	// max_deliver counts every delivery whatever ended it, so the durable consumer is created
	// (and an existing one updated) with an unlimited max_deliver, and the consumer counts the
	// naks itself, in memory: a restart starts the counts again, erring on the side of one more
	// delivery.
	MaxDeliver int
	// BackOff is the server's redelivery schedule for messages whose AckWait expired (it does
	// not apply to Nak). Optional.
	BackOff []time.Duration
	// NakDelay is the base delay of a Nak without an explicit delay; it doubles with every
	// delivery of the message up to MaxNakDelay. Default [DefaultNakDelay].
	NakDelay time.Duration
	// MaxNakDelay caps the growing Nak delay. Default [DefaultMaxNakDelay].
	MaxNakDelay time.Duration
	// DrainTimeout bounds how long the batches in hand may still be processed and
	// acknowledged after Run's context ended: one deadline for all of them. Default
	// [DefaultDrainTimeout].
	DrainTimeout time.Duration
	// Ack says how messages are acknowledged: [AckPerMessage] (the zero value) or
	// [AckPerBatch]. An existing durable consumer created with the other mode is created
	// anew (JetStream cannot change a consumer's ack policy in place) where ResumeAt says,
	// which the consumer logs in one line.
	Ack AckMode
	// OwnerBucket is the JetStream key-value bucket in which the instances of an
	// [AckPerBatch] consumer record which of them owns the durable (one key per stream and
	// durable, "<stream>.<durable>", naming the owner by host, pid and a random suffix). It is
	// created (one revision per key, as many replicas as the stream) when missing. Default
	// [DefaultOwnerBucket]. Not used by [AckPerMessage].
	OwnerBucket string
	// OwnerTTL is how long an [AckPerBatch] owner's key may go unwritten before a standby
	// takes the durable over: the longest a dead owner's messages wait. The owner writes it
	// every third of OwnerTTL, also while a batch is held by a failing sink (another instance
	// would find the same sink). Default AckWait. Not used by [AckPerMessage].
	OwnerTTL time.Duration
	// PullOnSharedConnection sends the consumer's pull requests and reads the messages they
	// bring on the nats.Conn of its JetStream context, as nats.go's Fetch does. By default
	// the consumer opens a connection of its own for them (to the server that nats.Conn is
	// connected to, with its TLS settings, credentials, dialer and inbox prefix; named after
	// it with " (pulls)"), and reads the messages there without nats.go's work per message:
	// in ponix-bench 40–48% less CPU for the consumer, and more envelopes per second.
	// Acknowledgements and everything else stay on the nats.Conn. Set it where one more
	// connection per consumer is not welcome (a connection limit) or cannot be made as the
	// nats.Conn was; a websocket URL or proxy path always pulls on the nats.Conn.
	PullOnSharedConnection bool
	// DeadLetter configures the dead-letter stream.
	DeadLetter DeadLetterConfig
	// EnsureStream, if not nil, is the configuration the stream is created with when the
	// consumer finds it missing — at start or while running (an operator's `nats stream rm`).
	// The new stream starts its sequences again at 1; [Batch].Stream (its creation time) tells the two
	// apart. Nil: a missing stream is reported ([Consumer.Health]) and waited for.
	EnsureStream *StreamConfig
	// ResumeAt, if not nil, says where a durable consumer that has to be created (it does not
	// exist, or was deleted while running) starts: the first stream sequence to deliver (0 or
	// 1: the start of the stream). A sink that knows what it stored can answer precisely (e.g.
	// the sequence after the last contiguous stored one). The default resumes after the ack
	// floor last read from the consumer before it disappeared, or at the start of the stream
	// when none was read.
	ResumeAt func(ctx context.Context, r ResumeInfo) (uint64, error)
	// Logger for anomalies and errors (never per message at info level). Default
	// slog.Default().
	Logger *slog.Logger
}

// ResumeInfo is what [ConsumerConfig].ResumeAt is told when a durable consumer is created.
type ResumeInfo struct {
	// Stream and StreamCreated identify the stream and its incarnation.
	Stream        string
	StreamCreated time.Time
	// FirstSeq and LastSeq are the stream's first and last sequence now.
	FirstSeq, LastSeq uint64
	// AckFloor is the consumer's stream ack floor as last read before it disappeared: every
	// message up to it was acknowledged. Zero when unknown (a first start).
	AckFloor uint64
}

func (c ConsumerConfig) withDefaults() ConsumerConfig {
	if c.BatchSize <= 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.MaxWait <= 0 {
		c.MaxWait = DefaultMaxWait
	}
	if c.MaxAckPending <= 0 {
		c.MaxAckPending = max(1000, 2*c.BatchSize)
	}
	if c.AckWait <= 0 {
		c.AckWait = DefaultAckWait
	}
	if c.MaxDeliver == 0 {
		c.MaxDeliver = DefaultMaxDeliver
	}
	if c.NakDelay <= 0 {
		c.NakDelay = DefaultNakDelay
	}
	if c.MaxNakDelay <= 0 {
		c.MaxNakDelay = DefaultMaxNakDelay
	}
	if c.MaxNakDelay < c.NakDelay {
		c.MaxNakDelay = c.NakDelay
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = DefaultDrainTimeout
	}
	if c.Ack == AckPerBatch {
		if c.OwnerBucket == "" {
			c.OwnerBucket = DefaultOwnerBucket
		}
		if c.OwnerTTL <= 0 {
			c.OwnerTTL = c.AckWait
		}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	c.DeadLetter = c.DeadLetter.withDefaults(c.Stream)
	return c
}

// TakeoverAfter is the shortest time in which the messages of a batch this consumer holds may
// be given to another instance, counted from the moment this process stops making progress (a
// stall, a pause, a frozen VM): its renewals — in-progress acks ([AckPerMessage]), the owner
// key ([AckPerBatch]) — come every third of AckWait or OwnerTTL, so two thirds of it (defaults
// applied). A sink whose write of a batch could still commit after that, once the process goes
// on, stores a second copy of rows another instance may have stored meanwhile: it should give
// up a write it waited on for less than this (the pipeline package has ClickHouse give up an
// insert after half of it).
func (c ConsumerConfig) TakeoverAfter() time.Duration {
	c = c.withDefaults()
	ttl := c.AckWait
	if c.Ack == AckPerBatch {
		ttl = c.OwnerTTL
	}
	return ttl * 2 / 3
}

func (c ConsumerConfig) validate() error {
	if c.Stream == "" {
		return fmt.Errorf("%w: consumer Stream is required", ErrInvalidConfig)
	}
	if c.Durable == "" {
		return fmt.Errorf("%w: consumer Durable is required (instances sharing a durable split its messages: choose a name of your application's own)", ErrInvalidConfig)
	}
	if !ValidName(c.Stream) {
		return fmt.Errorf("%w: consumer Stream %q is not a valid stream name", ErrInvalidConfig, c.Stream)
	}
	if !ValidName(c.Durable) {
		return fmt.Errorf("%w: consumer Durable %q is not a valid consumer name", ErrInvalidConfig, c.Durable)
	}
	for _, s := range c.FilterSubjects {
		if err := validSubject(s); err != nil {
			return fmt.Errorf("%w: consumer FilterSubjects: %w", ErrInvalidConfig, err)
		}
	}
	if c.MaxAckPending < c.BatchSize {
		return fmt.Errorf("%w: MaxAckPending (%d) must be at least BatchSize (%d)", ErrInvalidConfig, c.MaxAckPending, c.BatchSize)
	}
	if c.MaxDeliver < -1 {
		return fmt.Errorf("%w: MaxDeliver must be -1 (unlimited) or positive, got %d", ErrInvalidConfig, c.MaxDeliver)
	}
	if c.AckWait <= c.MaxWait {
		return fmt.Errorf("%w: AckWait (%s) must be longer than MaxWait (%s)", ErrInvalidConfig, c.AckWait, c.MaxWait)
	}
	if c.FetchMaxBytes < 0 {
		return fmt.Errorf("%w: FetchMaxBytes must not be negative, got %d", ErrInvalidConfig, c.FetchMaxBytes)
	}
	switch c.Ack {
	case AckPerMessage:
		if c.OwnerBucket != "" || c.OwnerTTL != 0 {
			return fmt.Errorf("%w: OwnerBucket and OwnerTTL are for Ack: AckPerBatch; this consumer acknowledges per message", ErrInvalidConfig)
		}
	case AckPerBatch:
		if !validBucket(c.OwnerBucket) {
			return fmt.Errorf("%w: OwnerBucket %q: a bucket name is letters, digits, '-' and '_'", ErrInvalidConfig, c.OwnerBucket)
		}
		if c.OwnerTTL < time.Second {
			return fmt.Errorf("%w: OwnerTTL (%s) must be at least a second", ErrInvalidConfig, c.OwnerTTL)
		}
	default:
		return fmt.Errorf("%w: Ack: unknown ack mode %d", ErrInvalidConfig, int(c.Ack))
	}
	if c.EnsureStream != nil && c.EnsureStream.Name != c.Stream {
		return fmt.Errorf("%w: EnsureStream.Name %q differs from Stream %q", ErrInvalidConfig, c.EnsureStream.Name, c.Stream)
	}
	return nil
}

// jetStreamConfig is the server-side configuration of the durable consumer. Its max_deliver is
// unlimited whatever MaxDeliver says: JetStream counts deliveries that ended because the sink
// failed or the process stopped, which must never make it give up on a message.
func (c ConsumerConfig) jetStreamConfig() jetstream.ConsumerConfig {
	cc := jetstream.ConsumerConfig{
		Durable:       c.Durable,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       c.AckWait,
		MaxDeliver:    -1,
		BackOff:       c.BackOff,
		MaxAckPending: c.MaxAckPending,
	}
	if c.Ack == AckPerBatch {
		cc.AckPolicy = jetstream.AckAllPolicy
		// A priority group that no pull of another release or client names: their pulls are
		// refused (400), so nothing but this release's owner is delivered to. With no
		// min_pending in the pulls, the overflow policy delivers as if there were none.
		cc.PriorityPolicy = jetstream.PriorityPolicyOverflow
		cc.PriorityGroups = []string{ownerGroup}
	}
	switch len(c.FilterSubjects) {
	case 0:
	case 1:
		cc.FilterSubject = c.FilterSubjects[0]
	default:
		cc.FilterSubjects = c.FilterSubjects
	}
	return cc
}

// ownerGroup is the priority group the pulls of an [AckPerBatch] consumer name.
const ownerGroup = "ponixnats-lease"

// validBucket reports whether b is a valid key-value bucket name.
func validBucket(b string) bool {
	if b == "" {
		return false
	}
	for _, r := range b {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_'
		if !ok {
			return false
		}
	}
	return true
}

// sameAckMode reports whether an existing durable consumer's settings are those of the mode
// of want: the ack policy and the priority groups cannot be changed in place (a durable of an
// earlier release, owned through a pinned priority group, is created anew without it).
func sameAckMode(have, want jetstream.ConsumerConfig) bool {
	return have.AckPolicy == want.AckPolicy && have.PriorityPolicy == want.PriorityPolicy &&
		slices.Equal(have.PriorityGroups, want.PriorityGroups)
}
