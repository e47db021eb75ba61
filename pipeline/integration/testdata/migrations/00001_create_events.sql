-- +goose NO TRANSACTION
-- The test pipeline's table. A ReplacingMergeTree whose sorting key is the message's place in
-- the stream (the stream's creation time and the stream sequence, the pipeline's Key): a message
-- stored twice collapses under FINAL. IF NOT EXISTS lets the pipeline apply it again to create a
-- dropped table.

-- +goose Up
CREATE TABLE IF NOT EXISTS events (
    end_device_id String,
    organization_id String,
    occurred_at DateTime,
    stream_created_ns UInt64,
    stream_seq UInt64
) ENGINE = ReplacingMergeTree()
ORDER BY (stream_created_ns, stream_seq);

-- +goose Down
DROP TABLE events;
