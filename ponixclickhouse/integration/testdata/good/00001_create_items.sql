-- +goose NO TRANSACTION
-- +goose Up
CREATE TABLE items (id UInt64, name String) ENGINE = MergeTree() ORDER BY id;

-- +goose Down
DROP TABLE items;
