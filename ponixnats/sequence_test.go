package ponixnats

import (
	"errors"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

func TestStreamSequenceParsesBothAckSubjectForms(t *testing.T) {
	for _, tc := range []struct {
		reply string
		want  uint64
	}{
		{"$JS.ACK.processed_envelopes.ponix.1.4242.17.1700000000000000000.3", 4242},
		{"$JS.ACK._.ACCHASH.processed_envelopes.ponix.2.99.18.1700000000000000000.0.RND", 99},
		{"$JS.ACK.hub.ACCHASH.s.c.1.18446744073709551615.1.1.0", 18446744073709551615},
	} {
		got, err := StreamSequence(replyMsg{reply: tc.reply})
		if err != nil || got != tc.want {
			t.Errorf("StreamSequence(%q) = %d, %v; want %d", tc.reply, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "_INBOX.abc", "$JS.ACK.s.c.1.2", "$JS.ACK.s.c.1.x.3.4.5"} {
		if _, err := StreamSequence(replyMsg{reply: bad}); !errors.Is(err, ErrNotJetStreamMsg) {
			t.Errorf("StreamSequence(%q) err = %v; want ErrNotJetStreamMsg", bad, err)
		}
	}
}

func TestStreamSequenceDoesNotAllocate(t *testing.T) {
	var m jetstream.Msg = &replyMsg{reply: "$JS.ACK._.ACCHASH.processed_envelopes.ponix.2.99.18.1700000000000000000.0.RND"}
	if n := testing.AllocsPerRun(100, func() { _, _ = StreamSequence(m) }); n != 0 {
		t.Errorf("StreamSequence allocates %v times per call", n)
	}
}
