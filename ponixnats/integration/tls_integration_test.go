//go:build integration

package integration

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ponix-go/ponix/ponixnats"
	"github.com/ponix-go/ponix/ponixnats/natstest"
)

func TestConnectTLS(t *testing.T) {
	ctx := t.Context()
	certs := natstest.MustCerts(t)
	serverTLS, err := certs.ServerTLS(true)
	if err != nil {
		t.Fatal(err)
	}
	srv := natstest.New(t, natstest.WithTLS(serverTLS))
	// A second PKI whose CA did not sign the server's certificate.
	other := natstest.MustCerts(t)

	t.Run("CA and client certificate", func(t *testing.T) {
		_, js := connectJS(t, srv.URL(), ponixnats.WithTLS(certs.CAFile, certs.ClientCertFile, certs.ClientKeyFile))
		name := fmt.Sprintf("tls%d", streamSeq.Add(1))
		if _, err := ponixnats.EnsureStream(ctx, js, ponixnats.StreamConfig{Name: name, Subjects: []string{name + ".>"}}); err != nil {
			t.Fatalf("JetStream over TLS: %v", err)
		}
		ack, err := js.Publish(ctx, name+".x", []byte("over tls"))
		if err != nil || ack.Sequence != 1 {
			t.Fatalf("publish over TLS: ack %+v, err %v", ack, err)
		}
	})
	t.Run("nats:// URL with TLS options", func(t *testing.T) {
		url := strings.Replace(srv.URL(), "tls://", "nats://", 1)
		nc, _ := connectJS(t, url, ponixnats.WithTLS(certs.CAFile, certs.ClientCertFile, certs.ClientKeyFile))
		if !nc.IsConnected() || !nc.TLSRequired() {
			t.Fatalf("connected=%v tlsRequired=%v", nc.IsConnected(), nc.TLSRequired())
		}
	})
	fails := []struct {
		name string
		opts []ponixnats.ConnectOption
		want error
		says string
	}{
		{"server certificate from an unknown CA", []ponixnats.ConnectOption{ponixnats.WithTLS(other.CAFile, certs.ClientCertFile, certs.ClientKeyFile)}, ponixnats.ErrTLS, "unknown authority"},
		{"no client certificate", []ponixnats.ConnectOption{ponixnats.WithTLS(certs.CAFile, "", "")}, ponixnats.ErrTLS, "may require a client certificate"},
		{"client certificate from an unknown CA", []ponixnats.ConnectOption{ponixnats.WithTLS(certs.CAFile, other.ClientCertFile, other.ClientKeyFile)}, ponixnats.ErrTLS, "client certificate"},
		{"plain connection to a TLS server", nil, ponixnats.ErrTLS, "unknown authority"},
	}
	for _, tc := range fails {
		t.Run(tc.name, func(t *testing.T) {
			url := strings.Replace(srv.URL(), "tls://", "nats://", 1)
			start := time.Now()
			opts := append([]ponixnats.ConnectOption{ponixnats.WithLogger(quietLogger()), ponixnats.WithTimeout(3 * time.Second)}, tc.opts...)
			nc, err := ponixnats.Connect(ctx, url, opts...)
			if err == nil {
				nc.Close()
				t.Fatal("connected; want a TLS error")
			}
			t.Logf("error: %v", err)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v; want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), url) || !strings.Contains(err.Error(), tc.says) {
				t.Errorf("error %q does not name the server %s and say %q", err, url, tc.says)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("TLS failure took %s; want fail fast", d)
			}
		})
	}
	t.Run("TLS to a plain server", func(t *testing.T) {
		plain := natstest.New(t)
		_, err := ponixnats.Connect(ctx, plain.URL(), ponixnats.WithLogger(quietLogger()), ponixnats.WithTimeout(3*time.Second),
			ponixnats.WithTLS(certs.CAFile, certs.ClientCertFile, certs.ClientKeyFile))
		if !errors.Is(err, ponixnats.ErrTLS) {
			t.Fatalf("err = %v; want ErrTLS", err)
		}
	})
}
