//go:build !ponix_noenvelope

package ponixnats

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	envelopev1 "buf.build/gen/go/ponix/ponix/protocolbuffers/go/envelope/v1"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/ponix-go/ponix/envelope"
)

// rowError is a store's rejection of one row, as ponixclickhouse.RowError is.
type rowError struct {
	i   int
	err error
}

func (e *rowError) Error() string      { return fmt.Sprintf("row %d: %v", e.i, e.err) }
func (e *rowError) Unwrap() error      { return e.err }
func (e *rowError) RejectedIndex() int { return e.i }

// encodingStore is a store that validates while it encodes, as the ClickHouse envelope
// encoder does: each message's bytes are read once, by the envelope package's wire parser;
// the first that fails is rejected with the envelope package's error. Subjects ending in
// "bad-" are refused by the sink itself (an error with no dead-letter reason of its own).
type encodingStore struct {
	stored []string
	calls  int
	reads  int
}

func (s *encodingStore) store(_ context.Context, in Batch[jetstream.Msg]) error {
	s.calls++
	for i, m := range in.Items {
		s.reads++
		var w envelope.Wire
		err := w.Parse(m.Data())
		if err == nil {
			err = w.Validate()
		}
		if err == nil && strings.Contains(m.Subject(), "bad-") {
			err = errors.New("the sink cannot hold this value")
		}
		if err != nil {
			return fmt.Errorf("write: %w", &rowError{i, err})
		}
	}
	for _, m := range in.Items {
		s.stored = append(s.stored, m.Subject())
	}
	return nil
}

// envAckMsg is a delivered envelope message that records what the consumer did with it, and
// how often its bytes were asked for.
type envAckMsg struct {
	ackMsg
	data  []byte
	reads int
}

func (m *envAckMsg) Data() []byte { m.reads++; return m.data }

