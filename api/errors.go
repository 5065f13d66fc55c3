package api

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/suppressd/suppressd/schemas"
)

// Error is an error a handler returns to be shown to the caller: a status,
// a stable code, a message that is safe to show (it never repeats an
// identifier's value) and, when one field is at fault, its name.
type Error struct {
	Status  int
	Code    string
	Message string
	Field   string
	// RetryAfter is sent as Retry-After on 503s.
	RetryAfter time.Duration
	// Violations lists every problem of an invalid event.
	Violations []schemas.Violation
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

func badRequest(field, format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Code: "invalid_request", Message: sprintf(format, args...), Field: field}
}

var (
	errUnauthorized = &Error{Status: http.StatusUnauthorized, Code: "unauthorized", Message: "a valid API key is required: Authorization: Bearer <key>"}
	errNotFound     = &Error{Status: http.StatusNotFound, Code: "not_found", Message: "no such endpoint"}
	// errClientGone answers a request whose client went away: nobody reads
	// it, and its status (nginx's 499) keeps it apart in the metrics.
	errClientGone = &Error{Status: 499, Code: "client_closed_request", Message: "the client closed the request"}
)

func forbidden(scope Scope) *Error {
	return &Error{Status: http.StatusForbidden, Code: "forbidden", Message: "this API key lacks the " + string(scope) + " scope"}
}

// unavailable is the fail-closed answer: the store could not say.
func unavailable(retry time.Duration) *Error {
	return &Error{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: "the suppression store is not answering; nothing can be declared allowed, retry later", RetryAfter: retry}
}

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code       string              `json:"code"`
	Message    string              `json:"message"`
	Field      string              `json:"field,omitempty"`
	Violations []schemas.Violation `json:"violations,omitempty"`
}

// writeError is the one place errors become responses. Anything that is not
// an *Error is internal: logged, and answered with a generic message.
func writeError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	var e *Error
	if !errors.As(err, &e) {
		log.Error("internal error", "path", r.URL.Path, "err", err)
		e = &Error{Status: http.StatusInternalServerError, Code: "internal", Message: "internal error"}
	}
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(max(1, int(e.RetryAfter.Round(time.Second)/time.Second))))
	}
	writeJSON(w, e.Status, errorBody{Error: errorDetail{Code: e.Code, Message: e.Message, Field: e.Field, Violations: e.Violations}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}
