package dlqcmd

import (
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ponix-go/ponix/ponixnats"
	"github.com/ponix-go/ponix/ponixnats/dlqadmin"
)

// filterFlags are the flags every command shares to select dead letters.
type filterFlags struct {
	reasons, subjects     stringList
	since, until          string
	origSince, origUntil  string
	fromSeq, toSeq, limit uint64
}

const filterHelp = `
Flags. The filters --reason, --subject, --since, --until, --original-since,
--original-until, --from-seq and --to-seq select dead letters (all given must
hold; --reason and --subject may be repeated or comma-separated):
`

func (f *filterFlags) register(fs *flag.FlagSet, defaultLimit uint64) {
	fs.Var(&f.reasons, "reason", "dead-letter `reason` (Ponix-Dlq-Reason): decode, invalid, rejected, permanent_error, max_deliver, ...")
	fs.Var(&f.subjects, "subject", "original `subject` pattern (Ponix-Original-Subject); NATS wildcards: * one token, > the rest (processed_envelopes.>)")
	fs.StringVar(&f.since, "since", "", "dead-lettered at or after `time`: RFC 3339 (2026-11-30T10:00:00Z) or a duration ago (90m, 2h, 7d)")
	fs.StringVar(&f.until, "until", "", "dead-lettered before `time` (RFC 3339 or a duration ago)")
	fs.StringVar(&f.origSince, "original-since", "", "originally stored (Ponix-Original-Timestamp) at or after `time`")
	fs.StringVar(&f.origUntil, "original-until", "", "originally stored before `time`")
	fs.Uint64Var(&f.fromSeq, "from-seq", 0, "first dead-letter stream `sequence` (inclusive)")
	fs.Uint64Var(&f.toSeq, "to-seq", 0, "last dead-letter stream `sequence` (inclusive)")
	fs.Uint64Var(&f.limit, "limit", defaultLimit, "at most `n` dead letters, the oldest first (0: all)")
}

// isFilterFlag reports whether name is one of the filter flags.
func isFilterFlag(name string) bool {
	switch name {
	case "reason", "subject", "since", "until", "original-since", "original-until", "from-seq", "to-seq":
		return true
	}
	return false
}

// filter builds and validates the dlqadmin filter; times that are
// durations count back from now.
func (f *filterFlags) filter(now time.Time) (dlqadmin.Filter, error) {
	var flt dlqadmin.Filter
	for _, r := range f.reasons {
		flt.Reasons = append(flt.Reasons, ponixnats.Reason(r))
	}
	flt.Subjects = f.subjects
	for _, t := range []struct {
		name, value string
		dst         *time.Time
	}{
		{"since", f.since, &flt.Since},
		{"until", f.until, &flt.Until},
		{"original-since", f.origSince, &flt.OriginalSince},
		{"original-until", f.origUntil, &flt.OriginalUntil},
	} {
		if t.value == "" {
			continue
		}
		v, err := parseTime(t.value, now)
		if err != nil {
			return flt, usagef("--%s: %v", t.name, err)
		}
		*t.dst = v
	}
	flt.FromSeq, flt.ToSeq = f.fromSeq, f.toSeq
	if f.limit > 1<<31 {
		return flt, usagef("--limit %d is too large", f.limit)
	}
	flt.Limit = int(f.limit)
	if err := flt.Validate(); err != nil {
		return flt, usagef("%v", strings.TrimPrefix(err.Error(), ponixnats.ErrInvalidConfig.Error()+": "))
	}
	return flt, nil
}

// parseTime reads an RFC 3339 time, or a duration before now: a Go duration
// (90m, 2h30m) or whole days (7d).
func parseTime(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	var d time.Duration
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n < 0 || n > 100_000 {
			return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time nor a duration like 2h or 7d", s)
		}
		d = time.Duration(n) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil || d < 0 {
			return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time (2026-11-30T10:00:00Z) nor a duration ago (90m, 2h, 7d)", s)
		}
	}
	return now.Add(-d), nil
}
