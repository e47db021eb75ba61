package ponixnats

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// source is what a [Consumer]'s loop needs from JetStream: its stream and its durable
// consumer, both named by the configuration. jetStreamSource is the one that talks to a
// server; the unit tests hand the loop a fake.
type source interface {
	// stream reads the stream's identity and state; an error matching
	// jetstream.ErrStreamNotFound when it does not exist.
	stream(ctx context.Context) (streamInfo, error)
	// ensureStream creates the stream with cfg, or updates it (see [EnsureStream]).
	ensureStream(ctx context.Context, cfg StreamConfig) (streamInfo, error)
	// consumer binds to the existing durable consumer; an error matching
	// jetstream.ErrConsumerNotFound (or jetstream.ErrStreamNotFound) when it does not exist.
	consumer(ctx context.Context) (pullConsumer, error)
	// createConsumer creates the durable consumer; an error matching
	// jetstream.ErrConsumerExists when another instance was faster.
	createConsumer(ctx context.Context, cfg jetstream.ConsumerConfig) (pullConsumer, error)
	// updateConsumer changes the existing durable consumer's settings to cfg.
	updateConsumer(ctx context.Context, cfg jetstream.ConsumerConfig) (pullConsumer, error)
}

// streamInfo is what the consumer knows of its stream.
type streamInfo struct {
	// created identifies the stream's incarnation.
	created time.Time
	// subjects the stream captures (dead letters must go elsewhere).
	subjects []string
	// firstSeq and lastSeq are the stream's first and last sequence when read.
	firstSeq, lastSeq uint64
}

// pullConsumer is one durable pull consumer, as bound or created.
type pullConsumer interface {
	// config is the consumer's configuration as read when it was bound or created.
	config() jetstream.ConsumerConfig
	// fetch sends one pull request for up to n messages (and up to maxBytes, 0: no byte
	// bound) that expires after expiry, appends the messages it brought to buf and returns
	// it. A request that expires, full or not, is no error. It is never abandoned: it returns
	// once the request ended.
	fetch(buf []jetstream.Msg, n, maxBytes int, expiry time.Duration) ([]jetstream.Msg, error)
	// info reads the consumer's current state from the server.
	info(ctx context.Context) (*jetstream.ConsumerInfo, error)
}

// jetStreamSource is the [source] of a JetStream server.
type jetStreamSource struct {
	js            jetstream.JetStream
	name, durable string
}

func newJetStreamSource(js jetstream.JetStream, cfg ConsumerConfig) jetStreamSource {
	return jetStreamSource{js: js, name: cfg.Stream, durable: cfg.Durable}
}

func (s jetStreamSource) stream(ctx context.Context) (streamInfo, error) {
	st, err := s.js.Stream(ctx, s.name)
	if err != nil {
		return streamInfo{}, err
	}
	return infoOf(st), nil
}

func (s jetStreamSource) ensureStream(ctx context.Context, cfg StreamConfig) (streamInfo, error) {
	st, err := EnsureStream(ctx, s.js, cfg)
	if err != nil {
		return streamInfo{}, err
	}
	return infoOf(st), nil
}

func infoOf(st jetstream.Stream) streamInfo {
	info := st.CachedInfo()
	return streamInfo{created: info.Created, subjects: info.Config.Subjects, firstSeq: info.State.FirstSeq, lastSeq: info.State.LastSeq}
}

func (s jetStreamSource) consumer(ctx context.Context) (pullConsumer, error) {
	return bound(s.js.Consumer(ctx, s.name, s.durable))
}

func (s jetStreamSource) createConsumer(ctx context.Context, cfg jetstream.ConsumerConfig) (pullConsumer, error) {
	return bound(s.js.CreateConsumer(ctx, s.name, cfg))
}

func (s jetStreamSource) updateConsumer(ctx context.Context, cfg jetstream.ConsumerConfig) (pullConsumer, error) {
	return bound(s.js.UpdateConsumer(ctx, s.name, cfg))
}

func bound(c jetstream.Consumer, err error) (pullConsumer, error) {
	if err != nil {
		return nil, err
	}
	return jetStreamConsumer{c}, nil
}

// jetStreamConsumer is the [pullConsumer] of a JetStream server.
type jetStreamConsumer struct{ c jetstream.Consumer }

func (c jetStreamConsumer) config() jetstream.ConsumerConfig { return c.c.CachedInfo().Config }

func (c jetStreamConsumer) info(ctx context.Context) (*jetstream.ConsumerInfo, error) {
	return c.c.Info(ctx)
}

func (c jetStreamConsumer) fetch(buf []jetstream.Msg, n, maxBytes int, expiry time.Duration) ([]jetstream.Msg, error) {
	opts := []jetstream.FetchOpt{jetstream.FetchMaxWait(expiry)}
	if maxBytes > 0 {
		opts = append(opts, jetstream.FetchMaxBytes(maxBytes))
	}
	b, err := c.c.Fetch(n, opts...)
	if err != nil {
		return buf, err
	}
	for m := range b.Messages() {
		buf = append(buf, m)
	}
	// A request that ends without (all) messages is a fetch that found the stream idle.
	if err := b.Error(); err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) &&
		!errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, nats.ErrTimeout) {
		return buf, err
	}
	return buf, nil
}
