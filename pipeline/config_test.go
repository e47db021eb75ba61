package pipeline

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/ponix-go/ponix/ponixclickhouse"
	"github.com/ponix-go/ponix/ponixnats"
)

func TestNewRefusesAnEmptyConfigNamingEachRequiredField(t *testing.T) {
	_, err := New(Config[[]byte, testRow]{})
	if !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("New(empty) = %v, want an error wrapping ErrInvalidConfig", err)
	}
	for _, field := range []string{"JetStream: ", "Stream.Name: ", "Consumer.Durable: ", "ClickHouse: ", "Table.Name: ", "Encoder: ", "Decode: ", "Row: "} {
		if !strings.Contains(err.Error(), field) {
			t.Errorf("the error does not name %q:\n%v", strings.TrimSuffix(field, ": "), err)
		}
	}
}

func TestNewRefusesEachBadField(t *testing.T) {
	resumeAt := func(context.Context, ponixnats.ResumeInfo) (uint64, error) { return 1, nil }
	tests := []struct {
		name  string
		edit  func(*Config[[]byte, testRow])
		field string // named in the error
		want  string // also in the error
	}{
		{"consumer on another stream", func(c *Config[[]byte, testRow]) { c.Consumer.Stream = "other" }, "Consumer.Stream", `"other" differs from Stream.Name "s"`},
		{"consumer ensures its stream", func(c *Config[[]byte, testRow]) { c.Consumer.EnsureStream = &ponixnats.StreamConfig{Name: "s"} }, "Consumer.EnsureStream", "leave it nil"},
		{"consumer resumes itself beside a Key", func(c *Config[[]byte, testRow]) { c.Consumer.ResumeAt = resumeAt }, "Consumer.ResumeAt", "set by the pipeline from Key"},
		{"half a key", func(c *Config[[]byte, testRow]) { c.Key.StreamSeq = "" }, "Key", "set both StreamCreated and StreamSeq"},
		{"key column the encoder lacks", func(c *Config[[]byte, testRow]) { c.Key.StreamSeq = "seq" }, "Key", `column "seq" is not among the Encoder's columns [value stream_created_ns stream_seq]`},
		{"table name not an identifier", func(c *Config[[]byte, testRow]) { c.Table.Name = "t; DROP TABLE x" }, "Table", "invalid identifier"},
		{"database name not an identifier", func(c *Config[[]byte, testRow]) { c.Table.Database = "a-b" }, "Table", "database name"},
		{"cluster without a name", func(c *Config[[]byte, testRow]) {
			c.Cluster = &Cluster[testRow]{ShardKey: func(testRow) uint64 { return 0 }}
		}, "Cluster.Name", "required"},
		{"lookup table without key columns", func(c *Config[[]byte, testRow]) { c.Key = Key{Lookup: ponixclickhouse.Table{Name: "keys"}} }, "Key.Lookup", "set with"},
		{"lookup table with a bad name", func(c *Config[[]byte, testRow]) { c.Key.Lookup = ponixclickhouse.Table{Name: "a b"} }, "Key.Lookup", ""},
		{"cluster without a shard key", func(c *Config[[]byte, testRow]) { c.Cluster = &Cluster[testRow]{Name: "c"} }, "Cluster.ShardKey", "required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := rawConfig(nil)
			tt.edit(&cfg)
			p, err := New(cfg)
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("New = %v, %v; want an error wrapping ErrInvalidConfig", p, err)
			}
			if !strings.Contains(err.Error(), tt.field+": ") || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q: want it to name %s and say %q", err, tt.field, tt.want)
			}
		})
	}
}

