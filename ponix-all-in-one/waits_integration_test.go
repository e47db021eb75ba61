//go:build integration

package main_test

// Waits on events. A test never sleeps to let something happen: it polls the state it needs
// (rows, the consumer's delivery and ack state, /readyz, a log line) until it holds, and
// fails with the service logs when it does not within a bound. A negative check ("nothing
// more is stored, redelivered or dead-lettered") waits for the state in which nothing more
// can happen, e.g. every message of the stream acknowledged.

import (
	"context"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// pollEvery is how often a wait looks at the state it waits for.
const pollEvery = 50 * time.Millisecond

// waitFor polls cond until it holds. It fails the test, saying what was awaited, when within
// passes or when every service of svcs has exited.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool, svcs ...*service) {
	t.Helper()
	deadline := time.Now().Add(within)
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for !cond() {
		checkAlive(t, svcs...)
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s%s", what, within, serviceLogs(svcs...))
		}
		<-tick.C
	}
}

// waitLog waits until the service's logs contain text, failing if it exits or within passes.
func waitLog(t *testing.T, s *service, text string, within time.Duration) {
	t.Helper()
	waitFor(t, within, "log line "+strconv.Quote(text), func() bool { return strings.Contains(s.logs.String(), text) }, s)
}

// waitSettled waits until the durable consumer has settled every message of the stream at
// natsURL: all delivered (none pending), none delivered and unacknowledged, and the ack floor
// at the stream's last sequence (acked, or terminated after dead-lettering). From then on
// nothing is redelivered, so nothing more is stored or dead-lettered: the state a check for
// late duplicates or dead letters observes. It returns the consumer's info.
func waitSettled(t *testing.T, natsURL string, within time.Duration, svcs ...*service) *jetstream.ConsumerInfo {
	t.Helper()
	js := dlqJS(t, natsURL) // a connection of the test's, closed at its end
	var (
		info *jetstream.ConsumerInfo
		last uint64
	)
	waitFor(t, within, "every message acknowledged or terminated", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		st, err := js.Stream(ctx, "processed_envelopes")
		if err != nil {
			return false
		}
		cons, err := st.Consumer(ctx, "ponix-all-in-one")
		if err != nil {
			return false
		}
		if info, err = cons.Info(ctx); err != nil {
			return false
		}
		last = st.CachedInfo().State.LastSeq
		return info.NumPending == 0 && info.NumAckPending == 0 && info.AckFloor.Stream >= last
	}, svcs...)
	return info
}

// holdAttempts returns how many store attempts the hold named in a /readyz sink check has made
// ("batch held since … (7s, 4 attempts, unreachable): …"), 0 when it names none.
func holdAttempts(check string) int {
	m := attemptsRE.FindStringSubmatch(check)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

var attemptsRE = regexp.MustCompile(`, (\d+) attempts, `)

// sumField adds the integer field=N of every log line that contains msg.
func sumField(logs, msg, field string) int {
	total := 0
	for _, line := range strings.Split(logs, "\n") {
		if !strings.Contains(line, msg) {
			continue
		}
		if _, rest, ok := strings.Cut(line, " "+field+"="); ok {
			n, _ := strconv.Atoi(strings.Fields(rest)[0])
			total += n
		}
	}
	return total
}

// loggedSince counts the lines of s's log that contain text and were logged at or after since.
func loggedSince(s *service, text string, since time.Time) int {
	return loggedBetween(s, text, since, time.Time{})
}

// loggedBetween counts the lines of s's log that contain text, logged from from until to (the
// zero time: no end).
func loggedBetween(s *service, text string, from, to time.Time) int {
	n := 0
	for _, line := range strings.Split(s.logs.String(), "\n") {
		if !strings.Contains(line, text) {
			continue
		}
		ts, _, _ := strings.Cut(strings.TrimPrefix(line, "time="), " ")
		if at, err := time.Parse(time.RFC3339Nano, ts); err == nil && !at.Before(from) && (to.IsZero() || !at.After(to)) {
			n++
		}
	}
	return n
}
