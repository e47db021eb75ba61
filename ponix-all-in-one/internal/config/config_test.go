package config_test

import (
	"bytes"
	"errors"
	"log/slog"
	"reflect"
	"strings"
	"testing"

	"github.com/ponix-go/ponix/ponix-all-in-one/internal/config"
)

func TestDefaultsMatchUpstream(t *testing.T) {
	cfg, err := config.Load(nil)
	if err != nil {
		t.Fatalf("Load(empty env) = %v", err)
	}
	checks := map[string][2]any{
		"stream":     {cfg.NATSStream, "processed_envelopes"},
		"subject":    {cfg.NATSSubject, "processed_envelopes.>"},
		"base":       {cfg.NATSBaseSubject(), "processed_envelopes"},
		"batch":      {cfg.NATSBatchSize, 10000},
		"wait":       {cfg.NATSBatchWaitSecs, 5},
		"ack wait":   {cfg.NATSAckWaitSecs, 30},
		"insert":     {cfg.ClickHouseInsertTimeoutSecs, 15},
		"pending":    {cfg.NATSMaxAckPending, 0},
		"replicas":   {cfg.NATSReplicas, 0},
		"native":     {cfg.ClickHouseNativeURL, "localhost:9000"},
		"database":   {cfg.ClickHouseDatabase, "ponix"},
		"user":       {cfg.ClickHouseUsername, "ponix"},
		"password":   {cfg.ClickHousePassword, "ponix"},
		"nats url":   {cfg.NATSURL, ""},
		"producer":   {cfg.ProducerEnabled, true},
		"data dir":   {cfg.DataDir, "./.ponix"},
		"embedded":   {cfg.NATSEmbeddedAddr, "127.0.0.1:4222"},
		"consumer":   {cfg.NATSConsumer, "ponix-all-in-one"},
		"log level":  {cfg.LogLevel, "info"},
		"log format": {cfg.LogFormat, "text"},
	}
	for name, c := range checks {
		if !reflect.DeepEqual(c[0], c[1]) {
			t.Errorf("%s = %v, want %v", name, c[0], c[1])
		}
	}
}

func TestBadValuesNameTheVariable(t *testing.T) {
	for _, tc := range []struct {
		env     string
		wantVar string
	}{
		{"PONIX_NATS_BATCH_SIZE=abc", "PONIX_NATS_BATCH_SIZE"},
		{"PONIX_NATS_BATCH_SIZE=0", "PONIX_NATS_BATCH_SIZE"},
		{"PONIX_NATS_BATCH_WAIT_SECS=-1", "PONIX_NATS_BATCH_WAIT_SECS"},
		{"PONIX_NATS_ACK_WAIT_SECS=5", "PONIX_NATS_ACK_WAIT_SECS"}, // not longer than the batch wait (5)
		{"PONIX_NATS_ACK_WAIT_SECS=0", "PONIX_NATS_ACK_WAIT_SECS"},
		{"PONIX_CLICKHOUSE_INSERT_TIMEOUT_SECS=0", "PONIX_CLICKHOUSE_INSERT_TIMEOUT_SECS"},
		{"PONIX_CLICKHOUSE_INSERT_TIMEOUT_SECS=-2", "PONIX_CLICKHOUSE_INSERT_TIMEOUT_SECS"},
		{"PONIX_NATS_MAX_ACK_PENDING=10", "PONIX_NATS_MAX_ACK_PENDING"}, // below the batch size (30)
		{"PONIX_NATS_REPLICAS=-1", "PONIX_NATS_REPLICAS"},
		{"PONIX_INTERVAL_SECS=1.5", "PONIX_INTERVAL_SECS"},
		{"PONIX_PRODUCER_ENABLED=maybe", "PONIX_PRODUCER_ENABLED"},
		{"PONIX_LOG_LEVEL=loud", "PONIX_LOG_LEVEL"},
		{"PONIX_LOG_FORMAT=xml", "PONIX_LOG_FORMAT"},
		{"PONIX_NATS_URL=http://x:4222", "PONIX_NATS_URL"},
		{"PONIX_NATS_SUBJECT=processed_envelopes", "PONIX_NATS_SUBJECT"},
		{"PONIX_NATS_SUBJECT=.>", "PONIX_NATS_SUBJECT"},
		{"PONIX_NATS_STREAM=a.b", "PONIX_NATS_STREAM"},
		{"PONIX_CLICKHOUSE_NATIVE_URL=http://localhost:8123", "PONIX_CLICKHOUSE_NATIVE_URL"},
		{"PONIX_CLICKHOUSE_NATIVE_URL=localhost", "PONIX_CLICKHOUSE_NATIVE_URL"},
		{"PONIX_CLICKHOUSE_DATABASE=po-nix; DROP", "PONIX_CLICKHOUSE_DATABASE"},
		{"PONIX_CLICKHOUSE_MIGRATIONS_DIR=/does/not/exist", "PONIX_CLICKHOUSE_MIGRATIONS_DIR"},
	} {
		t.Run(tc.env, func(t *testing.T) {
			_, err := config.Load([]string{tc.env})
			var ce *config.Error
			if !errors.As(err, &ce) {
				t.Fatalf("Load = %v, want a *config.Error", err)
			}
			if ce.Var != tc.wantVar {
				t.Errorf("error names %s, want %s (%v)", ce.Var, tc.wantVar, err)
			}
			if !strings.Contains(err.Error(), tc.wantVar) {
				t.Errorf("message %q does not name %s", err, tc.wantVar)
			}
		})
	}
}

