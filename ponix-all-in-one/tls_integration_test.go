//go:build integration

package main_test

import (
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ponix-go/ponix/ponixclickhouse"
	"github.com/ponix-go/ponix/ponixclickhouse/chserver"
	"github.com/ponix-go/ponix/ponixclickhouse/chtest"
	"github.com/ponix-go/ponix/ponixnats/natstest"
)

// The real binary talks TLS with client certificates to both servers: NATS
// (embedded nats-server requiring verified client certificates) and
// ClickHouse (clickhouse-server's TLS native port, strict client
// verification). Envelopes land; a missing client certificate or an
// untrusted server certificate fails the phase that connects, naming TLS.
func TestMutualTLSToNATSAndClickHouse(t *testing.T) {
	const (
		dbName = "ponix_tls_db"
		chUser = "ponix_tls"
		chPass = "tls-s3cret-Pw"
	)
	ctx := t.Context()
	certs := natstest.MustCerts(t)
	other := natstest.MustCerts(t) // a CA that signed neither server

	// The test itself checks through the plain port; the service only gets the TLS one.
	chs := startClickHouse(t, chserver.Config{
		Dir: t.TempDir(), User: chUser, Password: chPass,
		TLS: &chserver.TLSConfig{CertFile: certs.ServerCertFile, KeyFile: certs.ServerKeyFile, CAFile: certs.CAFile},
	}, dbName)

	serverTLS, err := certs.ServerTLS(true)
	if err != nil {
		t.Fatal(err)
	}
	nsrv := natstest.New(t, natstest.WithTLS(serverTLS))
	if nc, err := nats.Connect(nsrv.URL(), nats.RootCAs(certs.CAFile)); err == nil {
		nc.Close()
		t.Fatal("NATS accepted a client without a certificate")
	}
	const n = 300
	want := envelopes(n, 7)
	publish(t, nsrv.URL(), want, nats.RootCAs(certs.CAFile), nats.ClientCert(certs.ClientCertFile, certs.ClientKeyFile))

	tlsEnv := func() map[string]string {
		return map[string]string{
			"PONIX_DATA_DIR":                 t.TempDir(),
			"PONIX_NATS_URL":                 nsrv.URL(),
			"PONIX_NATS_TLS_CA_FILE":         certs.CAFile,
			"PONIX_NATS_TLS_CERT_FILE":       certs.ClientCertFile,
			"PONIX_NATS_TLS_KEY_FILE":        certs.ClientKeyFile,
			"PONIX_CLICKHOUSE_NATIVE_URL":    chs.SecureAddr(),
			"PONIX_CLICKHOUSE_DATABASE":      dbName,
			"PONIX_CLICKHOUSE_USERNAME":      chUser,
			"PONIX_CLICKHOUSE_PASSWORD":      chPass,
			"PONIX_CLICKHOUSE_TLS":           "true",
			"PONIX_CLICKHOUSE_TLS_CA_FILE":   certs.CAFile,
			"PONIX_CLICKHOUSE_TLS_CERT_FILE": certs.ClientCertFile,
			"PONIX_CLICKHOUSE_TLS_KEY_FILE":  certs.ClientKeyFile,
			"PONIX_PRODUCER_ENABLED":         "false",
			"PONIX_NATS_BATCH_SIZE":          "100",
			"PONIX_NATS_BATCH_WAIT_SECS":     "1",
			"PONIX_STARTUP_TIMEOUT_SECS":     "10",
			"PONIX_CLICKHOUSE_RETRY_SECS":    "1",
			"PONIX_HTTP_ADDR":                "127.0.0.1:0",
		}
	}
	s := startService(t, tlsEnv())
	db := &chtest.Database{Name: dbName, Conn: mustOpen(t, chs.Addr(), dbName, chUser, chPass)}
	waitRows(t, db, s, n, 60*time.Second)
	s.terminate()
	checkStored(t, db, want)
	// The service really used TLS: the ClickHouse port it was given speaks nothing else.
	plain, err := ponixclickhouse.Open(ctx, ponixclickhouse.Config{Addr: chs.SecureAddr(), Username: chUser, Password: chPass, DialTimeout: 2 * time.Second})
	if err == nil {
		plain.Close()
		t.Fatal("the ClickHouse TLS port accepted a plain connection")
	}
	withoutCert, err := ponixclickhouse.Open(ctx, ponixclickhouse.Config{
		Addr: chs.SecureAddr(), Username: chUser, Password: chPass, DialTimeout: 2 * time.Second,
		TLS: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // checks the server's demand for a client certificate
	})
	if err == nil {
		withoutCert.Close()
		t.Fatal("the ClickHouse TLS port accepted a client without a certificate")
	}

	for _, tc := range []struct {
		name     string
		edit     func(env map[string]string)
		phase    string
		variable string
		reason   string
	}{
		{"NATS without a client certificate", func(env map[string]string) {
			delete(env, "PONIX_NATS_TLS_CERT_FILE")
			delete(env, "PONIX_NATS_TLS_KEY_FILE")
		}, "startup phase nats failed", "PONIX_NATS_TLS_CERT_FILE", "may require a client certificate"},
		{"NATS server certificate from an unknown CA", func(env map[string]string) {
			env["PONIX_NATS_TLS_CA_FILE"] = other.CAFile
		}, "startup phase nats failed", "PONIX_NATS_TLS_CA_FILE", "certificate signed by unknown authority"},
		{"ClickHouse server certificate from an unknown CA", func(env map[string]string) {
			env["PONIX_CLICKHOUSE_TLS_CA_FILE"] = other.CAFile
		}, "startup phase migrations failed", "PONIX_CLICKHOUSE_TLS_CA_FILE", "certificate signed by unknown authority"},
		{"ClickHouse client certificate from an unknown CA", func(env map[string]string) {
			env["PONIX_CLICKHOUSE_TLS_CERT_FILE"] = other.ClientCertFile
			env["PONIX_CLICKHOUSE_TLS_KEY_FILE"] = other.ClientKeyFile
		}, "startup phase migrations failed", "PONIX_CLICKHOUSE_TLS_CERT_FILE", "refused the client certificate"},
		{"ClickHouse without a client certificate", func(env map[string]string) {
			delete(env, "PONIX_CLICKHOUSE_TLS_CERT_FILE")
			delete(env, "PONIX_CLICKHOUSE_TLS_KEY_FILE")
		}, "startup phase migrations failed", "PONIX_CLICKHOUSE_TLS_CERT_FILE", "may require a client certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := tlsEnv()
			tc.edit(env)
			s := startService(t, env)
			if code := s.wait(30 * time.Second); code != 1 {
				t.Fatalf("exit code %d, want 1:\n%s", code, s.logs.String())
			}
			line := failureLine(t, s.logs.String())
			for _, want := range []string{tc.phase, tc.variable, "TLS", tc.reason} {
				if !strings.Contains(line, want) {
					t.Errorf("the error does not name %q: %s", want, line)
				}
			}
		})
	}
}
