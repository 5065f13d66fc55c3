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
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/suppressd/suppressd/internal/httplimit"
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
	// BodyTimeout is how long a JSON body may take to arrive, whole
	// (408 beyond); the streamed bodies (filter, import) get it as their
	// grace before MinBodyRate applies. Default 15s.
	BodyTimeout time.Duration
	// MaxImportBody bounds an import's body, and what a gzip body expands
	// to. Default 256 MiB.
	MaxImportBody int64
	// MinBodyRate is the slowest a streamed body (filter, import) may
	// arrive, in bytes per second of waiting for it, after BodyTimeout.
	// Default 16 KiB/s.
	MinBodyRate int64
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
	// IndexStatus, if set, describes the read index the store reads
	// through (package index) in /readyz answers.
	IndexStatus func() any
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
	if o.BodyTimeout <= 0 {
		o.BodyTimeout = 15 * time.Second
	}
	if o.MaxImportBody <= 0 {
		o.MaxImportBody = 256 << 20
	}
	if o.MinBodyRate <= 0 {
		o.MinBodyRate = 16 << 10
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
	// Every body has a deadline: a JSON body must arrive whole within
	// BodyTimeout; a streamed one (filter, import) at MinBodyRate.
	route := func(pattern, name string, scope Scope, streamed bool, h handlerFunc) {
		auth := s.authorize(scope, h)
		mux.Handle(pattern, s.instrument(name, func(w http.ResponseWriter, r *http.Request) error {
			if streamed {
				httplimit.MinRate(w, r, s.opts.MinBodyRate, s.opts.BodyTimeout)
			} else {
				httplimit.SetBodyDeadline(w, r, s.opts.BodyTimeout)
			}
			return auth(w, r)
		}))
	}
	route("POST /v1/check", "check", ScopeCheck, false, s.check)
	route("POST /v1/check/batch", "check_batch", ScopeCheck, false, s.checkBatch)
	route("POST /v1/filter", "filter", ScopeFilter, true, s.filter)
	route("POST /v1/filter/rows", "filter_rows", ScopeFilter, true, s.filterRows)
	route("POST /v1/subjects/lookup", "subjects_lookup", ScopeAdmin, false, s.lookup)
	route("POST /v1/events", "events", ScopePublish, false, s.events)
	route("POST /v1/import", "import", ScopeAdmin, true, s.importList)
	route("POST /v1/links", "links", ScopeLinks, false, s.links)
	health := ops.New(ops.Options{Ready: s.store.Ready, Gatherer: s.opts.Gatherer, Timeout: s.opts.StoreTimeout, Index: s.opts.IndexStatus})
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
			// The mux's own 404 and 405 answers are text; ours are JSON,
			// and a 405 names the methods that are allowed (RFC 9110,
			// 15.5.6).
			if allow := allowedMethods(mux, r); len(allow) > 0 {
				w.Header().Set("Allow", strings.Join(allow, ", "))
				writeError(w, r, s.log, &Error{Status: http.StatusMethodNotAllowed, Code: "method_not_allowed", Message: r.Method + " is not allowed here; use " + strings.Join(allow, " or ")})
				return
			}
			writeError(w, r, s.log, errNotFound)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// allowedMethods returns the methods the path is served with, none when
// the path is unknown. A GET route serves HEAD too.
func allowedMethods(mux *http.ServeMux, r *http.Request) []string {
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost} {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, p := mux.Handler(probe); p != "" {
			allow = append(allow, m)
		}
	}
	return allow
}

type ctxKey struct{}

// authorize runs h for a key with the scope. A request without one is
// answered before a byte of its body is read, and its connection closed
// without reading the rest: nobody without a key can make the server wait
// for, or read, a body.
func (s *Server) authorize(scope Scope, h handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		k, ok := authenticate(s.opts.Keys, r)
		if !ok {
			httplimit.CloseUnread(w, r)
			return errUnauthorized
		}
		if k.has(scope) {
			return h(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, k)))
		}
		httplimit.CloseUnread(w, r)
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
		aborted := false
		defer func() {
			if aborted {
				// Headers are gone: a streamed response can only stop. It
				// stops short of its last chunk, so no client takes it
				// for whole, and its connection is closed rather than
				// left to the rest of a body nobody reads.
				panic(http.ErrAbortHandler)
			}
		}()
		err := h(rec, r)
		code := ""
		if err != nil {
			if rec.status != 0 {
				s.log.Warn("error after the response started", "route", name, "err", err)
				aborted = true
				// The caller got a 200 and then a cut stream: not a 200.
				reason := "other"
				var sa *streamAbort
				if errors.As(err, &sa) {
					reason = sa.reason
				}
				s.m.streamAborts.WithLabelValues(name, reason).Inc()
				code = codeAborted
			} else {
				var e *Error
				if errors.As(err, &e) && (e.Status == http.StatusRequestTimeout || e.Status == http.StatusRequestEntityTooLarge ||
					e.Status == http.StatusUnsupportedMediaType) {
					// What is left of the body is not wanted: do not read it.
					httplimit.CloseUnread(rec, r)
				}
				writeError(rec, r, s.log, err)
			}
		}
		if code == "" {
			code = strconv.Itoa(rec.status)
		}
		s.m.requests.WithLabelValues(name, code).Inc()
		s.m.duration.WithLabelValues(name).Observe(time.Since(start).Seconds())
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
	if err := identityOnly(r); err != nil {
		return err
	}
	// Read whole (the decoder would buffer it all anyway) to check it is
	// UTF-8, as JSON must be (RFC 8259): encoding/json would turn each
	// invalid byte into U+FFFD, and an identifier into another one.
	var buf bytes.Buffer
	if r.ContentLength > 0 {
		buf.Grow(int(min(r.ContentLength, limit)) + bytes.MinRead) // not twice the limit, as doubling would
	}
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, limit))
	body := buf.Bytes()
	if err == nil {
		if err := validUTF8(body); err != nil {
			return err
		}
		if f, ok := v.(fastDecoder); ok && f.decodeFast(body) {
			return nil
		}
	}
	return decodeStrict(body, err, limit, v)
}

