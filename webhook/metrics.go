package webhook

import "github.com/prometheus/client_golang/prometheus"

// metrics of the webhooks. Every label value comes from a fixed set (the
// provider names, the outcomes, the event types): nothing from a request.
type metrics struct {
	requests  *prometheus.CounterVec
	published *prometheus.CounterVec
	duration  *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "suppressd_webhook_requests_total",
			Help: "Webhook requests by provider (a name of Providers, or unknown) and outcome: accepted, ignored, duplicate, " +
				"rejected_signature, stale, replayed, publish_failed, unavailable, invalid, too_large, not_found, method_not_allowed, internal.",
		}, []string{"provider", "outcome"}),
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "suppressd_webhook_events_published_total",
			Help: "Events published from webhooks and acknowledged by Kafka, by provider and event type.",
		}, []string{"provider", "type"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "suppressd_webhook_request_duration_seconds",
			Help:    "Webhook request latency by provider, publishing included.",
			Buckets: []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30},
		}, []string{"provider"}),
	}
	reg.MustRegister(m.requests, m.published, m.duration)
	return m
}
