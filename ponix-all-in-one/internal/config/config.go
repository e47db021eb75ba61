// Package config loads and validates the ponix-all-in-one configuration from
// PONIX_* environment variables (upstream ponix-rs names and defaults).
package config

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/url"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/caarlos0/env/v11"

	"github.com/ponix-go/ponix/ponixclickhouse"
	"github.com/ponix-go/ponix/ponixnats"
)

// Prefix is the prefix of every variable.
const Prefix = "PONIX_"

// Config is the service configuration. Each field's env tag (with Prefix) is
// the variable name; envDefault is its default; usage documents it for -h.
// An unset variable takes its default; a variable set to the empty string is
// empty, which is an error for a variable with a default unless the field is
// tagged emptyOK:"true" (see Load).
//
// After Load, ClickHouseUsername, ClickHousePassword and ClickHouseDatabase
// hold the effective values: those given in PONIX_CLICKHOUSE_NATIVE_URL when
// it carries them.
type Config struct {
	LogLevel  string `env:"LOG_LEVEL" envDefault:"info" usage:"log level: debug, info, warn or error"`
	LogFormat string `env:"LOG_FORMAT" envDefault:"text" usage:"log format: text or json"`
	Message   string `env:"MESSAGE" envDefault:"ponix-all-in-one" emptyOK:"true" usage:"greeting logged at startup (upstream compatibility); may be set empty"`

	ProducerEnabled     bool   `env:"PRODUCER_ENABLED" envDefault:"true" usage:"publish a sample envelope every interval; false runs a pure consumer"`
	IntervalSecs        int    `env:"INTERVAL_SECS" envDefault:"5" usage:"seconds between sample envelopes of the producer"`
	StartupTimeoutSecs  int    `env:"STARTUP_TIMEOUT_SECS" envDefault:"30" usage:"bound of each startup phase, in seconds"`
	ShutdownTimeoutSecs int    `env:"SHUTDOWN_TIMEOUT_SECS" envDefault:"10" usage:"bound of each closer at shutdown, in seconds"`
	DataDir             string `env:"DATA_DIR" envDefault:"./.ponix" usage:"local state: the embedded NATS store and the managed ClickHouse"`

	NATSURL                     string `env:"NATS_URL" usage:"NATS server URL(s), comma-separated; empty starts an embedded JetStream server"`
	NATSEmbeddedAddr            string `env:"NATS_EMBEDDED_ADDR" envDefault:"127.0.0.1:4222" usage:"listen address of the embedded NATS server (when PONIX_NATS_URL is empty)"`
	NATSStream                  string `env:"NATS_STREAM" envDefault:"processed_envelopes" usage:"JetStream stream name"`
	NATSSubject                 string `env:"NATS_SUBJECT" envDefault:"processed_envelopes.>" usage:"stream subjects: <base>.> ; envelopes go to <base>.<end_device_id>"`
	NATSConsumer                string `env:"NATS_CONSUMER" envDefault:"ponix-all-in-one" usage:"durable consumer name (shared by instances that split the work)"`
	NATSBatchSize               int    `env:"NATS_BATCH_SIZE" envDefault:"10000" usage:"most messages fetched (and inserted) per batch; upstream used 30, which is accepted but about 20x slower (see the README)"`
	NATSBatchWaitSecs           int    `env:"NATS_BATCH_WAIT_SECS" envDefault:"5" usage:"longest wait to fill a batch, in seconds"`
	ClickHouseRetrySecs         int    `env:"CLICKHOUSE_RETRY_SECS" envDefault:"0" usage:"how long a failing insert (ClickHouse down) is retried in place before the batch is released for redelivery (never counted against its messages); 0 = as long as the service runs"`
	ClickHouseInsertTimeoutSecs int    `env:"CLICKHOUSE_INSERT_TIMEOUT_SECS" envDefault:"15" usage:"bound of one insert, in seconds: an insert (or readiness ping) that has not finished by then is cancelled and the batch held as class unresponsive (a stopped or hung ClickHouse keeps its connections open); set it well above the slowest healthy insert"`
	NATSAckWaitSecs             int    `env:"NATS_ACK_WAIT_SECS" envDefault:"30" usage:"seconds JetStream waits for an ack before redelivering; must exceed PONIX_NATS_BATCH_WAIT_SECS (slow inserts send in-progress acks every third of it); ClickHouse gives up an insert whose writer sent nothing for a third of it, so that the insert of an instance stalled mid-insert never commits after another took its batch"`
	NATSMaxAckPending           int    `env:"NATS_MAX_ACK_PENDING" envDefault:"0" usage:"messages delivered but not yet acked, over all instances; 0 = the larger of 1000 and 2*PONIX_NATS_BATCH_SIZE"`
	NATSAck                     string `env:"NATS_ACK" envDefault:"batch" usage:"how messages are acknowledged: batch (one ack per batch, the fastest; one instance at a time consumes the durable and the others stand by, taking over within PONIX_NATS_ACK_WAIT_SECS when it dies; needs nats-server 2.14+) or message (one ack per message; instances split the messages). A durable created with the other mode is created anew where the table says, in one log line"`
	NATSSharedPullConnection    bool   `env:"NATS_SHARED_PULL_CONNECTION" envDefault:"false" usage:"true: pull on the one NATS connection, as nats.go does; false: the consumer reads its pulled batches on a second connection of its own to the same server with the same credentials and TLS (40-48% less CPU in ponix-bench, more envelopes per second)"`
	NATSReplicas                int    `env:"NATS_REPLICAS" envDefault:"0" usage:"replicas of the stream and dead-letter stream (3 on a 3-node JetStream cluster); 0 = 1 for a new stream, an existing one is left as it is"`

	ClickHouseURL           string `env:"CLICKHOUSE_URL" usage:"upstream's HTTP URL; accepted but unused (Ponix speaks the native protocol)"`
	ClickHouseNativeURL     string `env:"CLICKHOUSE_NATIVE_URL" envDefault:"localhost:9000" usage:"ClickHouse native protocol address host:port, or several comma-separated to fail over between replicas (ch1:9000,ch2:9000); also as clickhouse://[user[:password]@]host:port[,host:port...][/database] (tcp:// too; percent-encode special characters of user and password). The URL's user, password and database are used and must not contradict PONIX_CLICKHOUSE_USERNAME, _PASSWORD, _DATABASE; query parameters are refused (each setting has its variable)"`
	ClickHouseDatabase      string `env:"CLICKHOUSE_DATABASE" envDefault:"ponix" usage:"ClickHouse database"`
	ClickHouseCluster       string `env:"CLICKHOUSE_CLUSTER" usage:"ClickHouse cluster name, as defined in the servers' remote_servers (an identifier); unset or empty: a single server"`
	ClickHouseUsername      string `env:"CLICKHOUSE_USERNAME" envDefault:"ponix" usage:"ClickHouse user (a stock ClickHouse has the user default)"`
	ClickHousePassword      string `env:"CLICKHOUSE_PASSWORD" envDefault:"ponix" emptyOK:"true" usage:"ClickHouse password (never logged); set it empty (PONIX_CLICKHOUSE_PASSWORD=) for a user without password; when unset and the URL names a user, no password"`
	ClickHouseMigrationsDir string `env:"CLICKHOUSE_MIGRATIONS_DIR" usage:"directory of goose SQL migrations overriding the embedded ones"`
	ClickHouseManaged       bool   `env:"CLICKHOUSE_MANAGED" envDefault:"false" usage:"start and manage a local clickhouse-server under PONIX_DATA_DIR (make run)"`

	ClickHouseTLS                   bool   `env:"CLICKHOUSE_TLS" envDefault:"false" usage:"connect to ClickHouse with TLS (usually port 9440)"`
	ClickHouseTLSCAFile             string `env:"CLICKHOUSE_TLS_CA_FILE" usage:"PEM CA bundle verifying the ClickHouse server (empty: system roots)"`
	ClickHouseTLSCertFile           string `env:"CLICKHOUSE_TLS_CERT_FILE" usage:"PEM client certificate for ClickHouse (with PONIX_CLICKHOUSE_TLS_KEY_FILE)"`
	ClickHouseTLSKeyFile            string `env:"CLICKHOUSE_TLS_KEY_FILE" usage:"PEM client key for ClickHouse (with PONIX_CLICKHOUSE_TLS_CERT_FILE)"`
	ClickHouseTLSServerName         string `env:"CLICKHOUSE_TLS_SERVER_NAME" usage:"server name expected in the ClickHouse certificate (default: the host of each address of PONIX_CLICKHOUSE_NATIVE_URL)"`
	ClickHouseTLSInsecureSkipVerify bool   `env:"CLICKHOUSE_TLS_INSECURE_SKIP_VERIFY" envDefault:"false" usage:"do not verify the ClickHouse certificate (testing only)"`

	NATSUser         string `env:"NATS_USER" usage:"NATS user name (with PONIX_NATS_PASSWORD); also required by the embedded server when set"`
	NATSPassword     string `env:"NATS_PASSWORD" usage:"NATS password (never logged); set it empty (PONIX_NATS_PASSWORD=) for a user without password on an external server"`
	NATSToken        string `env:"NATS_TOKEN" usage:"NATS authentication token (never logged); also required by the embedded server when set"`
	NATSNKeySeedFile string `env:"NATS_NKEY_SEED_FILE" usage:"file holding the NATS user NKey seed (SU...)"`
	NATSCredsFile    string `env:"NATS_CREDS_FILE" usage:"NATS .creds file (user JWT and NKey seed)"`
	NATSTLSCAFile    string `env:"NATS_TLS_CA_FILE" usage:"PEM CA bundle verifying the NATS server; setting any NATS TLS file turns TLS on"`
	NATSTLSCertFile  string `env:"NATS_TLS_CERT_FILE" usage:"PEM client certificate for NATS (with PONIX_NATS_TLS_KEY_FILE)"`
	NATSTLSKeyFile   string `env:"NATS_TLS_KEY_FILE" usage:"PEM client key for NATS (with PONIX_NATS_TLS_CERT_FILE)"`

	HTTPAddr string `env:"HTTP_ADDR" envDefault:":8080" usage:"listen address of /metrics, /healthz and /readyz; off disables the listener"`
}