func TestAllProblemsReportedTogether(t *testing.T) {
	_, err := config.Load([]string{"PONIX_NATS_BATCH_SIZE=0", "PONIX_LOG_LEVEL=loud"})
	for _, v := range []string{"PONIX_NATS_BATCH_SIZE", "PONIX_LOG_LEVEL"} {
		if err == nil || !strings.Contains(err.Error(), v) {
			t.Errorf("error %v does not mention %s", err, v)
		}
	}
}

func TestAcceptedForms(t *testing.T) {
	cfg, err := config.Load([]string{
		"PONIX_CLICKHOUSE_NATIVE_URL=clickhouse://db.internal:9440",
		"PONIX_NATS_URL=nats://a:4222, tls://b:4222",
		"PONIX_LOG_LEVEL=DEBUG",
	})
	if err != nil {
		t.Fatal(err)
	}
	if addr, _ := cfg.ClickHouseAddr(); addr != "db.internal:9440" {
		t.Errorf("ClickHouseAddr = %q", addr)
	}
	if l, _ := cfg.SlogLevel(); l != slog.LevelDebug {
		t.Errorf("level = %v", l)
	}
}

func TestLogValueRedactsPassword(t *testing.T) {
	cfg, err := config.Load([]string{"PONIX_CLICKHOUSE_PASSWORD=s3cret-pw"})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("config", "config", cfg)
	if strings.Contains(buf.String(), "s3cret-pw") {
		t.Fatalf("password leaked into the log: %s", buf.String())
	}
	for _, want := range []string{"PONIX_CLICKHOUSE_PASSWORD=[REDACTED]", "PONIX_NATS_STREAM=processed_envelopes"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("log lacks %q: %s", want, buf.String())
		}
	}
}

func TestIgnoredVariablesAreReportedNotRejected(t *testing.T) {
	environ := []string{"PONIX_CLICKHOUSE_GOOSE_BINARY_PATH=/usr/bin/goose", "PONIX_CLICKHOUSE_URL=http://localhost:8123"}
	if _, err := config.Load(environ); err != nil {
		t.Fatalf("Load = %v; ignored variables must be accepted", err)
	}
	got := config.IgnoredSet(environ)
	for _, k := range []string{"PONIX_CLICKHOUSE_GOOSE_BINARY_PATH", "PONIX_CLICKHOUSE_URL"} {
		if got[k] == "" {
			t.Errorf("%s not reported as ignored: %v", k, got)
		}
	}
}

func TestUsageListsEveryVariableWithDefault(t *testing.T) {
	var buf bytes.Buffer
	if err := config.WriteUsage(&buf); err != nil {
		t.Fatal(err)
	}
	typ := reflect.TypeFor[config.Config]()
	for i := range typ.NumField() {
		name := "PONIX_" + typ.Field(i).Tag.Get("env")
		if !strings.Contains(buf.String(), name) {
			t.Errorf("usage lacks %s", name)
		}
	}
	if !strings.Contains(buf.String(), "PONIX_NATS_BATCH_SIZE") || !strings.Contains(buf.String(), "30") {
		t.Errorf("usage lacks the batch size default:\n%s", buf.String())
	}
}
