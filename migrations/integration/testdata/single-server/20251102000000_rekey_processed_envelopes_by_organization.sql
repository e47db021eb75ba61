-- +goose NO TRANSACTION
-- Step 2 of the upstream schema: add organization_id and make it the first column of the
-- sorting key. ClickHouse cannot change a MergeTree's sorting key to lead with a new column,
-- so the table is rebuilt: create the new table, copy the rows (organization_id ''), swap the
-- names atomically with one RENAME, drop the old table. Down does the reverse and keeps the
-- rows too (dropping organization_id).
-- Each leftover of an interrupted run is dropped first, so the migration can be run again.

-- +goose Up
DROP TABLE IF EXISTS processed_envelopes_rekey;

CREATE TABLE processed_envelopes_rekey (
    organization_id String,
    end_device_id String,
    occurred_at DateTime,
    processed_at DateTime,
    data String
) ENGINE = MergeTree()
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (organization_id, occurred_at, end_device_id);

INSERT INTO processed_envelopes_rekey (organization_id, end_device_id, occurred_at, processed_at, data)
SELECT '', end_device_id, occurred_at, processed_at, data FROM processed_envelopes;

RENAME TABLE processed_envelopes TO processed_envelopes_prekey, processed_envelopes_rekey TO processed_envelopes;

DROP TABLE processed_envelopes_prekey;

-- +goose Down
DROP TABLE IF EXISTS processed_envelopes_unkey;

CREATE TABLE processed_envelopes_unkey (
    end_device_id String,
    occurred_at DateTime,
    processed_at DateTime,
    data String
) ENGINE = MergeTree()
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (occurred_at, end_device_id);

INSERT INTO processed_envelopes_unkey (end_device_id, occurred_at, processed_at, data)
SELECT end_device_id, occurred_at, processed_at, data FROM processed_envelopes;

RENAME TABLE processed_envelopes TO processed_envelopes_keyed, processed_envelopes_unkey TO processed_envelopes;

DROP TABLE processed_envelopes_keyed;
