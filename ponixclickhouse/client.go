package ponixclickhouse

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Config holds the connection settings of a ClickHouse client (native protocol).
type Config struct {
	// Addr is the native protocol address, host:port (e.g. "localhost:9000").
	Addr string
	// Addrs are several native protocol addresses of the same data (replicas, or nodes of a
	// cluster that each serve the same tables) to fail over between: a connection is opened to
	// the first that answers, in order. When Addrs is set, Addr is ignored; when it is empty, Addr
	// is the only address. See [Config.Addresses].
	Addrs []string
	// Database is the default database of the connection; empty means "default".
	Database string
	// Username; empty means "default".
	Username string
	// Password of Username.
	Password string
	// Compression turns on LZ4 compression of data blocks. It saves network bandwidth at the
	// price of CPU; on loopback it is usually slower.
	Compression bool
	// TLS, when not nil, connects with TLS (typically to port 9440).
	TLS *tls.Config
	// DialTimeout bounds opening a connection (default 5s).
	DialTimeout time.Duration
	// ReadTimeout bounds each read from the server (default 5m, long enough for big inserts).
	ReadTimeout time.Duration
	// PingTimeout bounds the ping that Open does (default 10s).
	PingTimeout time.Duration
	// MaxOpenConns limits the pool (default 10).
	MaxOpenConns int
	// Logger receives the clickhouse-go driver's own log messages (default: none; they include a
	// warning on every connection to a server older than 25.8). Ponix's own logs go to slog.Default().
	Logger *slog.Logger
}

// Addresses returns the addresses to connect to: Addrs when set, else Addr alone (nil when
// both are empty).
func (cfg Config) Addresses() []string {
	if len(cfg.Addrs) > 0 {
		return slices.Clone(cfg.Addrs)
	}
	if cfg.Addr == "" {
		return nil
	}
	return []string{cfg.Addr}
}

// addrLabel names the addresses in errors: "host:port" or "host1:port,host2:port".
func (cfg Config) addrLabel() string { return strings.Join(cfg.Addresses(), ",") }

// Options returns the clickhouse-go options for cfg, with defaults applied. With several
// addresses a new connection goes to the first that answers, in order
// (clickhouse.ConnOpenInOrder): the others are failovers.
func (cfg Config) Options() *clickhouse.Options {
	opts := &clickhouse.Options{
		Protocol:         clickhouse.Native,
		Addr:             cfg.Addresses(),
		ConnOpenStrategy: clickhouse.ConnOpenInOrder,
		Auth: clickhouse.Auth{
			Database: cfg.Database,
			Username: cfg.Username,
			Password: cfg.Password,
		},
		TLS:          cfg.TLS,
		DialTimeout:  cfg.DialTimeout,
		ReadTimeout:  cfg.ReadTimeout,
		MaxOpenConns: cfg.MaxOpenConns,
		MaxIdleConns: cfg.MaxOpenConns,
		Logger:       cfg.Logger,
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = 5 * time.Second
	}
	if opts.ReadTimeout <= 0 {
		opts.ReadTimeout = 5 * time.Minute
	}
	if opts.MaxOpenConns <= 0 {
		opts.MaxOpenConns = 10
		opts.MaxIdleConns = 10
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Compression {
		opts.Compression = &clickhouse.Compression{Method: clickhouse.CompressionLZ4}
	}
	return opts
}

// Open connects to ClickHouse and pings it. A wrong address, database or user/password gives a
// [*ConfigError] that names the setting (see [ErrUnreachable], [ErrUnknownDatabase],
// [ErrAuthentication]). When the native handshake times out or gets an answer that is not the
// native protocol, Open asks the address over HTTP (bounded by DialTimeout, at most
// 2s) and says so when an HTTP server answers: the usual mistake is ClickHouse's HTTP port (8123)
// where the native port (9000) belongs. The caller must Close the connection. The connection is
// a [*Conn] (its pool can be renewed after a credential or permission fault, and a
// [BatchWriter] does so by itself).
func Open(ctx context.Context, cfg Config) (driver.Conn, error) {
	if len(cfg.Addresses()) == 0 {
		return nil, &ConfigError{Setting: "Addr", Err: errors.New("address is empty")}
	}
	conn, err := newConn(cfg)
	if err != nil {
		return nil, explainOpenError(ctx, cfg, err)
	}
	timeout := cfg.PingTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	if err := Ping(ctx, conn, timeout); err != nil {
		_ = conn.Close()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("clickhouse: open %s: %w", cfg.addrLabel(), err)
		}
		return nil, explainOpenError(ctx, cfg, err)
	}
	return conn, nil
}