// HTTPAddrOff is the value of PONIX_HTTP_ADDR that disables the HTTP listener.
const HTTPAddrOff = "off"

// Ignored lists variables that upstream used and Ponix no longer needs; they are
// accepted and reported, never an error.
var Ignored = map[string]string{
	Prefix + "CLICKHOUSE_GOOSE_BINARY_PATH": "migrations run in-process; no goose binary is needed",
	Prefix + "GOOSE_BINARY_PATH":            "migrations run in-process; no goose binary is needed",
	"BSR_TOKEN":                             "the envelope types ship with Ponix; no registry token is needed",
	Prefix + "NATS_MAX_DELIVER":             "a message is dead-lettered only for what is proven about it, at once (undecodable, invalid, refused alone by ClickHouse); deliveries ended by sink faults, stops and crashes never count, so the durable consumer's max_deliver is unlimited",
}

// Error is a configuration error naming the variable at fault.
type Error struct {
	Var    string // the variable, e.g. PONIX_NATS_BATCH_SIZE
	Value  string // the offending value (redacted for secrets)
	Reason string
	Err    error // underlying parse error, if any
}

func (e *Error) Error() string {
	if e.Value == "" {
		return fmt.Sprintf("%s: %s", e.Var, e.Reason)
	}
	return fmt.Sprintf("%s=%q: %s", e.Var, e.Value, e.Reason)
}

