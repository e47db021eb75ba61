// Package statuscmd is the "status" command of ponix-all-in-one: one screen that says whether
// data flows, how far behind it is and why it stopped. It reads NATS (the stream, the durable
// consumer, the dead letters) and ClickHouse (the table) directly with the service's PONIX_*
// configuration, and the service's /readyz and /metrics when given its address (-service):
// only the service knows whether it holds a batch, and why.
//
// Exit status: 0 when nothing is wrong, 1 when something is (a source unreachable, a hold, a
// service not ready; with -watch, of the last screen), 2 for bad usage or configuration.
package statuscmd

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/ponix-go/ponix/ponix-all-in-one/internal/config"
)

// Exit statuses, as the service's.
const (
	exitOK       = 0
	exitProblem  = 1
	exitBadUsage = 2
)

const program = "ponix-all-in-one status"

const usage = `Usage: ` + program + ` [-watch] [-json] [-service host:port] [flags]

One screen of the pipeline: the stream (messages, bytes, incarnation), the
consumer (pending = lag in messages, ack pending, redelivered), the stored rate,
the age of the newest stored envelope (lag in time), the hold and its cause,
dead letters by reason, and the rows in the table.

NATS and ClickHouse are read directly, configured by the service's PONIX_*
variables (PONIX_NATS_*, PONIX_CLICKHOUSE_*). The hold, its cause and the
service's readiness come from the service itself: give its HTTP address with
-service (its /readyz and /metrics; the stored rate and the newest stored
envelope then come from its metrics, else from the table).

Exit status: 0 nothing wrong, 1 something is (a source unreachable, a hold, the
service not ready; with -watch, on the last screen), 2 bad usage or
configuration. Dead letters and pending messages with nothing stored are
warnings, not failures.

Flags:
`

// usedVariables are the variables status reads: NATS as the dlq command reads it, and the
// ClickHouse connection. The others are not read, not even checked.
var usedVariables = append([]string{
	config.Prefix + "STARTUP_TIMEOUT_SECS",
	config.Prefix + "NATS_CONSUMER",
	config.Prefix + "CLICKHOUSE_NATIVE_URL",
	config.Prefix + "CLICKHOUSE_DATABASE",
	config.Prefix + "CLICKHOUSE_USERNAME",
	config.Prefix + "CLICKHOUSE_PASSWORD",
	config.Prefix + "CLICKHOUSE_TLS",
	config.Prefix + "CLICKHOUSE_TLS_CA_FILE",
	config.Prefix + "CLICKHOUSE_TLS_CERT_FILE",
	config.Prefix + "CLICKHOUSE_TLS_KEY_FILE",
	config.Prefix + "CLICKHOUSE_TLS_SERVER_NAME",
	config.Prefix + "CLICKHOUSE_TLS_INSECURE_SKIP_VERIFY",
}, config.NATSConnectionVariables()...)

// options are the command's flags.
type options struct {
	watch    bool
	json     bool
	service  string
	interval time.Duration
	window   time.Duration
	timeout  time.Duration
}

