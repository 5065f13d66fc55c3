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
	// streamAborts are answers cut after their status went out.
	streamAborts *prometheus.CounterVec
}

// codeAborted is the code label of a request whose answer was cut after
// its 200 went out (a filter stream that failed midway): the caller did not
// get what a 200 promises, so it is not counted as one.
const codeAborted = "aborted"

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "suppressd_api_requests_total",
			Help: "HTTP requests by route and status code; code is \"aborted\" for an answer cut after its 200 went out (a filter stream that failed midway: suppressd_api_stream_aborts_total says why).",
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
	m.streamAborts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "suppressd_api_stream_aborts_total",
		Help: "Streamed answers (/v1/filter, /v1/filter/rows) cut after their 200 went out, by route and reason: unavailable (the store failed midway), " +
			"read (the upload broke or came too slowly), write (the client stopped taking the answer), canceled (the client went away while the store was read), other. Each is in suppressd_api_requests_total with code=\"aborted\".",
	}, []string{"route", "reason"})
	reg.MustRegister(m.requests, m.duration, m.checks, m.filtered, m.rows, m.storeErr, m.canceled, m.links, m.streamAborts)
	return m
}