func (e *Error) Unwrap() error { return e.Err }

// Load reads the configuration from environ (as os.Environ returns it), applies
// defaults and validates every value. All problems are returned together, each
// an *Error naming its variable: values that do not parse, variables set
// empty where a value is required, contradicting ClickHouse credentials, and
// the range and consistency checks of Validate (a variable that did not parse
// is checked no further, and the checks of the others see its default).
// Error values never hold a secret.
//
// A variable set to the empty string is not the same as an unset one: unset
// takes the default, empty means empty where that is valid (fields tagged
// emptyOK, and every variable without a default) and is an error otherwise.
func Load(environ []string) (Config, error) {
	envMap := env.ToMap(environ)
	parseMap := maps.Clone(envMap)
	var errs []error
	reported := map[string]bool{} // variables with a problem already
	fields := configFields()
	for _, f := range fields {
		if v, set := envMap[f.key]; !set || v != "" || !f.hasDefault {
			continue
		}
		delete(parseMap, f.key) // parsed as its default, then made empty below
		if !f.emptyOK {
			errs = append(errs, &Error{Var: f.key, Reason: emptyReason(f)})
			reported[f.key] = true
		}
	}

	var cfg Config
	if err := parse(&cfg, parseMap); err != nil {
		parseErrs, failed, ok := translate(err, envMap)
		if !ok {
			return cfg, err
		}
		errs = append(errs, parseErrs...)
		for _, key := range failed {
			delete(parseMap, key)
			reported[key] = true
		}
		// Parse again with the defaults in place of the values that failed,
		// so that the checks of the other variables see sensible values.
		cfg = Config{}
		if err := parse(&cfg, parseMap); err != nil {
			return cfg, errors.Join(append(errs, err)...)
		}
	}
	v := reflect.ValueOf(&cfg).Elem()
	for _, f := range fields {
		if val, set := envMap[f.key]; set && val == "" && f.emptyOK {
			v.Field(f.index).SetZero()
		}
	}

	errs = append(errs, cfg.resolveClickHouseURL(envMap, reported)...)
	isSet := func(key string) bool { _, ok := envMap[key]; return ok }
	for _, err := range cfg.validate(isSet) {
		var ce *Error
		if errors.As(err, &ce) && reported[ce.Var] {
			continue // validated against its default: the real problem is reported
		}
		errs = append(errs, err)
	}
	sortErrors(errs, fields)
	for _, err := range errs {
		var ce *Error
		if errors.As(err, &ce) {
			ce.Value = redactValue(ce.Var, ce.Value)
		}
	}
	return cfg, errors.Join(errs...)
}

