// Package integration holds the integration tests of ponixclickhouse and its migrate package
// against a real ClickHouse (found by chtest: an address from the environment, a container, or
// a local clickhouse-server process). It is a module of its own so that ponixclickhouse's
// go.mod holds no test server: run them with
//
//	go test -tags integration ./...
package integration
