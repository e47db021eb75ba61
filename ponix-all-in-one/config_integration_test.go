//go:build integration

package main_test

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ponix-go/ponix/ponixclickhouse/chserver"
	"github.com/ponix-go/ponix/ponixclickhouse/chtest"
)

// localEnv is a configuration for a ClickHouse of this test (not the shared
// chSrv) with the embedded NATS server and the producer on; it sets no
// ClickHouse credentials.
func localEnv(t *testing.T, chAddr string) map[string]string {
	return map[string]string{
		"PONIX_DATA_DIR":              t.TempDir(),
		"PONIX_CLICKHOUSE_NATIVE_URL": chAddr,
		"PONIX_NATS_EMBEDDED_ADDR":    "127.0.0.1:0",
		"PONIX_NATS_BATCH_WAIT_SECS":  "1",
		"PONIX_INTERVAL_SECS":         "1",
		"PONIX_STARTUP_TIMEOUT_SECS":  "20",
		"PONIX_SHUTDOWN_TIMEOUT_SECS": "10",
		"PONIX_HTTP_ADDR":             "127.0.0.1:0",
	}
}

// (a) A stock ClickHouse user without password, given as
// PONIX_CLICKHOUSE_PASSWORD= (set, empty): the service connects and envelopes
// land. Left unset, the variable means the default password, which that user
// refuses.
func TestConfigEmptyClickHousePassword(t *testing.T) {
	const dbName = "ponix_nopw"
	chs := startClickHouse(t, chserver.Config{Dir: t.TempDir()}, dbName) // user default, no password
	env := localEnv(t, chs.Addr())
	env["PONIX_CLICKHOUSE_DATABASE"] = dbName
	env["PONIX_CLICKHOUSE_USERNAME"] = "default"
	env["PONIX_CLICKHOUSE_PASSWORD"] = "" // explicitly empty

	s := startService(t, env)
	db := &chtest.Database{Name: dbName, Conn: mustOpen(t, chs.Addr(), dbName, "default", "")}
	waitRows(t, db, s, 3, 60*time.Second)
	s.terminate()
	if !strings.Contains(s.logs.String(), `config.PONIX_CLICKHOUSE_PASSWORD=""`) {
		t.Errorf("the startup line does not show the empty password:\n%s", s.logs.String())
	}

	t.Run("unset means the default password", func(t *testing.T) {
		env := localEnv(t, chs.Addr())
		env["PONIX_CLICKHOUSE_DATABASE"] = dbName
		env["PONIX_CLICKHOUSE_USERNAME"] = "default"
		s := startService(t, env)
		if code := s.wait(60 * time.Second); code != 1 {
			t.Fatalf("exit code %d, want 1 (authentication refused)", code)
		}
		line := failureLine(t, s.logs.String())
		for _, want := range []string{"startup phase migrations failed", "PONIX_CLICKHOUSE_PASSWORD"} {
			if !strings.Contains(line, want) {
				t.Errorf("the error does not name %q: %s", want, line)
			}
		}
	})
}

// (b) User, password and database only inside PONIX_CLICKHOUSE_NATIVE_URL
// (percent-encoded, with a second address after the reachable one): rows land
// and the password appears in no log line, at debug level either. The same
// URL with PONIX_CLICKHOUSE_PASSWORD set to another value is a configuration
// error naming both variables.
func TestConfigCredentialsInNativeURL(t *testing.T) {
	const (
		user    = "ponix_url"
		pass    = "Url-S3cret@/:pw" // '@', '/' and ':' need encoding in the URL
		encoded = "Url-S3cret%40%2F%3Apw"
		dbName  = "ponix_url_db"
	)
	chs := startClickHouse(t, chserver.Config{Dir: t.TempDir(), User: user, Password: pass}, dbName)
	spare := "127.0.0.1:" + strconv.Itoa(freePort(t)) // a replica that is down
	nativeURL := "clickhouse://" + user + ":" + encoded + "@" + chs.Addr() + "," + spare + "/" + dbName

	env := localEnv(t, nativeURL)
	env["PONIX_LOG_LEVEL"] = "debug"
	s := startService(t, env)
	db := &chtest.Database{Name: dbName, Conn: mustOpen(t, chs.Addr(), dbName, user, pass)}
	waitRows(t, db, s, 3, 60*time.Second)
	s.terminate()

	logs := s.logs.String()
	checkNoSecrets(t, logs, "S3cret")
	for _, want := range []string{
		"level=DEBUG", // debug lines were written, and hold no secret either
		"clickhouse://" + user + ":[REDACTED]@" + chs.Addr() + "," + spare + "/" + dbName,
		"config.PONIX_CLICKHOUSE_USERNAME=" + user,
		"config.PONIX_CLICKHOUSE_DATABASE=" + dbName,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q:\n%s", want, logs)
		}
	}

	t.Run("conflicting password variable", func(t *testing.T) {
		env := localEnv(t, nativeURL)
		env["PONIX_CLICKHOUSE_PASSWORD"] = "Other-S3cret"
		s := startService(t, env)
		if code := s.wait(10 * time.Second); code != 2 {
			t.Fatalf("exit code %d, want 2", code)
		}
		out := s.logs.String()
		for _, want := range []string{"PONIX_CLICKHOUSE_NATIVE_URL", "PONIX_CLICKHOUSE_PASSWORD", "[REDACTED]"} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
		checkNoSecrets(t, out, "S3cret")
	})
}