func parse(cfg *Config, envMap map[string]string) error {
	return env.ParseWithOptions(cfg, env.Options{Prefix: Prefix, Environment: envMap})
}

// field describes one field of Config.
type field struct {
	index      int
	name, key  string // the Go field and its variable
	def        string // envDefault
	hasDefault bool
	emptyOK    bool
	kind       reflect.Kind
}

func configFields() []field {
	t := reflect.TypeFor[Config]()
	out := make([]field, t.NumField())
	for i := range t.NumField() {
		sf := t.Field(i)
		def, hasDef := sf.Tag.Lookup("envDefault")
		out[i] = field{
			index: i, name: sf.Name, key: Prefix + sf.Tag.Get("env"),
			def: def, hasDefault: hasDef, emptyOK: sf.Tag.Get("emptyOK") == "true",
			kind: sf.Type.Kind(),
		}
	}
	return out
}

// emptyReason explains why a variable must not be set empty.
func emptyReason(f field) string {
	want := "a value"
	switch f.kind {
	case reflect.Bool:
		want = "true or false"
	case reflect.Int:
		want = "a whole number"
	}
	reason := fmt.Sprintf("is set but empty: give %s, or unset it for the default (%s)", want, f.def)
	switch f.key {
	case Prefix + "HTTP_ADDR":
		reason += "; " + HTTPAddrOff + " disables the listener"
	case Prefix + "CLICKHOUSE_USERNAME":
		reason += "; a stock ClickHouse has the user default"
	}
	return reason
}

