// Package integration holds the integration tests of ponixnats against real JetStream servers
// (embedded nats-server, single nodes and clusters). It is a module of its own so that
// ponixnats' go.mod holds no test server: run them with
//
//	go test -tags integration ./...
package integration
