package ponixnats

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// This file holds who of the instances sharing an [AckPerBatch] durable consumes it: a lease
// in a JetStream key-value bucket ([ConsumerConfig].OwnerBucket), one key per durable, whose
// value names the owner. The owner writes the key again every third of OwnerTTL (an update
// that succeeds only if the key is still at the revision it wrote last). A standby reads the
// key about every second and takes the durable over — with an update conditional on the
// revision it read — once the revision has not changed for OwnerTTL by its own clock (the
// owner died or stalled), or at once when the key is gone (the owner stopped and gave it up).
// A starting instance takes the key unconditionally: a process of this instance killed a
// moment ago would otherwise keep it waiting OwnerTTL.
//
// The lease says who may pull; what makes a late or mistaken owner harmless is elsewhere (see
// the consumer's chain check in fetchLoop): a takeover resets the durable (its delivery
// sequence starts again at 1), and an owner processes only batches whose delivery sequences
// continue its own without a gap.

// ownerKV is what a lease needs of its bucket; the unit tests hand it a fake.
type ownerKV interface {
	// get returns the key's value and revision; an error matching jetstream.ErrKeyNotFound when
	// the key does not exist or was deleted.
	get(ctx context.Context) ([]byte, uint64, error)
	// put writes the key unconditionally.
	put(ctx context.Context, value []byte) (uint64, error)
	// create writes the key if it does not exist (or was deleted); an error matching
	// jetstream.ErrKeyExists otherwise.
	create(ctx context.Context, value []byte) (uint64, error)
	// update writes the key if its latest revision is rev; an error matching
	// jetstream.ErrKeyRevisionMismatch otherwise.
	update(ctx context.Context, value []byte, rev uint64) (uint64, error)
	// remove deletes the key if its latest revision is rev.
	remove(ctx context.Context, rev uint64) error
}

// kvOwner is the [ownerKV] of one key in a JetStream bucket. A bucket found missing (an
// operator deleted it) is created again, and the call made once more.
type kvOwner struct {
	js       jetstream.JetStream
	bucket   string
	key      string
	replicas int

	mu sync.Mutex
	kv jetstream.KeyValue
}

// do calls f with the bucket, opening (or creating) it first when needed, and once more after
// creating it again when f's error says it is missing. Its errors name the key and the bucket.
func (o *kvOwner) do(ctx context.Context, f func(kv jetstream.KeyValue) error) error {
	if err := o.try(ctx, f); err != nil {
		return fmt.Errorf("key %s of bucket %s: %w", o.key, o.bucket, err)
	}
	return nil
}

func (o *kvOwner) try(ctx context.Context, f func(kv jetstream.KeyValue) error) error {
	o.mu.Lock()
	kv := o.kv
	o.mu.Unlock()
	if kv == nil {
		var err error
		if kv, err = o.open(ctx); err != nil {
			return err
		}
	}
	err := f(kv)
	if !bucketGone(err) {
		return err
	}
	if _, lerr := o.js.KeyValue(ctx, o.bucket); !errors.Is(lerr, jetstream.ErrBucketNotFound) {
		return err
	}
	if kv, err = o.open(ctx); err != nil {
		return err
	}
	return f(kv)
}

// bucketGone reports whether err may mean that the bucket's stream does not exist.
func bucketGone(err error) bool {
	return errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrBucketNotFound) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse)
}

// open binds to the bucket, creating it (one revision per key, replicated like the source
// stream) when it does not exist.
func (o *kvOwner) open(ctx context.Context) (jetstream.KeyValue, error) {
	kv, err := o.js.KeyValue(ctx, o.bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = o.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      o.bucket,
			Description: "ponixnats: which instance consumes each durable consumer that acknowledges per batch",
			History:     1,
			Replicas:    max(o.replicas, 1),
		})
		if errors.Is(err, jetstream.ErrBucketExists) {
			kv, err = o.js.KeyValue(ctx, o.bucket) // another instance was faster
		}
	}
	if err != nil {
		return nil, fmt.Errorf("opening the owner bucket %s: %w", o.bucket, err)
	}
	o.mu.Lock()
	o.kv = kv
	o.mu.Unlock()
	return kv, nil
}

func (o *kvOwner) get(ctx context.Context) (val []byte, rev uint64, err error) {
	err = o.do(ctx, func(kv jetstream.KeyValue) error {
		e, err := kv.Get(ctx, o.key)
		if err == nil {
			val, rev = e.Value(), e.Revision()
		}
		return err
	})
	return val, rev, err
}