// translate turns caarlos0/env errors (which name struct fields) into *Error
// values naming the variables, and returns the variables that failed; ok is
// false when err is not an aggregate of field errors.
func translate(err error, envMap map[string]string) (errs []error, failed []string, ok bool) {
	var agg env.AggregateError
	if !errors.As(err, &agg) {
		return nil, nil, false
	}
	keys := map[string]string{}
	for _, f := range configFields() {
		keys[f.name] = f.key
	}
	for _, e := range agg.Errors {
		var pe env.ParseError
		if !errors.As(e, &pe) {
			return nil, nil, false
		}
		key := keys[pe.Name]
		errs = append(errs, &Error{Var: key, Value: envMap[key], Reason: "not a valid " + typeWord(pe.Type), Err: pe.Err})
		failed = append(failed, key)
	}
	return errs, failed, true
}

func typeWord(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "boolean (true or false)"
	case reflect.Int, reflect.Int64, reflect.Int32:
		return "whole number"
	default:
		return t.String()
	}
}

// sortErrors orders errs by the position of their variable in Config, so the
// report reads like the -h list; errors naming no field come last.
func sortErrors(errs []error, fields []field) {
	pos := make(map[string]int, len(fields))
	for _, f := range fields {
		pos[f.key] = f.index
	}
	rank := func(err error) int {
		var ce *Error
		if errors.As(err, &ce) {
			if p, ok := pos[ce.Var]; ok {
				return p
			}
		}
		return len(fields)
	}
	slices.SortStableFunc(errs, func(a, b error) int { return rank(a) - rank(b) })
}

// urlVar reports whether variable key holds URLs, whose user information may
// hold a secret, and whether a user part without password is secret too
// (NATS reads it as a token).
func urlVar(key string) (isURL, userIsSecret bool) {
	switch key {
	case Prefix + "NATS_URL":
		return true, true
	case Prefix + "CLICKHOUSE_NATIVE_URL", Prefix + "CLICKHOUSE_URL":
		return true, false
	}
	return false, false
}

// redactValue returns the value of variable key as it may be shown in logs and
// errors.
func redactValue(key, value string) string {
	if value == "" {
		return value
	}
	if isSecret(key) {
		return redacted
	}
	if isURL, userIsSecret := urlVar(key); isURL {
		return redactURLs(value, userIsSecret)
	}
	return value
}

// Validate checks every value and returns all problems joined. It cannot tell
// a variable set empty from an unset one, so it takes PONIX_NATS_USER with an
// empty PONIX_NATS_PASSWORD for a missing password; Load knows better.
func (c Config) Validate() error {
	return errors.Join(c.validate(func(string) bool { return false })...)
}

