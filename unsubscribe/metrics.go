package unsubscribe

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics of the pages. Every label value is from a fixed set: nothing
// from a request, a token or a person.
type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	rejected *prometheus.CounterVec
	events   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "suppressd_unsubscribe_requests_total",
			Help: "Requests to /u/ by page (confirm: GET /u/<token>; unsubscribe: POST /u/<token>, one-click or the button; " +
				"preferences, save_preferences: GET and POST /u/<token>/preferences; other) and outcome (shown, unsubscribed, " +
				"invalid_token, bad_request, rate_limited, unavailable: publishing failed, 503; error; not_found; method_not_allowed).",
		}, []string{"page", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "suppressd_unsubscribe_request_duration_seconds",
			Help:    "Latency of /u/ by page, publishing to Kafka included.",
			Buckets: []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30},
		}, []string{"page"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "suppressd_unsubscribe_token_rejections_total",
			Help: "Link tokens refused, by reason: malformed, unknown_key (signed with a key no longer in SUPPRESSD_LINK_KEYS), " +
				"forged, expired, other.",
		}, []string{"reason"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "suppressd_unsubscribe_events_total",
			Help: "Opt-outs the pages published, by how the person asked (one_click, button, preferences, gpc, dnt) and outcome " +
				"(published; repeat: the same link and action within the hour, not published again; failed: Kafka did not " +
				"acknowledge; invalid).",
		}, []string{"via", "outcome"}),
	}
	reg.MustRegister(m.requests, m.duration, m.rejected, m.events)
	return m
}

// Pages, the page label: which route a request took.
var pageOfPattern = map[string]string{
	"GET /u/{token}":              "confirm",
	"POST /u/{token}":             "unsubscribe",
	"GET /u/{token}/preferences":  "preferences",
	"POST /u/{token}/preferences": "save_preferences",
}

// instrument counts and times every request, by page and outcome.
func (h *handler) instrument(mux *http.ServeMux, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		_, pattern := mux.Handler(r)
		page, ok := pageOfPattern[pattern]
		if !ok {
			page = "other"
		}
		rec := &recorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		outcome := rec.outcome
		if outcome == "" {
			switch rec.status {
			case http.StatusNotFound:
				outcome = "not_found"
			case http.StatusMethodNotAllowed:
				outcome = "method_not_allowed"
			default:
				outcome = "error"
			}
		}
		h.m.requests.WithLabelValues(page, outcome).Inc()
		h.m.duration.WithLabelValues(page).Observe(time.Since(start).Seconds())
	})
}

// recorder keeps the status of an answer and the outcome render gave it.
type recorder struct {
	http.ResponseWriter
	status  int
	outcome string
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// unwrapped is the server's own writer, which http.MaxBytesReader needs to
// close the connection after a body over the limit.
func unwrapped(w http.ResponseWriter) http.ResponseWriter {
	if r, ok := w.(*recorder); ok {
		return r.ResponseWriter
	}
	return w
}

// setOutcome records what a page said, for the requests metric.
func setOutcome(w http.ResponseWriter, status int, name string) {
	r, ok := w.(*recorder)
	if !ok {
		return
	}
	switch {
	case status == http.StatusOK && name == "done":
		r.outcome = "unsubscribed"
	case status == http.StatusOK:
		r.outcome = "shown"
	case name == "invalid":
		r.outcome = "invalid_token"
	case status == http.StatusBadRequest:
		r.outcome = "bad_request"
	case status == http.StatusTooManyRequests:
		r.outcome = "rate_limited"
	case status == http.StatusServiceUnavailable:
		r.outcome = "unavailable"
	default:
		r.outcome = "error"
	}
}
