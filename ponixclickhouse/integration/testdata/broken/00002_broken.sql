-- +goose NO TRANSACTION
-- +goose Up
CREATE TABLE fine (id UInt64) ENGINE = MergeTree() ORDER BY id;
CREATE TABLE broken (id UInt64) ENGINE = NoSuchEngineAnywhere();

-- +goose Down
DROP TABLE IF EXISTS broken;
DROP TABLE IF EXISTS fine;