// validate checks every value; isSet reports whether a variable was set,
// possibly empty.
func (c Config) validate(isSet func(key string) bool) []error {
	var errs []error
	bad := func(v, value, reason string) {
		errs = append(errs, &Error{Var: Prefix + v, Value: redactValue(Prefix+v, value), Reason: reason})
	}
	positive := func(v string, n, max int) {
		if n <= 0 || n > max {
			bad(v, strconv.Itoa(n), fmt.Sprintf("must be between 1 and %d", max))
		}
	}

	if _, err := c.SlogLevel(); err != nil {
		bad("LOG_LEVEL", c.LogLevel, "must be debug, info, warn or error")
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		bad("LOG_FORMAT", c.LogFormat, "must be text or json")
	}
	positive("INTERVAL_SECS", c.IntervalSecs, 86400)
	positive("STARTUP_TIMEOUT_SECS", c.StartupTimeoutSecs, 3600)
	positive("SHUTDOWN_TIMEOUT_SECS", c.ShutdownTimeoutSecs, 3600)
	positive("NATS_BATCH_SIZE", c.NATSBatchSize, 100_000)
	positive("NATS_BATCH_WAIT_SECS", c.NATSBatchWaitSecs, 3600)
	positive("NATS_ACK_WAIT_SECS", c.NATSAckWaitSecs, 86400)
	if c.ClickHouseRetrySecs < 0 {
		bad("CLICKHOUSE_RETRY_SECS", strconv.Itoa(c.ClickHouseRetrySecs), "must be 0 (retry as long as the service runs) or more")
	}
	if c.NATSAckWaitSecs > 0 && c.NATSBatchWaitSecs > 0 && c.NATSAckWaitSecs <= c.NATSBatchWaitSecs {
		bad("NATS_ACK_WAIT_SECS", strconv.Itoa(c.NATSAckWaitSecs), "must be longer than PONIX_NATS_BATCH_WAIT_SECS ("+strconv.Itoa(c.NATSBatchWaitSecs)+")")
	}
	if c.ClickHouseInsertTimeoutSecs < 1 {
		bad("CLICKHOUSE_INSERT_TIMEOUT_SECS", strconv.Itoa(c.ClickHouseInsertTimeoutSecs), "must be at least 1 (seconds)")
	}
	if c.NATSMaxAckPending < 0 || (c.NATSMaxAckPending > 0 && c.NATSMaxAckPending < c.NATSBatchSize) {
		bad("NATS_MAX_ACK_PENDING", strconv.Itoa(c.NATSMaxAckPending), "must be 0 (default) or at least PONIX_NATS_BATCH_SIZE ("+strconv.Itoa(c.NATSBatchSize)+")")
	}
	if _, err := ponixnats.ParseAckMode(c.NATSAck); err != nil {
		bad("NATS_ACK", c.NATSAck, "must be batch or message")
	}
	if c.NATSReplicas < 0 || c.NATSReplicas > 5 {
		bad("NATS_REPLICAS", strconv.Itoa(c.NATSReplicas), "must be between 0 (keep, or 1 for a new stream) and 5")
	}
	if c.DataDir == "" {
		bad("DATA_DIR", "", "must not be empty")
	}

	if c.NATSURL != "" {
		list := strings.Split(c.NATSURL, ",")
		for i, u := range list {
			if err := checkNATSURL(strings.TrimSpace(u)); err != nil {
				reason := err.Error()
				if len(list) > 1 {
					reason = fmt.Sprintf("URL %d of %d: %s", i+1, len(list), reason)
				}
				bad("NATS_URL", c.NATSURL, reason) // the whole value: redacted reliably
			}
		}
	} else if _, _, err := net.SplitHostPort(c.NATSEmbeddedAddr); err != nil {
		bad("NATS_EMBEDDED_ADDR", c.NATSEmbeddedAddr, "must be host:port")
	}
	if !ponixnats.ValidName(c.NATSStream) {
		bad("NATS_STREAM", c.NATSStream, "must be a non-empty name without spaces, '.', '*', '>', '/' or '\\'")
	}
	if base, ok := strings.CutSuffix(c.NATSSubject, ".>"); !ok || ponixnats.ValidateSubject(base) != nil || strings.ContainsAny(base, "*>") {
		bad("NATS_SUBJECT", c.NATSSubject, "must be <base>.> with a non-empty base of subject tokens (e.g. processed_envelopes.>)")
	}
	if !ponixnats.ValidName(c.NATSConsumer) {
		bad("NATS_CONSUMER", c.NATSConsumer, "must be a non-empty name without spaces, '.', '*', '>', '/' or '\\'")
	}

	if addrs, err := c.ClickHouseAddrs(); err != nil {
		bad("CLICKHOUSE_NATIVE_URL", c.ClickHouseNativeURL, err.Error())
	} else if c.ClickHouseManaged && len(addrs) > 1 {
		bad("CLICKHOUSE_NATIVE_URL", c.ClickHouseNativeURL, "the managed local ClickHouse (PONIX_CLICKHOUSE_MANAGED=true) is one server: give one address")
	}
	if !validIdent(c.ClickHouseDatabase) {
		bad("CLICKHOUSE_DATABASE", c.ClickHouseDatabase, "must be a ClickHouse identifier ([A-Za-z_][A-Za-z0-9_]*)")
	}
	if c.ClickHouseCluster != "" {
		if !validIdent(c.ClickHouseCluster) {
			bad("CLICKHOUSE_CLUSTER", c.ClickHouseCluster, "must be a cluster name of the servers' remote_servers that is a ClickHouse identifier ([A-Za-z_][A-Za-z0-9_]*)")
		} else if c.ClickHouseManaged {
			bad("CLICKHOUSE_CLUSTER", c.ClickHouseCluster, "the managed local ClickHouse (PONIX_CLICKHOUSE_MANAGED=true) defines no cluster")
		}
	}
	if c.ClickHouseUsername == "" {
		bad("CLICKHOUSE_USERNAME", "", "must not be empty")
	}
	if c.ClickHouseMigrationsDir != "" {
		if st, err := os.Stat(c.ClickHouseMigrationsDir); err != nil || !st.IsDir() {
			bad("CLICKHOUSE_MIGRATIONS_DIR", c.ClickHouseMigrationsDir, "must be an existing directory")
		}
	}
	errs = append(errs, c.validateClickHouseTLS()...)
	errs = append(errs, c.validateNATSAuth(isSet)...)
	if c.HTTPAddr != HTTPAddrOff {
		if _, port, err := net.SplitHostPort(c.HTTPAddr); err != nil {
			bad("HTTP_ADDR", c.HTTPAddr, "must be host:port, :port or off")
		} else if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
			bad("HTTP_ADDR", c.HTTPAddr, "port must be 0-65535")
		}
	}
	return errs
}