// Run runs "status <args>" with the configuration in environ and returns the exit status.
// SIGINT and SIGTERM end a watch.
func Run(ctx context.Context, args, environ []string, stdout, stderr io.Writer) int {
	var o options
	fs := flag.NewFlagSet(program, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.BoolVar(&o.watch, "watch", false, "refresh every -interval until interrupted: in place in a terminal, one screen after another otherwise")
	fs.BoolVar(&o.json, "json", false, "print the status as JSON (one object per line with -watch)")
	fs.StringVar(&o.service, "service", "", "the service's HTTP address (PONIX_HTTP_ADDR of the instance: host:port or http://host:port), for its hold, readiness and metrics")
	fs.DurationVar(&o.interval, "interval", 2*time.Second, "refresh interval of -watch")
	fs.DurationVar(&o.window, "window", time.Second, "without -watch: the stored rate is measured over this window (0: no rate)")
	fs.DurationVar(&o.timeout, "timeout", 3*time.Second, "bound of each read (NATS, ClickHouse, the service)")
	fs.Usage = func() {
		fmt.Fprint(stdout, usage)
		fs.SetOutput(stdout)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitBadUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected arguments %q (see -h)\n", program, fs.Args())
		return exitBadUsage
	}
	if o.interval <= 0 || o.timeout <= 0 || o.window < 0 {
		fmt.Fprintf(stderr, "%s: -interval and -timeout must be positive, -window not negative\n", program)
		return exitBadUsage
	}
	base, err := serviceURL(o.service)
	if err != nil {
		fmt.Fprintf(stderr, "%s: -service: %v\n", program, err)
		return exitBadUsage
	}
	cfg, err := config.LoadOnly(environ, usedVariables...)
	if err != nil {
		fmt.Fprintf(stderr, "%s: invalid configuration:\n%v\n", program, err)
		return exitBadUsage
	}
	c := &collector{cfg: cfg, service: base, timeout: o.timeout, client: &http.Client{},
		quiet: slog.New(slog.DiscardHandler)}
	defer c.close()
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if !o.watch {
		return once(ctx, c, o, stdout, stderr)
	}
	return watch(ctx, c, o, stdout, stderr)
}

// once prints one snapshot; with a window, a first one is taken window earlier for the rate.
func once(ctx context.Context, c *collector, o options, stdout, stderr io.Writer) int {
	if o.window > 0 {
		c.collect(ctx)
		t := time.NewTimer(o.window)
		select {
		case <-ctx.Done():
			t.Stop()
			return exitProblem
		case <-t.C:
		}
	}
	s := c.collect(ctx)
	if err := write(stdout, s, o.json, ""); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", program, err)
		return exitProblem
	}
	return statusOf(s)
}

// Terminal control sequences of the in-place refresh: home, clear to the end of the line,
// clear to the end of the screen.
const (
	cursorHome = "\x1b[H"
	clearLine  = "\x1b[K"
	clearBelow = "\x1b[J"
)

// watch prints a snapshot every interval until ctx ends and returns the last one's status.
func watch(ctx context.Context, c *collector, o options, stdout, stderr io.Writer) int {
	inPlace := !o.json && isTerminal(stdout)
	if inPlace {
		fmt.Fprint(stdout, "\x1b[2J")
	}
	code := exitProblem
	ticker := time.NewTicker(o.interval)
	defer ticker.Stop()
	for {
		s := c.collect(ctx)
		if ctx.Err() != nil {
			return code
		}
		code = statusOf(s)
		var err error
		switch {
		case inPlace:
			err = write(stdout, s, false, cursorHome)
		case o.json:
			err = write(stdout, s, true, "")
		default:
			err = write(stdout, s, false, "")
			if err == nil {
				_, err = fmt.Fprintln(stdout)
			}
		}
		if err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", program, err)
			return exitProblem
		}
		select {
		case <-ctx.Done():
			return code
		case <-ticker.C:
		}
	}
}

// write prints s as JSON (one line) or as the screen; a non-empty home redraws the screen in
// place: from the top, each line cleared to its end, the rest of the screen cleared.
func write(w io.Writer, s *Snapshot, asJSON bool, home string) error {
	if asJSON {
		return json.NewEncoder(w).Encode(s)
	}
	if home == "" {
		return render(w, s)
	}
	var b strings.Builder
	if err := render(&b, s); err != nil {
		return err
	}
	screen := home + strings.ReplaceAll(b.String(), "\n", clearLine+"\n") + clearBelow
	_, err := io.WriteString(w, screen)
	return err
}

func statusOf(s *Snapshot) int {
	if s.OK {
		return exitOK
	}
	return exitProblem
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// serviceURL makes the base URL of -service: host:port or http(s)://host:port; "" stays "".
// An unspecified host (":8080", "0.0.0.0:8080", as in PONIX_HTTP_ADDR) means this machine.
func serviceURL(addr string) (string, error) {
	if addr == "" {
		return "", nil
	}
	scheme := "http://"
	if i := strings.Index(addr, "://"); i >= 0 {
		scheme, addr = addr[:i+3], strings.TrimSuffix(addr[i+3:], "/")
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return scheme + net.JoinHostPort(host, port), nil
}
