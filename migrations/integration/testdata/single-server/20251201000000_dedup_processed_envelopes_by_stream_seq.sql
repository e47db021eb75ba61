-- +goose NO TRANSACTION
-- Step 3 (Ponix): effectively-once storage. Add stream_seq, the JetStream stream sequence of
-- the message a row came from, as the last column of the sorting key, and make the table a
-- ReplacingMergeTree: a redelivered message (an ack lost after a committed insert, a consumer
-- killed mid-batch, a NATS failover) is stored again with the same key, and the copies
-- collapse. Queries that must not see a copy before the background merge read with FINAL:
--     SELECT ... FROM processed_envelopes FINAL WHERE ...
-- Rows without a sequence (rows of the previous schema, or inserts that leave the column out)
-- get a hash of their content as stream_seq, so identical copies of them collapse too.
--
-- ClickHouse cannot change a table's engine or add a column in the middle of its sorting key,
-- so the table is rebuilt as in step 2. Rows that an older instance inserts into the old table
-- while the copy runs are copied again after the swap; the copies collapse (same key), and the
-- OPTIMIZE merges them at once. Each leftover of an interrupted run is dropped first.

-- +goose Up
DROP TABLE IF EXISTS processed_envelopes_dedup;

CREATE TABLE processed_envelopes_dedup (
    organization_id String,
    end_device_id String,
    occurred_at DateTime,
    processed_at DateTime,
    data String,
    stream_seq UInt64 DEFAULT cityHash64(organization_id, end_device_id, occurred_at, processed_at, data)
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (organization_id, occurred_at, end_device_id, stream_seq);

INSERT INTO processed_envelopes_dedup (organization_id, end_device_id, occurred_at, processed_at, data)
SELECT organization_id, end_device_id, occurred_at, processed_at, data FROM processed_envelopes;

RENAME TABLE processed_envelopes TO processed_envelopes_predup, processed_envelopes_dedup TO processed_envelopes;

INSERT INTO processed_envelopes (organization_id, end_device_id, occurred_at, processed_at, data)
SELECT organization_id, end_device_id, occurred_at, processed_at, data FROM processed_envelopes_predup;

DROP TABLE processed_envelopes_predup;

OPTIMIZE TABLE processed_envelopes FINAL;

-- +goose Down
DROP TABLE IF EXISTS processed_envelopes_undedup;

CREATE TABLE processed_envelopes_undedup (
    organization_id String,
    end_device_id String,
    occurred_at DateTime,
    processed_at DateTime,
    data String
) ENGINE = MergeTree()
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (organization_id, occurred_at, end_device_id);

INSERT INTO processed_envelopes_undedup (organization_id, end_device_id, occurred_at, processed_at, data)
SELECT organization_id, end_device_id, occurred_at, processed_at, data FROM processed_envelopes FINAL;

RENAME TABLE processed_envelopes TO processed_envelopes_dedupd, processed_envelopes_undedup TO processed_envelopes;

DROP TABLE processed_envelopes_dedupd;
