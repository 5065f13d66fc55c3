package consumer

import (
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	events       *prometheus.CounterVec // by type and outcome
	applyTime    prometheus.Histogram   // one batch's effect
	batchSize    prometheus.Histogram   // messages per batch
	deadLetters  *prometheus.CounterVec // by source topic
	effectErrors prometheus.Counter     // failed attempts at a batch's effect (each retried)
	freshness    prometheus.Histogram   // occurred_at to the effect made
	delay        prometheus.Histogram   // the reference time (intake) to the effect made
	retries      *prometheus.CounterVec // by what was retried
	changed      prometheus.Counter     // registers that changed
	clamped      *prometheus.CounterVec // events dated after their reference time, by action
	unconfirmed  prometheus.Counter     // effects made but not confirmed durable
	pending      prometheus.Gauge       // batches made but not yet confirmed, so uncommitted
}

// Outcomes of an event.
const (
	outcomeApplied    = "applied"     // valid, and its effect made (changed or not)
	outcomeDeadLetter = "dead_letter" // invalid, sent to the dead-letter topic
)

// latencyBuckets are the freshness's and the delay's, 5 ms to 48 h:
// Gmail's deadline is 48 h, CAN-SPAM's 10 business days.
var latencyBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 6 * 3600, 24 * 3600, 48 * 3600}

// newMetrics registers a stage's metrics: every series carries the stage
// (ingest, apply) as a constant label.
func newMetrics(reg prometheus.Registerer, stage string) *metrics {
	cl := prometheus.Labels{"stage": stage}
	m := &metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "suppressd_consumer_events_total", ConstLabels: cl,
			Help: "Events handled by a stage, by event type and outcome (applied, dead_letter). Type is 'invalid' for dead letters.",
		}, []string{"type", "outcome"}),
		applyTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "suppressd_consumer_apply_seconds", ConstLabels: cl,
			Help:    "Time to make one batch's effect (ingest: the ledger write; apply: the store write), retries included.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "suppressd_consumer_batch_size", ConstLabels: cl,
			Help:    "Messages per batch.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 14),
		}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "suppressd_consumer_dead_letters_total", ConstLabels: cl,
			Help: "Messages sent to the dead-letter topic, by the topic they came from.",
		}, []string{"topic"}),
		effectErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "suppressd_consumer_effect_errors_total", ConstLabels: cl,
			Help: "Failed attempts at a batch's effect (ingest: writing the ledger; apply: writing the store); each is retried.",
		}),
		freshness: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "suppressd_optout_freshness_seconds", ConstLabels: cl,
			Help:    "Seconds from the time the person acted (occurred_at) to the event's effect: stage apply is the opt-out visible in the store; stage ingest in the ledger.",
			Buckets: latencyBuckets,
		}),
		delay: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "suppressd_consumer_delay_seconds", ConstLabels: cl,
			Help:    "Seconds from the event's reference time (when it reached its intake topic, as ingest judged it; carried by the ledger record) to the stage's effect: stage apply is intake to visible in the store, both stages together. Unlike the freshness, a publisher's own lateness is not in it.",
			Buckets: latencyBuckets,
		}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "suppressd_consumer_retries_total", ConstLabels: cl,
			Help: "Retries, by what was retried (effect, dead_letter, commit, confirm, fetch).",
		}, []string{"what"}),
		changed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "suppressd_consumer_registers_changed_total", ConstLabels: cl,
			Help: "Store registers the apply stage changed; duplicates and superseded events change none.",
		}),
		clamped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "suppressd_events_clamped_total", ConstLabels: cl,
			Help: "Events that claimed a time after their reference time (when suppressd read them), kept and dated at it, by action (suppress, lift).",
		}, []string{"action"}),
		unconfirmed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "suppressd_consumer_unconfirmed_total", ConstLabels: cl,
			Help: "Batches written to the store but not confirmed as durable as SUPPRESSD_STORE_DURABILITY asks, each retried before it is committed.",
		}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "suppressd_consumer_unconfirmed_batches", ConstLabels: cl,
			Help: "Batches whose effect is made but not yet confirmed durable, so not committed.",
		}),
	}
	reg.MustRegister(m.events, m.applyTime, m.batchSize, m.deadLetters, m.effectErrors, m.freshness, m.delay, m.retries,
		m.changed, m.clamped, m.unconfirmed, m.pending)
	return m
}
