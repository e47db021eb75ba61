package main

import (
	"log/slog"
	"math"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	metricsv1 "github.com/ponix-go/ponix/examples/readings/proto/metrics/v1"
)

func TestLoadConfig(t *testing.T) {
	env := func(kv map[string]string) func(string) string {
		return func(k string) string { return kv[k] }
	}
	cfg, err := loadConfig(env(nil))
	if err != nil {
		t.Fatal(err)
	}
	want := config{NATSURL: "nats://127.0.0.1:4222", ClickHouseAddr: "127.0.0.1:9000", ClickHouseDatabase: "default",
		ClickHouseUser: "default", BatchSize: 5000, BatchWait: time.Second, LogLevel: slog.LevelInfo}
	if cfg != want {
		t.Errorf("defaults %+v; want %+v", cfg, want)
	}

	cfg, err = loadConfig(env(map[string]string{"READINGS_BATCH_SIZE": "200", "READINGS_BATCH_WAIT": "250ms",
		"READINGS_LOG_LEVEL": "debug", "READINGS_CLICKHOUSE_DATABASE": "metrics"}))
	if err != nil || cfg.BatchSize != 200 || cfg.BatchWait != 250*time.Millisecond || cfg.LogLevel != slog.LevelDebug || cfg.ClickHouseDatabase != "metrics" {
		t.Errorf("loadConfig = %+v, %v", cfg, err)
	}

	_, err = loadConfig(env(map[string]string{"READINGS_BATCH_SIZE": "-1", "READINGS_BATCH_WAIT": "soon", "READINGS_LOG_LEVEL": "loud"}))
	for _, name := range []string{"READINGS_BATCH_SIZE", "READINGS_BATCH_WAIT", "READINGS_LOG_LEVEL"} {
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("error %v does not name %s", err, name)
		}
	}
}

func TestValidate(t *testing.T) {
	at := timestamppb.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	if err := validate(&metricsv1.Reading{SensorId: "s1", At: at, Value: 21.5, Unit: "celsius"}); err != nil {
		t.Errorf("a valid reading: %v", err)
	}
	for name, r := range map[string]*metricsv1.Reading{
		"no sensor":        {At: at},
		"sensor with dots": {SensorId: "a.b", At: at},
		"sensor with *":    {SensorId: "a*", At: at},
		"sensor with tab":  {SensorId: "a\tb", At: at},
		"no time":          {SensorId: "s1"},
		"before 1970":      {SensorId: "s1", At: timestamppb.New(time.Date(1969, 12, 31, 0, 0, 0, 0, time.UTC))},
		"after 2106":       {SensorId: "s1", At: timestamppb.New(time.Date(2107, 1, 1, 0, 0, 0, 0, time.UTC))},
		"NaN":              {SensorId: "s1", At: at, Value: math.NaN()},
		"infinite":         {SensorId: "s1", At: at, Value: math.Inf(-1)},
	} {
		if err := validate(r); err == nil {
			t.Errorf("%s: valid; want an error", name)
		}
	}
}

func TestEncoderRefusesARowAlone(t *testing.T) {
	e := new(encoder)
	e.Reset(2)
	ok := row{Reading: &metricsv1.Reading{SensorId: "s1", At: timestamppb.New(time.Unix(60, 0)), Value: 1, Unit: "celsius"}, StreamSeq: 7}
	if err := e.Encode(ok); err != nil {
		t.Fatal(err)
	}
	if err := e.Encode(row{Reading: &metricsv1.Reading{SensorId: "s2"}}); err == nil {
		t.Error("a reading without a time encoded; want an error")
	}
	if len(e.sensors) != 1 || e.sensors[0] != "s1" || !e.at[0].Equal(time.Unix(60, 0)) || e.seqs[0] != 7 {
		t.Errorf("encoder holds %v %v %v; want the valid row only", e.sensors, e.at, e.seqs)
	}
	if got := len(e.Columns()); got != 6 {
		t.Errorf("%d columns; want 6", got)
	}
}
