-- +goose NO TRANSACTION
-- Copies every row into items_copy: applied twice, the copy would hold every row twice.
-- +goose Up
CREATE TABLE items_copy (id UInt64, name String) ENGINE = MergeTree() ORDER BY id;
INSERT INTO items_copy (id, name) SELECT number, toString(number) FROM system.numbers LIMIT 1000;

-- +goose Down
DROP TABLE items_copy;
