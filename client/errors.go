package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// OpError is every error a Client method returns: the operation and what
// went wrong. Its message names the client and the operation once,
// "suppressd check: HTTP 401 unauthorized: ...", and nothing under it
// says "suppressd" again; a program that names itself already (the
// suppressd command) prints Err alone.
type OpError struct {
	// Op is the operation: "check", "check batch", "links", "filter", "publish",
	// or "client" for New.
	Op  string
	Err error
}

// Error reads "suppressd <op>: <what went wrong>".
func (e *OpError) Error() string { return "suppressd " + e.Op + ": " + e.Err.Error() }

// Unwrap gives what went wrong, for errors.Is and errors.As.
func (e *OpError) Unwrap() error { return e.Err }

func opError(op string, err error) *OpError { return &OpError{Op: op, Err: err} }

// Sentinel errors, for errors.Is. An *APIError matches the one for its
// status or code, and transport failures match ErrUnavailable. Their text
// is a part of a message that OpError introduces, so it does not name the
// service.
var (
	// ErrUnavailable means the service could not answer: a 5xx (503 when
	// its store is down), a refused or broken connection, or an attempt
	// that timed out. It is the only kind of error Options.FailOpen turns
	// into "allowed".
	ErrUnavailable = errors.New("unavailable")
	// ErrInvalidRequest matches 400 invalid_request, for whole requests
	// and for single contacts of a batch.
	ErrInvalidRequest = errors.New("invalid request")
	// ErrUnauthorized matches 401: no key or an unknown key.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrForbidden matches 403: the key lacks the endpoint's scope.
	ErrForbidden = errors.New("forbidden")
	// ErrIncomplete means a filter stream ended without its summary line
	// or with "# error=...": what was written to out is only part of the
	// allowed lines and must not be used.
	ErrIncomplete = errors.New("output incomplete")
)

// Error codes of the API's error envelope.
const (
	CodeInvalidRequest       = "invalid_request"
	CodeUnauthorized         = "unauthorized"
	CodeForbidden            = "forbidden"
	CodeNotFound             = "not_found"
	CodeMethodNotAllowed     = "method_not_allowed"
	CodeTooLarge             = "too_large"
	CodeUnsupportedMediaType = "unsupported_media_type"
	CodeUnavailable          = "unavailable"
	CodeInternal             = "internal"
)

// APIError is an error answered by the server, parsed from its JSON
// envelope {"error": {"code", "message", "field"}}. Inside a batch result
// it describes one contact.
type APIError struct {
	// Status is the HTTP status, or 0 for a single contact's error inside
	// a successful batch response.
	Status int
	// Code is one of the Code constants, or empty when the body was not
	// the API's envelope (a proxy's error page, say).
	Code string
	// Message is the server's explanation; it never repeats an
	// identifier's value.
	Message string
	// Field names the field at fault, e.g. "identifiers[1].value", when
	// there is one. For batches the contact index is the caller's index in
	// BatchRequest.Contacts, not the index inside the chunk sent.
	Field string
	// RetryAfter is the server's Retry-After, when it sent one.
	RetryAfter time.Duration
	// Violations lists every problem of an invalid event (Publish).
	Violations []Violation
}

// Violation is one problem of an invalid event: where (a JSON pointer) and
// what.
type Violation struct {
	Path    string `json:"path"`
	Message string `json:"message"`
}

// Error formats the status, code and message: "HTTP 400 invalid_request:
// invalid email: no @", or for one contact of a batch "invalid_request:
// invalid email: no @".
func (e *APIError) Error() string {
	msg := e.Message
	if e.Field != "" && msg == "" {
		msg = "field " + e.Field
	}
	if e.Status == 0 {
		return fmt.Sprintf("%s: %s", e.Code, msg)
	}
	if e.Code == "" {
		return fmt.Sprintf("HTTP %d: %s", e.Status, msg)
	}
	return fmt.Sprintf("HTTP %d %s: %s", e.Status, e.Code, msg)
}

// Is lets errors.Is match the sentinel errors by status or code, so
// callers need not know which one the server filled in.
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrUnavailable:
		return e.Status >= 500 || e.Code == CodeUnavailable || e.Code == CodeInternal
	case ErrInvalidRequest:
		return e.Status == http.StatusBadRequest || e.Code == CodeInvalidRequest
	case ErrUnauthorized:
		return e.Status == http.StatusUnauthorized || e.Code == CodeUnauthorized
	case ErrForbidden:
		return e.Status == http.StatusForbidden || e.Code == CodeForbidden
	}
	return false
}

// IsUnavailable reports whether err means the service could not answer
// (see ErrUnavailable), as opposed to the request being wrong. Retrying
// later may help; fixing the request will not.
func IsUnavailable(err error) bool {
	return errors.Is(err, ErrUnavailable)
}

// wireError is the body of the error envelope, also used per contact.
type wireError struct {
	Code       string      `json:"code"`
	Message    string      `json:"message"`
	Field      string      `json:"field"`
	Violations []Violation `json:"violations"`
}

func (w *wireError) apiError(status int) *APIError {
	return &APIError{Status: status, Code: w.Code, Message: w.Message, Field: w.Field, Violations: w.Violations}
}

// maxErrorBody bounds how much of an error response is read: the envelope
// is small, and a misbehaving proxy should not make us buffer a page.
const maxErrorBody = 64 << 10

// readAPIError turns a non-200 response into an *APIError. The body is
// not quoted when it is not the envelope, since we cannot know what it
// holds.
func readAPIError(resp *http.Response) *APIError {
	var env struct {
		Error *wireError `json:"error"`
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	e := &APIError{Status: resp.StatusCode}
	if json.Unmarshal(body, &env) == nil && env.Error != nil {
		e = env.Error.apiError(resp.StatusCode)
	}
	if e.Message == "" {
		e.Message = http.StatusText(resp.StatusCode)
	}
	e.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	return e
}

// parseRetryAfter reads delay-seconds or an HTTP date; anything else is 0.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		// Cap before multiplying so a silly value cannot overflow.
		return time.Duration(min(secs, 24*3600)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
