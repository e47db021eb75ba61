package config_test

import (
	"slices"
	"testing"

	"github.com/ponix-go/ponix/ponix-all-in-one/internal/config"
)

func TestUnknownVariablesSuggestTheClosest(t *testing.T) {
	got := config.UnknownVariables([]string{
		"PONIX_NATS_BACTH_SIZE=100",       // transposition
		"PONIX_CLICKHOUSE_PASS=x",         // truncated
		"PONIX_BATCH_SIZE=1",              // a part of the name
		"ponix_nats_url=nats://x:4222",    // letter case
		"PONIX_LOG_LVL=debug",             // letters left out
		"PONIX_TOTALLY_DIFFERENT=1",       // nothing close
		"PONIX_TEST_CLICKHOUSE_ADDR=x:1",  // the test suites' own
		"PONIX_NATS_URL=nats://x:4222",    // known
		"PONIX_GOOSE_BINARY_PATH=/bin/x",  // ignored, reported elsewhere
		"PONIX_CLICKHOUSE_URL=http://x:1", // a field, though unused
		"HOME=/root",                      // not ours
	})
	want := []config.Unknown{
		{Var: "PONIX_BATCH_SIZE", DidYouMean: "PONIX_NATS_BATCH_SIZE"},
		{Var: "PONIX_CLICKHOUSE_PASS", DidYouMean: "PONIX_CLICKHOUSE_PASSWORD"},
		{Var: "PONIX_LOG_LVL", DidYouMean: "PONIX_LOG_LEVEL"},
		{Var: "PONIX_NATS_BACTH_SIZE", DidYouMean: "PONIX_NATS_BATCH_SIZE"},
		{Var: "PONIX_TOTALLY_DIFFERENT"},
		{Var: "ponix_nats_url", DidYouMean: "PONIX_NATS_URL"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("UnknownVariables =\n%v\nwant\n%v", got, want)
	}
	if s := want[3].String(); s != "ignoring unknown variable PONIX_NATS_BACTH_SIZE (did you mean PONIX_NATS_BATCH_SIZE?)" {
		t.Errorf("String() = %q", s)
	}
	if s := want[4].String(); s != "ignoring unknown variable PONIX_TOTALLY_DIFFERENT" {
		t.Errorf("String() = %q", s)
	}
	// An unknown variable is a warning, never a configuration error.
	if _, err := config.Load([]string{"PONIX_NATS_BACTH_SIZE=100"}); err != nil {
		t.Errorf("Load = %v", err)
	}
}
