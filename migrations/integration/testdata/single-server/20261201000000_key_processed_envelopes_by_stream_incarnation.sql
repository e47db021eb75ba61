-- +goose NO TRANSACTION
-- Step 4 (Ponix): a stream deleted and created again starts its sequences at 1 again, so the
-- stream sequence alone no longer identifies a message: a new envelope could collapse into an
-- old row under FINAL. Add stream_created_ns, the creation time of the message's stream
-- (Unix nanoseconds, the same on every redelivery), to the sorting key just before
-- stream_seq. Rows stored before this step keep their stream_seq and get 0.
--
-- As in step 3, the table is rebuilt (a sorting key cannot gain a column in the middle), and
-- rows an older instance inserts into the old table while the copy runs are copied again after
-- the swap: the copies collapse (same key). Each leftover of an interrupted run is dropped
-- first.

-- +goose Up
DROP TABLE IF EXISTS processed_envelopes_incarnation;

CREATE TABLE processed_envelopes_incarnation (
    organization_id String,
    end_device_id String,
    occurred_at DateTime,
    processed_at DateTime,
    data String,
    stream_created_ns UInt64 DEFAULT 0,
    stream_seq UInt64 DEFAULT cityHash64(organization_id, end_device_id, occurred_at, processed_at, data)
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (organization_id, occurred_at, end_device_id, stream_created_ns, stream_seq);

INSERT INTO processed_envelopes_incarnation (organization_id, end_device_id, occurred_at, processed_at, data, stream_seq)
SELECT organization_id, end_device_id, occurred_at, processed_at, data, stream_seq FROM processed_envelopes;

RENAME TABLE processed_envelopes TO processed_envelopes_preincarnation, processed_envelopes_incarnation TO processed_envelopes;

INSERT INTO processed_envelopes (organization_id, end_device_id, occurred_at, processed_at, data, stream_seq)
SELECT organization_id, end_device_id, occurred_at, processed_at, data, stream_seq FROM processed_envelopes_preincarnation;

DROP TABLE processed_envelopes_preincarnation;

OPTIMIZE TABLE processed_envelopes FINAL;

-- +goose Down
DROP TABLE IF EXISTS processed_envelopes_unincarnation;

CREATE TABLE processed_envelopes_unincarnation (
    organization_id String,
    end_device_id String,
    occurred_at DateTime,
    processed_at DateTime,
    data String,
    stream_seq UInt64 DEFAULT cityHash64(organization_id, end_device_id, occurred_at, processed_at, data)
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (organization_id, occurred_at, end_device_id, stream_seq);

INSERT INTO processed_envelopes_unincarnation (organization_id, end_device_id, occurred_at, processed_at, data, stream_seq)
SELECT organization_id, end_device_id, occurred_at, processed_at, data, stream_seq FROM processed_envelopes FINAL;

RENAME TABLE processed_envelopes TO processed_envelopes_incarnated, processed_envelopes_unincarnation TO processed_envelopes;

DROP TABLE processed_envelopes_incarnated;