// OpenDB returns a database/sql handle for cfg (as goose needs). It does not connect; use
// [PingDB] or db.PingContext to check the settings.
func OpenDB(cfg Config) *sql.DB {
	return clickhouse.OpenDB(cfg.Options())
}

// PingDB pings a database/sql handle opened with [OpenDB] and classifies a failure like [Open]
// (including the look for an HTTP server where the native protocol was expected).
func PingDB(ctx context.Context, db *sql.DB, cfg Config) error {
	pctx, cancel := context.WithTimeout(ctx, pingTimeout(cfg))
	defer cancel()
	if err := db.PingContext(pctx); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("clickhouse: ping %s: %w", cfg.addrLabel(), err)
		}
		return explainOpenError(ctx, cfg, err)
	}
	return nil
}

func pingTimeout(cfg Config) time.Duration {
	if cfg.PingTimeout > 0 {
		return cfg.PingTimeout
	}
	return 10 * time.Second
}

// Ping checks that the server answers within timeout.
func Ping(ctx context.Context, conn driver.Conn, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := conn.Ping(ctx); err != nil {
		return fmt.Errorf("clickhouse: ping: %w", err)
	}
	return nil
}

// ServerVersion reports the server's version as "major.minor.patch" (e.g. "18.16.1"), as the
// server announced it in the handshake.
func ServerVersion(ctx context.Context, conn driver.Conn) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	v, err := conn.ServerVersion()
	if err != nil {
		return "", fmt.Errorf("clickhouse: server version: %w", err)
	}
	return fmt.Sprintf("%d.%d.%d", v.Version.Major, v.Version.Minor, v.Version.Patch), nil
}

// Sentinel errors wrapped by [ConfigError]; test with errors.Is.
var (
	// ErrUnreachable: nothing that speaks the ClickHouse native protocol answers at Addr.
	ErrUnreachable = errors.New("cannot reach a ClickHouse server (native protocol)")
	// ErrUnknownDatabase: the server has no such database (code 81).
	ErrUnknownDatabase = errors.New("unknown database")
	// ErrAuthentication: wrong user name or password (code 516; 192/193 on old servers).
	ErrAuthentication = errors.New("authentication failed: wrong user name or password")
	// ErrTLS: with Config.TLS set, the TLS handshake failed (untrusted or mismatched server
	// certificate, a client certificate the server refuses or needs).
	ErrTLS = errors.New("TLS handshake failed")
)

// ConfigError is a connection failure that a setting explains.
type ConfigError struct {
	// Setting is the Config field at fault: "Addr", "Database", "Username/Password" or "TLS".
	Setting string
	// Value is the setting's value (never the password).
	Value string
	// Err wraps one of the sentinel errors and the driver's error.
	Err error
}

func (e *ConfigError) Error() string {
	if e.Value != "" {
		return fmt.Sprintf("clickhouse: %s %q: %v", e.Setting, e.Value, e.Err)
	}
	return fmt.Sprintf("clickhouse: %s: %v", e.Setting, e.Err)
}

// Unwrap returns the wrapped errors.
func (e *ConfigError) Unwrap() error { return e.Err }

