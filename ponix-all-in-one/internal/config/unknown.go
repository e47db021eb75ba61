package config

import (
	"slices"
	"strings"

	"github.com/caarlos0/env/v11"
)

// TestPrefix starts the variables of the test suites (e.g.
// PONIX_TEST_CLICKHOUSE_ADDR); UnknownVariables leaves them alone.
const TestPrefix = Prefix + "TEST_"

// Unknown is a variable in the environment that looks like one of Ponix's but
// that Ponix does not read: most likely a typo.
type Unknown struct {
	// Var is the variable as spelled in the environment.
	Var string
	// DidYouMean is the closest variable Ponix reads, or empty when none is
	// close.
	DidYouMean string
}

// String is the warning about u, e.g. "ignoring unknown variable
// PONIX_NATS_BACTH_SIZE (did you mean PONIX_NATS_BATCH_SIZE?)".
func (u Unknown) String() string {
	if u.DidYouMean == "" {
		return "ignoring unknown variable " + u.Var
	}
	return "ignoring unknown variable " + u.Var + " (did you mean " + u.DidYouMean + "?)"
}

// UnknownVariables returns, sorted by name, the variables of environ (as
// os.Environ returns it) that start with PONIX_ in any letter case but are
// neither a Config variable nor listed in Ignored, each with the closest
// Config variable when one is close (a small edit distance, letter case
// aside, or one name being a prefix or a part of the other, like
// PONIX_BATCH_SIZE of PONIX_NATS_BATCH_SIZE). Variables starting with TestPrefix are not reported.
// Only names are returned, never values.
func UnknownVariables(environ []string) []Unknown {
	fields := configFields()
	known := make(map[string]bool, len(fields)+len(Ignored))
	for _, f := range fields {
		known[f.key] = true
	}
	for k := range Ignored {
		known[k] = true
	}
	var out []Unknown
	for name := range env.ToMap(environ) {
		upper := strings.ToUpper(name)
		if known[name] || !strings.HasPrefix(upper, Prefix) || strings.HasPrefix(upper, TestPrefix) {
			continue
		}
		out = append(out, Unknown{Var: name, DidYouMean: closest(upper, fields)})
	}
	slices.SortFunc(out, func(a, b Unknown) int { return strings.Compare(a.Var, b.Var) })
	return out
}

// closest returns the Config variable nearest to name (upper case, with the
// prefix), or "" when none is near enough.
func closest(name string, fields []field) string {
	us := strings.TrimPrefix(name, Prefix)
	if us == "" {
		return ""
	}
	// Candidates rank by (not structural, distance): a name that is a
	// prefix or a part of the other (a truncation, a missing word) beats a
	// merely similar one.
	best, bestRank := "", [2]int{}
	for _, f := range fields {
		ks := strings.TrimPrefix(f.key, Prefix)
		d := editDistance(us, ks)
		structural := strings.HasPrefix(ks, us) || strings.HasPrefix(us, ks) || tokenRun(us, ks)
		if d > max(2, len(ks)/4) && !structural {
			continue
		}
		rank := [2]int{1, d}
		if structural {
			rank[0] = 0
		}
		if best == "" || rank[0] < bestRank[0] || (rank[0] == bestRank[0] && rank[1] < bestRank[1]) {
			best, bestRank = f.key, rank
		}
	}
	return best
}

// tokenRun reports whether the '_'-separated words of part appear, in order
// and next to each other, among those of whole.
func tokenRun(part, whole string) bool {
	p, w := strings.Split(part, "_"), strings.Split(whole, "_")
	for i := 0; i+len(p) <= len(w); i++ {
		if slices.Equal(p, w[i:i+len(p)]) {
			return true
		}
	}
	return false
}

// editDistance is the optimal string alignment distance of a and b: the
// insertions, deletions, substitutions and transpositions of adjacent
// characters that turn one into the other.
func editDistance(a, b string) int {
	// d[i][j] is the distance of a[:i] and b[:j].
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}
