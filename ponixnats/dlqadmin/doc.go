// Package dlqadmin administers a dead-letter stream offline: count, filter and
// read its dead letters, and replay them to their original subjects once what
// made them fail is fixed.
//
// It works on any JetStream stream whose messages carry the headers
// dead-lettering adds (Ponix-Dlq-*, Ponix-Original-*; see
// [ponixnats.HeaderDLQReason] and the constants next to it), such as the
// "<stream>_dlq" stream a [ponixnats.Consumer] writes. It is generic: no
// envelope types. It is kept out of package ponixnats, which holds the consumer
// hot path (including dead-letter publishing), so that programs that only
// consume do not carry it.
//
// [Open] opens a dead-letter stream as a [Stream]. Reading ([Stream.Get],
// [Stream.All], [Stream.Summary]) is read-only: direct gets and ordered
// consumers (ephemeral, in memory, no acks, deleted when done), so it leaves no
// durable state and does not disturb running consumers. [Stream.Replay]
// republishes the original bytes with a Nats-Msg-Id derived from the dead
// letter and a [ponixnats.HeaderReplayCount] header, then deletes the dead
// letter; running it again within the original stream's duplicate window is
// harmless.
//
// The ponix-all-in-one binary wraps this package as
// "ponix-all-in-one dlq list|show|replay".
package dlqadmin
