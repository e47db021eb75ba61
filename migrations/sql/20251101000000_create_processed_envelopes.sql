-- +goose NO TRANSACTION
-- +ponix template
-- Step 1 of the upstream schema: the envelope table keyed by time and device.
-- data holds the envelope's google.protobuf.Struct as a JSON object in a String (ClickHouse
-- 18.16 has no JSON type); times are DateTime in UTC seconds (18.16 has no DateTime64).
--
-- The file is a template (see ponixclickhouse/migrate): on a single server it creates the
-- MergeTree processed_envelopes; on a cluster (PONIX_CLICKHOUSE_CLUSTER) it creates
-- processed_envelopes_local ON CLUSTER as a ReplicatedMergeTree on every node and, under the
-- name queries use, the Distributed table processed_envelopes over it.

-- +goose Up
CREATE TABLE {{ local "processed_envelopes" }} {{ onCluster }} (
    end_device_id String,
    occurred_at DateTime,
    processed_at DateTime,
    data String
) ENGINE = {{ engine "MergeTree" "processed_envelopes" }}
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (occurred_at, end_device_id);
{{ distributed "processed_envelopes" "rand()" }}

-- +goose Down
{{ dropDistributed "processed_envelopes" }}
DROP TABLE {{ local "processed_envelopes" }} {{ onCluster }}{{ sync }};
