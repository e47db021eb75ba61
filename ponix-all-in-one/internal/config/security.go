package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
)

// validateClickHouseTLS checks the ClickHouse TLS variables: files readable and
// parseable, certificate and key given together, and no TLS option without
// PONIX_CLICKHOUSE_TLS=true.
func (c Config) validateClickHouseTLS() []error {
	var errs []error
	if !c.ClickHouseTLS {
		for _, kv := range [][2]string{
			{"CLICKHOUSE_TLS_CA_FILE", c.ClickHouseTLSCAFile},
			{"CLICKHOUSE_TLS_CERT_FILE", c.ClickHouseTLSCertFile},
			{"CLICKHOUSE_TLS_KEY_FILE", c.ClickHouseTLSKeyFile},
			{"CLICKHOUSE_TLS_SERVER_NAME", c.ClickHouseTLSServerName},
		} {
			if kv[1] != "" {
				errs = append(errs, &Error{Var: Prefix + kv[0], Value: kv[1], Reason: "has no effect unless PONIX_CLICKHOUSE_TLS=true"})
			}
		}
		if c.ClickHouseTLSInsecureSkipVerify {
			errs = append(errs, &Error{Var: Prefix + "CLICKHOUSE_TLS_INSECURE_SKIP_VERIFY", Value: "true", Reason: "has no effect unless PONIX_CLICKHOUSE_TLS=true"})
		}
		return errs
	}
	if c.ClickHouseManaged {
		errs = append(errs, &Error{Var: Prefix + "CLICKHOUSE_TLS", Value: "true", Reason: "the managed local ClickHouse (PONIX_CLICKHOUSE_MANAGED=true) does not serve TLS"})
	}
	if _, err := c.ClickHouseTLSConfig(); err != nil {
		var ce *Error
		if errors.As(err, &ce) {
			errs = append(errs, ce)
		} else {
			errs = append(errs, err)
		}
	}
	return errs
}

// ClickHouseTLSConfig returns the TLS configuration of the ClickHouse
// connection, or nil when PONIX_CLICKHOUSE_TLS is false. Errors are *Error
// values naming the variable at fault.
func (c Config) ClickHouseTLSConfig() (*tls.Config, error) {
	if !c.ClickHouseTLS {
		return nil, nil
	}
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         c.ClickHouseTLSServerName,
		InsecureSkipVerify: c.ClickHouseTLSInsecureSkipVerify, //nolint:gosec // opt-in, documented as testing only
	}
	if cfg.ServerName == "" {
		// With several addresses ServerName stays empty: the TLS dialer
		// (tls.DialWithDialer) then expects each server's own host name.
		if addrs, err := c.ClickHouseAddrs(); err == nil && len(addrs) == 1 {
			cfg.ServerName, _, _ = net.SplitHostPort(addrs[0])
		}
	}
	if c.ClickHouseTLSCAFile != "" {
		pool, err := loadCAPool(c.ClickHouseTLSCAFile)
		if err != nil {
			return nil, &Error{Var: Prefix + "CLICKHOUSE_TLS_CA_FILE", Value: c.ClickHouseTLSCAFile, Reason: err.Error(), Err: err}
		}
		cfg.RootCAs = pool
	}
	cert, err := loadKeyPair("CLICKHOUSE_TLS_CERT_FILE", c.ClickHouseTLSCertFile, "CLICKHOUSE_TLS_KEY_FILE", c.ClickHouseTLSKeyFile)
	if err != nil {
		return nil, err
	}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return cfg, nil
}

