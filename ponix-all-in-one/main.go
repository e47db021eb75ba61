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
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"time"

	"github.com/ponix-go/ponix/ponix-all-in-one/internal/app"
	"github.com/ponix-go/ponix/ponix-all-in-one/internal/config"
	"github.com/ponix-go/ponix/ponix-all-in-one/internal/dlqcmd"
	"github.com/ponix-go/ponix/ponix-all-in-one/internal/statuscmd"
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

Usage: ` + programName + ` [-h] [-version] [-healthcheck]
       ` + programName + ` dlq list|show|replay [flags]   (dead letters: see dlq -h)
       ` + programName + ` status [-watch] [-json] [-service host:port]   (the pipeline at a glance: see status -h)

Configuration is read from the environment:

`
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Environ(), os.Stdout, os.Stderr))
}

// run is main without the process globals, so tests can call it.
func run(ctx context.Context, args, environ []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "dlq" {
		return dlqcmd.Run(ctx, args[1:], environ, stdout, stderr)
	}
	if len(args) > 0 && args[0] == "status" {
		return statuscmd.Run(ctx, args[1:], environ, stdout, stderr)
	}
	fs := flag.NewFlagSet(programName, flag.ContinueOnError)
	fs.SetOutput(stderr)
	showVersion := fs.Bool("version", false, "print the version and exit")
	healthcheck := fs.Bool("healthcheck", false, "probe /readyz of the running service at PONIX_HTTP_ADDR; exit 0 when ready, 1 otherwise (a container HEALTHCHECK without shell or curl)")
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
	unknown := config.UnknownVariables(environ)
	if err != nil {
		fmt.Fprintf(stderr, "%s: invalid configuration:\n%v\n", programName, err)
		for _, u := range unknown { // a typo may explain a missing setting
			fmt.Fprintf(stderr, "note: %s\n", u)
		}
		return exitBadConfig
	}
	if *healthcheck {
		return probe(ctx, cfg.HTTPAddr, stdout, stderr)
	}
	logger := newLogger(cfg, stderr)
	for k, why := range config.IgnoredSet(environ) {
		logger.Warn("ignoring variable", "variable", k, "reason", why)
	}
	for _, u := range unknown {
		if u.DidYouMean == "" {
			logger.Warn(u.String(), "variable", u.Var)
		} else {
			logger.Warn(u.String(), "variable", u.Var, "did_you_mean", u.DidYouMean)
		}
	}
	logger.Info("starting", "version", buildVersion(), "message", cfg.Message, "config", cfg)

	if err := app.Run(ctx, cfg, app.Options{Logger: logger, Version: buildVersion()}); err != nil {
		logger.Error("stopped with an error", "error", err)
		return exitFailure
	}
	logger.Info("stopped")
	return exitOK
}

// probe asks /readyz of the service listening on httpAddr and prints the answer.
func probe(ctx context.Context, httpAddr string, stdout, stderr io.Writer) int {
	if httpAddr == config.HTTPAddrOff {
		fmt.Fprintln(stderr, "healthcheck: PONIX_HTTP_ADDR=off, nothing to probe")
		return exitFailure
	}
	host, port, _ := net.SplitHostPort(httpAddr) // validated by config.Load
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	url := "http://" + net.JoinHostPort(host, port) + "/readyz"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		fmt.Fprintf(stderr, "healthcheck: %v\n", err)
		return exitFailure
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "healthcheck: %v\n", err)
		return exitFailure
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	fmt.Fprintf(stdout, "%s %s: %s", url, resp.Status, body)
	if resp.StatusCode != http.StatusOK {
		return exitFailure
	}
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
