package config

import (
	"fmt"
	"slices"
	"testing"

	"github.com/ponix-go/ponix/ponixclickhouse"
	"github.com/ponix-go/ponix/ponixnats"
)

func TestVarsToCheckNamesTheVariablesBehindAStartupFailure(t *testing.T) {
	withUser := Config{NATSUser: "u", NATSPassword: "p"}
	none := Config{}
	cases := []struct {
		name string
		c    Config
		err  error
		want []string
	}{
		{"ClickHouse address", none, &ponixclickhouse.ConfigError{Setting: "Addr", Err: ponixclickhouse.ErrUnreachable}, []string{"PONIX_CLICKHOUSE_NATIVE_URL"}},
		{"ClickHouse database", none, fmt.Errorf("x: %w", &ponixclickhouse.ConfigError{Setting: "Database"}), []string{"PONIX_CLICKHOUSE_DATABASE"}},
		{"ClickHouse password", none, &ponixclickhouse.ConfigError{Setting: "Username/Password"}, []string{"PONIX_CLICKHOUSE_USERNAME", "PONIX_CLICKHOUSE_PASSWORD"}},
		{"ClickHouse TLS", none, &ponixclickhouse.ConfigError{Setting: "TLS"}, []string{"PONIX_CLICKHOUSE_TLS_CA_FILE", "PONIX_CLICKHOUSE_TLS_CERT_FILE", "PONIX_CLICKHOUSE_TLS_KEY_FILE", "PONIX_CLICKHOUSE_TLS_SERVER_NAME"}},
		{"NATS unreachable", none, &ponixnats.ConnectError{Kind: ponixnats.ErrServerUnreachable}, []string{"PONIX_NATS_URL"}},
		{"NATS TLS", none, &ponixnats.ConnectError{Kind: ponixnats.ErrTLS}, []string{"PONIX_NATS_TLS_CA_FILE", "PONIX_NATS_TLS_CERT_FILE", "PONIX_NATS_TLS_KEY_FILE"}},
		{"NATS refused the credentials set", withUser, &ponixnats.ConnectError{Kind: ponixnats.ErrAuthorization}, []string{"PONIX_NATS_USER", "PONIX_NATS_PASSWORD"}},
		{"NATS wants credentials, none set", none, &ponixnats.ConnectError{Kind: ponixnats.ErrAuthorization},
			[]string{"PONIX_NATS_USER", "PONIX_NATS_PASSWORD", "PONIX_NATS_TOKEN", "PONIX_NATS_NKEY_SEED_FILE", "PONIX_NATS_CREDS_FILE"}},
		{"not a setting", none, fmt.Errorf("disk full"), nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.c.VarsToCheck(tc.err); !slices.Equal(got, tc.want) {
				t.Errorf("VarsToCheck = %v, want %v", got, tc.want)
			}
		})
	}
}
