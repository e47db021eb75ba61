package ponixnats

import (
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestMetadataOfReadsEveryFieldOfBothAckSubjectForms(t *testing.T) {
	for _, tc := range []struct {
		reply string
		want  jetstream.MsgMetadata
	}{
		{"$JS.ACK.processed_envelopes.ponix.2.4242.17.1700000000000000001.3", jetstream.MsgMetadata{
			Sequence: jetstream.SequencePair{Stream: 4242, Consumer: 17}, NumDelivered: 2, NumPending: 3,
			Timestamp: time.Unix(0, 1700000000000000001), Stream: "processed_envelopes", Consumer: "ponix"}},
		{"$JS.ACK._.ACCHASH.s.c.1.99.18.1700000000000000000.0.RND", jetstream.MsgMetadata{
			Sequence: jetstream.SequencePair{Stream: 99, Consumer: 18}, NumDelivered: 1,
			Timestamp: time.Unix(0, 1700000000000000000), Stream: "s", Consumer: "c"}},
		{"$JS.ACK.hub.ACCHASH.s.c.5.18446744073709551615.1.1.7", jetstream.MsgMetadata{
			Sequence: jetstream.SequencePair{Stream: 18446744073709551615, Consumer: 1}, NumDelivered: 5, NumPending: 7,
			Timestamp: time.Unix(0, 1), Stream: "s", Consumer: "c", Domain: "hub"}},
	} {
		got, err := metadataOf(tc.reply)
		if err != nil {
			t.Errorf("metadataOf(%q): %v", tc.reply, err)
			continue
		}
		if !got.Timestamp.Equal(tc.want.Timestamp) {
			t.Errorf("metadataOf(%q).Timestamp = %v; want %v", tc.reply, got.Timestamp, tc.want.Timestamp)
		}
		got.Timestamp, tc.want.Timestamp = time.Time{}, time.Time{}
		if *got != tc.want {
			t.Errorf("metadataOf(%q) = %+v; want %+v", tc.reply, *got, tc.want)
		}
	}
	for _, bad := range []string{"", "_INBOX.abc", "$JS.ACK.s.c.1.2", "$JS.ACK.s.c.1.x.3.4.5", "$JS.ACK.s.c.1.2.3.4.x"} {
		if _, err := metadataOf(bad); !errors.Is(err, jetstream.ErrNotJSMessage) || !errors.Is(err, ErrNotJetStreamMsg) {
			t.Errorf("metadataOf(%q) err = %v; want ErrNotJSMessage and ErrNotJetStreamMsg", bad, err)
		}
	}
}

func statusMsg(status, descr string) *nats.Msg {
	h := nats.Header{}
	h.Set(statusHeader, status)
	if descr != "" {
		h.Set("Description", descr)
	}
	return &nats.Msg{Header: h}
}

func TestIsStatusTellsStatusesFromStreamMessages(t *testing.T) {
	for name, m := range map[string]*nats.Msg{
		"a stream message with a Status header": {Data: []byte("x"), Header: nats.Header{statusHeader: {"404"}}},
		"a message without headers":             {},
		"an empty message with other headers":   {Header: nats.Header{"X-Test": {"1"}}},
	} {
		if isStatus(m) {
			t.Errorf("%s: read as a status", name)
		}
	}
}

func TestPullStatusEndsTheRequestAndNamesTheFailure(t *testing.T) {
	for _, tc := range []struct {
		name    string
		m       *nats.Msg
		end     bool
		wantErr error // nil: no error
		anyErr  bool  // an error that is none of the named ones
	}{
		{"heartbeat", statusMsg("100", "Idle Heartbeat"), false, nil, false},
		{"no messages", statusMsg("404", "No Messages"), true, nil, false},
		{"request expired", statusMsg("408", "Request Timeout"), true, nil, false},
		{"byte bound", statusMsg("409", "Message Size Exceeds MaxBytes"), true, errByteBound, false},
		{"batch completed", statusMsg("409", "Batch Completed"), true, nil, false},
		{"consumer deleted", statusMsg("409", "Consumer Deleted"), true, jetstream.ErrConsumerDeleted, false},
		{"leader moved", statusMsg("409", "Leadership Change"), true, jetstream.ErrConsumerLeadershipChanged, false},
		{"server shutdown", statusMsg("409", "Server Shutdown"), true, jetstream.ErrServerShutdown, false},
		{"pin moved", statusMsg("423", "Nats-Pin-Id mismatch"), true, jetstream.ErrPinIDMismatch, false},
		{"no responders", statusMsg("503", ""), true, nats.ErrNoResponders, false},
		{"bad request", statusMsg("400", "Bad Request"), true, jetstream.ErrBadRequest, false},
		{"limit", statusMsg("409", "Exceeded MaxWaiting"), true, nil, true},
	} {
		if !isStatus(tc.m) {
			t.Errorf("%s: not read as a status", tc.name)
		}
		end, err := msgStatus(tc.m)
		switch {
		case end != tc.end:
			t.Errorf("%s: end = %v; want %v", tc.name, end, tc.end)
		case tc.wantErr != nil && !errors.Is(err, tc.wantErr):
			t.Errorf("%s: err = %v; want %v", tc.name, err, tc.wantErr)
		case tc.wantErr == nil && tc.anyErr != (err != nil):
			t.Errorf("%s: err = %v", tc.name, err)
		}
	}
	if _, err := msgStatus(statusMsg("409", "Exceeded MaxWaiting")); err == nil || !strings.Contains(err.Error(), "Exceeded MaxWaiting") {
		t.Errorf("an unknown 409 does not name its description: %v", err)
	}
}

// A fetched message whose only header is Nats-Msg-Id holds it as a string, and Headers gives
// it as nats.go decoded it; any other header is kept as it came.
func TestPulledMsgHeadersAfterCompaction(t *testing.T) {
	for _, h := range []nats.Header{
		{jetstream.MsgIDHeader: {"id-1"}},
		{jetstream.MsgIDHeader: {"id-1"}, "X-Other": {"a"}},
		{jetstream.MsgIDHeader: {"id-1", "id-2"}},
		{"X-Other": {"a"}},
		nil,
	} {
		var hc nats.Header
		if h != nil {
			hc = nats.Header(maps.Clone(map[string][]string(h)))
		}
		pm := &pulledMsg{msg: &nats.Msg{Header: hc}}
		pm.compactHeader()
		compacted := pm.msg.Header == nil && h != nil
		if want := len(h) == 1 && len(h[jetstream.MsgIDHeader]) == 1; compacted != want {
			t.Errorf("%v: compacted %v, want %v", h, compacted, want)
		}
		if got := pm.Headers(); fmt.Sprint(got) != fmt.Sprint(h) {
			t.Errorf("Headers() = %v, want %v", got, h)
		}
	}
}
