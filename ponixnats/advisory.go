package ponixnats

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// maxDeliveriesAdvisorySubject returns the subject on which JetStream
// announces that a message of stream reached the MaxDeliver of consumer
// without being acked and will not be delivered again.
func maxDeliveriesAdvisorySubject(stream, consumer string) string {
	return "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + stream + "." + consumer
}

// maxDeliveriesAdvisory is the payload of a MAX_DELIVERIES advisory
// (io.nats.jetstream.advisory.v1.max_deliver).
type maxDeliveriesAdvisory struct {
	Type       string `json:"type"`
	Stream     string `json:"stream"`
	Consumer   string `json:"consumer"`
	StreamSeq  uint64 `json:"stream_seq"`
	Deliveries uint64 `json:"deliveries"`
}

// watchMaxDeliveries subscribes to the consumer's MAX_DELIVERIES advisories.
//
// The consumer dead-letters a message itself when the processor naks it at its
// last delivery; but when a delivery's AckWait expires (the process holding it
// was killed, or stalled) at MaxDeliver, JetStream gives up on the message
// without telling any processor. The advisory is the only trace, so every
// running Consumer listens to it and copies the message from the stream to the
// dead-letter stream (reason [ReasonMaxDeliver]); the dead-letter Nats-Msg-Id
// makes several instances hearing the same advisory store one copy. It returns
// the function that stops listening.
func (c *Consumer) watchMaxDeliveries(ctx context.Context) (stop func(), err error) {
	if c.dlq == nil || c.cfg.MaxDeliver <= 0 {
		return func() {}, nil
	}
	subj := maxDeliveriesAdvisorySubject(c.cfg.Stream, c.cfg.Durable)
	hctx := context.WithoutCancel(ctx)
	sub, err := c.js.Conn().Subscribe(subj, func(m *nats.Msg) {
		var adv maxDeliveriesAdvisory
		if err := json.Unmarshal(m.Data, &adv); err != nil || adv.StreamSeq == 0 {
			c.log.Warn("ignoring malformed MAX_DELIVERIES advisory", "subject", m.Subject, "error", err)
			return
		}
		c.deadLetterExpired(hctx, adv)
	})
	if err != nil {
		return nil, fmt.Errorf("subscribing to %s: %w", subj, err)
	}
	return func() { _ = sub.Unsubscribe() }, nil
}

// deadLetterExpired copies the message named by adv from the stream to the
// dead-letter stream.
func (c *Consumer) deadLetterExpired(ctx context.Context, adv maxDeliveriesAdvisory) {
	c.st.maxDelivered.Add(1)
	c.st.maxDeliverAdvisories.Add(1)
	log := c.log.With("stream_seq", adv.StreamSeq, "deliveries", adv.Deliveries)
	gctx, cancel := context.WithTimeout(ctx, c.dlq.cfg.PublishTimeout)
	defer cancel()
	c.mu.Lock()
	st := c.stream
	c.mu.Unlock()
	raw, err := st.GetMsg(gctx, adv.StreamSeq)
	if err != nil {
		c.st.deadLetterFailed.Add(1)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			log.Error("message reached MaxDeliver without an ack but is no longer in the stream; it cannot be dead-lettered", "error", err)
			return
		}
		log.Error("message reached MaxDeliver without an ack; reading it from the stream for the dead-letter stream failed", "error", err)
		return
	}
	cause := fmt.Errorf("%w (%d deliveries): AckWait expired at the last delivery (the processor holding it crashed or stalled)",
		ErrMaxDeliver, adv.Deliveries)
	err = c.dlq.publishSource(ctx, deadLetterSource{
		subject: raw.Subject, data: raw.Data, header: raw.Header,
		stream: c.cfg.Stream, consumer: c.cfg.Durable, seq: raw.Sequence,
		numDelivered: adv.Deliveries, timestamp: raw.Time,
	}, ReasonMaxDeliver, cause)
	if err != nil {
		c.st.deadLetterFailed.Add(1)
		log.Error("message reached MaxDeliver without an ack; dead-letter publish failed", "error", err, "subject", raw.Subject)
		return
	}
	c.st.deadLettered.Add(1)
	log.Warn("message dead-lettered: its AckWait expired at its last delivery", "reason", ReasonMaxDeliver, "subject", raw.Subject,
		"dlq_stream", c.dlq.cfg.Stream)
}
