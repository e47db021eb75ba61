// Package ponixnats moves messages out of NATS JetStream in batches with an
// explicit, per-message acknowledgement decision.
//
// It holds:
//
//   - [Connect]: a client connection with a name, a connect timeout, reconnect
//     forever with capped exponential backoff and jitter (logged through
//     log/slog), and the usual authentication methods (user/password, token,
//     NKey seed, .creds file, TLS). A failed first connect says whether the
//     server could not be reached ([ErrServerUnreachable]), refused the
//     credentials ([ErrAuthorization]) or failed TLS ([ErrTLS]).
//   - [EnsureStream]: create a stream or bring an existing one in line with the
//     wanted configuration; immutable differences are reported as a
//     [*StreamMismatchError] naming the field.
//   - [Consumer]: a durable pull consumer (Stream and Durable required) that fetches up to
//     BatchSize messages or waits at most MaxWait, hands the batch (a [Batch], which says which
//     stream incarnation it comes from; the context carries cancellation only) to a [Processor] and applies
//     the [Result]: Ack, Nak (with a growing delay), Term, or DeadLetter (publish a copy with
//     the reason in headers to a dead-letter stream, then Term). A durable consumer (or stream)
//     deleted under it is created again.
//   - Store processors ([NewStoreProcessor], [NewProtoStoreProcessor]): your store function
//     gets each batch in one call; only a record that can never be stored is dead-lettered
//     ([Rejection], [RecordFault], bisecting), a failing sink holds the batch ([Hold]).
//     They are made of stages over one interface, [Store]: [HoldStage] over [IsolateStage]
//     over your store, optionally observed by an [ObserveStage] ([WithObserver]); compose
//     them yourself for items of your own.
//   - [ProtoProcessor]: decode every message into a protobuf type and decide yourself; the
//     ones that do not decode are dead-lettered.
//   - Inspecting a dead-letter stream and replaying its messages is package
//     github.com/ponix-go/ponix/ponixnats/dlqadmin; the headers it reads are defined here
//     ([HeaderDLQReason] and the others).
//   - Envelope code for ponix's envelope.v1.ProcessedEnvelope: [NewEnvelopeProducer],
//     [NewEnvelopeProcessor] and [NewEnvelopeWireProcessor]; the envelope rules themselves are
//     in github.com/ponix-go/ponix/envelope.
//
// # Build tag
//
// The envelope code (and the dependency on the envelope protobuf module) is
// compiled by default. Build with -tags ponix_noenvelope to strip it and
// keep only the generic library.
//
// # Delivery rules
//
// A message is acknowledged only when the processor says so. A processor error
// or panic releases the whole batch ([ActionRelease]: redelivered later, with no
// verdict on its messages). An index the processor's Result does not mention is
// released too, counted and logged at warn level; an index mentioned twice keeps
// the most conservative decision (see [Result]). Only a record can spend a
// record's deliveries: the MaxDeliver-th Nak of a message (the processor's
// verdict on it) turns into a DeadLetter with reason [ReasonMaxDeliver], while
// releases, stops and crashes never count, and the durable's JetStream
// max_deliver is unlimited so that JetStream never gives up on a message.
//
// Test helpers are modules of their own, so that this module depends on no server:
// github.com/ponix-go/ponix/ponixnats/natstest (an embedded JetStream server per test) and
// github.com/ponix-go/ponix/ponixnats/embedded (the same server for a program's local default).
package ponixnats