// ExplainConnectError turns a connection failure of the driver met outside [Open] — through
// database/sql, goose or a long-lived connection — into a [*ConfigError] naming the setting at
// fault, as Open does: a refused user or password (Username/Password), an unknown database
// (Database), no server answering (Addr). Any other error is returned as it is.
func ExplainConnectError(err error) error {
	var ce *ConfigError
	if err == nil || errors.As(err, &ce) {
		return err
	}
	var ex *clickhouse.Exception
	switch {
	case errors.As(err, &ex) && ex.Code == 81:
		return &ConfigError{Setting: "Database", Err: fmt.Errorf("%w: %w", ErrUnknownDatabase, err)}
	case errors.As(err, &ex) && (ex.Code == 192 || ex.Code == 193 || ex.Code == 194 || ex.Code == 516):
		return &ConfigError{Setting: "Username/Password", Err: fmt.Errorf("%w: %w", ErrAuthentication, err)}
	case !errors.As(err, &ex) && (IsNetworkError(err) || handshakeFailure(err) == handshakeReply) &&
		!errors.Is(err, context.DeadlineExceeded):
		if hint := handshakeHint(handshakeFailure(err), 0); hint != "" {
			return &ConfigError{Setting: "Addr", Err: fmt.Errorf("%w (%s): %w", ErrUnreachable, hint, err)}
		}
		return &ConfigError{Setting: "Addr", Err: fmt.Errorf("%w: %w", ErrUnreachable, err)}
	}
	return err
}

// explainOpenError is classifyOpenError for a failure of [Open] or [PingDB]: when the native
// handshake failed the way it does with an HTTP server at the address (no answer, or an answer
// that is not the native protocol), it first asks the addresses over HTTP, so that the error can
// say which of them is an HTTP port.
func explainOpenError(ctx context.Context, cfg Config, err error) error {
	var httpAddrs []string
	if handshakeFailure(err) != "" {
		httpAddrs = httpServers(ctx, cfg)
	}
	return classifyError(cfg, err, httpAddrs)
}

// classifyOpenError turns a failure to open a connection with cfg into a [*ConfigError] naming
// the setting at fault, when one does; it asks no server anything (see explainOpenError).
func classifyOpenError(cfg Config, err error) error { return classifyError(cfg, err, nil) }

