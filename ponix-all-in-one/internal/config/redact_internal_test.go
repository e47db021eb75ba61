package config

import (
	"strings"
	"testing"
)

// FuzzRedactURLsHidesThePassword checks that a password written into a URL,
// escaped or not, never survives redaction, whatever surrounds it: the
// password is before + "Secret" + after, and "Secret" must not appear.
func FuzzRedactURLsHidesThePassword(f *testing.F) {
	for _, seed := range [][5]string{
		{"nats://", "svc", "", "", "@n1:4222"},
		{"clickhouse://", "alice", "p,w/x?", "y#z", "@ch1:9000,ch2:9000/db"},
		{"", "bob", "pw@", "", "@ch:9000"},
		{"nats://a:4222,nats://", "u", "p,nats://", "x", "@b:4222"},
		{"http://", "u", "", "", "@h:8123/?user=u&password=Secret"},
		{"nats://", "u", ",A://", "", "@b:4222"},
	} {
		f.Add(seed[0], seed[1], seed[2], seed[3], seed[4])
	}
	f.Fuzz(func(t *testing.T, prefix, user, before, after, suffix string) {
		// prefix ends with a scheme (or is empty), user is a plain name, the
		// host part after '@' holds no '@' and the secret only in a query.
		if (prefix != "" && !strings.HasSuffix(prefix, "://")) || strings.ContainsAny(prefix, "@") ||
			strings.Contains(prefix+user, "Secret") || strings.Contains(strings.SplitN(suffix, "?", 2)[0], "Secret") ||
			user == "" || strings.ContainsFunc(user, func(r rune) bool { return !isNameChar(r) }) ||
			(prefix == "" && strings.HasPrefix(before, "//")) || // user://... reads as a scheme
			!strings.HasPrefix(suffix, "@") || strings.Contains(suffix[1:], "@") {
			return
		}
		s := prefix + user + ":" + before + "Secret" + after + suffix
		for _, userIsSecret := range []bool{false, true} {
			if got := redactURLs(s, userIsSecret); strings.Contains(got, "Secret") {
				t.Errorf("redactURLs(%q) = %q shows the password", s, got)
			}
		}
	})
}

func isNameChar(r rune) bool {
	return r == '_' || r == '-' || r == '.' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9')
}

// FuzzLoadErrorsHideThePassword checks that no error of Load, whatever the
// URL around it, shows a password written into PONIX_CLICKHOUSE_NATIVE_URL
// or PONIX_NATS_URL.
func FuzzLoadErrorsHideThePassword(f *testing.F) {
	for _, seed := range [][4]string{
		{"clickhouse://", "alice", "p?w", "@ch1:9000,ch2:x/db?secure=1"},
		{"", "bob", "a/b", "@ch:9000#f"},
		{"nats://", "u", "p,w", "@n1:port"},
		{"tcp://", "u", "x://", "@ch:9000"},
	} {
		f.Add(seed[0], seed[1], seed[2], seed[3])
	}
	f.Fuzz(func(t *testing.T, prefix, user, password, suffix string) {
		if (prefix != "" && !strings.HasSuffix(prefix, "://")) || strings.ContainsAny(prefix, "@") ||
			user == "" || strings.ContainsFunc(user, func(r rune) bool { return !isNameChar(r) }) ||
			(prefix == "" && strings.HasPrefix(password, "//")) ||
			!strings.HasPrefix(suffix, "@") || strings.Contains(suffix, "Secret") || strings.Contains(suffix[1:], "@") {
			return
		}
		value := prefix + user + ":" + password + "Secret" + suffix
		for _, key := range []string{"CLICKHOUSE_NATIVE_URL", "NATS_URL"} {
			_, err := Load([]string{Prefix + key + "=" + value, Prefix + "CLICKHOUSE_PASSWORD=other"})
			if err != nil && strings.Contains(err.Error(), "Secret") {
				t.Errorf("%s=%q: error shows the password: %v", key, value, err)
			}
		}
	})
}
