package dlqadmin

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ponix-go/ponix/ponixnats"
)

func TestSubjectMatches(t *testing.T) {
	for _, c := range []struct {
		pattern, subject string
		want             bool
	}{
		{"a.b", "a.b", true},
		{"a.b", "a.c", false},
		{"a.b", "a.b.c", false},
		{"a.b.c", "a.b", false},
		{"a.*", "a.b", true},
		{"a.*", "a.b.c", false},
		{"a.*.c", "a.x.c", true},
		{"a.*.c", "a.x.d", false},
		{"*", "a", true},
		{"*", "a.b", false},
		{"a.>", "a.b", true},
		{"a.>", "a.b.c.d", true},
		{"a.>", "a", false},
		{">", "a", true},
		{">", "a.b", true},
		{"a.*.>", "a.b", false},
		{"a.*.>", "a.b.c", true},
		{"processed_envelopes.>", "processed_envelopes.dev-1", true},
		{"processed_envelopes.dev-1", "processed_envelopes.dev-10", false},
	} {
		if got := subjectMatches(c.pattern, c.subject); got != c.want {
			t.Errorf("subjectMatches(%q, %q) = %v; want %v", c.pattern, c.subject, got, c.want)
		}
	}
}

func TestFilterValidate(t *testing.T) {
	now := time.Now()
	for _, c := range []struct {
		name string
		f    Filter
		ok   bool
	}{
		{"zero", Filter{}, true},
		{"full", Filter{Reasons: []ponixnats.Reason{ponixnats.ReasonInvalid}, Subjects: []string{"a.*", "b.>"}, Since: now.Add(-time.Hour), Until: now, FromSeq: 3, ToSeq: 3, Limit: 1}, true},
		{"bad pattern", Filter{Subjects: []string{"a.>.b"}}, false},
		{"empty pattern", Filter{Subjects: []string{""}}, false},
		{"empty reason", Filter{Reasons: []ponixnats.Reason{""}}, false},
		{"since after until", Filter{Since: now, Until: now.Add(-time.Second)}, false},
		{"since equals until", Filter{Since: now, Until: now}, false},
		{"original since after until", Filter{OriginalSince: now, OriginalUntil: now.Add(-time.Second)}, false},
		{"seq range reversed", Filter{FromSeq: 5, ToSeq: 4}, false},
		{"from only", Filter{FromSeq: 5}, true},
		{"negative limit", Filter{Limit: -1}, false},
	} {
		err := c.f.Validate()
		if (err == nil) != c.ok {
			t.Errorf("%s: Validate() = %v; want ok=%v", c.name, err, c.ok)
		}
		if err != nil && !errors.Is(err, ponixnats.ErrInvalidConfig) {
			t.Errorf("%s: %v does not match ponixnats.ErrInvalidConfig", c.name, err)
		}
	}
}

func deadLetterFixture(seq uint64, at time.Time, reason ponixnats.Reason, subject string, original time.Time) DeadLetter {
	h := nats.Header{}
	h.Set(ponixnats.HeaderDLQReason, string(reason))
	h.Set(ponixnats.HeaderOriginalSubject, subject)
	if !original.IsZero() {
		h.Set(ponixnats.HeaderOriginalTimestamp, original.UTC().Format(time.RFC3339Nano))
	}
	return DeadLetter{Sequence: seq, Subject: "s_dlq." + subject, Time: at, Header: h}
}

func TestFilterMatch(t *testing.T) {
	t0 := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	dl := deadLetterFixture(10, t0, ponixnats.ReasonDecode, "s.dev-1", t0.Add(-time.Minute))
	noOrig := deadLetterFixture(11, t0, ponixnats.ReasonDecode, "s.dev-1", time.Time{})
	for _, c := range []struct {
		name string
		f    Filter
		d    DeadLetter
		want bool
	}{
		{"zero filter", Filter{}, dl, true},
		{"reason in", Filter{Reasons: []ponixnats.Reason{ponixnats.ReasonInvalid, ponixnats.ReasonDecode}}, dl, true},
		{"reason out", Filter{Reasons: []ponixnats.Reason{ponixnats.ReasonInvalid}}, dl, false},
		{"subject exact", Filter{Subjects: []string{"s.dev-1"}}, dl, true},
		{"subject wildcard", Filter{Subjects: []string{"s.*"}}, dl, true},
		{"subject tail", Filter{Subjects: []string{"s.>"}}, dl, true},
		{"subject other", Filter{Subjects: []string{"s.dev-2", "t.>"}}, dl, false},
		{"since inclusive", Filter{Since: t0}, dl, true},
		{"since after", Filter{Since: t0.Add(time.Nanosecond)}, dl, false},
		{"until exclusive", Filter{Until: t0}, dl, false},
		{"until after", Filter{Until: t0.Add(time.Nanosecond)}, dl, true},
		{"original since", Filter{OriginalSince: t0.Add(-2 * time.Minute)}, dl, true},
		{"original since after", Filter{OriginalSince: t0.Add(-30 * time.Second)}, dl, false},
		{"original until", Filter{OriginalUntil: t0.Add(-30 * time.Second)}, dl, true},
		{"original bound without header", Filter{OriginalUntil: t0}, noOrig, false},
		{"from seq", Filter{FromSeq: 10}, dl, true},
		{"from seq after", Filter{FromSeq: 11}, dl, false},
		{"to seq", Filter{ToSeq: 10}, dl, true},
		{"to seq before", Filter{ToSeq: 9}, dl, false},
		{"limit ignored", Filter{Limit: 1}, dl, true},
	} {
		if got := c.f.Match(c.d); got != c.want {
			t.Errorf("%s: Match = %v; want %v", c.name, got, c.want)
		}
	}
}

