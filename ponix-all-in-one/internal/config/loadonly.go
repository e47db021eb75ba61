package config

import "strings"

// LoadOnly is Load for a command that reads only the variables vars (full
// names, e.g. PONIX_NATS_URL): every other variable of Config is treated as
// unset, so it takes its default and a bad value of it is no error. The
// fields of those variables hold their defaults, not the environment's
// values, and the caller must not use them. The rules of Load apply to vars:
// a bad value is an *Error naming its variable. UnknownVariables is not
// affected: a variable of Config outside vars is known, not unknown.
//
// LoadOnly panics if vars names a variable that is not in Config (a
// programming error).
func LoadOnly(environ []string, vars ...string) (Config, error) {
	known := map[string]bool{}
	for _, f := range configFields() {
		known[f.key] = true
	}
	used := make(map[string]bool, len(vars))
	for _, v := range vars {
		if !known[v] {
			panic("config.LoadOnly: " + v + " is not a configuration variable")
		}
		used[v] = true
	}
	kept := make([]string, 0, len(environ))
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !known[name] || used[name] {
			kept = append(kept, kv)
		}
	}
	return Load(kept)
}

// NATSConnectionVariables are the variables of the NATS connection as app.NATSOptions builds
// it (URL or embedded address, authentication, TLS) and of the stream: what a command that
// reads the service's stream passes to LoadOnly. A new slice each call.
func NATSConnectionVariables() []string {
	return []string{
		Prefix + "NATS_URL",
		Prefix + "NATS_EMBEDDED_ADDR",
		Prefix + "NATS_STREAM",
		Prefix + "NATS_USER",
		Prefix + "NATS_PASSWORD",
		Prefix + "NATS_TOKEN",
		Prefix + "NATS_NKEY_SEED_FILE",
		Prefix + "NATS_CREDS_FILE",
		Prefix + "NATS_TLS_CA_FILE",
		Prefix + "NATS_TLS_CERT_FILE",
		Prefix + "NATS_TLS_KEY_FILE",
	}
}