func TestNewAcceptsWhatThePipelineWouldSetItself(t *testing.T) {
	resumeAt := func(context.Context, ponixnats.ResumeInfo) (uint64, error) { return 1, nil }
	tests := []struct {
		name string
		edit func(*Config[[]byte, testRow])
	}{
		{"consumer stream equal to the stream", func(c *Config[[]byte, testRow]) { c.Consumer.Stream = "s" }},
		{"own ResumeAt without a Key", func(c *Config[[]byte, testRow]) { c.Key, c.Consumer.ResumeAt = Key{}, resumeAt }},
		{"a cluster", func(c *Config[[]byte, testRow]) {
			c.Cluster = &Cluster[testRow]{Name: "c", ShardKey: func(testRow) uint64 { return 0 }}
		}},
		{"a table in a database", func(c *Config[[]byte, testRow]) { c.Table.Database = "db" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := rawConfig(nil)
			tt.edit(&cfg)
			p, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if p.cfg.Consumer.Stream != "s" {
				t.Errorf("Consumer.Stream = %q, want the stream's name", p.cfg.Consumer.Stream)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, nil))
	cfg := rawConfig(nil)
	cfg.Logger = logger
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if p.cfg.Consumer.Logger != logger {
		t.Error("Consumer.Logger is not the pipeline's Logger")
	}
	p.cfg.Hold.Logger.Info("held")
	if line := buf.String(); !strings.Contains(line, "stream=s") || !strings.Contains(line, "consumer=d") {
		t.Errorf("the hold's lines go to the pipeline's logger with the stream and the consumer; got %q", line)
	}
	for _, err := range []error{
		&ponixclickhouse.RowError{Index: 2, Err: errors.New("bad")},
		&ponixclickhouse.SchemaError{},
		ponixclickhouse.ErrUnresponsive,
		errors.New("anything"),
	} {
		if got, want := p.cfg.Hold.Classify(err), string(ponixclickhouse.Classify(err)); got != want {
			t.Errorf("Hold.Classify(%v) = %q, want ponixclickhouse.Classify's %q", err, got, want)
		}
	}

	// Given ones are kept.
	cfg.Consumer.Logger = slog.New(slog.DiscardHandler)
	cfg.Hold.Classify = func(error) string { return "mine" }
	p, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if p.cfg.Consumer.Logger != cfg.Consumer.Logger || p.cfg.Hold.Classify(nil) != "mine" {
		t.Error("a given Consumer.Logger or Hold.Classify was replaced")
	}

	// No logger at all: slog.Default().
	cfg = rawConfig(nil)
	cfg.Logger = nil
	p, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if p.log != slog.Default() || p.cfg.Consumer.Logger != slog.Default() {
		t.Error("without a Logger the pipeline and its consumer do not log to slog.Default()")
	}
}

func TestRecordStreamCreatedNanos(t *testing.T) {
	if got := (Record[int]{}).StreamCreatedNanos(); got != 0 {
		t.Errorf("unknown creation time: %d, want 0", got)
	}
	created := time.Date(2026, 12, 4, 1, 2, 3, 456789, time.UTC)
	r := Record[int]{Stream: ponixnats.StreamID{Name: "s", Created: created}}
	if got, want := r.StreamCreatedNanos(), uint64(created.UnixNano()); got != want {
		t.Errorf("StreamCreatedNanos = %d, want %d", got, want)
	}
}

// ClickHouse gives up a stalled writer's insert after half the consumer's takeover time, in
// whole seconds, at least one: 10 s at the defaults (AckWait 30 s), 1 s at AckWait 3 s.
func TestStallTimeoutIsHalfTheTakeoverTime(t *testing.T) {
	for _, tc := range []struct {
		cfg  ponixnats.ConsumerConfig
		want time.Duration
	}{
		{ponixnats.ConsumerConfig{}, 10 * time.Second},
		{ponixnats.ConsumerConfig{Ack: ponixnats.AckPerBatch, AckWait: 3 * time.Second}, time.Second},
		{ponixnats.ConsumerConfig{Ack: ponixnats.AckPerBatch, AckWait: 30 * time.Second, OwnerTTL: 10 * time.Second}, 3 * time.Second},
		{ponixnats.ConsumerConfig{AckWait: time.Second}, time.Second},
	} {
		if got := stallTimeout(tc.cfg); got != tc.want {
			t.Errorf("stallTimeout(ack %v, AckWait %s, OwnerTTL %s) = %s, want %s", tc.cfg.Ack, tc.cfg.AckWait, tc.cfg.OwnerTTL, got, tc.want)
		}
	}
}
