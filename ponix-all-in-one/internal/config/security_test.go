package config_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ponix-go/ponix/ponix-all-in-one/internal/config"
)

// writeCert writes a self-signed certificate and its key as PEM files.
func writeCert(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ponix-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func TestClickHouseTLSConfig(t *testing.T) {
	cert, key := writeCert(t)
	cfg, err := config.Load([]string{
		"PONIX_CLICKHOUSE_NATIVE_URL=db.internal:9440",
		"PONIX_CLICKHOUSE_TLS=true",
		"PONIX_CLICKHOUSE_TLS_CA_FILE=" + cert,
		"PONIX_CLICKHOUSE_TLS_CERT_FILE=" + cert,
		"PONIX_CLICKHOUSE_TLS_KEY_FILE=" + key,
	})
	if err != nil {
		t.Fatal(err)
	}
	tc, err := cfg.ClickHouseTLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	if tc == nil || tc.ServerName != "db.internal" || tc.RootCAs == nil || len(tc.Certificates) != 1 || tc.InsecureSkipVerify {
		t.Errorf("TLS config = %+v", tc)
	}
	cfg, err = config.Load([]string{"PONIX_CLICKHOUSE_TLS=true", "PONIX_CLICKHOUSE_TLS_SERVER_NAME=ch.example", "PONIX_CLICKHOUSE_TLS_INSECURE_SKIP_VERIFY=true"})
	if err != nil {
		t.Fatal(err)
	}
	if tc, _ := cfg.ClickHouseTLSConfig(); tc.ServerName != "ch.example" || !tc.InsecureSkipVerify || tc.RootCAs != nil {
		t.Errorf("TLS config = %+v", tc)
	}
	cfg, _ = config.Load(nil)
	if tc, err := cfg.ClickHouseTLSConfig(); tc != nil || err != nil {
		t.Errorf("TLS off: %v, %v", tc, err)
	}
}

func TestSecureConnectionErrorsNameTheVariable(t *testing.T) {
	cert, key := writeCert(t)
	notPEM := filepath.Join(t.TempDir(), "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		env     []string
		wantVar string
	}{
		{"CA file missing", []string{"PONIX_CLICKHOUSE_TLS=true", "PONIX_CLICKHOUSE_TLS_CA_FILE=/nope/ca.pem"}, "PONIX_CLICKHOUSE_TLS_CA_FILE"},
		{"CA not PEM", []string{"PONIX_CLICKHOUSE_TLS=true", "PONIX_CLICKHOUSE_TLS_CA_FILE=" + notPEM}, "PONIX_CLICKHOUSE_TLS_CA_FILE"},
		{"cert without key", []string{"PONIX_CLICKHOUSE_TLS=true", "PONIX_CLICKHOUSE_TLS_CERT_FILE=" + cert}, "PONIX_CLICKHOUSE_TLS_KEY_FILE"},
		{"key without cert", []string{"PONIX_CLICKHOUSE_TLS=true", "PONIX_CLICKHOUSE_TLS_KEY_FILE=" + key}, "PONIX_CLICKHOUSE_TLS_CERT_FILE"},
		{"cert and key mismatch", []string{"PONIX_CLICKHOUSE_TLS=true", "PONIX_CLICKHOUSE_TLS_CERT_FILE=" + cert, "PONIX_CLICKHOUSE_TLS_KEY_FILE=" + notPEM}, "PONIX_CLICKHOUSE_TLS_CERT_FILE"},
		{"TLS option without TLS", []string{"PONIX_CLICKHOUSE_TLS_CA_FILE=" + cert}, "PONIX_CLICKHOUSE_TLS_CA_FILE"},
		{"TLS with managed", []string{"PONIX_CLICKHOUSE_TLS=true", "PONIX_CLICKHOUSE_MANAGED=true"}, "PONIX_CLICKHOUSE_TLS"},
		{"bad TLS bool", []string{"PONIX_CLICKHOUSE_TLS=yes please"}, "PONIX_CLICKHOUSE_TLS"},
		{"NATS password without user", []string{"PONIX_NATS_PASSWORD=pw"}, "PONIX_NATS_USER"},
		{"NATS user without password", []string{"PONIX_NATS_USER=u"}, "PONIX_NATS_PASSWORD"},
		{"two NATS methods", []string{"PONIX_NATS_URL=nats://n:4222", "PONIX_NATS_USER=u", "PONIX_NATS_PASSWORD=p", "PONIX_NATS_TOKEN=t"}, "PONIX_NATS_USER/PASSWORD"},
		{"NKey seed file missing", []string{"PONIX_NATS_URL=nats://n:4222", "PONIX_NATS_NKEY_SEED_FILE=/nope/seed"}, "PONIX_NATS_NKEY_SEED_FILE"},
		{"creds file missing", []string{"PONIX_NATS_URL=nats://n:4222", "PONIX_NATS_CREDS_FILE=/nope/x.creds"}, "PONIX_NATS_CREDS_FILE"},
		{"NATS CA not PEM", []string{"PONIX_NATS_URL=nats://n:4222", "PONIX_NATS_TLS_CA_FILE=" + notPEM}, "PONIX_NATS_TLS_CA_FILE"},
		{"NATS key without cert", []string{"PONIX_NATS_URL=nats://n:4222", "PONIX_NATS_TLS_KEY_FILE=" + key}, "PONIX_NATS_TLS_CERT_FILE"},
		{"creds with embedded server", []string{"PONIX_NATS_CREDS_FILE=" + cert}, "PONIX_NATS_CREDS_FILE"},
		{"bad HTTP addr", []string{"PONIX_HTTP_ADDR=8080"}, "PONIX_HTTP_ADDR"},
		{"bad HTTP port", []string{"PONIX_HTTP_ADDR=:99999"}, "PONIX_HTTP_ADDR"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Load(tc.env)
			var ce *config.Error
			if !errors.As(err, &ce) {
				t.Fatalf("Load = %v, want a *config.Error", err)
			}
			if ce.Var != tc.wantVar {
				t.Errorf("error names %s, want %s (%v)", ce.Var, tc.wantVar, err)
			}
		})
	}
}

