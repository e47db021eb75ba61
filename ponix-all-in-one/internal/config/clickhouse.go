package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/ponix-go/ponix/migrations"

	"github.com/ponix-go/ponix/ponixclickhouse"
)

// nativeURL is PONIX_CLICKHOUSE_NATIVE_URL taken apart.
type nativeURL struct {
	addrs       []string // host:port, in the order given
	user        string   // from the URL's user information, if hasUser
	password    string   // from the URL's user information, if hasPassword
	hasUser     bool
	hasPassword bool
	database    string // from the URL's path; empty when it has none
}

// parseNativeURL takes PONIX_CLICKHOUSE_NATIVE_URL apart. The accepted forms
// are
//
//	host:port[,host:port...][/database]
//	clickhouse://[user[:password]@]host:port[,host:port...][/database]
//
// (tcp:// is a synonym of clickhouse://; the scheme is optional, so the bare
// form may carry user information too). User and password are
// percent-decoded. Query parameters and fragments are refused: every setting
// has its own variable. Errors never contain the user information.
func parseNativeURL(s string) (nativeURL, error) {
	var u nativeURL
	rest := strings.TrimSpace(s)
	if rest == "" {
		return u, errors.New("must not be empty: give host:port, e.g. localhost:9000")
	}
	if scheme, after, ok := strings.Cut(rest, "://"); ok {
		if !validScheme(scheme) {
			return u, errors.New("not a URL: the part before :// is not a scheme")
		}
		switch strings.ToLower(scheme) {
		case "clickhouse", "tcp":
		case "http", "https":
			return u, fmt.Errorf("scheme %s: Ponix speaks the native protocol, not HTTP; give the native port (9000, or 9440 with TLS), e.g. clickhouse://host:9000", scheme)
		default:
			return u, fmt.Errorf("unsupported scheme %q (want clickhouse://, tcp:// or none)", scheme)
		}
		rest = after
	}
	if strings.Contains(rest, "://") {
		return u, errors.New("several URLs: give the scheme and the credentials once, then the addresses, e.g. clickhouse://user:password@ch1:9000,ch2:9000/db")
	}
	if i := strings.LastIndexByte(rest, '@'); i >= 0 {
		info := rest[:i]
		rest = rest[i+1:]
		if strings.ContainsAny(info, "/?#") {
			return u, errors.New("cannot tell the user information from the address: percent-encode '@', '/', '?' and '#' in the user and password (%40, %2F, %3F, %23)")
		}
		name, pass, hasPass := strings.Cut(info, ":")
		user, err := url.PathUnescape(name)
		if err != nil {
			return u, errors.New("the user is not validly percent-encoded (write % as %25)")
		}
		password, err := url.PathUnescape(pass)
		if err != nil {
			return u, errors.New("the password is not validly percent-encoded (write % as %25)")
		}
		if user == "" {
			return u, errors.New("the user information names no user (want user[:password]@)")
		}
		u.user, u.hasUser = user, true
		u.password, u.hasPassword = password, hasPass
	}
	hosts, tail := rest, ""
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		hosts, tail = rest[:i], rest[i:]
	}
	if strings.Contains(tail, "#") {
		return u, errors.New("a fragment (#...) has no meaning here")
	}
	path, query, hasQuery := strings.Cut(tail, "?")
	if hasQuery {
		return u, fmt.Errorf("query parameters (%s) are not supported: every setting has its own variable (PONIX_CLICKHOUSE_TLS for secure, PONIX_CLICKHOUSE_TLS_INSECURE_SKIP_VERIFY for skip_verify, PONIX_CLICKHOUSE_DATABASE, _USERNAME, _PASSWORD)", queryKeys(query))
	}
	if path = strings.TrimPrefix(path, "/"); path != "" {
		db, err := url.PathUnescape(path)
		if err != nil || strings.Contains(db, "/") {
			return u, errors.New("the path must be a single database name: /database")
		}
		if !validIdent(db) {
			return u, fmt.Errorf("the database %q in the path is not a ClickHouse identifier ([A-Za-z_][A-Za-z0-9_]*)", db)
		}
		u.database = db
	}
	list := strings.Split(hosts, ",")
	for i, h := range list {
		h = strings.TrimSpace(h)
		where := ""
		if len(list) > 1 {
			where = fmt.Sprintf("address %d of %d: ", i+1, len(list))
		}
		switch {
		case h == "" && len(list) == 1:
			return u, errors.New("no address: must be host:port, e.g. localhost:9000")
		case h == "":
			return u, errors.New(where + "empty (a stray comma?)")
		}
		if err := checkHostPort(h); err != nil {
			return u, fmt.Errorf("%s%q %w", where, h, err)
		}
		if slices.Contains(u.addrs, h) {
			return u, fmt.Errorf("%s%q is listed twice", where, h)
		}
		u.addrs = append(u.addrs, h)
	}
	return u, nil
}

