package config_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/ponix-go/ponix/ponix-all-in-one/internal/config"
)

func TestLoadOnlyIgnoresOtherVariables(t *testing.T) {
	environ := []string{
		"PONIX_NATS_URL=nats://nats:4222",
		"PONIX_NATS_BATCH_SIZE=abc",                   // does not parse
		"PONIX_NATS_ACK_WAIT_SECS=1",                  // shorter than the batch wait
		"PONIX_CLICKHOUSE_NATIVE_URL=http://ch:8123",  // refused scheme
		"PONIX_CLICKHOUSE_USERNAME=",                  // empty where a value is required
		"PONIX_HTTP_ADDR=nowhere",                     // not host:port
		"PONIX_NATS_BACTH_SIZE=1",                     // unknown: not LoadOnly's business
		"HOME=/root",                                  // not Ponix's
		"PONIX_CLICKHOUSE_GOOSE_BINARY_PATH=/usr/bin", // ignored
	}
	if _, err := config.Load(environ); err == nil {
		t.Fatal("Load accepts the bad values; the test needs them refused")
	}
	cfg, err := config.LoadOnly(environ, "PONIX_NATS_URL", "PONIX_NATS_STREAM")
	if err != nil {
		t.Fatalf("LoadOnly: %v", err)
	}
	if cfg.NATSURL != "nats://nats:4222" || cfg.NATSStream != "processed_envelopes" {
		t.Errorf("LoadOnly read NATSURL %q, NATSStream %q", cfg.NATSURL, cfg.NATSStream)
	}
	if cfg.NATSBatchSize != 10000 || cfg.ClickHouseNativeURL != "localhost:9000" {
		t.Errorf("variables outside vars do not take their defaults: batch size %d, native URL %q", cfg.NATSBatchSize, cfg.ClickHouseNativeURL)
	}
	if u := config.UnknownVariables(environ); len(u) != 1 || u[0].Var != "PONIX_NATS_BACTH_SIZE" {
		t.Errorf("UnknownVariables = %v; want PONIX_NATS_BACTH_SIZE alone", u)
	}
}

func TestLoadOnlyReportsItsVariables(t *testing.T) {
	environ := []string{
		"PONIX_NATS_BATCH_SIZE=abc",
		"PONIX_NATS_STREAM=a.b",
		"PONIX_LOG_LEVEL=",
		"PONIX_NATS_USER=u", // without PONIX_NATS_PASSWORD
	}
	_, err := config.LoadOnly(environ, "PONIX_NATS_STREAM", "PONIX_LOG_LEVEL", "PONIX_NATS_USER", "PONIX_NATS_PASSWORD")
	var got []string
	for _, ce := range configErrors(t, err) {
		got = append(got, ce.Var)
	}
	if want := "PONIX_LOG_LEVEL PONIX_NATS_STREAM PONIX_NATS_PASSWORD"; strings.Join(got, " ") != want {
		t.Fatalf("LoadOnly errors name %v; want %s\n%v", got, want, err)
	}
	var ce *config.Error
	if !errors.As(err, &ce) || strings.Contains(err.Error(), "PONIX_NATS_BATCH_SIZE") {
		t.Errorf("err = %v", err)
	}
}

func TestLoadOnlyPanicsOnAnUnknownVariable(t *testing.T) {
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), "PONIX_NATS_URLS") {
			t.Errorf("recover() = %v; want a panic naming PONIX_NATS_URLS", r)
		}
	}()
	_, _ = config.LoadOnly(nil, "PONIX_NATS_URLS")
}
