package dlqcmd

import (
	"bytes"
	"cmp"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"text/tabwriter"
	"time"

	envelopev1 "buf.build/gen/go/ponix/ponix/protocolbuffers/go/envelope/v1"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/ponix-go/ponix/ponixnats"
	"github.com/ponix-go/ponix/ponixnats/dlqadmin"
)

const listHelp = `Usage: ` + program + ` list [flags]

Count the dead letters (all, or those the filters select) by reason and by
original subject, with the oldest and newest dead-lettering time.
`

const showHelp = `Usage: ` + program + ` show [SEQ...]
       ` + program + ` show [filters] [--limit n]

Print dead letters: the ones at the given dead-letter stream sequences, or the
first --limit (default 10) the filters select. For each: the sequence, subject
and dead-lettering time, every header, and the payload decoded as an
envelope.v1.ProcessedEnvelope in JSON (protojson, proto field names), or in hex
when it does not decode.
`

const replayHelp = `Usage: ` + program + ` replay [filters] [--dry-run] [--rate n]

Publish the dead letters the filters select (all without filters) back to their
original subjects, in dead-letter order, and delete each from the dead-letter
stream once the original stream acknowledged it. The original bytes and headers
are republished without the Ponix-Dlq-*/Ponix-Original-* headers, with
Ponix-Replay-Count (+1 per replay: a message that fails again returns to the
dead-letter stream with it) and a Nats-Msg-Id derived from the dead letter.

Safe to interrupt and run again: within the original stream's duplicate window
(2 minutes by default; the replay logs it) the stream drops a second publish of
the same dead letter, so each is stored once. Dead letters added while the
replay runs (e.g. replayed messages that fail again) are left for the next run.
A progress line goes to stderr every second, a summary line to stdout.
`

func newFlagSet(name string) *flag.FlagSet {
	return flag.NewFlagSet(program+" "+name, flag.ContinueOnError)
}

// summaryJSON is the --json output of list.
type summaryJSON struct {
	Stream    string         `json:"stream"`
	Total     int            `json:"total"`
	ByReason  map[string]int `json:"by_reason"`
	BySubject map[string]int `json:"by_subject"`
	Oldest    *time.Time     `json:"oldest,omitempty"`
	Newest    *time.Time     `json:"newest,omitempty"`
	FirstSeq  uint64         `json:"first_seq,omitempty"`
	LastSeq   uint64         `json:"last_seq,omitempty"`
}

