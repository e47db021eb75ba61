//go:build integration

package integration

import (
	"errors"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ponix-go/ponix/ponixnats"
	"github.com/ponix-go/ponix/ponixnats/dlqadmin"
	"github.com/ponix-go/ponix/ponixnats/natstest"
)

// TestOpenDeadLettersWithoutJetStream: on a NATS server without JetStream,
// dlqadmin.Open fails with a *JetStreamNotEnabledError that matches
// jetstream.ErrJetStreamNotEnabled and nats.ErrNoResponders and names the
// server's URL without the credentials the client connected with.
func TestOpenDeadLettersWithoutJetStream(t *testing.T) {
	addr := natstest.NewWithoutJetStream(t)
	_, js := connectJS(t, "nats://ponix:s3cret@"+addr)
	_, err := dlqadmin.Open(t.Context(), js, "processed_envelopes_dlq")
	var jsErr *ponixnats.JetStreamNotEnabledError
	if !errors.As(err, &jsErr) || !errors.Is(err, jetstream.ErrJetStreamNotEnabled) || !errors.Is(err, nats.ErrNoResponders) {
		t.Fatalf("err = %v; want a *JetStreamNotEnabledError matching ErrJetStreamNotEnabled and ErrNoResponders", err)
	}
	if jsErr.URL != "nats://"+addr {
		t.Errorf("URL = %q; want nats://%s", jsErr.URL, addr)
	}
	if msg := err.Error(); !strings.Contains(msg, "JetStream is not enabled on the NATS server at nats://"+addr) || strings.Contains(msg, "s3cret") {
		t.Errorf("err = %q", msg)
	}
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Error("err matches ErrStreamNotFound: a caller would take it for an empty dead-letter stream")
	}
}
