// Package integration holds the integration tests of the pipeline module against real servers:
// an embedded nats-server with JetStream per test (natstest) and ClickHouse (chtest: an address
// from the environment, a container, or a local clickhouse-server process; chserver where a test
// stops its own). It is a module of its own so that the pipeline's go.mod holds no test server:
// run them with
//
//	go test -tags integration ./...
package integration