func runList(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet("list")
	var ff filterFlags
	ff.register(fs, 0)
	asJSON := fs.Bool("json", false, "print the counts as one JSON object")
	top := fs.Int("top", 20, "list at most `n` original subjects, the most frequent first (0: all)")
	pos, err := parse(fs, args, e.stdout, listHelp+filterHelp)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("unexpected arguments %q", pos)
	}
	flt, nc, d, found, err := e.open(ctx, &ff)
	if err != nil {
		return err
	}
	defer nc.Close()
	sum := dlqadmin.Summary{ByReason: map[ponixnats.Reason]int{}, BySubject: map[string]int{}}
	if found {
		if sum, err = d.Summary(ctx, flt); err != nil {
			return err
		}
	} else {
		e.noStream()
	}
	if *asJSON {
		out := summaryJSON{Stream: e.dlqStream(), Total: sum.Total, ByReason: map[string]int{}, BySubject: sum.BySubject,
			FirstSeq: sum.FirstSeq, LastSeq: sum.LastSeq}
		for r, n := range sum.ByReason {
			out.ByReason[string(r)] = n
		}
		if sum.Total > 0 {
			out.Oldest, out.Newest = &sum.Oldest, &sum.Newest
		}
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	what := "dead letters"
	if !isZeroFilter(flt) {
		what += " matching the filter"
	}
	if sum.Total == 0 {
		fmt.Fprintf(e.stdout, "%s: 0 %s\n", e.dlqStream(), what)
		return nil
	}
	fmt.Fprintf(e.stdout, "%s: %d %s, sequences %d-%d\n", e.dlqStream(), sum.Total, what, sum.FirstSeq, sum.LastSeq)
	fmt.Fprintf(e.stdout, "oldest %s, newest %s\n\n", ts(sum.Oldest), ts(sum.Newest))
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REASON\tCOUNT")
	for _, r := range byCount(sum.ByReason) {
		name := string(r)
		if name == "" {
			name = "(none)"
		}
		fmt.Fprintf(tw, "%s\t%d\n", name, sum.ByReason[r])
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(e.stdout)
	tw = tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ORIGINAL SUBJECT\tCOUNT")
	subjects := byCount(sum.BySubject)
	shown := subjects
	if *top > 0 && len(shown) > *top {
		shown = shown[:*top]
	}
	for _, s := range shown {
		name := s
		if name == "" {
			name = "(none)"
		}
		fmt.Fprintf(tw, "%s\t%d\n", name, sum.BySubject[s])
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if rest := len(subjects) - len(shown); rest > 0 {
		fmt.Fprintf(e.stdout, "... and %d more subjects (--top 0 lists all)\n", rest)
	}
	return nil
}

func runShow(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet("show")
	var ff filterFlags
	ff.register(fs, 10)
	pos, err := parse(fs, args, e.stdout, showHelp+filterHelp)
	if err != nil {
		return err
	}
	var seqs []uint64
	for _, p := range pos {
		n, err := strconv.ParseUint(p, 10, 64)
		if err != nil || n == 0 {
			return usagef("%q is not a dead-letter stream sequence", p)
		}
		seqs = append(seqs, n)
	}
	if len(seqs) > 0 {
		var conflict string
		fs.Visit(func(f *flag.Flag) {
			if isFilterFlag(f.Name) || f.Name == "limit" {
				conflict = f.Name
			}
		})
		if conflict != "" {
			return usagef("give sequences or filters (--%s), not both", conflict)
		}
	}
	flt, nc, d, found, err := e.open(ctx, &ff)
	if err != nil {
		return err
	}
	defer nc.Close()
	if !found {
		e.noStream()
		if len(seqs) > 0 {
			return fmt.Errorf("no dead letter %d: stream %s does not exist", seqs[0], e.dlqStream())
		}
		return nil
	}
	if len(seqs) > 0 {
		var missing []uint64
		for _, seq := range seqs {
			dl, err := d.Get(ctx, seq)
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				missing = append(missing, seq)
				continue
			}
			if err != nil {
				return err
			}
			printDeadLetter(e.stdout, dl)
		}
		if len(missing) > 0 {
			return fmt.Errorf("no dead letter at sequence %v in %s (never stored, or replayed/deleted since)", missing, e.dlqStream())
		}
		return nil
	}
	n := 0
	for dl, err := range d.All(ctx, flt) {
		if err != nil {
			return err
		}
		printDeadLetter(e.stdout, dl)
		n++
	}
	if n == 0 {
		fmt.Fprintf(e.stderr, "%s show: no dead letters match\n", program)
	}
	return nil
}

// printDeadLetter prints one dead letter: sequence, subject, time, headers
// (sorted), and the payload as envelope JSON or hex.
func printDeadLetter(w io.Writer, dl dlqadmin.DeadLetter) {
	fmt.Fprintf(w, "=== dead letter %d: subject %s, dead-lettered %s\n", dl.Sequence, dl.Subject, ts(dl.Time))
	for _, k := range slices.Sorted(maps.Keys(dl.Header)) {
		for _, v := range dl.Header[k] {
			fmt.Fprintf(w, "%s: %s\n", k, v)
		}
	}
	var env envelopev1.ProcessedEnvelope
	err := proto.Unmarshal(dl.Data, &env)
	if err == nil {
		var b []byte
		if b, err = (protojson.MarshalOptions{UseProtoNames: true}).Marshal(&env); err == nil {
			var out bytes.Buffer
			if err = json.Indent(&out, b, "", "  "); err == nil {
				fmt.Fprintf(w, "envelope (%d bytes):\n%s\n\n", len(dl.Data), out.Bytes())
				return
			}
		}
	}
	fmt.Fprintf(w, "data (%d bytes, not a ProcessedEnvelope: %v):\n%s\n", len(dl.Data), err, hex.Dump(dl.Data))
}

func runReplay(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet("replay")
	var ff filterFlags
	ff.register(fs, 0)
	dryRun := fs.Bool("dry-run", false, "list what would be replayed (one line each) and change nothing")
	rate := fs.Float64("rate", 0, "replay at most `n` dead letters per second (0: as fast as NATS answers)")
	maxFailures := fs.Int("max-failures", dlqadmin.DefaultReplayMaxFailures, "stop after `n` dead letters that could not be replayed (-1: never stop)")
	pos, err := parse(fs, args, e.stdout, replayHelp+filterHelp)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("unexpected arguments %q", pos)
	}
	if *rate < 0 {
		return usagef("--rate must not be negative")
	}
	if *maxFailures == 0 || *maxFailures < -1 {
		return usagef("--max-failures must be -1 or at least 1")
	}
	flt, nc, d, found, err := e.open(ctx, &ff)
	if err != nil {
		return err
	}
	defer nc.Close()
	if !found {
		e.noStream()
		fmt.Fprintln(e.stdout, "replay: nothing to replay")
		return nil
	}
	// Count first, for the progress line (headers only; cheap).
	sum, err := d.Summary(ctx, flt)
	if err != nil {
		return err
	}
	if sum.Total == 0 {
		fmt.Fprintln(e.stdout, "replay: no dead letters match; nothing to replay")
		return nil
	}
	verb := "replaying"
	if *dryRun {
		verb = "dry run: would replay"
	}
	fmt.Fprintf(e.stderr, "%s %d dead letters from %s (sequences %d-%d) to their original subjects\n",
		verb, sum.Total, e.dlqStream(), sum.FirstSeq, sum.LastSeq)

	var last time.Time
	lastN := 0
	progress := func(p dlqadmin.ReplayProgress) {
		if *dryRun {
			dl := p.DeadLetter
			fmt.Fprintf(e.stdout, "would replay %d\treason=%s\tsubject=%s\tdead-lettered=%s\treplay-count=%d\n",
				dl.Sequence, dl.Reason(), dl.OriginalSubject(), ts(dl.Time), dl.ReplayCount()+1)
			return
		}
		now := time.Now()
		if last.IsZero() {
			last = now
			return
		}
		if now.Sub(last) < time.Second {
			return
		}
		st := p.Stats
		fmt.Fprintf(e.stderr, "replay: %d/%d handled (replayed %d, duplicates %d, failed %d), %.0f/s\n",
			st.Matched, sum.Total, st.Replayed, st.Duplicates, st.Failed, float64(st.Matched-lastN)/now.Sub(last).Seconds())
		last, lastN = now, st.Matched
	}
	st, err := d.Replay(ctx, flt, dlqadmin.ReplayOptions{
		DryRun:      *dryRun,
		Rate:        *rate,
		MaxFailures: *maxFailures,
		Progress:    progress,
		Logger:      e.logger,
	})
	if *dryRun {
		fmt.Fprintf(e.stdout, "dry run: %d dead letters would be replayed; nothing was changed\n", st.Matched)
		return err
	}
	fmt.Fprintf(e.stdout, "replay: matched %d, replayed %d, duplicates %d (already replayed), deleted %d, failed %d in %s\n",
		st.Matched, st.Replayed, st.Duplicates, st.Deleted, st.Failed, st.Elapsed.Round(time.Millisecond))
	for i, f := range st.Failures {
		if i == 10 {
			fmt.Fprintf(e.stderr, "... and %d more failures\n", st.Failed-i)
			break
		}
		fmt.Fprintf(e.stderr, "failed: dead letter %d: %v\n", f.Sequence, f.Err)
	}
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("interrupted; run the same command again (within the duplicate window) to finish: %w", err)
	}
	return err
}

// byCount returns m's keys, the largest count first (ties by key).
func byCount[K cmp.Ordered](m map[K]int) []K {
	keys := slices.Collect(maps.Keys(m))
	slices.SortFunc(keys, func(a, b K) int {
		if c := cmp.Compare(m[b], m[a]); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	return keys
}

func ts(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func isZeroFilter(f dlqadmin.Filter) bool {
	return len(f.Reasons) == 0 && len(f.Subjects) == 0 && f.Since.IsZero() && f.Until.IsZero() &&
		f.OriginalSince.IsZero() && f.OriginalUntil.IsZero() && f.FromSeq == 0 && f.ToSeq == 0 && f.Limit == 0
}

// open builds the filter from the flags, loads the configuration and connects: what every
// command does first.
func (e *env) open(ctx context.Context, ff *filterFlags) (dlqadmin.Filter, *nats.Conn, *dlqadmin.Stream, bool, error) {
	flt, err := ff.filter(time.Now())
	if err != nil {
		return flt, nil, nil, false, err
	}
	if err := e.load(); err != nil {
		return flt, nil, nil, false, err
	}
	nc, d, found, err := e.connect(ctx)
	return flt, nc, d, found, err
}
