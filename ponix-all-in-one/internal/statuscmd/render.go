package statuscmd

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// render writes s as the status screen, one line per part.
func render(w io.Writer, s *Snapshot) error {
	var b strings.Builder
	verdict := "OK"
	if !s.OK {
		verdict = "PROBLEM"
	}
	fmt.Fprintf(&b, "ponix status  %s  %s\n", s.Time.Format("2006-01-02 15:04:05 MST"), verdict)
	line := func(label, format string, args ...any) {
		fmt.Fprintf(&b, "%-12s %s\n", label, fmt.Sprintf(format, args...))
	}
	if st := s.Stream; st != nil {
		line("stream", "%s: %s messages, %s, seq %d..%d, created %s", st.Name, thousands(st.Messages), bytesIEC(st.Bytes),
			st.FirstSeq, st.LastSeq, st.Created.Format(time.RFC3339))
	} else {
		line("stream", "unknown")
	}
	if c := s.Consumer; c != nil {
		line("consumer", "%s: pending %s, ack pending %d, redelivered %d, ack floor %d", c.Name, thousands(c.Pending), c.AckPending, c.Redelivered, c.AckFloor)
	} else {
		line("consumer", "unknown")
	}
	rate := "rate unknown yet"
	if r := s.Stored.PerSecond; r != nil {
		rate = fmt.Sprintf("%.1f/s over %s (%s)", *r, fmtDuration(s.Stored.WindowSeconds), s.Stored.RateSource)
	}
	newest := "newest stored envelope unknown"
	if a := s.Stored.NewestAgeSeconds; a != nil {
		newest = fmt.Sprintf("newest stored envelope %s old (processed_at %s, %s)", fmtDuration(*a),
			s.Stored.NewestProcessedAt.Format("15:04:05"), s.Stored.NewestSource)
	}
	line("stored", "%s; %s", rate, newest)
	switch h := s.Hold; {
	case h.Held:
		line("hold", "HELD for %s, class %s: %s", fmtDuration(h.Seconds), h.Class, h.Cause)
	case h.Known:
		line("hold", "none")
	default:
		line("hold", "unknown (give the service's address: -service host:port)")
	}
	if d := s.DeadLetters; d != nil {
		switch {
		case d.Total == 0:
			line("dead letters", "none")
		case d.ByReason == nil:
			line("dead letters", "%d (too many to count by reason here: ponix-all-in-one dlq list)", d.Total)
		default:
			reasons := sortedKeys(d.ByReason)
			slices.SortStableFunc(reasons, func(a, b string) int { return d.ByReason[b] - d.ByReason[a] })
			parts := make([]string, len(reasons))
			for i, r := range reasons {
				parts[i] = fmt.Sprintf("%s %d", r, d.ByReason[r])
			}
			line("dead letters", "%d: %s", d.Total, strings.Join(parts, ", "))
		}
	} else {
		line("dead letters", "unknown")
	}
	if t := s.Table; t != nil {
		line("table", "%s.%s: %s rows", t.Database, t.Name, thousands(t.Rows))
	} else {
		line("table", "unknown")
	}
	if sv := s.Service; sv != nil {
		switch {
		case sv.Error != "":
			line("service", "%s: unreachable", sv.Address)
		case sv.Ready:
			line("service", "%s: ready", sv.Address)
		default:
			line("service", "%s: NOT READY", sv.Address)
		}
	}
	for _, p := range s.Problems {
		line("PROBLEM", "%s", p)
	}
	for _, p := range s.Warnings {
		line("warning", "%s", p)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// fmtDuration writes seconds as 850ms, 4.2s, 3m05s, 2h03m.
func fmtDuration(sec float64) string {
	d := time.Duration(sec * float64(time.Second))
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return strconv.FormatFloat(math.Round(sec*10)/10, 'f', 1, 64) + "s"
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d/time.Minute), int(d%time.Minute/time.Second))
	default:
		return fmt.Sprintf("%dh%02dm", int(d/time.Hour), int(d%time.Hour/time.Minute))
	}
}

// thousands writes n with thousands separators: 1,234,567.
func thousands(n uint64) string {
	s := strconv.FormatUint(n, 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// bytesIEC writes n bytes as 512 B, 1.5 KiB, 3.2 MiB ...
func bytesIEC(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
