package ponixnats

import (
	"context"
	"time"

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
	// removeConsumer deletes the durable consumer (to create it anew with settings that
	// cannot be changed in place).
	removeConsumer(ctx context.Context) error
	// close ends what the source holds open for fetching (its pull connection); a fetch
	// after it opens it again.
	close()
	// resetConsumer makes the durable consumer deliver again from stream sequence seq (0: from
	// its ack floor + 1), forgetting what it delivered and nobody acknowledged; it returns the
	// sequence delivery starts from.
	resetConsumer(ctx context.Context, seq uint64) (uint64, error)
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
	// it. A request that expires, full or not, is no error; one that the byte bound ended
	// returns errByteBound (pulling again for the bytes left would bring nothing). It is never
	// abandoned: it returns once the request ended.
	fetch(buf []jetstream.Msg, n, maxBytes int, expiry time.Duration) ([]jetstream.Msg, error)
	// info reads the consumer's current state from the server.
	info(ctx context.Context) (*jetstream.ConsumerInfo, error)
}

// jetStreamSource is the [source] of a JetStream server.
type jetStreamSource struct {
	js            jetstream.JetStream
	name, durable string
	group         string    // the priority group pulls name ([AckPerBatch]); "" for none
	pulls         *pullConn // the connection pulls go on; nil: js's
}

func newJetStreamSource(js jetstream.JetStream, cfg ConsumerConfig) jetStreamSource {
	s := jetStreamSource{js: js, name: cfg.Stream, durable: cfg.Durable}
	if cfg.Ack == AckPerBatch {
		s.group = ownerGroup
	}
	if !cfg.PullOnSharedConnection {
		s.pulls = newPullConn(js.Conn())
	}
	return s
}

func (s jetStreamSource) close() {
	if s.pulls != nil {
		s.pulls.close()
	}
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
	return s.bound(s.js.Consumer(ctx, s.name, s.durable))
}

func (s jetStreamSource) createConsumer(ctx context.Context, cfg jetstream.ConsumerConfig) (pullConsumer, error) {
	return s.bound(s.js.CreateConsumer(ctx, s.name, cfg))
}

func (s jetStreamSource) updateConsumer(ctx context.Context, cfg jetstream.ConsumerConfig) (pullConsumer, error) {
	return s.bound(s.js.UpdateConsumer(ctx, s.name, cfg))
}

func (s jetStreamSource) removeConsumer(ctx context.Context) error {
	return s.js.DeleteConsumer(ctx, s.name, s.durable)
}

func (s jetStreamSource) resetConsumer(ctx context.Context, seq uint64) (uint64, error) {
	var (
		r   *jetstream.ConsumerResetResponse
		err error
	)
	if seq == 0 {
		r, err = s.js.ResetConsumer(ctx, s.name, s.durable)
	} else {
		r, err = s.js.ResetConsumerToSequence(ctx, s.name, s.durable, seq)
	}
	if err != nil {
		return 0, err
	}
	return r.ResetSeq, nil
}

func (s jetStreamSource) bound(c jetstream.Consumer, err error) (pullConsumer, error) {
	if err != nil {
		return nil, err
	}
	return jetStreamConsumer{c: c, pull: newPuller(s.js, s.pulls, s.name, s.durable, s.group)}, nil
}

// jetStreamConsumer is the [pullConsumer] of a JetStream server.
type jetStreamConsumer struct {
	c    jetstream.Consumer
	pull *puller // its pull requests
}

func (c jetStreamConsumer) config() jetstream.ConsumerConfig { return c.c.CachedInfo().Config }

func (c jetStreamConsumer) info(ctx context.Context) (*jetstream.ConsumerInfo, error) {
	return c.c.Info(ctx)
}

func (c jetStreamConsumer) fetch(buf []jetstream.Msg, n, maxBytes int, expiry time.Duration) ([]jetstream.Msg, error) {
	return c.pull.fetch(buf, n, maxBytes, expiry)
}
