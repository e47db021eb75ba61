-- +goose NO TRANSACTION
-- Step 1 of the upstream schema: the envelope table keyed by time and device.
-- data holds the envelope's google.protobuf.Struct as a JSON object in a String (ClickHouse
-- 18.16 has no JSON type); times are DateTime in UTC seconds (18.16 has no DateTime64).

-- +goose Up
CREATE TABLE processed_envelopes (
    end_device_id String,
    occurred_at DateTime,
    processed_at DateTime,
    data String
) ENGINE = MergeTree()
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (occurred_at, end_device_id);

-- +goose Down
DROP TABLE processed_envelopes;
