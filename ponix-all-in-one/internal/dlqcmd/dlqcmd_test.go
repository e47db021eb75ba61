package dlqcmd

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ponix-go/ponix/ponixnats"
	"github.com/ponix-go/ponix/ponixnats/dlqadmin"
)

func TestParseTime(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"2026-11-30T10:00:00Z":           time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC),
		"2026-11-30T10:00:00.5+01:00":    time.Date(2026, 11, 30, 9, 0, 0, 5e8, time.UTC),
		"2h":                             now.Add(-2 * time.Hour),
		"90m":                            now.Add(-90 * time.Minute),
		"1h30m":                          now.Add(-90 * time.Minute),
		"7d":                             now.Add(-7 * 24 * time.Hour),
		"0s":                             now,
		"2026-11-30T10:00:00.123456789Z": time.Date(2026, 11, 30, 10, 0, 0, 123456789, time.UTC),
	} {
		got, err := parseTime(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("parseTime(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "yesterday", "-2h", "2026-11-30", "xd", "-1d", "2w"} {
		if _, err := parseTime(bad, now); err == nil {
			t.Errorf("parseTime(%q) accepted", bad)
		}
	}
}

func TestFilterFlags(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	fs := newFlagSet("test")
	var ff filterFlags
	ff.register(fs, 0)
	pos, err := parse(fs, []string{"--reason", "invalid,decode", "--reason=rejected", "-subject", "s.*", "--since", "2h",
		"--until", "2026-11-30T11:30:00Z", "--from-seq", "3", "--to-seq", "9", "--limit", "4", "--original-since", "1d"}, &bytes.Buffer{}, "")
	if err != nil || len(pos) != 0 {
		t.Fatalf("parse: %v, %v", pos, err)
	}
	f, err := ff.filter(now)
	if err != nil {
		t.Fatal(err)
	}
	want := dlqadmin.Filter{
		Reasons:       []ponixnats.Reason{"invalid", "decode", "rejected"},
		Subjects:      []string{"s.*"},
		Since:         now.Add(-2 * time.Hour),
		Until:         time.Date(2026, 11, 30, 11, 30, 0, 0, time.UTC),
		OriginalSince: now.Add(-24 * time.Hour),
		FromSeq:       3, ToSeq: 9, Limit: 4,
	}
	if len(f.Reasons) != 3 || f.Reasons[2] != want.Reasons[2] || f.Subjects[0] != "s.*" || !f.Since.Equal(want.Since) ||
		!f.Until.Equal(want.Until) || !f.OriginalSince.Equal(want.OriginalSince) || f.FromSeq != 3 || f.ToSeq != 9 || f.Limit != 4 {
		t.Fatalf("filter %+v; want %+v", f, want)
	}
	for _, args := range [][]string{
		{"--since", "soon"},
		{"--since", "1h", "--until", "2h"}, // until before since
		{"--from-seq", "9", "--to-seq", "3"},
		{"--subject", "a.>.b"},
		{"--from-seq", "-1"},
	} {
		fs := newFlagSet("test")
		var ff filterFlags
		ff.register(fs, 0)
		_, err := parse(fs, args, &bytes.Buffer{}, "")
		if err == nil {
			_, err = ff.filter(now)
		}
		if _, ok := err.(*usageError); !ok {
			t.Errorf("%v: error %v; want a usage error", args, err)
		}
	}
}

func TestParseAllowsPositionalBetweenFlags(t *testing.T) {
	fs := newFlagSet("test")
	raw := fs.Bool("raw", false, "")
	pos, err := parse(fs, []string{"17", "-raw", "18", "--", "-19"}, &bytes.Buffer{}, "")
	if err != nil || !*raw || strings.Join(pos, " ") != "17 18 -19" {
		t.Fatalf("parse = %v, %v (raw %v)", pos, err, *raw)
	}
}

func run(args []string, environ ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = Run(context.Background(), args, environ, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestUsageAndExitStatuses(t *testing.T) {
	for _, c := range []struct {
		args       []string
		env        []string
		code       int
		wantOut    string
		wantErrOut string
	}{
		{args: []string{"-h"}, code: 0, wantOut: "list     count dead letters"},
		{args: []string{"help"}, code: 0, wantOut: "PONIX_NATS_URL"},
		{args: nil, code: 2, wantErrOut: "Usage:"},
		{args: []string{"purge"}, code: 2, wantErrOut: `unknown command "purge"`},
		{args: []string{"list", "-h"}, code: 0, wantOut: "-top n"},
		{args: []string{"show", "-h"}, code: 0, wantOut: "show [SEQ...]"},
		{args: []string{"replay", "-h"}, code: 0, wantOut: "-dry-run"},
		{args: []string{"replay", "--help"}, code: 0, wantOut: "duplicate window"},
		{args: []string{"list", "--nope"}, code: 2, wantErrOut: "flag provided but not defined: -nope"},
		{args: []string{"list", "extra"}, code: 2, wantErrOut: "unexpected arguments"},
		{args: []string{"replay", "--since", "yesterday"}, code: 2, wantErrOut: "--since"},
		{args: []string{"replay", "--rate", "-1"}, code: 2, wantErrOut: "--rate"},
		{args: []string{"replay", "--max-failures", "0"}, code: 2, wantErrOut: "--max-failures"},
		{args: []string{"show", "abc"}, code: 2, wantErrOut: "not a dead-letter stream sequence"},
		{args: []string{"show", "17", "--reason", "invalid"}, code: 2, wantErrOut: "not both"},
		{args: []string{"list"}, env: []string{"PONIX_NATS_STREAM=a.b"}, code: 2, wantErrOut: "PONIX_NATS_STREAM"},
		{args: []string{"list"}, env: []string{"PONIX_NATS_URL=ftp://x"}, code: 2, wantErrOut: "PONIX_NATS_URL"},
		// Nothing listens on port 1: a runtime failure.
		{args: []string{"list"}, env: []string{"PONIX_NATS_URL=nats://127.0.0.1:1"}, code: 1, wantErrOut: "cannot reach NATS server"},
		{args: []string{"replay"}, env: []string{"PONIX_NATS_EMBEDDED_ADDR=127.0.0.1:1"}, code: 1, wantErrOut: "PONIX_NATS_URL is empty"},
	} {
		code, out, errOut := run(c.args, c.env...)
		if code != c.code || !strings.Contains(out, c.wantOut) || !strings.Contains(errOut, c.wantErrOut) {
			t.Errorf("dlq %v (env %v): exit %d; want %d\nstdout: %s\nstderr: %s", c.args, c.env, code, c.code, out, errOut)
		}
	}
}

func TestByCount(t *testing.T) {
	got := byCount(map[string]int{"b": 2, "a": 2, "c": 5, "d": 1})
	if strings.Join(got, ",") != "c,a,b,d" {
		t.Fatalf("byCount = %v", got)
	}
}
