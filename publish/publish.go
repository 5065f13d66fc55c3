// Package publish puts suppression events on Kafka: the API's /v1/events,
// the unsubscribe links and the operator commands all publish through it.
// An event is acknowledged by all in-sync replicas before Publish returns,
// so a caller that answers "done" after it never loses the opt-out.
package publish

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/suppressd/suppressd/schemas"
	"github.com/suppressd/suppressd/suppression"
)

// Topics routes event types to topics.
type Topics struct {
	Unsubscribes string // unsubscribes, resubscribes, complaints, bounces, suppress and unsuppress
	Consent      string // consent withdrawn/granted and GPC signals
	Erasure      string // erasure requests
}

// For returns the topic of an event type.
func (t Topics) For(typ suppression.EventType) string {
	switch typ {
	case suppression.EventConsentWithdrawn, suppression.EventConsentGranted, suppression.EventGPC:
		return t.Consent
	case suppression.EventErasureRequested:
		return t.Erasure
	}
	return t.Unsubscribes
}

// Writer is the part of *kafka.Writer a Publisher uses.
type Writer interface {
	WriteMessages(ctx context.Context, msgs ...kafka.Message) error
}

// Publisher publishes events. It is safe for concurrent use.
type Publisher struct {
	w          Writer
	topics     Topics
	normalizer suppression.Normalizer
	timeout    time.Duration
}

// NewWriter returns a kafka.Writer as a Publisher needs it: acks from all
// in-sync replicas, synchronous, no topic of its own (each message names
// one), hashing the key to a partition so one person's events keep their
// order.
func NewWriter(brokers []string, transport *kafka.Transport) *kafka.Writer {
	if transport == nil {
		transport = &kafka.Transport{} // not kafka-go's shared default: its metadata cache outlives topic changes
	}
	return &kafka.Writer{
		Addr: kafka.TCP(brokers...), Balancer: &kafka.Hash{}, RequiredAcks: kafka.RequireAll,
		BatchTimeout: time.Millisecond, MaxAttempts: 3, WriteBackoffMin: 50 * time.Millisecond,
		WriteBackoffMax: 500 * time.Millisecond, Transport: transport,
	}
}

// New returns a Publisher. timeout bounds one Publish (default 5s).
func New(w Writer, topics Topics, n suppression.Normalizer, timeout time.Duration) *Publisher {
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	return &Publisher{w: w, topics: topics, normalizer: n, timeout: timeout}
}

// ErrUnavailable wraps every failure to get an acknowledgement from Kafka;
// nothing may be assumed published.
var ErrUnavailable = errors.New("kafka unavailable")

// Publish normalises, encodes and publishes one event, keyed by its primary
// match key (never a raw identifier).
func (p *Publisher) Publish(ctx context.Context, e suppression.Event) error {
	if err := e.Normalize(time.Now()); err != nil {
		return err
	}
	keys, err := p.normalizer.Expand(e.Identifiers...)
	if err != nil {
		return err
	}
	raw, err := schemas.Encode(e)
	if err != nil {
		return err
	}
	return p.PublishRaw(ctx, e.Type, keys[0], raw)
}

// PublishRaw publishes an encoded, already validated event.
func (p *Publisher) PublishRaw(ctx context.Context, typ suppression.EventType, primary suppression.MatchKey, raw []byte) error {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	msg := kafka.Message{
		Topic: p.topics.For(typ), Key: []byte(string(primary.Kind) + ":" + hex.EncodeToString(primary.Hash[:])), Value: raw,
		// The server's receive time: the event's reference time (an event
		// dated after it is clamped to it when consumed).
		Time:    time.Now(),
		Headers: []kafka.Header{{Key: "content-type", Value: []byte("application/cloudevents+json")}},
	}
	if err := p.w.WriteMessages(ctx, msg); err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return nil
}
