// Package integration holds the integration tests of the migrations against a real
// ClickHouse: up from empty, down and up again with rows, concurrent migrators, and each step's
// effect on stored rows. It is a module of its own so that the migrations module (SQL files
// and an fs.FS) depends on nothing.
package integration
