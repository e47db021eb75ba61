package ponixnats

import "sync/atomic"

// Stats are cumulative counters of a [Consumer].
type Stats struct {
	Batches  uint64 // batches handed to the processor
	Messages uint64 // messages handed to the processor
	Acked    uint64
	Naked    uint64 // nak'd by the processor's verdict (counts towards MaxDeliver)
	// Released counts messages given back for redelivery without a verdict on them (the sink
	// failed, the consumer stopped, the processor failed as a whole).
	Released         uint64
	Termed           uint64 // terminated without dead-lettering
	DeadLettered     uint64 // published to the dead-letter stream, then terminated
	DeadLetterFailed uint64 // dead-letter publish failed; the message was nak'd
	MaxDelivered     uint64 // messages dead-lettered at MaxDeliver (the processor's MaxDeliver-th Nak)
	// Redelivered counts messages handed to the processor that had been delivered before
	// (a restart, a crash, an expired AckWait, a nak or a release).
	Redelivered     uint64
	Unmentioned     uint64 // indices the Result did not mention (released)
	Conflicts       uint64 // indices the Result set more than once
	OutOfRange      uint64 // Result indices beyond the batch (ignored)
	ProcessorErrors uint64 // batches released because the processor failed or panicked
	FetchErrors     uint64
	AckErrors       uint64 // failed ack/nak/term sends
	// Recoveries counts the times the durable consumer (and, with
	// ConsumerConfig.EnsureStream, the stream) was found missing and created again.
	Recoveries uint64
	// Takeovers counts the times this instance became the owner of an [AckPerBatch] durable
	// consumer and rewound its delivery to what an earlier owner left unacknowledged.
	Takeovers uint64
	// Rewinds counts the times an [AckPerBatch] consumer rewound its delivery to a message
	// that must be delivered again (a nak, a release).
	Rewinds uint64
	// Rewound counts messages fetched before a rewind and dropped unprocessed: they are
	// delivered again.
	Rewound uint64
	// Expired counts messages of batches acknowledged per message that were dropped
	// unprocessed because their AckWait may have run out while they waited (the process
	// stalled): the server delivers them again, maybe to another instance.
	Expired uint64
}

type stats struct {
	batches, messages, acked, naked, released, termed, deadLettered, deadLetterFailed, maxDelivered,
	redelivered, unmentioned, conflicts, outOfRange, processorErrors, fetchErrors, ackErrors,
	recoveries, takeovers, rewinds, rewound, expired atomic.Uint64
}

// Stats returns a snapshot of the counters.
func (c *Consumer) Stats() Stats {
	s := &c.st
	return Stats{
		Batches: s.batches.Load(), Messages: s.messages.Load(), Acked: s.acked.Load(), Naked: s.naked.Load(), Released: s.released.Load(),
		Termed: s.termed.Load(), DeadLettered: s.deadLettered.Load(), DeadLetterFailed: s.deadLetterFailed.Load(),
		MaxDelivered: s.maxDelivered.Load(), Redelivered: s.redelivered.Load(), Unmentioned: s.unmentioned.Load(), Conflicts: s.conflicts.Load(),
		OutOfRange: s.outOfRange.Load(), ProcessorErrors: s.processorErrors.Load(),
		FetchErrors: s.fetchErrors.Load(), AckErrors: s.ackErrors.Load(),
		Recoveries: s.recoveries.Load(), Takeovers: s.takeovers.Load(), Rewinds: s.rewinds.Load(), Rewound: s.rewound.Load(),
		Expired: s.expired.Load(),
	}
}
