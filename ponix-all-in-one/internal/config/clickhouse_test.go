package config_test

import (
	"bytes"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/ponix-go/ponix/ponix-all-in-one/internal/config"
)

func TestNativeURLForms(t *testing.T) {
	for _, tc := range []struct {
		name             string
		env              []string
		addrs            []string
		user, secret, db string
	}{
		{"one address", []string{"PONIX_CLICKHOUSE_NATIVE_URL=localhost:9000"}, []string{"localhost:9000"}, "ponix", "ponix", "ponix"},
		{"several addresses", []string{"PONIX_CLICKHOUSE_NATIVE_URL=ch1:9000, ch2:9000,10.0.0.3:9440"}, []string{"ch1:9000", "ch2:9000", "10.0.0.3:9440"}, "ponix", "ponix", "ponix"},
		{"IPv6 with scheme", []string{"PONIX_CLICKHOUSE_NATIVE_URL=tcp://[::1]:9000"}, []string{"[::1]:9000"}, "ponix", "ponix", "ponix"},
		{"credentials and database used", []string{"PONIX_CLICKHOUSE_NATIVE_URL=clickhouse://alice:p%40ss%2Fw%2Cx@ch1:9000,ch2:9001/analytics"}, []string{"ch1:9000", "ch2:9001"}, "alice", "p@ss/w,x", "analytics"},
		{"bare form with credentials", []string{"PONIX_CLICKHOUSE_NATIVE_URL=alice:pw@ch:9000"}, []string{"ch:9000"}, "alice", "pw", "ponix"},
		{"empty password in the URL", []string{"PONIX_CLICKHOUSE_NATIVE_URL=clickhouse://default:@ch:9000"}, []string{"ch:9000"}, "default", "", "ponix"},
		{"URL user without password: no password", []string{"PONIX_CLICKHOUSE_NATIVE_URL=clickhouse://bob@ch:9000"}, []string{"ch:9000"}, "bob", "", "ponix"},
		{"URL user, password in its variable", []string{"PONIX_CLICKHOUSE_NATIVE_URL=clickhouse://bob@ch:9000", "PONIX_CLICKHOUSE_PASSWORD=pw"}, []string{"ch:9000"}, "bob", "pw", "ponix"},
		{"same values in both places", []string{"PONIX_CLICKHOUSE_NATIVE_URL=clickhouse://bob:pw@ch:9000/db1", "PONIX_CLICKHOUSE_USERNAME=bob", "PONIX_CLICKHOUSE_PASSWORD=pw", "PONIX_CLICKHOUSE_DATABASE=db1"}, []string{"ch:9000"}, "bob", "pw", "db1"},
		{"trailing slash", []string{"PONIX_CLICKHOUSE_NATIVE_URL=clickhouse://ch:9000/", "PONIX_CLICKHOUSE_PASSWORD="}, []string{"ch:9000"}, "ponix", "", "ponix"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := config.Load(tc.env)
			if err != nil {
				t.Fatal(err)
			}
			addrs, err := cfg.ClickHouseAddrs()
			if err != nil || !slices.Equal(addrs, tc.addrs) {
				t.Errorf("ClickHouseAddrs = %v, %v; want %v", addrs, err, tc.addrs)
			}
			if first, _ := cfg.ClickHouseAddr(); first != tc.addrs[0] {
				t.Errorf("ClickHouseAddr = %q, want %q", first, tc.addrs[0])
			}
			if cfg.ClickHouseUser() != tc.user || cfg.ClickHouseUsername != tc.user {
				t.Errorf("user %q (field %q), want %q", cfg.ClickHouseUser(), cfg.ClickHouseUsername, tc.user)
			}
			if cfg.ClickHouseSecret() != tc.secret || cfg.ClickHousePassword != tc.secret {
				t.Errorf("password %q (field %q), want %q", cfg.ClickHouseSecret(), cfg.ClickHousePassword, tc.secret)
			}
			if cfg.ClickHouseDB() != tc.db || cfg.ClickHouseDatabase != tc.db {
				t.Errorf("database %q (field %q), want %q", cfg.ClickHouseDB(), cfg.ClickHouseDatabase, tc.db)
			}
		})
	}
}

// A Config built without Load takes the URL's credentials too.
func TestAccessorsWithoutLoad(t *testing.T) {
	cfg := config.Config{ClickHouseNativeURL: "clickhouse://alice:pw@ch:9000/db", ClickHouseUsername: "x", ClickHousePassword: "y", ClickHouseDatabase: "z"}
	if cfg.ClickHouseUser() != "alice" || cfg.ClickHouseSecret() != "pw" || cfg.ClickHouseDB() != "db" {
		t.Errorf("got %q %q %q", cfg.ClickHouseUser(), cfg.ClickHouseSecret(), cfg.ClickHouseDB())
	}
	cfg.ClickHouseNativeURL = "ch:9000"
	if cfg.ClickHouseUser() != "x" || cfg.ClickHouseSecret() != "y" || cfg.ClickHouseDB() != "z" {
		t.Errorf("got %q %q %q", cfg.ClickHouseUser(), cfg.ClickHouseSecret(), cfg.ClickHouseDB())
	}
}

