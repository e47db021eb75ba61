-- +goose NO TRANSACTION
-- +ponix template
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
--
-- On a cluster (the file is a template, see ponixclickhouse/migrate) the Distributed table is
-- sharded by stream_seq from here on, the key Ponix's writer shards by: a redelivered message
-- lands on the shard of its first copy, where FINAL collapses them. Both copies go through
-- Distributed tables sharded that way. There is no OPTIMIZE (18.16 cannot OPTIMIZE … ON
-- CLUSTER); FINAL collapses the copies, merges do later.

-- +goose Up
DROP TABLE IF EXISTS {{ local "processed_envelopes_dedup" }} {{ onCluster }}{{ sync }};

CREATE TABLE {{ local "processed_envelopes_dedup" }} {{ onCluster }} (
    organization_id String,
    end_device_id String,
    occurred_at DateTime,
    processed_at DateTime,
    data String,
    stream_seq UInt64 DEFAULT cityHash64(organization_id, end_device_id, occurred_at, processed_at, data)
) ENGINE = {{ engine "ReplacingMergeTree" "processed_envelopes_dedup" }}
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (organization_id, occurred_at, end_device_id, stream_seq);
{{ distributed "processed_envelopes_dedup" "stream_seq" }}

INSERT INTO processed_envelopes_dedup (organization_id, end_device_id, occurred_at, processed_at, data)
SELECT organization_id, end_device_id, occurred_at, processed_at, data FROM processed_envelopes;

RENAME TABLE {{ local "processed_envelopes" }} TO {{ local "processed_envelopes_predup" }}, {{ local "processed_envelopes_dedup" }} TO {{ local "processed_envelopes" }} {{ onCluster }};
{{ dropDistributed "processed_envelopes_dedup" }}
{{ redistribute "processed_envelopes" "stream_seq" }}
{{ distributed "processed_envelopes_predup" "rand()" }}

INSERT INTO processed_envelopes (organization_id, end_device_id, occurred_at, processed_at, data)
SELECT organization_id, end_device_id, occurred_at, processed_at, data FROM processed_envelopes_predup;

{{ dropDistributed "processed_envelopes_predup" }}
DROP TABLE {{ local "processed_envelopes_predup" }} {{ onCluster }}{{ sync }};

{{ optimize "processed_envelopes" }}

-- +goose Down
DROP TABLE IF EXISTS {{ local "processed_envelopes_undedup" }} {{ onCluster }}{{ sync }};

CREATE TABLE {{ local "processed_envelopes_undedup" }} {{ onCluster }} (
    organization_id String,
    end_device_id String,
    occurred_at DateTime,
    processed_at DateTime,
    data String
) ENGINE = {{ engine "MergeTree" "processed_envelopes_undedup" }}
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (organization_id, occurred_at, end_device_id);
{{ distributed "processed_envelopes_undedup" "rand()" }}

INSERT INTO processed_envelopes_undedup (organization_id, end_device_id, occurred_at, processed_at, data)
SELECT organization_id, end_device_id, occurred_at, processed_at, data FROM processed_envelopes FINAL;

RENAME TABLE {{ local "processed_envelopes" }} TO {{ local "processed_envelopes_dedupd" }}, {{ local "processed_envelopes_undedup" }} TO {{ local "processed_envelopes" }} {{ onCluster }};
{{ dropDistributed "processed_envelopes_undedup" }}
{{ redistribute "processed_envelopes" "rand()" }}

DROP TABLE {{ local "processed_envelopes_dedupd" }} {{ onCluster }}{{ sync }};