func TestDeadLetterAccessors(t *testing.T) {
	orig := time.Date(2026, 11, 1, 12, 0, 0, 123, time.UTC)
	h := nats.Header{}
	h.Set(ponixnats.HeaderDLQReason, "invalid")
	h.Set(ponixnats.HeaderDLQError, "missing occurred_at")
	h.Set(ponixnats.HeaderOriginalSubject, "s.dev-1")
	h.Set(ponixnats.HeaderOriginalStream, "s")
	h.Set(ponixnats.HeaderOriginalSequence, "42")
	h.Set(ponixnats.HeaderOriginalTimestamp, orig.Format(time.RFC3339Nano))
	h.Set(ponixnats.HeaderReplayCount, "3")
	d := DeadLetter{Header: h}
	if d.Reason() != ponixnats.ReasonInvalid || d.Cause() != "missing occurred_at" || d.OriginalSubject() != "s.dev-1" ||
		d.OriginalStream() != "s" || d.OriginalSequence() != 42 || !d.OriginalTime().Equal(orig) || d.ReplayCount() != 3 {
		t.Fatalf("accessors: %q %q %q %q %d %v %d", d.Reason(), d.Cause(), d.OriginalSubject(), d.OriginalStream(),
			d.OriginalSequence(), d.OriginalTime(), d.ReplayCount())
	}
	var empty DeadLetter
	if empty.Reason() != "" || empty.OriginalSequence() != 0 || !empty.OriginalTime().IsZero() || empty.ReplayCount() != 0 {
		t.Fatal("accessors of a dead letter without headers must be zero")
	}
	h.Set(ponixnats.HeaderReplayCount, "-1")
	if d.ReplayCount() != 0 {
		t.Fatalf("negative replay count read as %d", d.ReplayCount())
	}
}

func TestReplayHeaderStripsDeadLetterHeaders(t *testing.T) {
	h := nats.Header{
		ponixnats.HeaderDLQReason:         {"invalid"},
		ponixnats.HeaderDLQError:          {"boom"},
		ponixnats.HeaderOriginalSubject:   {"s.a"},
		ponixnats.HeaderOriginalStream:    {"s"},
		ponixnats.HeaderOriginalSequence:  {"7"},
		ponixnats.HeaderOriginalConsumer:  {"c"},
		ponixnats.HeaderOriginalTimestamp: {"2026-11-01T12:00:00Z"},
		ponixnats.HeaderOriginalMsgID:     {"orig-id"},
		ponixnats.HeaderNumDelivered:      {"1"},
		ponixnats.HeaderReplayCount:       {"1"},
		"Nats-Msg-Id":                     {"dlq:s:7"},
		"nats-expected-stream":            {"x"},
		"PONIX-DLQ-FUTURE":                {"y"},
		"X-Custom":                        {"keep", "both"},
		"Ponix-Tenant":                    {"t1"},
	}
	got := replayHeader(h, 2)
	want := nats.Header{"X-Custom": {"keep", "both"}, "Ponix-Tenant": {"t1"}, ponixnats.HeaderReplayCount: {"2"}}
	if len(got) != len(want) {
		t.Fatalf("replay header %v; want %v", got, want)
	}
	for k, v := range want {
		if g := got.Values(k); len(g) != len(v) || g[0] != v[0] {
			t.Errorf("header %s = %v; want %v", k, g, v)
		}
	}
	if h.Get(ponixnats.HeaderDLQReason) != "invalid" {
		t.Fatal("replayHeader modified its input")
	}
}

func TestReplayMsgIDIsDeterministicAndDistinct(t *testing.T) {
	created := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	a := &Stream{name: "s_dlq", created: created}
	b := &Stream{name: "s_dlq", created: created}
	recreated := &Stream{name: "s_dlq", created: created.Add(time.Hour)}
	other := &Stream{name: "t_dlq", created: created}
	if a.ReplayMsgID(5) != b.ReplayMsgID(5) {
		t.Fatal("same dead letter, different ids")
	}
	for _, x := range []string{a.ReplayMsgID(6), recreated.ReplayMsgID(5), other.ReplayMsgID(5)} {
		if x == a.ReplayMsgID(5) {
			t.Fatalf("id %s shared by two dead letters", x)
		}
	}
}

func TestOutcomeString(t *testing.T) {
	for o, want := range map[Outcome]string{OutcomeReplayed: "replayed", OutcomeDuplicate: "duplicate", OutcomeFailed: "failed", OutcomeDryRun: "dry_run", 0: "unknown"} {
		if o.String() != want {
			t.Errorf("%d.String() = %q; want %q", o, o.String(), want)
		}
	}
}

func TestReplayPaceBoundsRate(t *testing.T) {
	r := &replayer{every: 20 * time.Millisecond}
	start := time.Now()
	for range 6 {
		if err := r.pace(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	// The first passes at once, the other five wait 20 ms each.
	if el := time.Since(start); el < 95*time.Millisecond {
		t.Fatalf("6 paced steps at 50/s took %s; want at least 100ms", el)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r.next = time.Now().Add(time.Hour)
	if err := r.pace(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("pace with a cancelled context = %v", err)
	}
}

func TestReplayOptionsDefaults(t *testing.T) {
	o := ReplayOptions{}.withDefaults()
	if o.PublishTimeout != DefaultReplayPublishTimeout || o.MaxFailures != DefaultReplayMaxFailures || o.Logger == nil {
		t.Fatalf("defaults %+v", o)
	}
	if o := (ReplayOptions{MaxFailures: -1}).withDefaults(); o.MaxFailures != -1 {
		t.Fatalf("negative MaxFailures (never stop) changed to %d", o.MaxFailures)
	}
}
