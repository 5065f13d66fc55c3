// Package ops serves the endpoints every role exposes to its operators:
// /healthz (the process answers), /readyz (it can do its job: the store
// answers, holds a built suppression list, and is laid out as this replica
// expects) and /metrics. The api role mounts the same handler beside the
// API; the consumer role serves it alone.
package ops

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/suppressd/suppressd/suppression"
)

// ReadyFunc reports whether the role can do its job; its error says why
// not, in text safe to show an operator.
type ReadyFunc func(ctx context.Context) error

// DefaultTimeout bounds a readiness check.
const DefaultTimeout = time.Second

// Handler serves GET /healthz, /readyz and, with a gatherer, /metrics.
// timeout bounds a readiness check (DefaultTimeout when 0).
func Handler(ready ReadyFunc, g prometheus.Gatherer, timeout time.Duration) http.Handler {
	return New(Options{Ready: ready, Gatherer: g, Timeout: timeout})
}

// Options configure the endpoints. Ready is required.
type Options struct {
	Ready    ReadyFunc
	Gatherer prometheus.Gatherer // serves /metrics; nil serves none
	Timeout  time.Duration       // bounds a readiness check; DefaultTimeout when 0
	// Index, if set, describes the api role's read index in every /readyz
	// answer. It never decides readiness: an index that is not fresh sends
	// reads to the store, which is what readiness is about.
	Index func() any
}

// New serves GET /healthz, /readyz and, with a gatherer, /metrics.
func New(o Options) http.Handler {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		write(w, http.StatusOK, Status{Status: "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), o.Timeout)
		defer cancel()
		var index any
		if o.Index != nil {
			index = o.Index()
		}
		if err := o.Ready(ctx); err != nil {
			write(w, http.StatusServiceUnavailable, Status{Status: "unavailable", Reason: suppression.StoreErrorReason(err), Detail: err.Error(), Index: index})
			return
		}
		write(w, http.StatusOK, Status{Status: "ready", Index: index})
	})
	if o.Gatherer != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(o.Gatherer, promhttp.HandlerOpts{}))
	}
	return mux
}

// Status is the JSON body of /healthz and /readyz.
type Status struct {
	Status string `json:"status"`           // ok, ready, unavailable
	Reason string `json:"reason,omitempty"` // unavailable, not_built, layout_mismatch, other
	Detail string `json:"detail,omitempty"` // what the store said
	// Index is the api role's read index: whether it answers from memory
	// (serving) or every read goes to the store (loading, lagging, off).
	Index any `json:"index,omitempty"`
}

func write(w http.ResponseWriter, code int, s Status) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(s)
}
