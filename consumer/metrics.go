package consumer

import (
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	events      *prometheus.CounterVec // by type and outcome
	applyTime   prometheus.Histogram   // one batch into the store
	batchSize   prometheus.Histogram   // messages per batch
	lag         *prometheus.GaugeVec   // by topic and partition
	deadLetters *prometheus.CounterVec // by source topic
	storeErrors prometheus.Counter     // failed store attempts (each retried)
	freshness   prometheus.Histogram   // occurred_at to applied
	retries     *prometheus.CounterVec // by stage
	changed     prometheus.Counter     // registers that changed
	clamped     *prometheus.CounterVec // events dated after their reference time, by action
}

// Outcomes of an event.
const (
	outcomeApplied    = "applied"     // valid, and written to the store (changed or not)
	outcomeDeadLetter = "dead_letter" // invalid, sent to the dead-letter topic
)

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "suppressd_consumer_events_total",
			Help: "Events consumed, by event type and outcome (applied, dead_letter). Type is 'invalid' for dead letters.",
		}, []string{"type", "outcome"}),
		applyTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "suppressd_consumer_apply_seconds",
			Help:    "Time to write one batch into the store, retries included.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "suppressd_consumer_batch_size",
			Help:    "Messages per batch.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 14),
		}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "suppressd_consumer_lag",
			Help: "Messages behind the partition's high watermark, as of the last message fetched.",
		}, []string{"topic", "partition"}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "suppressd_consumer_dead_letters_total",
			Help: "Events sent to the dead-letter topic, by the topic they came from.",
		}, []string{"topic"}),
		storeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "suppressd_consumer_store_errors_total",
			Help: "Failed attempts to write a batch into the store; each is retried.",
		}),
		freshness: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "suppressd_optout_freshness_seconds",
			Help: "Seconds from the time the person acted (occurred_at) to the event being applied to the store.",
			// 5 ms to 48 h: Gmail's deadline is 48 h, CAN-SPAM's 10 business days.
			Buckets: []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 6 * 3600, 24 * 3600, 48 * 3600},
		}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "suppressd_consumer_retries_total",
			Help: "Retries, by stage (store, dead_letter, commit).",
		}, []string{"stage"}),
		changed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "suppressd_consumer_registers_changed_total",
			Help: "Store registers an event changed; duplicates and superseded events change none.",
		}),
	}
	m.clamped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "suppressd_events_clamped_total",
		Help: "Events that claimed a time after their reference time (when suppressd read them), kept and dated at it, by action (suppress, lift).",
	}, []string{"action"})
	reg.MustRegister(m.events, m.applyTime, m.batchSize, m.lag, m.deadLetters, m.storeErrors, m.freshness, m.retries, m.changed, m.clamped)
	return m
}
