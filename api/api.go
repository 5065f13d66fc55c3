// Package api is suppressd's HTTP API: checks and unsubscribe links for the
// email sender, the streaming filter for the ad-audience exporter, the
// access-right lookup, and health, readiness and metrics. docs/api.md is
// the contract and schemas/openapi.yaml its machine-readable form.
//
// Handlers return errors; writeError turns them into JSON with a status, and
// nothing internal reaches a caller. Every answer about a contact comes from
// the store: if it cannot answer within its deadline the API says 503, never
// "allowed".
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/suppressd/suppressd/internal/ops"
	"github.com/suppressd/suppressd/schemas"
	"github.com/suppressd/suppressd/suppression"
	"github.com/suppressd/suppressd/unsubscribe"
)

// Options configure the API. The zero value plus keys is usable.
type Options struct {
	// Keys are the API keys accepted. None means every /v1 request is 401.
	Keys []Key
	// Normalizer normalises identifiers (default phone region).
	Normalizer suppression.Normalizer
	// Keyer turns match keys into the store's storage keys (the pepper).
	Keyer suppression.Keyer
	// StoreTimeout is how long a check waits for the store before it
	// answers 503. Default 500ms.
	StoreTimeout time.Duration
	// RetryAfter is the Retry-After sent with a 503. Default 1s.
	RetryAfter time.Duration
	// MaxBatch is the most contacts in one batch check. Default 10,000.
	MaxBatch int
	// MaxKeys is the most match keys one request may expand into (a
	// contact's identifiers expand into up to four keys each): what one
	// StoreTimeout can read. Default 50,000.
	MaxKeys int
	// MaxBody and MaxBatchBody bound JSON request bodies. Defaults 1 MiB and
	// 16 MiB.
	MaxBody, MaxBatchBody int64
	// FilterChunk is how many lines of a filter stream are looked up at
	// once. Default 2,000.
	FilterChunk int
	// Gatherer serves /metrics; nil serves none.
	Gatherer prometheus.Gatherer
	// Publisher, Validator and PublishLog enable POST /v1/events and
	// /v1/import; without a Publisher they answer 404.
	Publisher  Publisher
	Validator  *schemas.Validator
	PublishLog PublishLog
	// Links enables POST /v1/links: it mints with the keyring and TTL the
	// /u/ pages verify. Without it the endpoint answers 404.
	Links *unsubscribe.Minter
	// MaxLinks is the most recipients in one POST /v1/links (its body is
	// bounded by MaxBatchBody). Default 10,000.
	MaxLinks int
}

func (o *Options) setDefaults() {
	if o.StoreTimeout <= 0 {
		o.StoreTimeout = 500 * time.Millisecond
	}
	if o.RetryAfter <= 0 {
		o.RetryAfter = time.Second
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 10_000
	}
	if o.MaxKeys <= 0 {
		o.MaxKeys = 50_000
	}
	if o.MaxBody <= 0 {
		o.MaxBody = 1 << 20
	}
	if o.MaxBatchBody <= 0 {
		o.MaxBatchBody = 16 << 20
	}
	if o.MaxLinks <= 0 {
		o.MaxLinks = 10_000
	}
	if o.FilterChunk <= 0 {
		o.FilterChunk = 2000
	}
}

// Server serves the API.
type Server struct {
	store suppression.Store
	opts  Options
	log   *slog.Logger
	m     *metrics
}

// New returns the API server.
func New(store suppression.Store, opts Options, log *slog.Logger, reg prometheus.Registerer) *Server {
	opts.setDefaults()
	return &Server{store: store, opts: opts, log: log.With("component", "api"), m: newMetrics(reg)}
}

