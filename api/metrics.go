package api

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	checks   *prometheus.CounterVec
	filtered *prometheus.CounterVec
	rows     *prometheus.CounterVec
	storeErr prometheus.Counter
	links    *prometheus.CounterVec
	canceled prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "suppressd_api_requests_total",
			Help: "HTTP requests by route and status code.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "suppressd_api_request_duration_seconds",
			Help:    "HTTP request latency by route.",
			Buckets: []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 300},
		}, []string{"route"}),
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "suppressd_checks_total",
			Help: "Contacts checked, by result: allowed, suppressed, invalid (a bad identifier), unavailable (store did not answer).",
		}, []string{"result"}),
		filtered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "suppressd_filter_lines_total",
			Help: "Lines of filter streams, by result: allowed, suppressed, malformed.",
		}, []string{"platform", "result"}),
		rows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "suppressd_filter_rows_total",
			Help: "Rows of row-filter streams (/v1/filter/rows), by result: allowed, suppressed, malformed.",
		}, []string{"platform", "result"}),
		storeErr: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "suppressd_api_store_errors_total",
			Help: "Store reads that failed or timed out; each answered 503. Reads cut short by the client going away are in suppressd_api_canceled_reads_total.",
		}),
		canceled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "suppressd_api_canceled_reads_total",
			Help: "Store reads cut short because the client went away (or the server shut down) first; not store errors.",
		}),
		links: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "suppressd_links_total",
			Help: "Recipients of POST /v1/links, by result: minted, invalid (the recipient was refused, named in its result).",
		}, []string{"result"}),
	}
	reg.MustRegister(m.requests, m.duration, m.checks, m.filtered, m.rows, m.storeErr, m.canceled, m.links)
	return m
}