func (o *kvOwner) put(ctx context.Context, v []byte) (rev uint64, err error) {
	err = o.do(ctx, func(kv jetstream.KeyValue) error { rev, err = kv.Put(ctx, o.key, v); return err })
	return rev, err
}

func (o *kvOwner) create(ctx context.Context, v []byte) (rev uint64, err error) {
	err = o.do(ctx, func(kv jetstream.KeyValue) error { rev, err = kv.Create(ctx, o.key, v); return err })
	return rev, err
}

func (o *kvOwner) update(ctx context.Context, v []byte, rev uint64) (next uint64, err error) {
	err = o.do(ctx, func(kv jetstream.KeyValue) error { next, err = kv.Update(ctx, o.key, v, rev); return err })
	return next, err
}

func (o *kvOwner) remove(ctx context.Context, rev uint64) error {
	return o.do(ctx, func(kv jetstream.KeyValue) error { return kv.Delete(ctx, o.key, jetstream.LastRevision(rev)) })
}

// openOwnerKV binds to the key of cfg's durable in cfg.OwnerBucket, creating the bucket (one
// revision per key, replicated like the source stream) when it does not exist.
func openOwnerKV(ctx context.Context, js jetstream.JetStream, cfg ConsumerConfig, replicas int) (*kvOwner, error) {
	o := &kvOwner{js: js, bucket: cfg.OwnerBucket, key: ownerKey(cfg.Stream, cfg.Durable), replicas: replicas}
	if _, err := o.open(ctx); err != nil {
		return nil, err
	}
	return o, nil
}

// ownerKey is the key of a durable in the owner bucket: "<stream>.<durable>", each byte that
// a key cannot hold written as "=XX" (hex).
func ownerKey(stream, durable string) string {
	esc := func(s string) string {
		var b strings.Builder
		for i := 0; i < len(s); i++ {
			ch := s[i]
			if ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '-' || ch == '_' {
				b.WriteByte(ch)
				continue
			}
			fmt.Fprintf(&b, "=%02X", ch)
		}
		return b.String()
	}
	return esc(stream) + "." + esc(durable)
}

// instanceID names a consumer in the owner bucket: host, pid and a unique suffix (two consumers
// of one durable in one process are two instances), so that an operator reading the bucket sees
// who owns a durable.
func instanceID() string {
	host, _ := os.Hostname()
	if host == "" {
		host = "unknown"
	}
	return host + "/" + strconv.Itoa(os.Getpid()) + "/" + nats.NewInbox()[len(nats.InboxPrefix):]
}

// standbyPoll is how often a standby reads the owner key (at most).
const standbyPoll = time.Second

// lease is this instance's claim on an [AckPerBatch] durable.
type lease struct {
	kv  ownerKV
	id  []byte
	ttl time.Duration
	clk clock
	log *slog.Logger

	mu      sync.Mutex
	owned   bool
	gen     uint64        // the times this instance came to own the durable
	rev     uint64        // the revision this instance wrote last (owned)
	renewed time.Time     // when that write was confirmed (owned)
	seenRev uint64        // standby: the owner's revision last read
	seenAt  time.Time     // standby: when seenRev was first read
	changed chan struct{} // closed (and replaced) when owned or gen changes
}

func newLease(kv ownerKV, id string, ttl time.Duration, clk clock, log *slog.Logger) *lease {
	return &lease{kv: kv, id: []byte(id), ttl: ttl, clk: clk, log: log, changed: make(chan struct{})}
}

// state reports whether this instance owns the durable, how many times it came to own it (a
// new owner resets the durable before it pulls), and a channel closed when either changes.
func (l *lease) state() (owned bool, gen uint64, changed <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.owned, l.gen, l.changed
}

func (l *lease) notifyLocked() {
	close(l.changed)
	l.changed = make(chan struct{})
}

func (l *lease) acquiredLocked(rev uint64, how string, attrs ...any) {
	l.owned, l.rev, l.renewed = true, rev, l.clk.now()
	l.gen++
	l.notifyLocked()
	l.log.Info("this instance owns the durable consumer: "+how, append([]any{"owner", string(l.id), "revision", rev}, attrs...)...)
}

// lostLocked makes this instance a standby; why is logged.
func (l *lease) lostLocked(why string, attrs ...any) {
	if !l.owned {
		return
	}
	l.owned, l.seenRev, l.seenAt = false, 0, time.Time{}
	l.notifyLocked()
	l.log.Warn("this instance no longer owns the durable consumer: "+why+"; standing by", attrs...)
}

