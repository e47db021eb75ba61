package ponixnats

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// fakeOwnerKV is one key of a key-value bucket, in memory, shared by the leases of a test.
type fakeOwnerKV struct {
	mu      sync.Mutex
	value   []byte
	rev     uint64 // the key's latest revision (0: never written)
	deleted bool   // the latest revision is a delete marker
	fail    error  // every call fails with it
}

func (k *fakeOwnerKV) get(context.Context) ([]byte, uint64, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.fail != nil {
		return nil, 0, k.fail
	}
	if k.rev == 0 || k.deleted {
		return nil, 0, jetstream.ErrKeyNotFound
	}
	return k.value, k.rev, nil
}

func (k *fakeOwnerKV) writeLocked(v []byte) uint64 {
	k.rev++
	k.value, k.deleted = v, false
	return k.rev
}

func (k *fakeOwnerKV) put(_ context.Context, v []byte) (uint64, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.fail != nil {
		return 0, k.fail
	}
	return k.writeLocked(v), nil
}

func (k *fakeOwnerKV) create(_ context.Context, v []byte) (uint64, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.fail != nil {
		return 0, k.fail
	}
	if k.rev != 0 && !k.deleted {
		return 0, jetstream.ErrKeyExists
	}
	return k.writeLocked(v), nil
}

func (k *fakeOwnerKV) update(_ context.Context, v []byte, rev uint64) (uint64, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.fail != nil {
		return 0, k.fail
	}
	if rev != k.rev {
		return 0, jetstream.ErrKeyRevisionMismatch
	}
	return k.writeLocked(v), nil
}

func (k *fakeOwnerKV) remove(_ context.Context, rev uint64) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if rev != k.rev {
		return jetstream.ErrKeyRevisionMismatch
	}
	k.rev++
	k.deleted = true
	return nil
}

func (k *fakeOwnerKV) owner() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.deleted {
		return ""
	}
	return string(k.value)
}

const leaseTTL = 3 * time.Second

func testLease(kv *fakeOwnerKV, id string, clk *fakeClock) *lease {
	return newLease(kv, id, leaseTTL, clk, slog.New(slog.DiscardHandler))
}

func owns(l *lease) bool {
	owned, _, _ := l.state()
	return owned
}

// A starting instance takes the durable whoever held it; the one it took it from learns it at
// its next renewal and stands by.
func TestLeaseStartTakesOverAndTheFormerOwnerStandsBy(t *testing.T) {
	ctx := context.Background()
	kv, clk := &fakeOwnerKV{}, newFakeClock()
	a, b := testLease(kv, "a", clk), testLease(kv, "b", clk)
	if err := a.take(ctx); err != nil || !owns(a) {
		t.Fatalf("a.take: %v, owns %v", err, owns(a))
	}
	_, gen, changed := a.state()
	if err := b.take(ctx); err != nil || !owns(b) || kv.owner() != "b" {
		t.Fatalf("b.take: %v, owns %v, key names %q", err, owns(b), kv.owner())
	}
	if owned, err := a.confirm(ctx); owned || err != nil {
		t.Fatalf("a.confirm after b took the key: %v, %v; want false, nil", owned, err)
	}
	select {
	case <-changed:
	default:
		t.Fatal("losing the durable did not signal a change")
	}
	if owns(a) {
		t.Fatal("a owns the durable after b took the key")
	}
	if _, g, _ := a.state(); g != gen {
		t.Errorf("losing counted as an acquisition: gen %d → %d", gen, g)
	}
	a.renew(ctx) // a standby's renewal is a no-op
	if kv.owner() != "b" {
		t.Errorf("key names %q after a's renewal as a standby, want b", kv.owner())
	}
}

