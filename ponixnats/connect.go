package ponixnats

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/ponix-go/ponix/runner/backoff"
)

// Default connection settings.
const (
	DefaultConnectTimeout = 5 * time.Second
	DefaultReconnectMin   = 250 * time.Millisecond
	DefaultReconnectMax   = 10 * time.Second
)

// ConnectOption configures [Connect].
type ConnectOption func(*connectOptions) error

type connectOptions struct {
	name         string
	timeout      time.Duration
	logger       *slog.Logger
	reconnectMin time.Duration
	reconnectMax time.Duration
	nats         []nats.Option
	// clientCert records that WithTLS configured a client certificate.
	clientCert bool
}

// WithName sets the client name shown in the server's connection list.
func WithName(name string) ConnectOption {
	return func(o *connectOptions) error { o.name = name; return nil }
}

// WithTimeout bounds the first connect (default [DefaultConnectTimeout]); a
// deadline on the context passed to Connect bounds it too.
func WithTimeout(d time.Duration) ConnectOption {
	return func(o *connectOptions) error {
		if d <= 0 {
			return fmt.Errorf("%w: connect timeout must be > 0, got %s", ErrInvalidConfig, d)
		}
		o.timeout = d
		return nil
	}
}

// WithLogger sets the logger for connection events (disconnect, reconnect,
// asynchronous errors). Default: slog.Default().
func WithLogger(l *slog.Logger) ConnectOption {
	return func(o *connectOptions) error {
		if l != nil {
			o.logger = l
		}
		return nil
	}
}

// WithReconnectBackoff sets the reconnect delay bounds: the delay starts at
// min, doubles per failed attempt up to max, with up to 20% random jitter.
// Reconnecting never gives up.
func WithReconnectBackoff(min, max time.Duration) ConnectOption {
	return func(o *connectOptions) error {
		if min <= 0 || max < min {
			return fmt.Errorf("%w: reconnect backoff needs 0 < min <= max, got min=%s max=%s", ErrInvalidConfig, min, max)
		}
		o.reconnectMin, o.reconnectMax = min, max
		return nil
	}
}

// WithUserPassword authenticates with a user name and password.
func WithUserPassword(user, password string) ConnectOption {
	return func(o *connectOptions) error { o.nats = append(o.nats, nats.UserInfo(user, password)); return nil }
}

// WithToken authenticates with a token.
func WithToken(token string) ConnectOption {
	return func(o *connectOptions) error { o.nats = append(o.nats, nats.Token(token)); return nil }
}

// WithNKeySeedFile authenticates with the NKey user seed stored in file.
func WithNKeySeedFile(file string) ConnectOption {
	return func(o *connectOptions) error {
		opt, err := nats.NkeyOptionFromSeed(file)
		if err != nil {
			return fmt.Errorf("%w: NKey seed file %s: %w", ErrInvalidConfig, file, err)
		}
		o.nats = append(o.nats, opt)
		return nil
	}
}

// WithNKeySeed authenticates with an NKey user seed given as a string
// ("SU...").
func WithNKeySeed(seed string) ConnectOption {
	return func(o *connectOptions) error {
		kp, err := nkeys.FromSeed([]byte(seed))
		if err != nil {
			return fmt.Errorf("%w: NKey seed: %w", ErrInvalidConfig, err)
		}
		pub, err := kp.PublicKey()
		if err != nil {
			return fmt.Errorf("%w: NKey seed: %w", ErrInvalidConfig, err)
		}
		if !nkeys.IsValidPublicUserKey(pub) {
			return fmt.Errorf("%w: NKey seed is not a user seed (public key %s)", ErrInvalidConfig, pub)
		}
		o.nats = append(o.nats, nats.Nkey(pub, kp.Sign))
		return nil
	}
}

// WithCredsFile authenticates with a .creds file (user JWT and NKey seed).
func WithCredsFile(file string) ConnectOption {
	return func(o *connectOptions) error {
		if _, err := os.Stat(file); err != nil {
			return fmt.Errorf("%w: creds file: %w", ErrInvalidConfig, err)
		}
		o.nats = append(o.nats, nats.UserCredentials(file))
		return nil
	}
}

// WithTLS enables TLS. caFile (may be empty: system roots) verifies the
// server; certFile and keyFile (both or neither) present a client
// certificate.
func WithTLS(caFile, certFile, keyFile string) ConnectOption {
	return func(o *connectOptions) error {
		if (certFile == "") != (keyFile == "") {
			return fmt.Errorf("%w: TLS client certificate needs both cert file and key file (cert=%q key=%q)", ErrInvalidConfig, certFile, keyFile)
		}
		o.nats = append(o.nats, nats.Secure(&tls.Config{MinVersion: tls.VersionTLS12}))
		if caFile != "" {
			if _, err := os.Stat(caFile); err != nil {
				return fmt.Errorf("%w: TLS CA file: %w", ErrInvalidConfig, err)
			}
			o.nats = append(o.nats, nats.RootCAs(caFile))
		}
		if certFile != "" {
			o.nats = append(o.nats, nats.ClientCert(certFile, keyFile))
			o.clientCert = true
		}
		return nil
	}
}

