package ponixnats

import "testing"

func TestIsDeadLetterHeader(t *testing.T) {
	for _, k := range []string{HeaderDLQReason, HeaderDLQError, HeaderOriginalSubject, HeaderOriginalStream,
		HeaderOriginalSequence, HeaderOriginalConsumer, HeaderNumDelivered, HeaderOriginalTimestamp,
		HeaderOriginalMsgID, "PONIX-DLQ-FUTURE", "ponix-original-other", "ponix-num-delivered"} {
		if !IsDeadLetterHeader(k) {
			t.Errorf("IsDeadLetterHeader(%q) = false; dead-lettering adds it", k)
		}
	}
	for _, k := range []string{HeaderReplayCount, "Nats-Msg-Id", "X-Custom", "Ponix-Tenant", "Ponix-Dlq", "Ponix-"} {
		if IsDeadLetterHeader(k) {
			t.Errorf("IsDeadLetterHeader(%q) = true; it is not a dead-lettering header", k)
		}
	}
}

func TestDeadLetterSubject(t *testing.T) {
	if got := DeadLetterSubject("s_dlq", "s.dev-1"); got != "s_dlq.s.dev-1" {
		t.Fatalf("DeadLetterSubject = %q", got)
	}
}
