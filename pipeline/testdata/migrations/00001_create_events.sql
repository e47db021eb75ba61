-- +goose NO TRANSACTION
-- The example's table. The sorting key ends with the pipeline's Key (the stream's creation time
-- and the stream sequence), so that a message stored twice collapses under FINAL. IF NOT EXISTS
-- lets the pipeline apply the migrations again to create a dropped table.

-- +goose Up
CREATE TABLE IF NOT EXISTS events (
    end_device_id String,
    occurred_at DateTime,
    stream_created_ns UInt64,
    stream_seq UInt64
) ENGINE = ReplacingMergeTree()
ORDER BY (end_device_id, occurred_at, stream_created_ns, stream_seq);

-- +goose Down
DROP TABLE events;
