package config_test

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/ponix-go/ponix/ponix-all-in-one/internal/config"
)

// configErrors returns the *config.Error values joined in err, in order.
func configErrors(t *testing.T, err error) []*config.Error {
	t.Helper()
	if err == nil {
		return nil
	}
	list := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		list = j.Unwrap()
	}
	out := make([]*config.Error, 0, len(list))
	for _, e := range list {
		var ce *config.Error
		if !errors.As(e, &ce) {
			t.Fatalf("%v is not a *config.Error", e)
		}
		out = append(out, ce)
	}
	return out
}

func vars(errs []*config.Error) []string {
	out := make([]string, len(errs))
	for i, e := range errs {
		out[i] = e.Var
	}
	return out
}

func TestEmptyPasswordIsEmptyUnsetIsDefault(t *testing.T) {
	cfg, err := config.Load([]string{"PONIX_CLICKHOUSE_PASSWORD="})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ClickHousePassword != "" || cfg.ClickHouseSecret() != "" {
		t.Errorf("PONIX_CLICKHOUSE_PASSWORD= gave password %q (secret %q), want empty", cfg.ClickHousePassword, cfg.ClickHouseSecret())
	}
	cfg, err = config.Load([]string{"PONIX_CLICKHOUSE_USERNAME=default"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ClickHouseSecret() != "ponix" {
		t.Errorf("unset PONIX_CLICKHOUSE_PASSWORD gave %q, want the default ponix", cfg.ClickHouseSecret())
	}
	cfg, err = config.Load([]string{"PONIX_MESSAGE="})
	if err != nil || cfg.Message != "" {
		t.Errorf("PONIX_MESSAGE= gave %q, %v; want empty", cfg.Message, err)
	}
}

func TestEmptyNATSPassword(t *testing.T) {
	cfg, err := config.Load([]string{"PONIX_NATS_URL=nats://n:4222", "PONIX_NATS_USER=u", "PONIX_NATS_PASSWORD="})
	if err != nil {
		t.Fatalf("a NATS user without password on an external server: %v", err)
	}
	if cfg.NATSUser != "u" || cfg.NATSPassword != "" {
		t.Errorf("user %q password %q", cfg.NATSUser, cfg.NATSPassword)
	}
	for name, env := range map[string][]string{
		"unset":    {"PONIX_NATS_URL=nats://n:4222", "PONIX_NATS_USER=u"},
		"embedded": {"PONIX_NATS_USER=u", "PONIX_NATS_PASSWORD="},
	} {
		_, err := config.Load(env)
		if got := vars(configErrors(t, err)); !slices.Equal(got, []string{"PONIX_NATS_PASSWORD"}) {
			t.Errorf("%s: errors name %v (%v), want PONIX_NATS_PASSWORD", name, got, err)
		}
	}
}

// Every variable with a default either accepts the empty string (emptyOK) or
// refuses it naming itself; none silently takes its default.
func TestEmptyWhereAValueIsRequiredIsAnError(t *testing.T) {
	typ := reflect.TypeFor[config.Config]()
	var refused int
	for i := range typ.NumField() {
		f := typ.Field(i)
		def, hasDef := f.Tag.Lookup("envDefault")
		if !hasDef {
			continue
		}
		key := config.Prefix + f.Tag.Get("env")
		t.Run(key, func(t *testing.T) {
			cfg, err := config.Load([]string{key + "="})
			if f.Tag.Get("emptyOK") == "true" {
				if err != nil {
					t.Fatalf("Load(%s=) = %v", key, err)
				}
				if got := reflect.ValueOf(cfg).Field(i); !got.IsZero() {
					t.Errorf("%s= gave %v, want empty", key, got)
				}
				return
			}
			refused++
			errs := configErrors(t, err)
			if len(errs) != 1 || errs[0].Var != key || !strings.Contains(errs[0].Reason, "set but empty") || !strings.Contains(errs[0].Reason, "("+def+")") {
				t.Errorf("Load(%s=) = %v; want one error naming it, 'set but empty' and its default", key, err)
			}
		})
	}
	if refused < 20 {
		t.Errorf("only %d variables refuse the empty string", refused)
	}
}

// A value that does not parse does not hide the range and consistency checks
// of the other variables: one run reports everything, each problem once, in
// the order of the -h list.
func TestParseAndRangeErrorsReportedTogether(t *testing.T) {
	_, err := config.Load([]string{
		"PONIX_NATS_BATCH_SIZE=abc",      // not a number
		"PONIX_PRODUCER_ENABLED=maybe",   // not a boolean
		"PONIX_LOG_FORMAT=xml",           // range
		"PONIX_NATS_ACK_WAIT_SECS=0",     // range
		"PONIX_DATA_DIR=",                // empty
		"PONIX_NATS_BATCH_WAIT_SECS=x",   // not a number; the ack wait check sees the default
		"PONIX_CLICKHOUSE_CLUSTER=a b",   // not an identifier
		"PONIX_CLICKHOUSE_NATIVE_URL=ch", // no port
		"PONIX_HTTP_ADDR=8080",           // no host:port
	})
	want := []string{
		"PONIX_LOG_FORMAT", "PONIX_PRODUCER_ENABLED", "PONIX_DATA_DIR", "PONIX_NATS_BATCH_SIZE",
		"PONIX_NATS_BATCH_WAIT_SECS", "PONIX_NATS_ACK_WAIT_SECS", "PONIX_CLICKHOUSE_NATIVE_URL",
		"PONIX_CLICKHOUSE_CLUSTER", "PONIX_HTTP_ADDR",
	}
	errs := configErrors(t, err)
	if got := vars(errs); !slices.Equal(got, want) {
		t.Fatalf("errors name\n%v\nwant\n%v\n(%v)", got, want, err)
	}
	for _, e := range errs {
		if e.Var == "PONIX_NATS_BATCH_SIZE" && !strings.Contains(e.Reason, "whole number") {
			t.Errorf("batch size: %v, want the parse error", e)
		}
	}
}

// Errors show the offending value, but never a secret.
func TestErrorsNeverHoldSecrets(t *testing.T) {
	for name, env := range map[string][]string{
		"NATS URL bad port":         {"PONIX_NATS_URL=nats://svc:s3cret-1@n1:port"},
		"NATS URL comma in pw":      {"PONIX_NATS_URL=nats://svc:s3cret,2@n1:4222"},
		"NATS URL bad scheme":       {"PONIX_NATS_URL=http://svc:s3cret-3@n1:4222"},
		"native bad port":           {"PONIX_CLICKHOUSE_NATIVE_URL=clickhouse://u:s3cret-4@ch:port"},
		"native query":              {"PONIX_CLICKHOUSE_NATIVE_URL=clickhouse://u:s3cret-5@ch:9000?password=s3cret-6"},
		"native slash in pw":        {"PONIX_CLICKHOUSE_NATIVE_URL=clickhouse://u:s3c/ret-7@ch:9000"},
		"native percent in pw":      {"PONIX_CLICKHOUSE_NATIVE_URL=clickhouse://u:s3cret-8%zz@ch:9000"},
		"native http":               {"PONIX_CLICKHOUSE_NATIVE_URL=http://u:s3cret-9@ch:8123"},
		"native conflict":           {"PONIX_CLICKHOUSE_NATIVE_URL=clickhouse://u:s3cret-10@ch:9000", "PONIX_CLICKHOUSE_PASSWORD=s3cret-11"},
		"native two URLs":           {"PONIX_CLICKHOUSE_NATIVE_URL=clickhouse://u:s3cret-12@ch1:9000,clickhouse://u:s3cret-12@ch2:9000"},
		"native managed, two addrs": {"PONIX_CLICKHOUSE_NATIVE_URL=u:s3cret-13@ch1:9000,ch2:9000", "PONIX_CLICKHOUSE_MANAGED=true"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := config.Load(env)
			errs := configErrors(t, err)
			if len(errs) == 0 {
				t.Fatalf("Load(%v) accepted", env)
			}
			for _, secret := range []string{"s3cret", "s3c/ret"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error shows a secret: %v", err)
				}
				for _, e := range errs {
					if strings.Contains(e.Value, secret) || strings.Contains(e.Reason, secret) {
						t.Errorf("error field shows a secret: %#v", e)
					}
				}
			}
		})
	}
}
