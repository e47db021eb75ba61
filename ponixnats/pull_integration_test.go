//go:build integration

package ponixnats

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ponix-go/ponix/ponixnats/natstest"
)

// pullerFixture is a stream of n messages and a durable on it, on a server of the test's own.
func pullerFixture(t *testing.T, n int, cfg jetstream.ConsumerConfig) (*nats.Conn, jetstream.JetStream, jetstream.Consumer) {
	t.Helper()
	ctx := context.Background()
	srv := natstest.New(t)
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "s", Subjects: []string{"s.>"}}); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if _, err := js.Publish(ctx, "s.a", []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	cfg.Durable = "c"
	c, err := js.CreateConsumer(ctx, "s", cfg)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js, c
}

func TestPullerFetchesAcksAndEndsOnTheServersWord(t *testing.T) {
	ctx := context.Background()
	_, js, c := pullerFixture(t, 25, jetstream.ConsumerConfig{AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Minute})
	p := newPuller(js, "s", "c", "")

	// Up to n: the first ten, in order, with the metadata nats.go reads from the same subject.
	msgs, err := p.fetch(nil, 10, 0, time.Second)
	if err != nil || len(msgs) != 10 {
		t.Fatalf("fetch 10: %d messages, %v", len(msgs), err)
	}
	for i, m := range msgs {
		md, err := m.Metadata()
		if err != nil || md.Stream != "s" || md.Consumer != "c" || md.Sequence.Stream != uint64(i+1) ||
			md.Sequence.Consumer != uint64(i+1) || md.NumDelivered != 1 || md.NumPending != uint64(24-i) || string(m.Data()) != strconv.Itoa(i) {
			t.Fatalf("message %d: %q %+v, %v", i, m.Data(), md, err)
		}
	}
	// A byte bound ends the request before n.
	more, err := p.fetch(nil, 10, 3*msgs[0].(*pulledMsg).msg.Size(), time.Second)
	if err != nil || len(more) == 0 || len(more) >= 10 {
		t.Fatalf("fetch bounded by bytes: %d messages, %v", len(more), err)
	}
	rest, err := p.fetch(nil, 100, 0, time.Second)
	if err != nil || len(more)+len(rest) != 15 {
		t.Fatalf("fetch the rest: %d + %d messages, %v", len(more), len(rest), err)
	}
	// An empty stream ends the request when the server says it expired, not a second later.
	start := time.Now()
	none, err := p.fetch(nil, 10, 0, 300*time.Millisecond)
	if err != nil || len(none) != 0 {
		t.Fatalf("fetch from an empty stream: %d messages, %v", len(none), err)
	}
	if waited := time.Since(start); waited >= 1300*time.Millisecond {
		t.Fatalf("fetch of an idle stream returned after %s, not at the request's expiry", waited)
	}

	// Acknowledgements: a final one once; in progress as often as wanted.
	m := msgs[0]
	if err := m.InProgress(); err != nil {
		t.Fatal(err)
	}
	if err := m.InProgress(); err != nil {
		t.Fatal(err)
	}
	if err := m.DoubleAck(ctx); err != nil {
		t.Fatalf("DoubleAck: %v", err)
	}
	if err := m.Ack(); !errors.Is(err, jetstream.ErrMsgAlreadyAckd) {
		t.Fatalf("second final ack: %v, want ErrMsgAlreadyAckd", err)
	}
	if err := msgs[1].Term(); err != nil {
		t.Fatal(err)
	}
	if err := msgs[2].NakWithDelay(time.Hour); err != nil {
		t.Fatal(err)
	}
	for _, m := range append(append(msgs[3:], more...), rest...) {
		if err := m.Ack(); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.DoubleAck(ctx); !errors.Is(err, jetstream.ErrMsgAlreadyAckd) {
		t.Fatalf("DoubleAck after Ack: %v", err)
	}
	// The nak's delay holds message 3 back; everything else is answered.
	deadline := time.Now().Add(5 * time.Second)
	for {
		info, err := c.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.NumAckPending == 1 && info.AckFloor.Stream == 2 && info.NumPending == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ack pending %d, ack floor %d, pending %d; want 1 (the delayed nak), 2, 0", info.NumAckPending, info.AckFloor.Stream, info.NumPending)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestPullerFollowsThePinOfAPinnedGroup(t *testing.T) {
	_, js, _ := pullerFixture(t, 4, jetstream.ConsumerConfig{AckPolicy: jetstream.AckAllPolicy, AckWait: time.Minute,
		PriorityPolicy: jetstream.PriorityPolicyPinned, PriorityGroups: []string{"g"}, PinnedTTL: time.Minute})
	owner, other := newPuller(js, "s", "c", "g"), newPuller(js, "s", "c", "g")
	msgs, err := owner.fetch(nil, 2, 0, time.Second)
	if err != nil || len(msgs) != 2 || owner.pinID() == "" {
		t.Fatalf("first pull of the group: %d messages, pin %q, %v", len(msgs), owner.pinID(), err)
	}
	if got := msgs[0].Headers().Get(pinHeader); got != owner.pinID() {
		t.Fatalf("message pin %q, puller's %q", got, owner.pinID())
	}
	// Another client's pull stands by: nothing comes to it while the pin is held.
	if stand, err := other.fetch(nil, 2, 0, 300*time.Millisecond); err != nil || len(stand) != 0 {
		t.Fatalf("pull of a client without the pin: %d messages, %v", len(stand), err)
	}
	// A pull naming a pin that is not the group's is refused and forgets it.
	other.setPinID("not-the-pin")
	if _, err := other.fetch(nil, 2, 0, 300*time.Millisecond); !errors.Is(err, jetstream.ErrPinIDMismatch) || other.pinID() != "" {
		t.Fatalf("pull with a wrong pin: %v (pin now %q), want ErrPinIDMismatch and the pin forgotten", err, other.pinID())
	}
	if rest, err := owner.fetch(nil, 10, 0, 300*time.Millisecond); err != nil || len(rest) != 2 {
		t.Fatalf("the owner's next pull: %d messages, %v", len(rest), err)
	}
}
