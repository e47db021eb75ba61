// Package pipeline moves messages from a NATS JetStream stream into a ClickHouse table, with
// Ponix's delivery rules, as one value a service runs:
//
//   - each message becomes a [Record] (its decoded value, its stream incarnation and stream
//     sequence: the row's de-duplication key) and then a row, written in one native INSERT per
//     batch and acknowledged only once ClickHouse has it;
//   - a record that can never be stored (undecodable, invalid, a value a column refuses) is
//     dead-lettered alone with its reason; a failing ClickHouse holds the batch in the stream
//     (ponixnats.Hold) until it takes it, never dead-letters it;
//   - the database is created when missing and the migrations applied; a table that does not
//     fit the writer is named (readiness) and waited for, and one dropped while running is
//     created again from the migrations;
//   - a durable consumer or stream deleted while running is created again, resuming after the
//     rows already stored;
//   - [Pipeline.Checks] and [Pipeline.ServeHTTP] report readiness.
//
// It composes the ponixnats and ponixclickhouse libraries, which remain usable alone.
package pipeline