// WithNATSOptions appends raw nats.go options (applied last).
func WithNATSOptions(opts ...nats.Option) ConnectOption {
	return func(o *connectOptions) error { o.nats = append(o.nats, opts...); return nil }
}

// ConnectError is returned by [Connect] when the first connection fails. It
// matches (errors.Is) one of [ErrServerUnreachable], [ErrAuthorization] or
// [ErrTLS], and wraps the nats.go error.
type ConnectError struct {
	// URL is the server URL with any password removed.
	URL string
	// Kind is ErrServerUnreachable, ErrAuthorization, ErrTLS or nil (other).
	Kind error
	// Err is the underlying error.
	Err error
	// Hint, if set, says what likely caused the failure.
	Hint string
}

// Error describes the failure and names the URL.
func (e *ConnectError) Error() string {
	if e.Hint != "" {
		return e.message() + " (" + e.Hint + ")"
	}
	return e.message()
}

func (e *ConnectError) message() string {
	switch e.Kind {
	case ErrServerUnreachable:
		return fmt.Sprintf("ponixnats: cannot reach NATS server at %s: %v", e.URL, e.Err)
	case ErrAuthorization:
		return fmt.Sprintf("ponixnats: NATS server at %s refused authorization: %v", e.URL, e.Err)
	case ErrTLS:
		return fmt.Sprintf("ponixnats: TLS with NATS server at %s failed: %v", e.URL, e.Err)
	}
	return fmt.Sprintf("ponixnats: connecting to NATS server at %s: %v", e.URL, e.Err)
}

// Unwrap returns the kind sentinel and the underlying error.
func (e *ConnectError) Unwrap() []error {
	if e.Kind == nil {
		return []error{e.Err}
	}
	return []error{e.Kind, e.Err}
}

// Connect opens a NATS connection to serverURL (comma-separated URLs
// allowed). The first connection attempt fails fast with a [*ConnectError];
// once connected, the client reconnects forever with capped exponential
// backoff, logging disconnects and reconnects.
func Connect(ctx context.Context, serverURL string, opts ...ConnectOption) (*nats.Conn, error) {
	o := connectOptions{
		timeout:      DefaultConnectTimeout,
		logger:       slog.Default(),
		reconnectMin: DefaultReconnectMin,
		reconnectMax: DefaultReconnectMax,
	}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, fmt.Errorf("ponixnats: connect option: %w", err)
		}
	}
	// The dial timeout applies to the first connect and to every reconnect, so it is not
	// shortened to ctx's deadline: ctx bounds the first connect below.
	timeout := o.timeout
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("ponixnats: connecting to %s: %w", redactURL(serverURL), err)
	}
	log := o.logger.With("nats_url", redactURL(serverURL))
	reconnect := reconnectPolicy(o.reconnectMin, o.reconnectMax)
	nopts := []nats.Option{
		nats.Timeout(timeout),
		nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(false),
		nats.CustomReconnectDelay(func(attempts int) time.Duration {
			// nats.go counts the failed rounds over the server list from 1.
			d := reconnect.Delay(attempts - 1)
			if attempts > 0 && attempts&(attempts-1) == 0 { // log at 1, 2, 4, 8, ... attempts
				log.Warn("NATS reconnect failed, retrying", "attempts", attempts, "next_delay", d)
			}
			return d
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("NATS disconnected", "error", err)
			} else {
				log.Info("NATS disconnected")
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("NATS reconnected", "server", nc.ConnectedUrlRedacted(), "reconnects", nc.Reconnects)
		}),
		nats.ClosedHandler(func(_ *nats.Conn) { log.Debug("NATS connection closed") }),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			if sub != nil {
				log.Error("NATS asynchronous error", "subject", sub.Subject, "error", err)
				return
			}
			log.Error("NATS asynchronous error", "error", err)
		}),
	}
	if o.name != "" {
		nopts = append(nopts, nats.Name(o.name))
	}
	nopts = append(nopts, o.nats...)

	type res struct {
		nc  *nats.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		nc, err := nats.Connect(serverURL, nopts...)
		ch <- res{nc, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			ce := &ConnectError{URL: redactURL(serverURL), Kind: classifyConnectError(r.err), Err: r.err}
			if ce.Kind == ErrTLS && closedAfterHandshake(r.err) {
				ce.Hint = "the server may require a client certificate, and none is configured"
				if o.clientCert {
					ce.Hint = "the server may have refused the client certificate; check that its CA trusts it"
				}
			}
			return nil, ce
		}
		return r.nc, nil
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.nc != nil {
				r.nc.Close()
			}
		}()
		return nil, fmt.Errorf("ponixnats: connecting to %s: %w", redactURL(serverURL), ctx.Err())
	}
}

