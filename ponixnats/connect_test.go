package ponixnats

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

func TestClassifyConnectError(t *testing.T) {
	for _, c := range []struct {
		err  error
		want error
	}{
		{nats.ErrAuthorization, ErrAuthorization},
		{fmt.Errorf("x: %w", nats.ErrAuthExpired), ErrAuthorization},
		{nats.ErrSecureConnRequired, ErrTLS},
		// A write to a connection the server closed after the handshake (client
		// certificate missing) is a TLS failure, not an unreachable server.
		{fmt.Errorf("%w: connection closed by remote after TLS handshake: %w", nats.ErrTLS, &net.OpError{Op: "write", Err: syscall.EPIPE}), ErrTLS},
		{errors.New("tls: failed to verify certificate: x509: certificate signed by unknown authority"), ErrTLS},
		{&net.OpError{Op: "dial", Err: errors.New("connection refused")}, ErrServerUnreachable},
		{nats.ErrNoServers, ErrServerUnreachable},
	} {
		if got := classifyConnectError(c.err); got != c.want {
			t.Errorf("classify(%v) = %v; want %v", c.err, got, c.want)
		}
	}
}

func TestConnectErrorMatchesKindAndCause(t *testing.T) {
	err := error(&ConnectError{URL: "nats://h:1", Kind: ErrAuthorization, Err: nats.ErrAuthorization})
	if !errors.Is(err, ErrAuthorization) || !errors.Is(err, nats.ErrAuthorization) || errors.Is(err, ErrServerUnreachable) {
		t.Fatalf("errors.Is mismatch for %v", err)
	}
	if !strings.Contains(err.Error(), "refused authorization") || !strings.Contains(err.Error(), "nats://h:1") {
		t.Fatalf("message does not say what and where: %q", err)
	}
}

func TestRedactURL(t *testing.T) {
	got := redactURL("nats://u:secret@h1:4222, nats://tok@h2:4222,nats://h3:4222")
	if strings.Contains(got, "secret") || strings.Contains(got, "tok@") {
		t.Fatalf("secret leaked: %s", got)
	}
	if !strings.Contains(got, "u:xxxxx@h1") || !strings.Contains(got, "h3:4222") {
		t.Fatalf("redacted too much: %s", got)
	}
}

func TestReconnectBackoffGrowsAndCaps(t *testing.T) {
	p := reconnectPolicy(100, 1000)
	for a := 1; a < 20; a++ { // nats.go's attempts count from 1
		base := min(100<<(a-1), 1000)
		d := p.Delay(a - 1)
		if d < time.Duration(base) || d > time.Duration(base)*12/10 {
			t.Fatalf("reconnect delay after %d attempts = %d out of [%d, %d]", a, d, base, base*12/10)
		}
	}
}