func TestNativeURLFormsRefused(t *testing.T) {
	for _, tc := range []struct{ value, reason string }{
		{"http://localhost:8123", "not HTTP"},
		{"localhost", "host:port"},
		{"ch1:9000,,ch2:9000", "address 2 of 3: empty"},
		{"ch1:9000,ch1:9000", "listed twice"},
		{"ch:0", "1-65535"},
		{"redis://ch:6379", `unsupported scheme "redis"`},
		{"clickhouse://ch:9000?secure=true&dial_timeout=1s", "query parameters (secure, dial_timeout) are not supported"},
		{"clickhouse://ch:9000#x", "fragment"},
		{"clickhouse://ch:9000/a/b", "single database"},
		{"clickhouse://ch:9000/bad-db", "not a ClickHouse identifier"},
		{"clickhouse://u:p@ch1:9000,clickhouse://ch2:9000", "give the scheme and the credentials once"},
		{"clickhouse://:pw@ch:9000", "names no user"},
		{"clickhouse://u:50%off@ch:9000", "password is not validly percent-encoded"},
		{"clickhouse://u:pa/ss@ch:9000", "percent-encode"},
		{"clickhouse://", "host:port"},
	} {
		t.Run(tc.value, func(t *testing.T) {
			_, err := config.Load([]string{"PONIX_CLICKHOUSE_NATIVE_URL=" + tc.value})
			errs := configErrors(t, err)
			if len(errs) != 1 || errs[0].Var != "PONIX_CLICKHOUSE_NATIVE_URL" || !strings.Contains(errs[0].Reason, tc.reason) {
				t.Errorf("Load = %v; want one PONIX_CLICKHOUSE_NATIVE_URL error saying %q", err, tc.reason)
			}
		})
	}
}

func TestNativeURLConflictsNameBothVariables(t *testing.T) {
	const url = "PONIX_CLICKHOUSE_NATIVE_URL=clickhouse://alice:url-pw@ch:9000/db1"
	for _, tc := range []struct{ other, otherVar string }{
		{"PONIX_CLICKHOUSE_USERNAME=bob", "PONIX_CLICKHOUSE_USERNAME"},
		{"PONIX_CLICKHOUSE_PASSWORD=var-pw", "PONIX_CLICKHOUSE_PASSWORD"},
		{"PONIX_CLICKHOUSE_PASSWORD=", "PONIX_CLICKHOUSE_PASSWORD"}, // explicitly empty is a different value
		{"PONIX_CLICKHOUSE_DATABASE=db2", "PONIX_CLICKHOUSE_DATABASE"},
	} {
		t.Run(tc.other, func(t *testing.T) {
			_, err := config.Load([]string{url, tc.other})
			errs := configErrors(t, err)
			if len(errs) != 1 || errs[0].Var != "PONIX_CLICKHOUSE_NATIVE_URL" {
				t.Fatalf("Load = %v; want one error", err)
			}
			msg := err.Error()
			for _, want := range []string{"PONIX_CLICKHOUSE_NATIVE_URL", tc.otherVar} {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q does not name %s", msg, want)
				}
			}
			for _, secret := range []string{"url-pw", "var-pw"} {
				if strings.Contains(msg, secret) {
					t.Errorf("error %q shows a password", msg)
				}
			}
		})
	}
	// Several problems at once are all reported.
	_, err := config.Load([]string{url, "PONIX_CLICKHOUSE_USERNAME=bob", "PONIX_CLICKHOUSE_PASSWORD=x", "PONIX_CLICKHOUSE_DATABASE=db2"})
	if n := len(configErrors(t, err)); n != 3 {
		t.Errorf("%d errors, want 3: %v", n, err)
	}
}

func TestClickHouseCluster(t *testing.T) {
	cfg, err := config.Load(nil)
	if err != nil || cfg.ClickHouseCluster != "" {
		t.Fatalf("default cluster %q, %v; want empty (single server)", cfg.ClickHouseCluster, err)
	}
	for _, ok := range []string{"PONIX_CLICKHOUSE_CLUSTER=", "PONIX_CLICKHOUSE_CLUSTER=prod_cluster_1"} {
		if _, err := config.Load([]string{ok}); err != nil {
			t.Errorf("Load(%s) = %v", ok, err)
		}
	}
	for _, env := range [][]string{
		{"PONIX_CLICKHOUSE_CLUSTER=prod cluster"},
		{"PONIX_CLICKHOUSE_CLUSTER=x; DROP TABLE y"},
		{"PONIX_CLICKHOUSE_CLUSTER=1st"},
		{"PONIX_CLICKHOUSE_CLUSTER=c", "PONIX_CLICKHOUSE_MANAGED=true"},
	} {
		_, err := config.Load(env)
		if got := vars(configErrors(t, err)); !slices.Equal(got, []string{"PONIX_CLICKHOUSE_CLUSTER"}) {
			t.Errorf("Load(%v): errors name %v, want PONIX_CLICKHOUSE_CLUSTER", env, got)
		}
	}
}

