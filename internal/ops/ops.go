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
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		write(w, http.StatusOK, Status{Status: "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), timeout)
		defer cancel()
		if err := ready(ctx); err != nil {
			write(w, http.StatusServiceUnavailable, Status{Status: "unavailable", Reason: suppression.StoreErrorReason(err), Detail: err.Error()})
			return
		}
		write(w, http.StatusOK, Status{Status: "ready"})
	})
	if g != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	}
	return mux
}

// Status is the JSON body of /healthz and /readyz.
type Status struct {
	Status string `json:"status"`           // ok, ready, unavailable
	Reason string `json:"reason,omitempty"` // unavailable, not_built, layout_mismatch, other
	Detail string `json:"detail,omitempty"` // what the store said
}

func write(w http.ResponseWriter, code int, s Status) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(s)
}