// checkNATSURL checks one NATS URL. Its errors never quote the URL, which may
// hold a password.
func checkNATSURL(u string) error {
	if u == "" {
		return errors.New("empty URL")
	}
	if !strings.Contains(u, "://") {
		u = "nats://" + u
	}
	p, err := url.Parse(u)
	if err != nil {
		return errors.New("not a valid URL (percent-encode special characters of user and password)")
	}
	switch p.Scheme {
	case "nats", "tls", "ws", "wss":
	default:
		return fmt.Errorf("unsupported scheme %q (want nats, tls, ws or wss)", p.Scheme)
	}
	if p.Hostname() == "" {
		return errors.New("no host")
	}
	return nil
}

// validIdent: a plain ClickHouse identifier, as the ClickHouse library requires.
func validIdent(s string) bool { return ponixclickhouse.ValidateIdentifier(s) == nil }

// SlogLevel returns the slog level of LogLevel.
func (c Config) SlogLevel() (slog.Level, error) {
	var l slog.Level
	switch strings.ToLower(c.LogLevel) {
	case "warning":
		return slog.LevelWarn, nil
	case "trace":
		return slog.LevelDebug, nil
	}
	err := l.UnmarshalText([]byte(c.LogLevel))
	return l, err
}

// NATSBaseSubject is the subject prefix envelopes are published under: the
// stream subject without its trailing ".>".
func (c Config) NATSBaseSubject() string { return strings.TrimSuffix(c.NATSSubject, ".>") }

// Interval is IntervalSecs as a duration.
func (c Config) Interval() time.Duration { return time.Duration(c.IntervalSecs) * time.Second }

// StartupTimeout is StartupTimeoutSecs as a duration.
func (c Config) StartupTimeout() time.Duration {
	return time.Duration(c.StartupTimeoutSecs) * time.Second
}

// ShutdownTimeout is ShutdownTimeoutSecs as a duration.
func (c Config) ShutdownTimeout() time.Duration {
	return time.Duration(c.ShutdownTimeoutSecs) * time.Second
}

// ClickHouseInsertTimeout is ClickHouseInsertTimeoutSecs as a duration.
func (c Config) ClickHouseInsertTimeout() time.Duration {
	return time.Duration(c.ClickHouseInsertTimeoutSecs) * time.Second
}

// ClickHouseRetry is ClickHouseRetrySecs as a duration (0: no limit).
func (c Config) ClickHouseRetry() time.Duration {
	return time.Duration(c.ClickHouseRetrySecs) * time.Second
}

