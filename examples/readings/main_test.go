package main

import (
	"errors"
	"log/slog"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"google.golang.org/protobuf/types/known/timestamppb"

	metricsv1 "github.com/ponix-go/ponix/examples/readings/proto/metrics/v1"
	"github.com/ponix-go/ponix/ponixclickhouse"
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
	for name, e := range map[string]ponixclickhouse.Encoder[row]{"rowColumns": rowColumns().Encoder()} {
		t.Run(name, func(t *testing.T) {
			if got, want := e.Columns(), []string{"sensor_id", "at", "value", "unit", "stream_created_ns", "stream_seq"}; !slices.Equal(got, want) {
				t.Errorf("columns %v; want %v", got, want)
			}
			e.Reset(2)
			created := time.Unix(5, 0)
			ok := row{Reading: &metricsv1.Reading{SensorId: "s1", At: timestamppb.New(time.Unix(60, 0)), Value: 1.5, Unit: "celsius"},
				StreamCreated: uint64(created.UnixNano()), StreamSeq: 7}
			if err := e.Encode(ok); err != nil {
				t.Fatal(err)
			}
			err := e.Encode(row{Reading: &metricsv1.Reading{SensorId: "s2"}})
			var ce *ponixclickhouse.ColumnError
			if !errors.As(err, &ce) || ce.Column != "at" {
				t.Errorf("a reading without a time: %v; want an error naming column at", err)
			}
			if err := e.Encode(row{}); err == nil || !strings.Contains(err.Error(), "no reading") {
				t.Errorf("a row without a reading: %v; want an error", err)
			}
			b := &capture{}
			if err := e.AppendTo(b); err != nil {
				t.Fatal(err)
			}
			want := [][]any{{"s1"}, {time.Unix(60, 0).UTC()}, {1.5}, {"celsius"}, {uint64(created.UnixNano())}, {uint64(7)}}
			if !reflect.DeepEqual(b.cols, want) {
				t.Errorf("columns hold %v; want the valid row only: %v", b.cols, want)
			}
		})
	}
}

// capture is a driver.Batch that keeps what each column is given.
type capture struct {
	driver.Batch
	cols [][]any
}

func (c *capture) Column(i int) driver.BatchColumn {
	for len(c.cols) <= i {
		c.cols = append(c.cols, nil)
	}
	return captureColumn{c, i}
}

type captureColumn struct {
	c *capture
	i int
}

func (cc captureColumn) Append(v any) error {
	rv := reflect.ValueOf(v)
	for j := range rv.Len() {
		cc.c.cols[cc.i] = append(cc.c.cols[cc.i], rv.Index(j).Interface())
	}
	return nil
}

func (cc captureColumn) AppendRow(v any) error { return cc.Append([]any{v}) }
