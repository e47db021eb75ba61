package ponixnats

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
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

func TestDeliveryOfReadsSequenceAndDeliveryCount(t *testing.T) {
	for _, reply := range []string{
		"$JS.ACK.s.c.3.42.7.1700000000000000000.0",
		"$JS.ACK.domain.hash.s.c.3.42.7.1700000000000000000.0.token",
	} {
		d, err := DeliveryOf(replyMsg{reply: reply})
		if err != nil || d != (Delivery{StreamSeq: 42, Delivered: 3}) {
			t.Errorf("%s: %+v, %v; want sequence 42 delivered 3 times", reply, d, err)
		}
	}
	for _, bad := range []string{"_INBOX.x", "$JS.ACK.s.c.1.2", "$JS.ACK.s.c.x.2.3.4.5", "$JS.ACK.s.c.1.x.3.4.5"} {
		if _, err := DeliveryOf(replyMsg{reply: bad}); !errors.Is(err, ErrNotJetStreamMsg) {
			t.Errorf("DeliveryOf(%q): %v, want ErrNotJetStreamMsg", bad, err)
		}
	}
	var m jetstream.Msg = &replyMsg{reply: "$JS.ACK.s.c.3.42.7.1.0"}
	if n := testing.AllocsPerRun(100, func() { _, _ = DeliveryOf(m) }); n != 0 {
		t.Errorf("%v allocations, want 0", n)
	}
}

func BenchmarkDeliveryOf(b *testing.B) {
	var m jetstream.Msg = &replyMsg{reply: "$JS.ACK.processed_envelopes.ponix.1.4242.17.1700000000000000000.3"}
	for b.Loop() {
		_, _ = DeliveryOf(m)
	}
}

func BenchmarkStreamSequence(b *testing.B) {
	var m jetstream.Msg = &replyMsg{reply: "$JS.ACK.processed_envelopes.ponix.1.4242.17.1700000000000000000.3"}
	for b.Loop() {
		_, _ = StreamSequence(m)
	}
}

// The numbers read once per message (at the fetch, see pulledMsg) are those of Metadata.
func TestParseAckSeqsAgreesWithMetadata(t *testing.T) {
	for _, reply := range []string{
		"$JS.ACK.s.c.3.42.7.1700000000000000000.0",
		"$JS.ACK.domain.hash.s.c.3.42.7.1700000000000000000.0.token",
		"$JS.ACK._.ACCHASH.processed_envelopes.ponix.2.99.18.1700000000000000000.0.RND",
	} {
		s, err := parseAckSeqs(reply)
		md, merr := metadataOf(reply)
		if err != nil || merr != nil {
			t.Fatalf("%s: %v / %v", reply, err, merr)
		}
		if s != (ackSeqs{delivered: md.NumDelivered, stream: md.Sequence.Stream, consumer: md.Sequence.Consumer}) {
			t.Errorf("%s: %+v, metadata %+v", reply, s, md)
		}
		pm := &pulledMsg{msg: &nats.Msg{Reply: reply}, seqs: s}
		if c, err := consumerSequence(pm); err != nil || c != md.Sequence.Consumer {
			t.Errorf("%s: consumer sequence of a fetched message %d, %v", reply, c, err)
		}
	}
	if _, err := StreamSequence(&pulledMsg{msg: &nats.Msg{Reply: "_INBOX.x"}}); !errors.Is(err, ErrNotJetStreamMsg) {
		t.Errorf("a fetched message whose subject could not be read: %v, want ErrNotJetStreamMsg", err)
	}
	if _, err := parseAckSeqs("$JS.ACK.s.c.1.2.x.4.5"); !errors.Is(err, ErrNotJetStreamMsg) || !strings.Contains(err.Error(), "consumer sequence") {
		t.Errorf("bad consumer sequence: %v", err)
	}
}

// parseSeq reads what strconv.ParseUint reads, and refuses what it refuses.
func TestParseSeqAgreesWithParseUint(t *testing.T) {
	for _, tok := range []string{"", "0", "7", "1700000000000000000", "9999999999999999999", "18446744073709551615",
		"18446744073709551616", "00000000000000000001", "+1", "-1", "1_0", " 1", "1a", "a", "0x10", "١"} {
		got, gerr := parseSeq(tok)
		want, werr := strconv.ParseUint(tok, 10, 64)
		if got != want || (gerr == nil) != (werr == nil) {
			t.Errorf("parseSeq(%q) = %d, %v; ParseUint %d, %v", tok, got, gerr, want, werr)
		}
	}
}