// validateNATSAuth checks the NATS authentication and TLS variables: one
// method at most, user and password together, files present, certificate and
// key together; with the embedded server only user/password or a token.
// isSet reports whether a variable was set, possibly to an empty value: an
// explicitly empty PONIX_NATS_PASSWORD is a user without password.
func (c Config) validateNATSAuth(isSet func(key string) bool) []error {
	var errs []error
	bad := func(v, value, reason string) {
		errs = append(errs, &Error{Var: Prefix + v, Value: value, Reason: reason})
	}
	var methods []string
	if c.NATSUser != "" || c.NATSPassword != "" {
		methods = append(methods, Prefix+"NATS_USER/PASSWORD")
		if c.NATSUser == "" {
			bad("NATS_USER", "", "must be set when PONIX_NATS_PASSWORD is set")
		}
		switch {
		case c.NATSPassword != "":
		case !isSet(Prefix + "NATS_PASSWORD"):
			bad("NATS_PASSWORD", "", "must be set when PONIX_NATS_USER is set (PONIX_NATS_PASSWORD= set empty: a user without password)")
		case c.NATSURL == "":
			bad("NATS_PASSWORD", "", "must not be empty with the embedded server (PONIX_NATS_URL unset): it would let anyone in as PONIX_NATS_USER")
		}
	}
	if c.NATSToken != "" {
		methods = append(methods, Prefix+"NATS_TOKEN")
	}
	if c.NATSNKeySeedFile != "" {
		methods = append(methods, Prefix+"NATS_NKEY_SEED_FILE")
		if err := readableFile(c.NATSNKeySeedFile); err != nil {
			bad("NATS_NKEY_SEED_FILE", c.NATSNKeySeedFile, err.Error())
		}
	}
	if c.NATSCredsFile != "" {
		methods = append(methods, Prefix+"NATS_CREDS_FILE")
		if err := readableFile(c.NATSCredsFile); err != nil {
			bad("NATS_CREDS_FILE", c.NATSCredsFile, err.Error())
		}
	}
	if len(methods) > 1 {
		errs = append(errs, &Error{Var: methods[0], Reason: "choose one NATS authentication method; also set: " + strings.Join(methods[1:], ", ")})
	}
	if c.NATSTLSCAFile != "" {
		if _, err := loadCAPool(c.NATSTLSCAFile); err != nil {
			bad("NATS_TLS_CA_FILE", c.NATSTLSCAFile, err.Error())
		}
	}
	if _, err := loadKeyPair("NATS_TLS_CERT_FILE", c.NATSTLSCertFile, "NATS_TLS_KEY_FILE", c.NATSTLSKeyFile); err != nil {
		errs = append(errs, err)
	}
	if c.NATSURL == "" {
		for _, kv := range [][2]string{
			{"NATS_NKEY_SEED_FILE", c.NATSNKeySeedFile},
			{"NATS_CREDS_FILE", c.NATSCredsFile},
			{"NATS_TLS_CA_FILE", c.NATSTLSCAFile},
			{"NATS_TLS_CERT_FILE", c.NATSTLSCertFile},
		} {
			if kv[1] != "" {
				bad(kv[0], kv[1], "needs PONIX_NATS_URL: the embedded server supports only PONIX_NATS_USER/PASSWORD or PONIX_NATS_TOKEN")
			}
		}
	}
	return errs
}

// NATSTLS reports whether any NATS TLS file is set.
func (c Config) NATSTLS() bool {
	return c.NATSTLSCAFile != "" || c.NATSTLSCertFile != "" || c.NATSTLSKeyFile != ""
}

func readableFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("cannot read the file: %w", err)
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || st.IsDir() {
		return errors.New("not a regular file")
	}
	return nil
}

func loadCAPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read the file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("holds no PEM certificate")
	}
	return pool, nil
}

// loadKeyPair loads a client certificate; both files or neither must be set.
func loadKeyPair(certVar, certFile, keyVar, keyFile string) (*tls.Certificate, error) {
	switch {
	case certFile == "" && keyFile == "":
		return nil, nil
	case certFile == "":
		return nil, &Error{Var: Prefix + certVar, Reason: "must be set when " + Prefix + keyVar + " is set"}
	case keyFile == "":
		return nil, &Error{Var: Prefix + keyVar, Reason: "must be set when " + Prefix + certVar + " is set"}
	}
	if err := readableFile(certFile); err != nil {
		return nil, &Error{Var: Prefix + certVar, Value: certFile, Reason: err.Error(), Err: err}
	}
	if err := readableFile(keyFile); err != nil {
		return nil, &Error{Var: Prefix + keyVar, Value: keyFile, Reason: err.Error(), Err: err}
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, &Error{Var: Prefix + certVar, Value: certFile, Reason: "certificate and key " + keyFile + " do not load as a pair: " + err.Error(), Err: err}
	}
	return &cert, nil
}