// checkHostPort checks one host:port.
func checkHostPort(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" || strings.ContainsAny(host, " \t\r\n") {
		return errors.New("must be host:port, e.g. localhost:9000")
	}
	if p, err := strconv.Atoi(port); err != nil || p <= 0 || p > 65535 {
		return errors.New("port must be 1-65535")
	}
	return nil
}

// validScheme reports whether s is a URL scheme (RFC 3986, section 3.1).
func validScheme(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		letter := (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z')
		if !letter && (i == 0 || !(r >= '0' && r <= '9' || r == '+' || r == '-' || r == '.')) {
			return false
		}
	}
	return true
}

func allDigits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// queryKeys lists the parameter names of a query string, without their values
// (a value may be a secret).
func queryKeys(query string) string {
	var keys []string
	for kv := range strings.SplitSeq(query, "&") {
		k, _, _ := strings.Cut(kv, "=")
		if k, err := url.QueryUnescape(k); err == nil && k != "" && !strings.ContainsAny(k, "@:") {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return "?..."
	}
	return strings.Join(keys, ", ")
}

// ClickHouseAddrs returns the native protocol addresses (host:port) of
// PONIX_CLICKHOUSE_NATIVE_URL in the order given: one, or several replicas to
// fail over between.
func (c Config) ClickHouseAddrs() ([]string, error) {
	u, err := parseNativeURL(c.ClickHouseNativeURL)
	if err != nil {
		return nil, err
	}
	return u.addrs, nil
}

// ClickHouseAddr returns the first address of PONIX_CLICKHOUSE_NATIVE_URL,
// for callers that connect to one server; ClickHouseAddrs returns them all.
func (c Config) ClickHouseAddr() (string, error) {
	addrs, err := c.ClickHouseAddrs()
	if err != nil {
		return "", err
	}
	return addrs[0], nil
}

// ClickHouseUser returns the ClickHouse user to authenticate as: the user
// named in PONIX_CLICKHOUSE_NATIVE_URL, else PONIX_CLICKHOUSE_USERNAME.
func (c Config) ClickHouseUser() string {
	if u, err := parseNativeURL(c.ClickHouseNativeURL); err == nil && u.hasUser {
		return u.user
	}
	return c.ClickHouseUsername
}

// ClickHouseSecret returns the password of ClickHouseUser: the password given
// in PONIX_CLICKHOUSE_NATIVE_URL, else PONIX_CLICKHOUSE_PASSWORD. (Load has
// already resolved the URL's credentials into ClickHouseUsername and
// ClickHousePassword, including "no password" for a URL that names a user
// without one; this accessor also serves a Config built without Load.)
func (c Config) ClickHouseSecret() string {
	if u, err := parseNativeURL(c.ClickHouseNativeURL); err == nil && u.hasPassword {
		return u.password
	}
	return c.ClickHousePassword
}

// ClickHouseDB returns the ClickHouse database: the one in the path of
// PONIX_CLICKHOUSE_NATIVE_URL, else PONIX_CLICKHOUSE_DATABASE.
func (c Config) ClickHouseDB() string {
	if u, err := parseNativeURL(c.ClickHouseNativeURL); err == nil && u.database != "" {
		return u.database
	}
	return c.ClickHouseDatabase
}

// resolveClickHouseURL makes the user, password and database given in
// PONIX_CLICKHOUSE_NATIVE_URL the effective ClickHouseUsername,
// ClickHousePassword and ClickHouseDatabase. A variable set (in envMap) to a
// different value is an error naming both variables; variables in skip were
// reported already. A URL that names a user without a password means no
// password unless PONIX_CLICKHOUSE_PASSWORD is set: the default password
// belongs to the default user.
func (c *Config) resolveClickHouseURL(envMap map[string]string, skip map[string]bool) []error {
	u, err := parseNativeURL(c.ClickHouseNativeURL)
	if err != nil {
		return nil // Validate reports it
	}
	const (
		urlVar  = Prefix + "CLICKHOUSE_NATIVE_URL"
		userVar = Prefix + "CLICKHOUSE_USERNAME"
		passVar = Prefix + "CLICKHOUSE_PASSWORD"
		dbVar   = Prefix + "CLICKHOUSE_DATABASE"
	)
	var errs []error
	conflict := func(reason string) {
		errs = append(errs, &Error{Var: urlVar, Value: redactURLs(c.ClickHouseNativeURL, false), Reason: reason})
	}
	if u.hasUser {
		if v, set := envMap[userVar]; set && !skip[userVar] && v != u.user {
			conflict(fmt.Sprintf("names the user %q but %s=%q: give the user in one place", u.user, userVar, v))
		}
		c.ClickHouseUsername = u.user
		_, passSet := envMap[passVar]
		switch {
		case u.hasPassword:
			if passSet && !skip[passVar] && envMap[passVar] != u.password {
				conflict("gives a password that differs from " + passVar + " (neither is shown): give the password in one place")
			}
			c.ClickHousePassword = u.password
		case !passSet:
			c.ClickHousePassword = ""
		}
	}
	if u.database != "" {
		if v, set := envMap[dbVar]; set && !skip[dbVar] && v != u.database {
			conflict(fmt.Sprintf("names the database %q but %s=%q: give the database in one place", u.database, dbVar, v))
		}
		c.ClickHouseDatabase = u.database
	}
	return errs
}

// redacted replaces secrets in logs and errors.
const redacted = "[REDACTED]"

// redactURLs returns s, one URL or several separated by commas, with the
// secrets hidden: the password in each user information part becomes
// [REDACTED], and so does a user part without password when userIsSecret
// (NATS reads it as a token); a query naming a secret-looking parameter is
// replaced whole. It works on the text, without parsing, so that a URL that
// does not parse (an unescaped ',' or '/' in a password) is hidden as well:
// everything up to the last '@' after a scheme is user information.
func redactURLs(s string, userIsSecret bool) string {
	if !strings.ContainsAny(s, "@?") {
		return s
	}
	// Each URL starts after the comma that precedes its "://" (or at 0).
	starts := []int{0}
	for off := 0; ; {
		i := strings.Index(s[off:], "://")
		if i < 0 {
			break
		}
		if c := strings.LastIndexByte(s[:off+i], ','); c >= 0 && c+1 > starts[len(starts)-1] {
			starts = append(starts, c+1)
		}
		off += i + 3
	}
	var b strings.Builder
	cut := false
	for k, start := range starts {
		end := len(s)
		if k+1 < len(starts) {
			end = starts[k+1]
		}
		// After a URL cut short, the next user part may be the password's end.
		var out string
		out, cut = redactOne(s[start:end], userIsSecret || cut)
		b.WriteString(out)
	}
	return b.String()
}

// redactOne hides the secrets of one URL (see redactURLs); cut reports a URL
// that looks cut short inside its password.
func redactOne(s string, userIsSecret bool) (_ string, cut bool) {
	auth := 0
	if i := strings.Index(s, "://"); i >= 0 && validScheme(strings.TrimLeft(s[:i], " ")) {
		auth = i + 3
	}
	head, rest := s[:auth], s[auth:]
	trail := "" // the comma before the next URL
	if strings.HasSuffix(rest, ",") {
		trail = ","
	}
	if at := strings.LastIndexByte(rest, '@'); at >= 0 {
		if strings.ContainsAny(rest[:at], "?#") {
			// An '@' in the query, or a '?' in the password: hide it all.
			return head + redacted + trail, false
		}
		user, _, hasPass := strings.Cut(rest[:at], ":")
		switch {
		case strings.ContainsAny(user, "/?#") || (userIsSecret && !hasPass):
			head += redacted + "@"
		case hasPass:
			head += user + ":" + redacted + "@"
		default:
			head += user + "@"
		}
		rest = rest[at+1:]
	} else {
		// No '@': still hide what follows a ':' that ends no port, in case
		// a password with an unescaped ',' cut this URL short.
		end := strings.IndexAny(rest, "/?#,")
		if end < 0 {
			end = len(rest)
		}
		if c := strings.LastIndexByte(rest[:end], ':'); c >= 0 && (c+1 == end || !allDigits(rest[c+1:end])) {
			return head + rest[:c+1] + redacted + trail, true
		}
	}
	if q := strings.IndexByte(rest, '?'); q >= 0 {
		lower := strings.ToLower(rest[q:])
		for _, w := range []string{"pass", "pwd", "token", "secret", "key", "auth", "cred", "seed"} {
			if strings.Contains(lower, w) {
				rest = rest[:q+1] + redacted + trail
				break
			}
		}
	}
	return head + rest, false
}

// ClickHouse returns the ClickHouse connection settings: the addresses of
// PONIX_CLICKHOUSE_NATIVE_URL (several: fail over between them), or addr when set (a managed
// server's), the database, the credentials and TLS. The configuration must have been loaded
// (validated) by Load.
func (c Config) ClickHouse(addr string) ponixclickhouse.Config {
	addrs, _ := c.ClickHouseAddrs()
	if addr != "" {
		addrs = []string{addr}
	}
	tlsCfg, _ := c.ClickHouseTLSConfig()
	return ponixclickhouse.Config{
		Addr:     addrs[0],
		Addrs:    addrs,
		Database: c.ClickHouseDatabase, // resolved by Load (the URL's database, if any)
		Username: c.ClickHouseUser(),
		Password: c.ClickHouseSecret(),
		TLS:      tlsCfg,
	}
}

// Migrations returns the ClickHouse migrations: those of PONIX_CLICKHOUSE_MIGRATIONS_DIR when
// set, the embedded ones otherwise.
func (c Config) Migrations() fs.FS {
	if c.ClickHouseMigrationsDir != "" {
		return os.DirFS(c.ClickHouseMigrationsDir)
	}
	return migrations.FS()
}
