// Package dlqcmd is the "dlq" command of ponix-all-in-one: it lists, shows
// and replays the dead letters of the service's stream (the messages that
// could never be stored, kept in the stream <PONIX_NATS_STREAM>_dlq).
//
// It is configured by the service's PONIX_* variables it needs (NATS URL,
// stream, authentication and TLS, connect timeout, logging; the others are
// ignored) and exits like the service: 0 when done, 1 on a runtime failure, 2
// for bad usage or configuration.
package dlqcmd

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ponix-go/ponix/ponix-all-in-one/internal/config"
	"github.com/ponix-go/ponix/ponixnats"
	"github.com/ponix-go/ponix/ponixnats/dlqadmin"
)

// Exit statuses, as the service's.
const (
	exitOK       = 0
	exitFailure  = 1
	exitBadUsage = 2
)

const program = "ponix-all-in-one dlq"

const usage = `Usage: ` + program + ` <command> [flags]

Inspect and replay the dead letters of the service: messages that can never be
stored (undecodable, invalid, rejected by ClickHouse, out of deliveries), kept
with the reason in headers in the stream <PONIX_NATS_STREAM>_dlq.

Commands:
  list     count dead letters by reason and original subject, with their time span
  show     print dead letters: headers, and the envelope as JSON (raw bytes in hex
           when it does not decode)
  replay   publish dead letters back to their original subjects, then delete them

Run '` + program + ` <command> -h' for the flags of a command. Reading never
consumes or changes anything and does not disturb a running service.

NATS is configured by the service's variables: PONIX_NATS_URL (empty: the
embedded server of a service running on this machine, at
PONIX_NATS_EMBEDDED_ADDR), PONIX_NATS_STREAM, PONIX_NATS_USER/_PASSWORD,
PONIX_NATS_TOKEN, PONIX_NATS_NKEY_SEED_FILE, PONIX_NATS_CREDS_FILE and
PONIX_NATS_TLS_*_FILE; PONIX_STARTUP_TIMEOUT_SECS bounds the connect, and
PONIX_LOG_LEVEL and PONIX_LOG_FORMAT set the logging. The service's other
variables (consumer and ClickHouse settings) are not read, not even checked.
Exit status: 0 done, 1 runtime failure (NATS, or dead letters that could not be
replayed), 2 bad usage or configuration (of a variable listed here).
`

// usageError is a command-line mistake (exit status 2).
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// env is what a command runs with.
type env struct {
	environ []string
	cfg     config.Config
	stdout  io.Writer
	stderr  io.Writer
	logger  *slog.Logger
	// connLogger is logger for the NATS connection, at warn level at least
	// unless debug is configured.
	connLogger *slog.Logger
}

// Run runs "dlq <args>" with the configuration in environ and returns the
// exit status. SIGINT and SIGTERM end a command early (a replay finishes the
// dead letter in hand).
func Run(ctx context.Context, args, environ []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitBadUsage
	}
	var cmd func(context.Context, *env, []string) error
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return exitOK
	case "list":
		cmd = runList
	case "show":
		cmd = runShow
	case "replay":
		cmd = runReplay
	default:
		fmt.Fprintf(stderr, "%s: unknown command %q (want list, show or replay; see -h)\n", program, args[0])
		return exitBadUsage
	}

	// Each command parses its flags before it loads the configuration: -h
	// and flag mistakes need no configuration.
	e := &env{environ: environ, stdout: stdout, stderr: stderr}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := cmd(ctx, e, args[1:])
	var ue *usageError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "%s %s: %v (see %s %s -h)\n", program, args[0], err, program, args[0])
		return exitBadUsage
	case errors.Is(err, errBadConfig):
		fmt.Fprintf(stderr, "%s: invalid configuration:\n%v\n", program, errors.Unwrap(err))
		for _, u := range config.UnknownVariables(environ) { // a typo may explain a missing setting
			fmt.Fprintf(stderr, "note: %s\n", u)
		}
		return exitBadUsage
	default:
		fmt.Fprintf(stderr, "%s %s: %v\n", program, args[0], err)
		return exitFailure
	}
}

var errBadConfig = errors.New("invalid configuration")

// configError is a configuration mistake (exit status 2); it matches
// errBadConfig and unwraps to config.Load's error.
type configError struct{ err error }

func (e *configError) Error() string        { return e.err.Error() }
func (e *configError) Unwrap() error        { return e.err }
func (e *configError) Is(target error) bool { return target == errBadConfig }

