package statuscmd

import (
	"fmt"
	"slices"
	"time"
)

// Snapshot is what status reports at one moment: the --json output, one object per refresh.
// Pointer fields are nil when their source could not be read (a problem says why).
type Snapshot struct {
	// Time is when the snapshot was taken.
	Time time.Time `json:"time"`
	// OK is false when Problems is not empty: the exit status is then 1.
	OK bool `json:"ok"`
	// Problems are what is wrong: a source unreachable, a hold, a service not ready.
	Problems []string `json:"problems"`
	// Warnings deserve a look but are no failure: dead letters, pending messages with nothing stored.
	Warnings []string `json:"warnings"`

	Stream      *StreamStatus     `json:"stream,omitempty"`
	Consumer    *ConsumerStatus   `json:"consumer,omitempty"`
	Stored      StoredStatus      `json:"stored"`
	Hold        HoldStatus        `json:"hold"`
	DeadLetters *DeadLetterStatus `json:"dead_letters,omitempty"`
	Table       *TableStatus      `json:"table,omitempty"`
	Service     *ServiceStatus    `json:"service,omitempty"`
}

// StreamStatus is the JetStream stream.
type StreamStatus struct {
	Name     string `json:"name"`
	Messages uint64 `json:"messages"`
	Bytes    uint64 `json:"bytes"`
	FirstSeq uint64 `json:"first_seq"`
	LastSeq  uint64 `json:"last_seq"`
	// Created identifies the stream's incarnation (a stream deleted and created again has a new one).
	Created time.Time `json:"created"`
}

// ConsumerStatus is the service's durable consumer.
type ConsumerStatus struct {
	Name string `json:"name"`
	// Pending are the messages not yet delivered: the lag in messages.
	Pending uint64 `json:"pending"`
	// AckPending are delivered and not yet acknowledged (in a batch being stored, or held).
	AckPending int `json:"ack_pending"`
	// Redelivered are delivered more than once and not yet acknowledged.
	Redelivered int `json:"redelivered"`
	// AckFloor is the stream sequence up to which every message is acknowledged.
	AckFloor uint64 `json:"ack_floor"`
}

// StoredStatus is what reaches ClickHouse: the rate and the newest stored envelope.
type StoredStatus struct {
	// PerSecond is the stored rate over WindowSeconds; nil until two samples were taken.
	PerSecond     *float64 `json:"per_second,omitempty"`
	WindowSeconds float64  `json:"window_seconds,omitempty"`
	// RateSource is where the rate comes from: "service" (ponix_envelopes_stored_total) or
	// "table" (the table's row count).
	RateSource string `json:"rate_source,omitempty"`
	// NewestProcessedAt is the processed_at of the newest envelope stored; nil when none is known.
	NewestProcessedAt *time.Time `json:"newest_processed_at,omitempty"`
	// NewestAgeSeconds is how old that envelope is now: the lag in time.
	NewestAgeSeconds *float64 `json:"newest_age_seconds,omitempty"`
	// NewestSource is "service" (ponix_newest_stored_envelope_*) or "table" (max(processed_at)).
	NewestSource string `json:"newest_source,omitempty"`
}

// HoldStatus says whether the service holds a batch because ClickHouse fails. Known is false
// without the service's address (-service): only the service knows its hold.
type HoldStatus struct {
	Known   bool    `json:"known"`
	Held    bool    `json:"held"`
	Class   string  `json:"class,omitempty"`
	Seconds float64 `json:"seconds,omitempty"`
	// Cause is the service's own words (its /readyz sink check).
	Cause string `json:"cause,omitempty"`
}

// DeadLetterStatus counts the dead letters by reason.
type DeadLetterStatus struct {
	Stream string `json:"stream"`
	Total  int    `json:"total"`
	// ByReason is nil when there are too many dead letters to count here (dlq list counts them).
	ByReason map[string]int `json:"by_reason"`
}

// TableStatus is the ClickHouse table.
type TableStatus struct {
	Database string `json:"database"`
	Name     string `json:"name"`
	Rows     uint64 `json:"rows"`
}

// ServiceStatus is what the service says of itself over HTTP (/readyz and /metrics).
type ServiceStatus struct {
	Address string `json:"address"`
	Ready   bool   `json:"ready"`
	// Checks are /readyz's checks: "ok" or the error.
	Checks map[string]string `json:"checks,omitempty"`
	Error  string            `json:"error,omitempty"`
}

// judge fills OK, Problems and Warnings from what was collected (errs are the sources'
// failures, already worded).
func (s *Snapshot) judge(errs []string) {
	s.Problems = append(s.Problems, errs...)
	if s.Hold.Held {
		s.Problems = append(s.Problems, fmt.Sprintf("sink held for %s (class %s; the cause is on the hold line)", fmtDuration(s.Hold.Seconds), s.Hold.Class))
	}
	if sv := s.Service; sv != nil && sv.Error == "" && !sv.Ready {
		for _, name := range sortedKeys(sv.Checks) {
			if v := sv.Checks[name]; v != "ok" && !(name == "sink" && s.Hold.Held) {
				s.Problems = append(s.Problems, fmt.Sprintf("service not ready: %s: %s", name, v))
			}
		}
	}
	if d := s.DeadLetters; d != nil && d.Total > 0 {
		s.Warnings = append(s.Warnings, fmt.Sprintf("%d dead letters in %s (ponix-all-in-one dlq list)", d.Total, d.Stream))
	}
	if c := s.Consumer; c != nil && c.Pending+uint64(c.AckPending) > 0 && s.Stored.PerSecond != nil && *s.Stored.PerSecond == 0 {
		s.Warnings = append(s.Warnings, fmt.Sprintf("%d messages waiting and nothing stored in the last %s", c.Pending+uint64(c.AckPending), fmtDuration(s.Stored.WindowSeconds)))
	}
	s.OK = len(s.Problems) == 0
	if s.Problems == nil {
		s.Problems = []string{}
	}
	if s.Warnings == nil {
		s.Warnings = []string{}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
