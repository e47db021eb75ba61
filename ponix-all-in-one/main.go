// Command ponix-all-in-one is the Ponix service: it applies the ClickHouse
// migrations, then publishes sample ProcessedEnvelopes to NATS JetStream (unless
// PONIX_PRODUCER_ENABLED=false) and consumes the stream into ClickHouse in
// batches, until SIGINT or SIGTERM.
//
// Configuration comes from PONIX_* environment variables; run with -h to list
// them with their defaults. Exit status: 0 after a clean shutdown, 1 when a
// startup phase or a process fails, 2 for a bad configuration value.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"

	"github.com/ponix-go/ponix/ponix-all-in-one/internal/app"
	"github.com/ponix-go/ponix/ponix-all-in-one/internal/config"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3"; without
// it the module version or VCS revision from the build info is reported.
var version = ""

// Exit statuses.
const (
	exitOK          = 0
	exitFailure     = 1
	exitBadConfig   = 2
	programName     = "ponix-all-in-one"
	usageIntroduced = programName + ` moves ProcessedEnvelope messages from NATS JetStream into ClickHouse.

Usage: ` + programName + ` [-h] [-version]

Configuration is read from the environment:

`
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Environ(), os.Stdout, os.Stderr))
}

// run is main without the process globals, so tests can call it.
func run(ctx context.Context, args, environ []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet(programName, flag.ContinueOnError)
	fs.SetOutput(stderr)
	showVersion := fs.Bool("version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprint(stdout, usageIntroduced)
		_ = config.WriteUsage(stdout)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitBadConfig
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected arguments %q (configuration comes from PONIX_* variables; see -h)\n", programName, fs.Args())
		return exitBadConfig
	}
	if *showVersion {
		fmt.Fprintf(stdout, "%s %s\n", programName, buildVersion())
		return exitOK
	}

	cfg, err := config.Load(environ)
	if err != nil {
		fmt.Fprintf(stderr, "%s: invalid configuration:\n%v\n", programName, err)
		return exitBadConfig
	}
	logger := newLogger(cfg, stderr)
	for k, why := range config.IgnoredSet(environ) {
		logger.Warn("ignoring variable", "variable", k, "reason", why)
	}
	logger.Info("starting", "version", buildVersion(), "message", cfg.Message, "config", cfg)

	if err := app.Run(ctx, cfg, app.Options{Logger: logger, Version: buildVersion()}); err != nil {
		logger.Error("stopped with an error", "error", err)
		return exitFailure
	}
	logger.Info("stopped")
	return exitOK
}

func newLogger(cfg config.Config, w io.Writer) *slog.Logger {
	level, _ := cfg.SlogLevel() // validated by config.Load
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func buildVersion() string {
	if version != "" {
		return version
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	for _, s := range info.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			return "devel-" + s.Value[:12]
		}
	}
	return "devel"
}
