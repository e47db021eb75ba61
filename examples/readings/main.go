// Command readings is the example service for teams that import Ponix's modules: it moves
// sensor readings (its own protobuf type, metrics.v1.Reading) from its own JetStream stream
// into its own ClickHouse table, with the same delivery rules as Ponix itself. Its wiring is one
// pipeline.Config (service.go):
//
//   - the stream "readings" (subjects readings.>), consumed by the durable consumer
//     "readings-clickhouse", both created (again) by the pipeline;
//   - pipeline.Proto decodes each message; one that is not a Reading, or not a valid one, goes
//     to the dead-letter stream "readings_dlq"; a failing ClickHouse holds the batch in place;
//   - the columns declared once (reading.go) are written in one native INSERT a batch into
//     the table "readings", created by the goose migrations embedded here (schema/) under the
//     service's own version and lock tables, beside Ponix's own in the same database;
//   - runner runs the pipeline until SIGINT or SIGTERM, then flushes and closes the
//     connections.
//
// It is configured with environment variables (see loadConfig):
//
//	READINGS_NATS_URL              nats://127.0.0.1:4222
//	READINGS_CLICKHOUSE_ADDR       127.0.0.1:9000 (native protocol)
//	READINGS_CLICKHOUSE_DATABASE   default
//	READINGS_CLICKHOUSE_USER       default
//	READINGS_CLICKHOUSE_PASSWORD   (empty)
//	READINGS_HTTP_ADDR             (empty: off) e.g. :8080, serves the pipeline's readiness
//	READINGS_BATCH_SIZE            5000 readings per INSERT at most
//	READINGS_BATCH_WAIT            1s: the longest a batch waits to fill up
//	READINGS_LOG_LEVEL             info (debug, info, warn or error)
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/ponix-go/ponix/runner"
)

func main() {
	cfg, err := loadConfig(os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "readings:", err)
		os.Exit(2)
	}
	logger := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
	err = run(context.Background(), cfg, logger)
	if err != nil {
		logger.Error("readings stopped", "error", err)
	}
	os.Exit(runner.ExitCode(err))
}

// config is the service's configuration.
type config struct {
	NATSURL            string
	ClickHouseAddr     string
	ClickHouseDatabase string
	ClickHouseUser     string
	ClickHousePassword string
	HTTPAddr           string
	BatchSize          int
	BatchWait          time.Duration
	LogLevel           slog.Level
}

// loadConfig reads the configuration from the environment through getenv (os.Getenv in main).
// An empty variable takes its default; a value that does not parse is an error naming the
// variable.
func loadConfig(getenv func(string) string) (config, error) {
	or := func(key, def string) string {
		if v := getenv(key); v != "" {
			return v
		}
		return def
	}
	cfg := config{
		NATSURL:            or("READINGS_NATS_URL", "nats://127.0.0.1:4222"),
		ClickHouseAddr:     or("READINGS_CLICKHOUSE_ADDR", "127.0.0.1:9000"),
		ClickHouseDatabase: or("READINGS_CLICKHOUSE_DATABASE", "default"),
		ClickHouseUser:     or("READINGS_CLICKHOUSE_USER", "default"),
		ClickHousePassword: getenv("READINGS_CLICKHOUSE_PASSWORD"),
		HTTPAddr:           getenv("READINGS_HTTP_ADDR"),
	}
	var errs []error
	n, err := strconv.Atoi(or("READINGS_BATCH_SIZE", "5000"))
	if err != nil || n <= 0 {
		errs = append(errs, fmt.Errorf("READINGS_BATCH_SIZE=%q: want a positive integer", getenv("READINGS_BATCH_SIZE")))
	}
	cfg.BatchSize = n
	d, err := time.ParseDuration(or("READINGS_BATCH_WAIT", "1s"))
	if err != nil || d <= 0 {
		errs = append(errs, fmt.Errorf("READINGS_BATCH_WAIT=%q: want a positive duration such as 500ms or 2s", getenv("READINGS_BATCH_WAIT")))
	}
	cfg.BatchWait = d
	if err := cfg.LogLevel.UnmarshalText([]byte(or("READINGS_LOG_LEVEL", "info"))); err != nil {
		errs = append(errs, fmt.Errorf("READINGS_LOG_LEVEL=%q: want debug, info, warn or error", getenv("READINGS_LOG_LEVEL")))
	}
	return cfg, errors.Join(errs...)
}