// BatchWait is NATSBatchWaitSecs as a duration.
func (c Config) BatchWait() time.Duration { return time.Duration(c.NATSBatchWaitSecs) * time.Second }

// AckMode is NATSAck as a ponixnats.AckMode (valid once Load accepted it).
func (c Config) AckMode() ponixnats.AckMode {
	m, _ := ponixnats.ParseAckMode(c.NATSAck)
	return m
}

// AckWait is NATSAckWaitSecs as a duration.
func (c Config) AckWait() time.Duration { return time.Duration(c.NATSAckWaitSecs) * time.Second }

// LogValue renders the effective configuration for the startup log, with
// secrets redacted.
func (c Config) LogValue() slog.Value {
	t := reflect.TypeFor[Config]()
	v := reflect.ValueOf(c)
	attrs := make([]slog.Attr, 0, t.NumField())
	for i := range t.NumField() {
		key := Prefix + t.Field(i).Tag.Get("env")
		attrs = append(attrs, slog.String(key, redactValue(key, fmt.Sprint(v.Field(i).Interface()))))
	}
	return slog.GroupValue(attrs...)
}

func isSecret(key string) bool {
	return strings.Contains(key, "PASSWORD") || strings.Contains(key, "TOKEN") || strings.Contains(key, "SEED")
}

// IgnoredSet returns the ignored variables present in environ with the reason
// each is ignored.
func IgnoredSet(environ []string) map[string]string {
	m := env.ToMap(environ)
	out := map[string]string{}
	for k, why := range Ignored {
		if _, ok := m[k]; ok {
			out[k] = why
		}
	}
	if _, ok := m[Prefix+"CLICKHOUSE_URL"]; ok {
		out[Prefix+"CLICKHOUSE_URL"] = "Ponix uses the native protocol at PONIX_CLICKHOUSE_NATIVE_URL"
	}
	return out
}

// WriteUsage prints every variable with its default and meaning.
func WriteUsage(w io.Writer) error {
	t := reflect.TypeFor[Config]()
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VARIABLE\tDEFAULT\tMEANING")
	for i := range t.NumField() {
		f := t.Field(i)
		def, ok := f.Tag.Lookup("envDefault")
		if !ok {
			def = "(unset)"
		}
		fmt.Fprintf(tw, "%s%s\t%s\t%s\n", Prefix, f.Tag.Get("env"), def, f.Tag.Get("usage"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var emptyOK []string
	for _, f := range configFields() {
		if f.emptyOK {
			emptyOK = append(emptyOK, f.key)
		}
	}
	_, err := fmt.Fprintf(w, usageNotes, strings.Join(emptyOK, ", "))
	return err
}

// usageNotes follows the variables in WriteUsage; %s lists the emptyOK ones.
const usageNotes = `
An unset variable takes its default. A variable set to the empty string (PONIX_X=) is empty, not
the default: that is valid for %s and for every variable
without a default (e.g. PONIX_NATS_PASSWORD), and an error for the others.

PONIX_CLICKHOUSE_NATIVE_URL forms:
  localhost:9000                                        one server
  ch1:9000,ch2:9000                                     replicas to fail over between
  clickhouse://user:password@ch1:9000,ch2:9000/dbname   user, password and database in the URL
tcp:// is the same as clickhouse://, and the scheme may be left out. Percent-encode '@', ':', '/',
'?', '#' and '%%' in the user and password. Credentials and database given in the URL are used; setting
PONIX_CLICKHOUSE_USERNAME, _PASSWORD or _DATABASE to a different value is an error. A URL user
without password means no password (unless PONIX_CLICKHOUSE_PASSWORD is set). Query parameters
are refused: each setting has its variable (PONIX_CLICKHOUSE_TLS, ...).

Unknown PONIX_* variables are reported at startup with the closest known name; PONIX_TEST_*
variables (read by the test suites) are left alone.
`
