package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestHelpListsEveryVariable(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"-h"}, nil, &out, &errOut); code != 0 {
		t.Fatalf("-h exit code = %d", code)
	}
	for _, want := range []string{"PONIX_NATS_URL", "PONIX_NATS_BATCH_SIZE", "10000", "PONIX_CLICKHOUSE_NATIVE_URL", "localhost:9000", "PONIX_PRODUCER_ENABLED"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("-h output lacks %q", want)
		}
	}
}

func TestVersionFlag(t *testing.T) {
	var out bytes.Buffer
	if code := run(context.Background(), []string{"-version"}, nil, &out, &out); code != 0 {
		t.Fatalf("-version exit code = %d", code)
	}
	if !strings.HasPrefix(out.String(), "ponix-all-in-one ") {
		t.Errorf("-version printed %q", out.String())
	}
}

func TestBadConfigExitsTwoNamingTheVariable(t *testing.T) {
	var out, errOut bytes.Buffer
	code := run(context.Background(), nil, []string{"PONIX_NATS_BATCH_WAIT_SECS=soon"}, &out, &errOut)
	if code != 2 {
		t.Fatalf("exit code = %d, want 2", code)
	}
	if !strings.Contains(errOut.String(), "PONIX_NATS_BATCH_WAIT_SECS") {
		t.Errorf("stderr does not name the variable: %s", errOut.String())
	}
}

func TestUnknownFlagExitsTwo(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"-nope"}, nil, &out, &errOut); code != 2 {
		t.Fatalf("exit code = %d, want 2", code)
	}
}
