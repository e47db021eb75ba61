-- +goose NO TRANSACTION
-- The readings table. A ReplacingMergeTree whose sorting key ends with the message's place in
-- the stream (the stream's creation time and the stream sequence): a message delivered twice
-- and stored twice collapses into one row; read with FINAL to see no copy before the merge.
-- at is a DateTime (UTC seconds), which ClickHouse 18.16 and 25.x both have.

-- +goose Up
CREATE TABLE readings (
    sensor_id String,
    at DateTime,
    value Float64,
    unit String,
    stream_created_ns UInt64,
    stream_seq UInt64
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(at)
ORDER BY (sensor_id, at, stream_created_ns, stream_seq);

-- +goose Down
DROP TABLE readings;