// (c) A mistyped variable is warned about with the name it resembles, one
// structured line per variable; the test suites' PONIX_TEST_* are not.
func TestConfigTypoWarns(t *testing.T) {
	env := localEnv(t, "127.0.0.1:"+strconv.Itoa(freePort(t))) // ClickHouse down: the service stops after the warnings
	env["PONIX_STARTUP_TIMEOUT_SECS"] = "2"
	env["PONIX_LOG_FORMAT"] = "json"
	env["PONIX_NATS_BACTH_SIZE"] = "100"
	env["PONIX_TEST_SOMETHING"] = "1"
	s := startService(t, env)
	if code := s.wait(30 * time.Second); code != 1 {
		t.Fatalf("exit code %d, want 1", code)
	}
	var warned int
	for _, l := range strings.Split(strings.TrimSpace(s.logs.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("non-JSON line %q: %v", l, err)
		}
		if strings.Contains(l, "PONIX_TEST_SOMETHING") {
			t.Errorf("PONIX_TEST_SOMETHING reported: %s", l)
		}
		if rec["variable"] != "PONIX_NATS_BACTH_SIZE" {
			continue
		}
		warned++
		if rec["level"] != "WARN" || rec["did_you_mean"] != "PONIX_NATS_BATCH_SIZE" ||
			rec["msg"] != "ignoring unknown variable PONIX_NATS_BACTH_SIZE (did you mean PONIX_NATS_BATCH_SIZE?)" {
			t.Errorf("warning line %s", l)
		}
	}
	if warned != 1 {
		t.Errorf("%d warnings about PONIX_NATS_BACTH_SIZE, want 1:\n%s", warned, s.logs.String())
	}
}

// Every problem of the environment in one run: a value that does not parse,
// range checks of the others, a variable set empty, and the typo that may
// explain them; exit status 2.
func TestConfigAllProblemsInOneRun(t *testing.T) {
	s := startService(t, map[string]string{
		"PONIX_NATS_BATCH_SIZE":                "abc",
		"PONIX_CLICKHOUSE_INSERT_TIMEOUT_SECS": "0",
		"PONIX_LOG_FORMAT":                     "xml",
		"PONIX_DATA_DIR":                       "",
		"PONIX_CLICKHOUSE_NATIVE_URL":          "clickhouse://u:S3cret@ch:9000?secure=true",
		"PONIX_NATS_BACTH_SIZE":                "100",
	})
	if code := s.wait(10 * time.Second); code != 2 {
		t.Fatalf("exit code %d, want 2", code)
	}
	out := s.logs.String()
	for _, want := range []string{
		`PONIX_NATS_BATCH_SIZE="abc": not a valid whole number`,
		`PONIX_CLICKHOUSE_INSERT_TIMEOUT_SECS="0": must be at least 1`,
		`PONIX_LOG_FORMAT="xml"`,
		"PONIX_DATA_DIR: is set but empty",
		"PONIX_CLICKHOUSE_NATIVE_URL", "query parameters (secure)",
		"note: ignoring unknown variable PONIX_NATS_BACTH_SIZE (did you mean PONIX_NATS_BATCH_SIZE?)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	checkNoSecrets(t, out, "S3cret")
}
