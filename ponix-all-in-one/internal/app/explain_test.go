package app

import (
	"fmt"
	"slices"
	"testing"

	"github.com/ponix-go/ponix/ponix-all-in-one/internal/config"
	"github.com/ponix-go/ponix/ponixclickhouse"
	"github.com/ponix-go/ponix/ponixnats"
)

func TestVarsToCheckNamesTheVariablesBehindAStartupFailure(t *testing.T) {
	withUser := &service{cfg: config.Config{NATSUser: "u", NATSPassword: "p"}}
	none := &service{}
	cases := []struct {
		name string
		s    *service
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
			if got := tc.s.varsToCheck(tc.err); !slices.Equal(got, tc.want) {
				t.Errorf("varsToCheck = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestPhaseErrorListsTheVariablesToCheck(t *testing.T) {
	err := &PhaseError{Phase: PhaseNATS, Check: []string{"PONIX_NATS_URL"}, Err: fmt.Errorf("boom")}
	if got, want := err.Error(), "startup phase nats failed (check PONIX_NATS_URL): boom"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}