// handlerFunc is a handler that returns its error.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// Handler returns the routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	route := func(pattern, name string, scope Scope, h handlerFunc) {
		mux.Handle(pattern, s.instrument(name, s.authorize(scope, h)))
	}
	route("POST /v1/check", "check", ScopeCheck, s.check)
	route("POST /v1/check/batch", "check_batch", ScopeCheck, s.checkBatch)
	route("POST /v1/filter", "filter", ScopeFilter, s.filter)
	route("POST /v1/filter/rows", "filter_rows", ScopeFilter, s.filterRows)
	route("POST /v1/subjects/lookup", "subjects_lookup", ScopeAdmin, s.lookup)
	route("POST /v1/events", "events", ScopePublish, s.events)
	route("POST /v1/import", "import", ScopeAdmin, s.importList)
	route("POST /v1/links", "links", ScopeLinks, s.links)
	health := ops.Handler(s.store.Ready, s.opts.Gatherer, s.opts.StoreTimeout)
	for _, name := range []string{"healthz", "readyz"} {
		mux.Handle("GET /"+name, s.instrument(name, func(w http.ResponseWriter, r *http.Request) error {
			health.ServeHTTP(w, r)
			return nil
		}))
	}
	if s.opts.Gatherer != nil {
		mux.Handle("GET /metrics", health)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, pattern := mux.Handler(r)
		if pattern == "" {
			// The mux's own 404 and 405 answers are text; ours are JSON.
			if allow := w.Header().Get("Allow"); allow != "" || methodMismatch(mux, r) {
				writeError(w, r, s.log, &Error{Status: http.StatusMethodNotAllowed, Code: "method_not_allowed", Message: r.Method + " is not allowed here"})
				return
			}
			writeError(w, r, s.log, errNotFound)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// methodMismatch reports whether the path exists under another method.
func methodMismatch(mux *http.ServeMux, r *http.Request) bool {
	for _, m := range []string{http.MethodGet, http.MethodPost} {
		if m == r.Method {
			continue
		}
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, p := mux.Handler(probe); p != "" {
			return true
		}
	}
	return false
}

type ctxKey struct{}

func (s *Server) authorize(scope Scope, h handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		k, ok := authenticate(s.opts.Keys, r)
		if !ok {
			return errUnauthorized
		}
		if k.has(scope) {
			return h(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, k)))
		}
		return forbidden(scope)
	}
}

// statusRecorder remembers the status for metrics.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the real writer (flushing,
// full duplex).
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (s *Server) instrument(name string, h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		err := h(rec, r)
		if err != nil {
			if rec.status != 0 {
				// Headers are gone: a streamed response can only stop.
				s.log.Warn("error after the response started", "route", name, "err", err)
			} else {
				writeError(rec, r, s.log, err)
			}
		}
		s.m.requests.WithLabelValues(name, strconv.Itoa(rec.status)).Inc()
		s.m.duration.WithLabelValues(name).Observe(time.Since(start).Seconds())
		if errors.Is(err, errCutStream) {
			panic(http.ErrAbortHandler) // net/http closes the connection without a last chunk
		}
	})
}

// decodeJSON reads a JSON body of at most limit bytes into v, rejecting
// unknown fields and trailing data, and names the field at fault.
func decodeJSON(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	// curl -d labels its body form-urlencoded; take it as the JSON it is.
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") &&
		!strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
		return &Error{Status: http.StatusUnsupportedMediaType, Code: "unsupported_media_type", Message: "send application/json"}
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if _, extra := dec.Token(); extra != io.EOF {
			return badRequest("", "trailing data after the JSON object")
		}
		return nil
	}
	var (
		maxErr    *http.MaxBytesError
		syntaxErr *json.SyntaxError
		typeErr   *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &maxErr):
		return &Error{Status: http.StatusRequestEntityTooLarge, Code: "too_large", Message: fmt.Sprintf("the body is over the %d-byte limit", limit)}
	case errors.As(err, &syntaxErr):
		return badRequest("", "malformed JSON at byte %d", syntaxErr.Offset)
	case errors.As(err, &typeErr):
		return badRequest(typeErr.Field, "%s must be %s, not %s", typeErr.Field, typeErr.Type, typeErr.Value)
	case errors.Is(err, io.EOF):
		return badRequest("", "the body is empty")
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		f := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return badRequest(f, "unknown field %q", f)
	}
	return badRequest("", "malformed JSON")
}

func sprintf(format string, args ...any) string { return fmt.Sprintf(format, args...) }