// classifyError is classifyOpenError knowing which addresses of cfg answered HTTP.
func classifyError(cfg Config, err error, httpAddrs []string) error {
	var ex *clickhouse.Exception
	if errors.As(err, &ex) {
		switch ex.Code {
		case 81: // UNKNOWN_DATABASE
			db := cfg.Database
			if db == "" {
				db = "default"
			}
			return &ConfigError{Setting: "Database", Value: db, Err: fmt.Errorf("%w: %w", ErrUnknownDatabase, err)}
		case 192, 193, 194, 516: // UNKNOWN_USER, WRONG_PASSWORD, REQUIRED_PASSWORD, AUTHENTICATION_FAILED
			user := cfg.Username
			if user == "" {
				user = "default"
			}
			return &ConfigError{Setting: "Username/Password", Value: user, Err: fmt.Errorf("%w: %w", ErrAuthentication, err)}
		}
		return fmt.Errorf("clickhouse: connect to %s: %w", cfg.addrLabel(), err)
	}
	if len(httpAddrs) > 0 {
		return &ConfigError{Setting: "Addr", Value: cfg.addrLabel(), Err: fmt.Errorf("%w (%s): %w", ErrUnreachable, httpHint(httpAddrs), err)}
	}
	var record tls.RecordHeaderError
	if cfg.TLS != nil && errors.As(err, &record) && string(record.RecordHeader[:]) == "HTTP/" {
		return &ConfigError{Setting: "Addr", Value: cfg.addrLabel(), Err: fmt.Errorf(
			"%w (the server answered the TLS handshake in plain HTTP: is this the HTTP port? %s): %w", ErrUnreachable, nativePorts, err)}
	}
	if cfg.TLS != nil {
		// With TLS 1.3 the client finishes its side of the handshake before the server checks
		// the client certificate; a server that needs one then sends an alert or just closes.
		noClientCert := len(cfg.TLS.Certificates) == 0 && cfg.TLS.GetClientCertificate == nil
		closed := errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, io.EOF)
		refused := strings.Contains(err.Error(), "certificate required") ||
			strings.Contains(err.Error(), "unknown certificate authority") || strings.Contains(err.Error(), "bad certificate")
		switch {
		case noClientCert && (closed || refused):
			return &ConfigError{Setting: "TLS", Value: cfg.addrLabel(), Err: fmt.Errorf(
				"%w (the server may require a client certificate, and none is configured): %w", ErrTLS, err)}
		case refused:
			return &ConfigError{Setting: "TLS", Value: cfg.addrLabel(), Err: fmt.Errorf(
				"%w (the server refused the client certificate; check that its CA trusts it): %w", ErrTLS, err)}
		case closed:
			// The alert does not always arrive before the close: a reset right after the
			// handshake, with a client certificate offered, is that certificate refused.
			return &ConfigError{Setting: "TLS", Value: cfg.addrLabel(), Err: fmt.Errorf(
				"%w (the server closed the connection after the TLS handshake: it may have refused the client certificate; check that its CA trusts it): %w", ErrTLS, err)}
		}
		if isTLSError(err) {
			return &ConfigError{Setting: "TLS", Value: cfg.addrLabel(), Err: fmt.Errorf("%w: %w", ErrTLS, err)}
		}
	}
	if hint := handshakeHint(handshakeFailure(err), cfg.Options().DialTimeout); hint != "" {
		return &ConfigError{Setting: "Addr", Value: cfg.addrLabel(), Err: fmt.Errorf("%w (%s): %w", ErrUnreachable, hint, err)}
	}
	if port := httpPort(cfg.Addresses()); port != "" {
		return &ConfigError{Setting: "Addr", Value: cfg.addrLabel(), Err: fmt.Errorf(
			"%w (port %s is ClickHouse's usual HTTP port: is this the HTTP port? %s): %w", ErrUnreachable, port, nativePorts, err)}
	}
	return &ConfigError{Setting: "Addr", Value: cfg.addrLabel(), Err: fmt.Errorf("%w: %w", ErrUnreachable, err)}
}

// nativePorts says where the native protocol is, for hints about an HTTP port given as Addr.
const nativePorts = "ClickHouse's native protocol listens on tcp_port (9000 by default, 9440 with TLS); 8123 is the HTTP port (8443 with TLS)"

// httpProbeTimeout bounds the HTTP request explainOpenError sends to each address (DialTimeout
// bounds it too).
const httpProbeTimeout = 2 * time.Second

// How the native handshake failed, as handshakeFailure reports it.
const (
	handshakeTimeout = "timeout" // connected, but no answer to the hello
	handshakeReply   = "reply"   // an answer that is not the native protocol
	handshakeClosed  = "closed"  // the server hung up on the hello
)

// handshakeFailure reports how the native handshake failed when that is how it fails with an
// HTTP server (or any server of another protocol) at the address: handshakeTimeout,
// handshakeReply or handshakeClosed; "" for any other error (refused, unknown host, TLS, a
// ClickHouse exception). It reads the driver's error text, which names the handshake.
func handshakeFailure(err error) string {
	msg := err.Error()
	var ex *clickhouse.Exception
	var ne net.Error
	switch {
	case errors.As(err, &ex), !strings.Contains(msg, "handshake"):
		return ""
	case strings.Contains(msg, "unexpected packet"):
		return handshakeReply
	case isTLSError(err):
		return ""
	case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, os.ErrDeadlineExceeded):
		return handshakeTimeout
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET):
		return handshakeClosed
	}
	return ""
}