// The wire processor leaves validation to the store, and keeps the dead-letter reasons: an
// undecodable message goes to the dead-letter stream with Ponix-Dlq-Reason decode, an invalid
// envelope with invalid (the error naming the field), a row the sink refuses with rejected;
// the valid ones are stored and acked.
func TestEnvelopeWireProcessorResults(t *testing.T) {
	noTime := testEnvelope("dev-2")
	noTime.OccurredAt = nil
	badID := testEnvelope("dev-5")
	badID.EndDeviceId = "a b"
	envs := map[int][]byte{}
	for i, e := range map[int]*envelopev1.ProcessedEnvelope{0: testEnvelope("dev-0"), 1: noTime, 3: testEnvelope("bad-3"), 4: testEnvelope("dev-4"), 5: badID} {
		b, err := proto.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		envs[i] = b
	}
	envs[2] = []byte{0xff}
	envs[6] = nil // an empty message: an envelope without any field
	subjects := []string{"dev-0", "dev-2", "x", "bad-3", "dev-4", "dev-5", "empty"}
	msgs := make([]jetstream.Msg, len(subjects))
	fakes := make([]*envAckMsg, len(subjects))
	for i, s := range subjects {
		fakes[i] = &envAckMsg{ackMsg: ackMsg{seqMsg: seqMsg{subject: "processed_envelopes." + s, seq: uint64(10 + i), delivered: 1}}, data: envs[i]}
		msgs[i] = fakes[i]
	}
	var s encodingStore
	res, err := NewEnvelopeWireProcessor(s.store)(context.Background(), msgBatch(msgs))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(s.stored, ",") != "processed_envelopes.dev-0,processed_envelopes.dev-4" {
		t.Fatalf("stored %v", s.stored)
	}
	want := []struct {
		a     Action
		r     Reason
		field string
	}{{ActionAck, "", ""}, {ActionDeadLetter, ReasonInvalid, "occurred_at"}, {ActionDeadLetter, ReasonDecode, "envelope"},
		{ActionDeadLetter, ReasonRejected, "cannot hold"}, {ActionAck, "", ""}, {ActionDeadLetter, ReasonInvalid, "end_device_id"},
		{ActionDeadLetter, ReasonInvalid, "end_device_id"}}
	for i, w := range want {
		d, ok := res.Decision(i)
		if !ok || d.Action != w.a || d.Reason != w.r {
			t.Fatalf("index %d = %+v; want %s/%s", i, d, w.a, w.r)
		}
		if w.field != "" && (!strings.Contains(d.Err.Error(), w.field) || !strings.Contains(d.Err.Error(), msgs[i].Subject()) || strings.Contains(d.Err.Error(), "row ")) {
			t.Errorf("index %d: error %q does not name %q and the message alone", i, d.Err, w.field)
		}
	}
	// The store saw the first invalid envelope, the one it refuses itself, and the rest: the
	// batch's other bad envelopes were found by the screen, not by encoding the batch again.
	if s.calls != 3 {
		t.Errorf("store called %d times, want 3", s.calls)
	}
	if d, _ := res.Decision(1); !errors.Is(d.Err, envelope.ErrInvalid) {
		t.Errorf("invalid envelope error %v does not match envelope.ErrInvalid", d.Err)
	}

	// The consumer carries the decisions out: dead letters with their reason in the headers.
	js := &fakeJS{}
	var logs strings.Builder
	testConsumer(t, js, &logs).apply(context.Background(), msgs, time.Unix(1700000000, 0), res, nil, false)
	reasons := map[string]string{}
	for _, m := range js.published {
		reasons[m.Header.Get(HeaderOriginalSubject)] = m.Header.Get(HeaderDLQReason)
	}
	wantDLQ := map[string]string{"processed_envelopes.dev-2": "invalid", "processed_envelopes.x": "decode", "processed_envelopes.bad-3": "rejected",
		"processed_envelopes.dev-5": "invalid", "processed_envelopes.empty": "invalid"}
	if fmt.Sprint(reasons) != fmt.Sprint(wantDLQ) {
		t.Errorf("dead letters by subject and reason %v, want %v", reasons, wantDLQ)
	}
	for i, f := range fakes {
		if wantAck := want[i].a == ActionAck; (f.action == "confirmed ack" || f.action == "ack") != wantAck || (!wantAck && f.action != "term") {
			t.Errorf("message %d: %s", i, f.action)
		}
	}

	// A batch of valid envelopes: each one's bytes are read once, by the store.
	valid := make([]jetstream.Msg, 3)
	validFakes := make([]*envAckMsg, len(valid))
	for i := range valid {
		validFakes[i] = &envAckMsg{ackMsg: ackMsg{seqMsg: seqMsg{subject: "processed_envelopes.dev-0", seq: uint64(20 + i), delivered: 1}}, data: envs[0]}
		valid[i] = validFakes[i]
	}
	s = encodingStore{}
	if _, err := NewEnvelopeWireProcessor(s.store)(context.Background(), msgBatch(valid)); err != nil || len(s.stored) != 3 {
		t.Fatalf("stored %v, err %v", s.stored, err)
	}
	for i, f := range validFakes {
		if f.reads != 1 {
			t.Errorf("valid message %d: bytes taken %d times, want once (by the store)", i, f.reads)
		}
	}

	// A store outage holds the batch; when the consumer stops it is released, never dead-lettered.
	boom := errors.New("down")
	p := NewEnvelopeWireProcessor(func(context.Context, Batch[jetstream.Msg]) error { return boom },
		WithHold(NewHold(HoldConfig{MinBackoff: time.Millisecond, Logger: discard})))
	res, err = p(context.Background(), stoppedBatch(msgs[:1]))
	if d, _ := res.Decision(0); err != nil || d.Action != ActionRelease || !errors.Is(d.Err, boom) {
		t.Fatalf("outage: %+v, %v", d, err)
	}
}

// valueMsg is a message type that == cannot compare (it holds a slice).
type valueMsg struct {
	jetstream.Msg
	subject string
	data    []byte
}

func (m valueMsg) Data() []byte    { return m.data }
func (m valueMsg) Subject() string { return m.subject }
func (m valueMsg) Reply() string   { return "" }

// Messages of a type == cannot compare are not screened (comparing them would panic): the store
// finds each bad envelope itself.
func TestEnvelopeWireProcessorWithIncomparableMessages(t *testing.T) {
	good, err := proto.Marshal(testEnvelope("dev-0"))
	if err != nil {
		t.Fatal(err)
	}
	msgs := []jetstream.Msg{valueMsg{subject: "s.a", data: []byte{0xff}}, valueMsg{subject: "s.b", data: good}, valueMsg{subject: "s.c", data: []byte{0xff}}}
	var s encodingStore
	res, err := NewEnvelopeWireProcessor(s.store)(context.Background(), msgBatch(msgs))
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []Reason{ReasonDecode, "", ReasonDecode} {
		if d, _ := res.Decision(i); d.Reason != want {
			t.Errorf("message %d: %+v, want reason %q", i, d, want)
		}
	}
	if len(s.stored) != 1 {
		t.Errorf("stored %v", s.stored)
	}
}