// reconnectPolicy is the back-off between reconnect attempts (see [WithReconnectBackoff]):
// min, doubling per failed attempt up to max, plus up to 20% random jitter.
func reconnectPolicy(min, max time.Duration) backoff.Policy {
	return backoff.Policy{Initial: min, Max: max, Factor: 2, Jitter: 0.2}
}

func classifyConnectError(err error) error {
	var (
		certErr    *tls.CertificateVerificationError
		recErr     tls.RecordHeaderError
		unkAuth    x509.UnknownAuthorityError
		hostErr    x509.HostnameError
		invalidErr x509.CertificateInvalidError
		netErr     net.Error
	)
	switch {
	case errors.Is(err, nats.ErrAuthorization), errors.Is(err, nats.ErrAuthExpired),
		errors.Is(err, nats.ErrAuthRevoked), errors.Is(err, nats.ErrAccountAuthExpired),
		strings.Contains(strings.ToLower(err.Error()), "authorization violation"):
		return ErrAuthorization
	case errors.Is(err, nats.ErrSecureConnRequired), errors.Is(err, nats.ErrSecureConnWanted), errors.Is(err, nats.ErrTLS),
		errors.As(err, &certErr), errors.As(err, &recErr), errors.As(err, &unkAuth),
		errors.As(err, &hostErr), errors.As(err, &invalidErr),
		strings.Contains(err.Error(), "tls:"), strings.Contains(err.Error(), "x509:"):
		return ErrTLS
	case errors.Is(err, nats.ErrNoServers), errors.Is(err, nats.ErrTimeout), errors.Is(err, io.EOF),
		errors.As(err, &netErr), errors.Is(err, nats.ErrBadTimeout):
		return ErrServerUnreachable
	}
	return nil
}

// closedAfterHandshake reports whether the server ended the connection right
// after the TLS handshake, as one that wants a client certificate does (TLS 1.3
// checks it after the client considers the handshake done).
func closedAfterHandshake(err error) bool {
	var alert tls.AlertError
	if errors.As(err, &alert) && alert == 116 { // certificate_required
		return true
	}
	return errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) ||
		strings.Contains(err.Error(), "certificate required") ||
		strings.Contains(err.Error(), "unknown certificate authority") || strings.Contains(err.Error(), "bad certificate")
}

// JetStreamNotEnabledError says that the NATS server a connection is on does not answer the
// JetStream API: nothing responds to a JetStream API request (nats.ErrNoResponders), because
// JetStream is not enabled on that server (or, for a client of a JetStream domain or API
// prefix, not under that one). It matches (errors.Is) jetstream.ErrJetStreamNotEnabled and
// wraps the error of the request.
type JetStreamNotEnabledError struct {
	// URL is the URL of the server, without user information; empty when the connection was
	// no longer connected.
	URL string
	// Err is the error of the JetStream API request.
	Err error
}

// Error says that JetStream is not enabled on the server at URL and how to enable it.
func (e *JetStreamNotEnabledError) Error() string {
	where := "the NATS server"
	if e.URL != "" {
		where += " at " + e.URL
	}
	return fmt.Sprintf("ponixnats: JetStream is not enabled on %s: nothing answers the JetStream API there "+
		"(start nats-server with -js, or with a jetstream block in its configuration, or connect to a server that has JetStream): %v", where, e.Err)
}

// Unwrap returns jetstream.ErrJetStreamNotEnabled and the error of the request.
func (e *JetStreamNotEnabledError) Unwrap() []error {
	return []error{jetstream.ErrJetStreamNotEnabled, e.Err}
}

// JetStreamNotEnabled returns err, the error of a JetStream API request over nc, as a
// [*JetStreamNotEnabledError] (naming the server, without its user information) when it says
// that the server does not answer the JetStream API (no responders, or the server's own
// "JetStream not enabled"), and nil otherwise. Tools built on this package use it to report a
// server without JetStream the same way.
func JetStreamNotEnabled(nc *nats.Conn, err error) error {
	if !errors.Is(err, nats.ErrNoResponders) && !errors.Is(err, jetstream.ErrJetStreamNotEnabled) {
		return nil
	}
	return &JetStreamNotEnabledError{URL: serverURL(nc), Err: err}
}

// serverURL returns the URL of the server nc is connected to without its user information
// (a password, or a token), or "" when nc is not connected.
func serverURL(nc *nats.Conn) string {
	u, err := url.Parse(nc.ConnectedUrl())
	if err != nil || u.Host == "" {
		return ""
	}
	u.User = nil
	return u.String()
}

// redactURL removes passwords and tokens from a (comma-separated) URL list.
func redactURL(s string) string {
	parts := strings.Split(s, ",")
	for i, p := range parts {
		p = strings.TrimSpace(p)
		u, err := url.Parse(p)
		if err != nil || u.User == nil {
			parts[i] = p
			continue
		}
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		} else {
			u.User = url.User("xxxxx") // a bare user part is a token
		}
		parts[i] = u.String()
	}
	return strings.Join(parts, ",")
}
