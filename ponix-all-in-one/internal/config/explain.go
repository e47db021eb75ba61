package config

import (
	"errors"

	"github.com/ponix-go/ponix/ponixclickhouse"
	"github.com/ponix-go/ponix/ponixclickhouse/migrate"
	"github.com/ponix-go/ponix/ponixnats"
)

// VarsToCheck names the environment variables that a startup failure points
// at, so that the error says what to change. It returns nil when the error is
// not one a setting explains.
func (c Config) VarsToCheck(err error) []string {
	var chErr *ponixclickhouse.ConfigError
	if errors.As(err, &chErr) {
		switch chErr.Setting {
		case "Addr":
			return []string{"PONIX_CLICKHOUSE_NATIVE_URL"}
		case "Database":
			return []string{"PONIX_CLICKHOUSE_DATABASE"}
		case "Username/Password":
			return []string{"PONIX_CLICKHOUSE_USERNAME", "PONIX_CLICKHOUSE_PASSWORD"}
		case "TLS":
			return []string{"PONIX_CLICKHOUSE_TLS_CA_FILE", "PONIX_CLICKHOUSE_TLS_CERT_FILE", "PONIX_CLICKHOUSE_TLS_KEY_FILE", "PONIX_CLICKHOUSE_TLS_SERVER_NAME"}
		}
		return nil
	}
	switch {
	case errors.Is(err, ponixclickhouse.ErrUnknownCluster):
		return []string{"PONIX_CLICKHOUSE_CLUSTER"}
	case errors.Is(err, migrate.ErrSingleServerSchema):
		return []string{"PONIX_CLICKHOUSE_DATABASE", "PONIX_CLICKHOUSE_CLUSTER"}
	case errors.Is(err, ponixnats.ErrServerUnreachable):
		return []string{"PONIX_NATS_URL"}
	case errors.Is(err, ponixnats.ErrTLS):
		return []string{"PONIX_NATS_TLS_CA_FILE", "PONIX_NATS_TLS_CERT_FILE", "PONIX_NATS_TLS_KEY_FILE"}
	case errors.Is(err, ponixnats.ErrAuthorization):
		creds := []struct{ name, value string }{
			{"PONIX_NATS_USER", c.NATSUser},
			{"PONIX_NATS_PASSWORD", c.NATSPassword},
			{"PONIX_NATS_TOKEN", c.NATSToken},
			{"PONIX_NATS_NKEY_SEED_FILE", c.NATSNKeySeedFile},
			{"PONIX_NATS_CREDS_FILE", c.NATSCredsFile},
		}
		var set, all []string
		for _, cr := range creds {
			all = append(all, cr.name)
			if cr.value != "" {
				set = append(set, cr.name)
			}
		}
		if len(set) == 0 {
			return all // the server wants credentials and none is set
		}
		return set
	}
	return nil
}
