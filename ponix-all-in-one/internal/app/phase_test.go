package app

import (
	"fmt"
	"testing"
)

func TestPhaseErrorListsTheVariablesToCheck(t *testing.T) {
	err := &PhaseError{Phase: PhaseNATS, Check: []string{"PONIX_NATS_URL"}, Err: fmt.Errorf("boom")}
	if got, want := err.Error(), "startup phase nats failed (check PONIX_NATS_URL): boom"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}
