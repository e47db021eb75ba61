// Package ponixclickhouse writes rows into ClickHouse over the native protocol: a client
// ([Open], [Ping], [ServerVersion]) whose configuration errors say which setting is wrong, a
// generic batching core ([BatchWriter] with an [Encoder] per row type) that sends one native
// batch INSERT with an explicit column list per Write call, and the writer for
// envelope.v1.ProcessedEnvelope ([NewEnvelopeWriter]) built on that core. [Columns] declares a
// row type's columns once — each name next to the function that gives its value — and makes the
// Encoder; a value a column cannot hold is a [*ColumnError] naming the column.
//
// The package works with ClickHouse 18.16 (Debian bookworm) and 25.x. On 18.16 an INSERT with
// inline VALUES hangs and the HTTP protocol is refused, so every insert here goes through
// PrepareBatch with an explicit column list over the native protocol.
//
// # What a failed Write leaves behind
//
// A Write encodes every row first; a row that cannot be encoded (nil timestamp, a number JSON
// cannot hold, ...) fails the whole call with a [*RowError] before anything is sent, so the
// caller can dead-letter that row and write the others again.
//
// The rows of one Write go to the server as a single native block in a single INSERT query.
// ClickHouse commits an INSERT into a MergeTree table only after it has received the whole
// block (up to max_insert_block_size rows, 1,048,576 by default): if the connection breaks or
// the server rejects the block (unknown table, type mismatch, too many parts, ...) before that,
// nothing of it is written and a retry cannot duplicate. The block is split into one part per
// partition (per month for processed_envelopes) and those parts are committed one after the
// other, so a server failure in the middle of writing a block that spans several months can
// leave the earlier months' parts committed. There is also the classic window of any remote
// commit: if the connection drops after the server committed but before it acknowledged, Write
// returns an error although the rows are stored, and a retry writes them again. Plain
// MergeTree has no insert deduplication on 18.16 (Replicated*MergeTree has insert_deduplicate);
// readers that need exactly-once should deduplicate (e.g. ReplacingMergeTree or a GROUP BY on
// the key).
//
// # Rows or sink
//
// [Classify] says what a failed write says: [ClassRow] (one row can never be stored: set it
// aside), [ClassData] (the server refused the data: one or more rows may be at fault: split
// the batch to find them) or a sink fault (server down, credentials, schema, disk, quotas,
// read-only replica, or anything unknown): keep the rows and write them again once the sink is
// fixed. [BatchWriter.CheckSchema] names what a table lacks.
package ponixclickhouse
