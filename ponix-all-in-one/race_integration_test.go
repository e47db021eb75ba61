//go:build integration && race

package main_test

// raceBuild: the tests run under the race detector, so the binary under test is built with it
// too (the service's own concurrency is what is worth checking).
const raceBuild = true