// decodeStrict decodes body into v, rejecting unknown fields, null where a
// string or an object is specified, and trailing data, and names the field
// at fault; readErr is what reading the body ended with.
func decodeStrict(body []byte, readErr error, limit int64, v any) error {
	err := readErr
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err == nil {
		err = dec.Decode(v)
	}
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
	case httplimit.IsTimeout(err):
		return tooSlow(err)
	case errors.As(err, &syntaxErr):
		return badRequest("", "malformed JSON at byte %d", syntaxErr.Offset)
	case errors.As(err, &typeErr):
		// encoding/json names a member of an embedded struct with the
		// struct's Go name ("sendFields.topic"); the caller wrote "topic".
		f := embeddedNames.Replace(typeErr.Field)
		return badRequest(f, "%s must be %s, not %s", f, jsonType(typeErr.Type), typeErr.Value)
	case errors.Is(err, io.EOF):
		return badRequest("", "the body is empty")
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		f := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return badRequest(f, "unknown field %q", f)
	}
	return badRequest("", "malformed JSON")
}

// embeddedNames removes the Go names of embedded request structs from a
// field path.
var embeddedNames = strings.NewReplacer("sendFields.", "", "linkClaims.", "")

// validUTF8 refuses a body that is not UTF-8, naming where it stops being.
func validUTF8(b []byte) error {
	if utf8.Valid(b) {
		return nil
	}
	at := 0
	for at < len(b) {
		r, size := utf8.DecodeRune(b[at:])
		if r == utf8.RuneError && size <= 1 {
			break
		}
		at += size
	}
	return badRequest("", "the body is not valid UTF-8 (at byte %d)", at)
}

// identityOnly refuses a compressed JSON body: it would be read as
// malformed JSON, and a client that compresses deserves to be told why.
func identityOnly(r *http.Request) error {
	if enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc != "" && enc != "identity" {
		return &Error{Status: http.StatusUnsupportedMediaType, Code: "unsupported_media_type", Message: "Content-Encoding " + enc + " is not supported here; send the JSON uncompressed"}
	}
	return nil
}

// tooSlow is the answer to a body that missed its deadline or rate.
func tooSlow(err error) *Error {
	msg := "the request body did not arrive in time"
	if errors.Is(err, httplimit.ErrTooSlow) {
		msg = err.Error()
		if i := strings.Index(msg, ": read tcp"); i > 0 {
			msg = msg[:i] // the addresses are the caller's business
		}
	}
	return &Error{Status: http.StatusRequestTimeout, Code: "request_timeout", Message: msg}
}

// text is a string member of a request. JSON null is refused, naming the
// member (the description says string, and null is not ""): decoded into a
// plain string it would pass as "member left out".
type text string

func (t *text) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return &json.UnmarshalTypeError{Value: "null", Type: reflect.TypeFor[string]()}
	}
	return json.Unmarshal(b, (*string)(t))
}

// jsonType names a Go type as the JSON a caller sends.
func jsonType(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Map, reflect.Struct:
		return "an object"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Uint, reflect.Uint8,
		reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
		return "a number"
	}
	return t.String()
}

// strictObject decodes a JSON object member as decodeJSON does the body
// (unknown members refused), and refuses null: an UnmarshalJSON of its own
// leaves the outer decoder's settings behind.
func strictObject(b []byte, v any) error {
	if string(b) == "null" {
		return &json.UnmarshalTypeError{Value: "null", Type: reflect.TypeFor[map[string]any]()}
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

func sprintf(format string, args ...any) string { return fmt.Sprintf(format, args...) }