func TestManagedClickHouseTakesOneAddress(t *testing.T) {
	_, err := config.Load([]string{"PONIX_CLICKHOUSE_MANAGED=true", "PONIX_CLICKHOUSE_NATIVE_URL=ch1:9000,ch2:9000"})
	if got := vars(configErrors(t, err)); !slices.Equal(got, []string{"PONIX_CLICKHOUSE_NATIVE_URL"}) {
		t.Errorf("errors name %v (%v)", got, err)
	}
}

// With several addresses the TLS server name is left to the dialer, which
// takes each address's host; one address sets it, and so does the variable.
func TestTLSServerNameWithSeveralAddresses(t *testing.T) {
	for _, tc := range []struct {
		env  []string
		want string
	}{
		{[]string{"PONIX_CLICKHOUSE_NATIVE_URL=ch1:9440,ch2:9440"}, ""},
		{[]string{"PONIX_CLICKHOUSE_NATIVE_URL=clickhouse://u:p@ch1:9440/db"}, "ch1"},
		{[]string{"PONIX_CLICKHOUSE_NATIVE_URL=ch1:9440,ch2:9440", "PONIX_CLICKHOUSE_TLS_SERVER_NAME=ch.example"}, "ch.example"},
	} {
		cfg, err := config.Load(append(tc.env, "PONIX_CLICKHOUSE_TLS=true"))
		if err != nil {
			t.Fatal(err)
		}
		tc2, err := cfg.ClickHouseTLSConfig()
		if err != nil || tc2.ServerName != tc.want {
			t.Errorf("%v: ServerName %q, %v; want %q", tc.env, tc2.ServerName, err, tc.want)
		}
	}
}

// Every URL variable is redacted in the startup line, whatever its form.
func TestLogValueRedactsEveryURL(t *testing.T) {
	cfg, err := config.Load([]string{
		"PONIX_NATS_URL=nats://svc:nats-pw-1@n1:4222,nats://nats-tok-2@n2:4222, n3:4222",
		"PONIX_CLICKHOUSE_URL=http://web:http-pw-3@ch:8123",
		"PONIX_CLICKHOUSE_NATIVE_URL=clickhouse://alice:ch%2Fpw-4@ch1:9000,ch2:9000/db",
		"PONIX_NATS_TOKEN=nats-tok-5",
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []func(*bytes.Buffer) slog.Handler{
		func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) },
		func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) },
	} {
		var buf bytes.Buffer
		slog.New(h(&buf)).Info("starting", "config", cfg)
		out := buf.String()
		for _, secret := range []string{"nats-pw-1", "nats-tok-2", "http-pw-3", "pw-4", "nats-tok-5"} {
			if strings.Contains(out, secret) {
				t.Errorf("secret %q in the log: %s", secret, out)
			}
		}
		for _, want := range []string{
			"nats://svc:[REDACTED]@n1:4222,nats://[REDACTED]@n2:4222, n3:4222",
			"http://web:[REDACTED]@ch:8123",
			"clickhouse://alice:[REDACTED]@ch1:9000,ch2:9000/db",
			"CLICKHOUSE_USERNAME", "alice", // the effective user
		} {
			if !strings.Contains(out, want) {
				t.Errorf("log lacks %q: %s", want, out)
			}
		}
	}

	// Values that do not even parse are redacted as well.
	for _, c := range []config.Config{
		{NATSURL: "nats://u:p,w-6@h:4222"},
		{NATSURL: "nats://u:p/w-6@h:4222,nats://x:p,w-6@h2:4222"},
		{ClickHouseNativeURL: "clickhouse://u:p,w-6@h:9000?x=1"},
		{ClickHouseNativeURL: "h:9000/db?password=w-6"},
		{ClickHouseURL: "http://h:8123/?user=u&password=w-6"},
		{ClickHouseNativeURL: "clickhouse://h:9000/db?token=a@w-6"},
	} {
		var buf bytes.Buffer
		slog.New(slog.NewTextHandler(&buf, nil)).Info("starting", "config", c)
		if strings.Contains(buf.String(), "w-6") {
			t.Errorf("secret in the log: %s", buf.String())
		}
	}
}

func TestUsageDocumentsTheNewForms(t *testing.T) {
	var buf bytes.Buffer
	if err := config.WriteUsage(&buf); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"PONIX_CLICKHOUSE_CLUSTER", "ch1:9000,ch2:9000", "clickhouse://user:password@ch1:9000,ch2:9000/dbname",
		"PONIX_CLICKHOUSE_PASSWORD=", "PONIX_TEST_", "Query parameters", "PONIX_MESSAGE, PONIX_CLICKHOUSE_PASSWORD", "PONIX_NATS_PASSWORD",
	} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("usage lacks %q:\n%s", want, buf.String())
		}
	}
}