func TestSecureSettingsAccepted(t *testing.T) {
	cert, key := writeCert(t)
	for _, env := range [][]string{
		{"PONIX_NATS_USER=u", "PONIX_NATS_PASSWORD=p"},                       // embedded server with a user
		{"PONIX_NATS_TOKEN=t"},                                               // embedded server with a token
		{"PONIX_NATS_URL=tls://n:4222", "PONIX_NATS_CREDS_FILE=" + cert},     // any readable file
		{"PONIX_NATS_URL=nats://n:4222", "PONIX_NATS_NKEY_SEED_FILE=" + key}, //
		{"PONIX_NATS_URL=nats://n:4222", "PONIX_NATS_TLS_CA_FILE=" + cert, "PONIX_NATS_TLS_CERT_FILE=" + cert, "PONIX_NATS_TLS_KEY_FILE=" + key},
		{"PONIX_HTTP_ADDR=off"}, {"PONIX_HTTP_ADDR=127.0.0.1:0"}, {"PONIX_HTTP_ADDR=[::1]:9090"},
	} {
		if _, err := config.Load(env); err != nil {
			t.Errorf("Load(%v) = %v", env, err)
		}
	}
	cfg, _ := config.Load(nil)
	if cfg.HTTPAddr != ":8080" {
		t.Errorf("default PONIX_HTTP_ADDR = %q, want :8080", cfg.HTTPAddr)
	}
}

func TestLogValueRedactsEverySecret(t *testing.T) {
	cfg, err := config.Load([]string{
		"PONIX_NATS_URL=nats://svc:url-pw-1@n1:4222,nats://tok-2@n2:4222",
		"PONIX_NATS_TOKEN=token-3",
		"PONIX_CLICKHOUSE_PASSWORD=ch-pw-4",
	})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("config", "config", cfg)
	for _, secret := range []string{"url-pw-1", "tok-2", "token-3", "ch-pw-4"} {
		if strings.Contains(buf.String(), secret) {
			t.Errorf("secret %q in the log: %s", secret, buf.String())
		}
	}
	if !strings.Contains(buf.String(), "svc:[REDACTED]@n1:4222") {
		t.Errorf("the NATS URL lost its user or host: %s", buf.String())
	}
}