// An owner's renewal moves the key's revision; a standby takes the durable over only once the
// revision has stood still for the TTL, and the former owner's next renewal fails.
func TestLeaseStandbyTakesOverAKeyUnrenewedForTheTTL(t *testing.T) {
	ctx := context.Background()
	kv, clk := &fakeOwnerKV{}, newFakeClock()
	a, b := testLease(kv, "a", clk), testLease(kv, "b", clk)
	if err := b.take(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.take(ctx); err != nil {
		t.Fatal(err)
	}
	_, _ = b.confirm(ctx) // b learns that a took it: standby
	for range 5 {         // a renews every TTL/3: b never takes over
		b.watch(ctx)
		clk.advance(leaseTTL / 3)
		a.renew(ctx)
		if owns(b) {
			t.Fatal("the standby took over a key that was being renewed")
		}
	}
	// a stalls: the revision stands still.
	b.watch(ctx)
	clk.advance(leaseTTL - time.Millisecond)
	b.watch(ctx)
	if owns(b) {
		t.Fatal("the standby took over before the TTL passed")
	}
	clk.advance(time.Millisecond)
	b.watch(ctx)
	if !owns(b) || kv.owner() != "b" {
		t.Fatalf("the standby did not take over a key unrenewed for the TTL: owns %v, key %q", owns(b), kv.owner())
	}
	a.renew(ctx) // a continues after its stall
	if owns(a) {
		t.Fatal("the stalled owner still owns the durable after its renewal failed")
	}
	if kv.owner() != "b" {
		t.Errorf("the stalled owner's renewal overwrote the key: %q", kv.owner())
	}
}

// A stop gives the durable up: a standby takes it at its next look, without waiting the TTL.
func TestLeaseReleaseLetsAStandbyTakeOverAtOnce(t *testing.T) {
	ctx := context.Background()
	kv, clk := &fakeOwnerKV{}, newFakeClock()
	a, b := testLease(kv, "a", clk), testLease(kv, "b", clk)
	_ = b.take(ctx)
	_ = a.take(ctx)
	_, _ = b.confirm(ctx)
	b.watch(ctx)
	a.release(ctx)
	if owns(a) {
		t.Fatal("a owns the durable after giving it up")
	}
	b.watch(ctx)
	if !owns(b) || kv.owner() != "b" {
		t.Fatalf("the standby did not take a released key at once: owns %v, key %q", owns(b), kv.owner())
	}
}

// An owner that cannot reach the bucket keeps the durable until its key may have been taken
// over (the TTL since its last renewal), then stands by; confirm says no while the bucket
// cannot be read.
func TestLeaseOwnerCutOffStandsByAfterTheTTL(t *testing.T) {
	ctx := context.Background()
	kv, clk := &fakeOwnerKV{}, newFakeClock()
	a := testLease(kv, "a", clk)
	_ = a.take(ctx)
	kv.mu.Lock()
	kv.fail = errors.New("connection closed")
	kv.mu.Unlock()
	if owned, err := a.confirm(ctx); owned || err == nil {
		t.Errorf("confirm while the bucket could not be read: %v, %v; want false and the error", owned, err)
	}
	if !owns(a) {
		t.Fatal("a gave the durable up because the bucket could not be read once")
	}
	clk.advance(leaseTTL / 3)
	a.renew(ctx)
	if !owns(a) {
		t.Fatal("a gave the durable up after one failed renewal")
	}
	clk.advance(leaseTTL)
	a.renew(ctx)
	if owns(a) {
		t.Fatal("a still owns the durable after failing to renew it for the TTL")
	}
}

// The chain of consumer sequences: batches that continue it are accepted; a gap, a batch with
// another client's deliveries inside it, or numbering that starts again are not; after a
// rewind (another epoch) numbering starts at 1.
func TestChainAcceptsOnlyDeliveriesWithoutAGap(t *testing.T) {
	batch := func(cseqs ...uint64) []jetstream.Msg {
		out := make([]jetstream.Msg, len(cseqs))
		for i, c := range cseqs {
			out[i] = &liveMsg{fakeMsg: fakeMsg{subject: "s.dev"}, seq: 100 + c, cseq: c, delivered: 1, log: &ackLog{}}
		}
		return out
	}
	var ch chain
	steps := []struct {
		epoch uint64
		cseqs []uint64
		want  bool
	}{
		{0, []uint64{1, 2, 3}, true},
		{0, []uint64{4, 5}, true},
		{0, []uint64{7, 8}, false},      // 6 went to another client
		{0, []uint64{6, 8, 9}, false},   // 7 went to another client, inside the batch
		{1, []uint64{1, 2}, true},       // after a rewind: from 1
		{1, []uint64{1, 2, 3}, false},   // another client reset the durable
		{2, []uint64{5, 6}, false},      // after a rewind another client pulled first
		{3, []uint64{1, 2, 3, 4}, true}, // ... and after the next rewind it goes on
	}
	for i, s := range steps {
		if got := ch.continues(s.epoch, batch(s.cseqs...)); got != s.want {
			t.Errorf("step %d (epoch %d, %v): continues %v, want %v", i, s.epoch, s.cseqs, got, s.want)
		}
	}
}

// Keys of the owner bucket: stream and durable as they are when a key can hold them.
func TestOwnerKeyEscapesWhatAKeyCannotHold(t *testing.T) {
	for _, c := range []struct{ stream, durable, want string }{
		{"processed_envelopes", "ponix", "processed_envelopes.ponix"},
		{"a.b", "c d", "a=2Eb.c=20d"},
		{"ünï", "x", "=C3=BCn=C3=AF.x"},
	} {
		if got := ownerKey(c.stream, c.durable); got != c.want {
			t.Errorf("ownerKey(%q, %q) = %q, want %q", c.stream, c.durable, got, c.want)
		}
	}
}

// Two consumers of one durable in one process are two instances: their names differ.
func TestInstanceIDsDifferWithinAProcess(t *testing.T) {
	a, b := instanceID(), instanceID()
	if a == b {
		t.Fatalf("two consumers are both named %q: each would take the other's key for its own", a)
	}
}
