-- +goose NO TRANSACTION
-- +ponix template
-- Step 2 of the upstream schema: add organization_id and make it the first column of the
-- sorting key. ClickHouse cannot change a MergeTree's sorting key to lead with a new column,
-- so the table is rebuilt: create the new table, copy the rows (organization_id ''), swap the
-- names atomically with one RENAME, drop the old table. Down does the reverse and keeps the
-- rows too (dropping organization_id).
-- Each leftover of an interrupted run is dropped first, so the migration can be run again.
--
-- On a cluster (the file is a template, see ponixclickhouse/migrate) the tables that hold rows
-- are the shard-local ones (local "…"), the copy goes through Distributed tables (so every
-- row lands on a shard, synchronously), and the Distributed table processed_envelopes is made
-- anew over the rebuilt local table (redistribute).

-- +goose Up
DROP TABLE IF EXISTS {{ local "processed_envelopes_rekey" }} {{ onCluster }}{{ sync }};

CREATE TABLE {{ local "processed_envelopes_rekey" }} {{ onCluster }} (
    organization_id String,
    end_device_id String,
    occurred_at DateTime,
    processed_at DateTime,
    data String
) ENGINE = {{ engine "MergeTree" "processed_envelopes_rekey" }}
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (organization_id, occurred_at, end_device_id);
{{ distributed "processed_envelopes_rekey" "rand()" }}

INSERT INTO processed_envelopes_rekey (organization_id, end_device_id, occurred_at, processed_at, data)
SELECT '', end_device_id, occurred_at, processed_at, data FROM processed_envelopes;

RENAME TABLE {{ local "processed_envelopes" }} TO {{ local "processed_envelopes_prekey" }}, {{ local "processed_envelopes_rekey" }} TO {{ local "processed_envelopes" }} {{ onCluster }};
{{ dropDistributed "processed_envelopes_rekey" }}
{{ redistribute "processed_envelopes" "rand()" }}

DROP TABLE {{ local "processed_envelopes_prekey" }} {{ onCluster }}{{ sync }};

-- +goose Down
DROP TABLE IF EXISTS {{ local "processed_envelopes_unkey" }} {{ onCluster }}{{ sync }};

CREATE TABLE {{ local "processed_envelopes_unkey" }} {{ onCluster }} (
    end_device_id String,
    occurred_at DateTime,
    processed_at DateTime,
    data String
) ENGINE = {{ engine "MergeTree" "processed_envelopes_unkey" }}
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (occurred_at, end_device_id);
{{ distributed "processed_envelopes_unkey" "rand()" }}

INSERT INTO processed_envelopes_unkey (end_device_id, occurred_at, processed_at, data)
SELECT end_device_id, occurred_at, processed_at, data FROM processed_envelopes;

RENAME TABLE {{ local "processed_envelopes" }} TO {{ local "processed_envelopes_keyed" }}, {{ local "processed_envelopes_unkey" }} TO {{ local "processed_envelopes" }} {{ onCluster }};
{{ dropDistributed "processed_envelopes_unkey" }}
{{ redistribute "processed_envelopes" "rand()" }}

DROP TABLE {{ local "processed_envelopes_keyed" }} {{ onCluster }}{{ sync }};
