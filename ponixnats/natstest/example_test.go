package natstest_test

import (
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/ponix-go/ponix/ponixnats/natstest"
)

// In a test: a JetStream server for this test only.
func ExampleNew() {
	var t *testing.T // the test's *testing.T
	srv := natstest.New(t)
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
}
