package config

import (
	"log/slog"

	"github.com/ponix-go/ponix/ponixnats"
)

// NATSOptions are the NATS connect options from the configuration: client name, logger, and
// the one authentication method and TLS files configured. The service and its dlq command use
// them.
func (c Config) NATSOptions(name string, logger *slog.Logger) []ponixnats.ConnectOption {
	opts := []ponixnats.ConnectOption{ponixnats.WithName(name), ponixnats.WithLogger(logger)}
	switch {
	case c.NATSUser != "":
		opts = append(opts, ponixnats.WithUserPassword(c.NATSUser, c.NATSPassword))
	case c.NATSToken != "":
		opts = append(opts, ponixnats.WithToken(c.NATSToken))
	case c.NATSNKeySeedFile != "":
		opts = append(opts, ponixnats.WithNKeySeedFile(c.NATSNKeySeedFile))
	case c.NATSCredsFile != "":
		opts = append(opts, ponixnats.WithCredsFile(c.NATSCredsFile))
	}
	if c.NATSTLS() {
		opts = append(opts, ponixnats.WithTLS(c.NATSTLSCAFile, c.NATSTLSCertFile, c.NATSTLSKeyFile))
	}
	return opts
}

// EmbeddedUsers are the users the embedded NATS server requires: PONIX_NATS_USER and
// PONIX_NATS_PASSWORD when they are set, none otherwise.
func (c Config) EmbeddedUsers() map[string]string {
	if c.NATSUser == "" {
		return nil
	}
	return map[string]string{c.NATSUser: c.NATSPassword}
}
