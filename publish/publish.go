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

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/suppressd/suppressd/schemas"
	"github.com/suppressd/suppressd/suppression"
)

// Topics routes event types to topics.
type Topics struct {
	Unsubscribes string // unsubscribes, resubscribes, complaints, bounces and suppress events
	Consent      string // consent withdrawn/granted and GPC signals
	Erasure      string // erasure requests
	Admin        string // admin unsuppress events: the only topic they are accepted from
}

// For returns the topic of an event type.
func (t Topics) For(typ suppression.EventType) string {
	switch typ {
	case suppression.EventUnsuppress:
		return t.Admin
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
	m          *metrics
}

// Outcomes of a publish, the outcome label of the metrics.
const (
	outcomePublished = "published" // acknowledged by all in-sync replicas
	outcomeFailed    = "failed"    // not acknowledged in time: nothing may be assumed published
	outcomeInvalid   = "invalid"   // refused before Kafka: the event does not normalise or encode
)

// metrics of publishing, for every caller at once: /v1/events, /v1/import,
// the /u/ pages, the webhooks. Each caller counts its own requests; these
// say whether Kafka took what they published. Every label value is from a
// fixed set.
type metrics struct {
	events   *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "suppressd_publish_events_total",
			Help: "Events published to Kafka by the api role (/v1/events, /v1/import, the /u/ pages, the webhooks), by event type " +
				"and outcome: published (acknowledged by all in-sync replicas), failed (not acknowledged; the caller answered 503), " +
				"invalid (refused before Kafka).",
		}, []string{"type", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "suppressd_publish_duration_seconds",
			Help:    "Time to have an event acknowledged by all in-sync replicas (published), or to give up (failed).",
			Buckets: []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30},
		}, []string{"outcome"}),
	}
	reg.MustRegister(m.events, m.duration)
	return m
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

// New returns a Publisher. timeout bounds one Publish (default 5s). Its
// metrics are registered with reg; nil registers them with a registry of
// their own, which nothing serves (the operator commands).
func New(w Writer, topics Topics, n suppression.Normalizer, timeout time.Duration, reg prometheus.Registerer) *Publisher {
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	return &Publisher{w: w, topics: topics, normalizer: n, timeout: timeout, m: newMetrics(reg)}
}

// ErrUnavailable wraps every failure to get an acknowledgement from Kafka;
// nothing may be assumed published.
var ErrUnavailable = errors.New("kafka unavailable")

// Publish normalises, encodes and publishes one event, keyed by its primary
// match key (never a raw identifier).
func (p *Publisher) Publish(ctx context.Context, e suppression.Event) error {
	raw, primary, err := p.encode(&e)
	if err != nil {
		p.m.events.WithLabelValues(typeLabel(e.Type), outcomeInvalid).Inc()
		return err
	}
	return p.PublishRaw(ctx, e.Type, primary, raw)
}

func (p *Publisher) encode(e *suppression.Event) ([]byte, suppression.MatchKey, error) {
	if err := e.Normalize(time.Now()); err != nil {
		return nil, suppression.MatchKey{}, err
	}
	keys, err := p.normalizer.Expand(e.Identifiers...)
	if err != nil {
		return nil, suppression.MatchKey{}, err
	}
	raw, err := schemas.Encode(*e)
	return raw, keys[0], err
}

// typeLabel bounds the type label to the known types: an invalid event's
// type may be anything a caller sent.
func typeLabel(t suppression.EventType) string {
	if t.Valid() {
		return string(t)
	}
	return "unknown"
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
	start := time.Now()
	err := p.w.WriteMessages(ctx, msg)
	outcome := outcomePublished
	if err != nil {
		outcome = outcomeFailed
	}
	p.m.events.WithLabelValues(typeLabel(typ), outcome).Inc()
	p.m.duration.WithLabelValues(outcome).Observe(time.Since(start).Seconds())
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return nil
}