// run keeps the lease until ctx ends: it takes the key at once, renews it while it owns the
// durable and watches it while it stands by.
func (l *lease) run(ctx context.Context) {
	retry := fetchRetry(l.clk.sleep)
	for ctx.Err() == nil {
		err := l.take(ctx)
		if err == nil {
			break
		}
		l.log.Warn("taking the durable consumer's owner key failed, retrying", "error", err, "retry_in", retry.Delay())
		if retry.Wait(ctx) != nil {
			return
		}
	}
	for ctx.Err() == nil {
		owned, _, _ := l.state()
		wait := min(l.ttl/4, standbyPoll)
		if owned {
			wait = l.ttl / 3
		}
		if l.clk.sleep(ctx, wait) != nil {
			return
		}
		if owned {
			l.renew(ctx)
		} else {
			l.watch(ctx)
		}
	}
}

// take writes this instance into the key whoever held it.
func (l *lease) take(ctx context.Context) error {
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	prev, _, _ := l.kv.get(rctx)
	rev, err := l.kv.put(rctx, l.id)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.acquiredLocked(rev, "taken at start", "previous_owner", string(prev))
	return nil
}

// renew writes the key again, if it is still at the revision this instance wrote last.
func (l *lease) renew(ctx context.Context) {
	l.mu.Lock()
	rev := l.rev
	l.mu.Unlock()
	rctx, cancel := context.WithTimeout(ctx, max(l.ttl/3, time.Second))
	defer cancel()
	next, err := l.kv.update(rctx, l.id, rev)
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.owned || l.rev != rev {
		return // lost or released meanwhile
	}
	switch {
	case err == nil:
		l.rev, l.renewed = next, l.clk.now()
	case errors.Is(err, jetstream.ErrKeyRevisionMismatch):
		l.lostLocked("another instance took it over")
	case ctx.Err() != nil:
	default:
		if since := l.clk.now().Sub(l.renewed); since >= l.ttl {
			l.lostLocked("renewing the owner key failed for OwnerTTL (a standby may have taken over)", "error", err, "since", since)
		} else {
			l.log.Debug("renewing the owner key failed, retrying", "error", err)
		}
	}
}

// watch reads the key as a standby and takes the durable over when it is gone, or when its
// revision has not changed for the lease's TTL.
func (l *lease) watch(ctx context.Context) {
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	val, rev, err := l.kv.get(rctx)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		if rev, err := l.kv.create(rctx, l.id); err == nil {
			l.mu.Lock()
			l.acquiredLocked(rev, "the previous owner gave it up")
			l.mu.Unlock()
		}
		return
	case err != nil:
		l.log.Debug("reading the owner key failed", "error", err)
		return
	}
	now := l.clk.now()
	l.mu.Lock()
	switch {
	case l.owned:
		l.mu.Unlock()
		return
	case rev != l.seenRev:
		l.seenRev, l.seenAt = rev, now
		l.mu.Unlock()
		return
	case now.Sub(l.seenAt) < l.ttl:
		l.mu.Unlock()
		return
	}
	l.mu.Unlock()
	// The owner has not renewed for OwnerTTL: dead, partitioned or stalled.
	next, err := l.kv.update(rctx, l.id, rev)
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil || l.owned {
		l.seenRev = 0 // changed meanwhile (renewed, or another standby was faster): watch again
		return
	}
	l.acquiredLocked(next, "the previous owner did not renew its key for OwnerTTL", "previous_owner", string(val), "ttl", l.ttl)
}

// confirm asks the server whether this instance still owns the durable; false when the key
// names another instance (which makes this instance a standby) or cannot be read (err says
// why).
func (l *lease) confirm(ctx context.Context) (bool, error) {
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	val, _, err := l.kv.get(rctx)
	if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, fmt.Errorf("reading the durable's owner key: %w", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err == nil && string(val) == string(l.id) {
		return l.owned, nil
	}
	if err != nil {
		l.lostLocked("its owner key is gone")
	} else {
		l.lostLocked("another instance owns it", "owner", string(val))
	}
	return false, nil
}

// release gives the durable up (at a graceful stop), so that a standby takes over at once.
func (l *lease) release(ctx context.Context) {
	l.mu.Lock()
	owned, rev := l.owned, l.rev
	l.owned = false
	l.mu.Unlock()
	if !owned {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := l.kv.remove(rctx, rev); err != nil {
		l.log.Debug("giving up the owner key at stop failed: a standby takes over after OwnerTTL", "error", err)
	}
}