// handshakeHint is the hint for a handshake that failed the way kind says (see
// handshakeFailure), when no HTTP server was found at the address: it may still be one (the
// HTTP request may have timed out too). dialTimeout, if known, bounded the handshake.
func handshakeHint(kind string, dialTimeout time.Duration) string {
	switch kind {
	case handshakeTimeout:
		within := ""
		if dialTimeout > 0 {
			within = " within DialTimeout (" + dialTimeout.String() + ")"
		}
		return "the server accepted the connection but did not answer the native protocol handshake" + within + ": is this the HTTP port? " + nativePorts
	case handshakeReply:
		return "the server's answer is not ClickHouse's native protocol: is this the HTTP port? " + nativePorts
	}
	return ""
}

// httpHint says that addrs, addresses given for the native protocol, answer HTTP.
func httpHint(addrs []string) string {
	who := "the server at " + addrs[0] + " answers"
	if len(addrs) > 1 {
		who = "the servers at " + strings.Join(addrs, ", ") + " answer"
	}
	return who + " HTTP, not ClickHouse's native protocol: is this the HTTP port? " + nativePorts
}

// httpPort returns the port of the first address in addrs that is ClickHouse's default HTTP
// port (8123) or HTTPS port (8443), or "".
func httpPort(addrs []string) string {
	for _, addr := range addrs {
		if _, port, err := net.SplitHostPort(addr); err == nil && (port == "8123" || port == "8443") {
			return port
		}
	}
	return ""
}

// httpServers returns the addresses of cfg that answer an HTTP request (over TLS when cfg.TLS is
// set), in cfg's order. The addresses are asked concurrently, each within DialTimeout and at most
// httpProbeTimeout.
func httpServers(ctx context.Context, cfg Config) []string {
	timeout := min(cfg.Options().DialTimeout, httpProbeTimeout)
	addrs := cfg.Addresses()
	answers := make([]bool, len(addrs))
	var wg sync.WaitGroup
	for i, addr := range addrs {
		wg.Go(func() { answers[i] = answersHTTP(ctx, addr, cfg.TLS, timeout) })
	}
	wg.Wait()
	var out []string
	for i, addr := range addrs {
		if answers[i] {
			out = append(out, addr)
		}
	}
	return out
}

// answersHTTP reports whether the server at addr answers "GET /ping" (ClickHouse's HTTP health
// check, harmless to any web server) with an HTTP response within timeout; with tlsConfig it
// asks over TLS.
func answersHTTP(ctx context.Context, addr string, tlsConfig *tls.Config, timeout time.Duration) bool {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var (
		conn net.Conn
		err  error
	)
	if tlsConfig != nil {
		d := tls.Dialer{Config: tlsConfig}
		conn, err = d.DialContext(ctx, "tcp", addr)
	} else {
		var d net.Dialer
		conn, err = d.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return false
	}
	defer conn.Close()
	if deadline, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(deadline)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) }) // a cancel too
	defer stop()
	if _, err := io.WriteString(conn, "GET /ping HTTP/1.0\r\nHost: "+addr+"\r\nUser-Agent: ponixclickhouse\r\n\r\n"); err != nil {
		return false
	}
	head := make([]byte, len("HTTP/"))
	_, err = io.ReadFull(conn, head)
	return err == nil && string(head) == "HTTP/"
}

// isTLSError reports whether err comes from a failed TLS handshake.
func isTLSError(err error) bool {
	var (
		verifyErr  *tls.CertificateVerificationError
		alertErr   tls.AlertError
		recordErr  tls.RecordHeaderError
		unknownCA  x509.UnknownAuthorityError
		hostErr    x509.HostnameError
		invalidErr x509.CertificateInvalidError
	)
	return errors.As(err, &verifyErr) || errors.As(err, &alertErr) || errors.As(err, &recordErr) ||
		errors.As(err, &unknownCA) || errors.As(err, &hostErr) || errors.As(err, &invalidErr) ||
		strings.Contains(err.Error(), "tls: ") || strings.Contains(err.Error(), "x509: ")
}