// usedVariables are the variables the dlq commands read: logging, the
// connect timeout, the stream, and the NATS connection as config.Config.NATSOptions
// builds it (keep them in step). The service's other variables (consumer and
// ClickHouse tuning, HTTP listener...) are ignored, even when their value is
// bad: a dead-letter tool must not refuse to run because of a setting it
// never uses.
var usedVariables = append([]string{
	config.Prefix + "LOG_LEVEL",
	config.Prefix + "LOG_FORMAT",
	config.Prefix + "STARTUP_TIMEOUT_SECS",
}, config.NATSConnectionVariables()...)

// load reads the configuration (the variables in usedVariables only) and
// sets up the logger.
func (e *env) load() error {
	cfg, err := config.LoadOnly(e.environ, usedVariables...)
	if err != nil {
		return &configError{err}
	}
	e.cfg = cfg
	defer func() {
		for _, u := range config.UnknownVariables(e.environ) {
			e.logger.Warn(u.String(), "variable", u.Var)
		}
	}()
	level, _ := cfg.SlogLevel() // validated by config.LoadOnly
	e.logger = newLogger(cfg.LogFormat, level, e.stderr)
	// The connection's routine lines (e.g. "NATS disconnected" when the
	// command closes it) only at debug level.
	e.connLogger = e.logger
	if level > slog.LevelDebug && level < slog.LevelWarn {
		e.connLogger = newLogger(cfg.LogFormat, slog.LevelWarn, e.stderr)
	}
	return nil
}

func newLogger(format string, level slog.Level, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	opts.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
		if len(groups) == 0 && a.Key == slog.TimeKey {
			return slog.Attr{} // a command's lines need no timestamp
		}
		return a
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// dlqStream is the dead-letter stream of the configured stream (the name the
// service's consumer uses).
func (e *env) dlqStream() string { return e.cfg.NATSStream + "_dlq" }

// connect opens the NATS connection as the service does and the dead-letter
// stream. found is false when the stream does not exist (nothing was ever
// dead-lettered, or PONIX_NATS_STREAM names another stream).
func (e *env) connect(ctx context.Context) (nc *nats.Conn, d *dlqadmin.Stream, found bool, err error) {
	url := e.cfg.NATSURL
	if url == "" {
		url = "nats://" + e.cfg.NATSEmbeddedAddr
	}
	nc, err = ponixnats.Connect(ctx, url, append(e.cfg.NATSOptions("ponix-all-in-one-dlq", e.connLogger), ponixnats.WithTimeout(e.cfg.StartupTimeout()))...)
	if err != nil {
		if e.cfg.NATSURL == "" {
			err = fmt.Errorf("%w (PONIX_NATS_URL is empty: connecting to the embedded server of a running service at PONIX_NATS_EMBEDDED_ADDR=%s; set PONIX_NATS_URL otherwise)", err, e.cfg.NATSEmbeddedAddr)
		}
		return nil, nil, false, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, false, fmt.Errorf("jetstream: %w", err)
	}
	d, err = dlqadmin.Open(ctx, js, e.dlqStream())
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nc, nil, false, nil
	}
	if err != nil {
		nc.Close()
		if errors.Is(err, jetstream.ErrJetStreamNotEnabled) && e.cfg.NATSURL == "" {
			err = fmt.Errorf("%w (PONIX_NATS_URL is empty: the server at PONIX_NATS_EMBEDDED_ADDR=%s is not the embedded server of a running service, which has JetStream; set PONIX_NATS_URL to the service's NATS server)", err, e.cfg.NATSEmbeddedAddr)
		}
		return nil, nil, false, err
	}
	return nc, d, true, nil
}

// noStream says on stderr that the dead-letter stream does not exist.
func (e *env) noStream() {
	fmt.Fprintf(e.stderr, "%s: no dead-letter stream %s on the server: nothing was dead-lettered yet (or PONIX_NATS_STREAM=%s is not the service's stream)\n",
		program, e.dlqStream(), e.cfg.NATSStream)
}

// parse parses args with fs, allowing flags and positional arguments in any
// order ("show 17 -raw"), and returns the positional ones. -h returns
// flag.ErrHelp after printing the usage to stdout.
func parse(fs *flag.FlagSet, args []string, stdout io.Writer, help string) ([]string, error) {
	fs.Usage = func() {}
	fs.SetOutput(io.Discard) // Run prints the error once, with a hint
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fmt.Fprint(stdout, help)
				fs.SetOutput(stdout)
				fs.PrintDefaults()
				return nil, flag.ErrHelp
			}
			return nil, usagef("%v", err)
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// stringList is a repeatable, comma-separated flag.
type stringList []string

func (s *stringList) String() string { return strings.Join(*s, ",") }

func (s *stringList) Set(v string) error {
	for p := range strings.SplitSeq(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*s = append(*s, p)
		}
	}
	return nil
}
