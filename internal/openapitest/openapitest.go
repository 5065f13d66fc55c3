// Package openapitest holds handler tests to the OpenAPI description of the
// HTTP API (schemas/openapi.yaml, the machine-readable form of docs/api.md):
// a test hands it a request and the response the server gave, and it fails
// the test when either does not match the description.
//
// A handler test that uses httptest.ResponseRecorder:
//
//	spec := openapitest.New(t)
//	body := []byte(`{"identifiers":[{"type":"email","value":"a@example.org"}],"channel":"email","purpose":"marketing"}`)
//	req := httptest.NewRequest(http.MethodPost, "/v1/check", bytes.NewReader(body))
//	req.Header.Set("Content-Type", "application/json")
//	req.Header.Set("Authorization", "Bearer test-key")
//	rec := httptest.NewRecorder()
//	handler.ServeHTTP(rec, req)
//	spec.Check(t, req, body, rec.Result(), rec.Body.Bytes())
//
// or, in one call, resp, respBody := spec.Serve(t, handler, req).
//
// Validation is done by github.com/getkin/kin-openapi's openapi3filter, which
// validates OpenAPI 3.1 documents with a JSON Schema 2020-12 validator. On
// top of the description, a few rules of docs/api.md that JSON Schema cannot
// express are checked in Go (see Spec.Validate).
package openapitest

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/suppressd/suppressd/schemas"
)

// ErrRequest is wrapped by every error about a request that does not match
// the description (including one that names no operation of it).
var ErrRequest = errors.New("request does not match the OpenAPI description")

// ErrResponse is wrapped by every error about a response that does not match
// the description.
var ErrResponse = errors.New("response does not match the OpenAPI description")

// minLeakLen is the shortest identifier value looked for in error messages:
// shorter ones ("42") occur in ordinary text by chance.
const minLeakLen = 6

// Spec is the loaded description. It is safe for concurrent use.
type Spec struct {
	doc    *openapi3.T
	router routers.Router
}

// csvAsText makes kin-openapi read text/csv bodies as text. Its own
// text/csv decoder is encoding/csv, which refuses a ragged file; a
// /v1/filter/rows request may hold ragged rows (they are the malformed
// ones the server drops, and tests send them on purpose) and its answer
// may end with a summary line. The CSV rules are checked in Go instead
// (checkFilterRows). kin-openapi keeps its decoders in a registry of its
// own, so this is done once per process.
var csvAsText sync.Once

// Load parses and validates the embedded description (schemas.OpenAPI).
func Load() (*Spec, error) {
	csvAsText.Do(func() { openapi3filter.RegisterBodyDecoder("text/csv", openapi3filter.PlainBodyDecoder) })
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(schemas.OpenAPI)
	if err != nil {
		return nil, fmt.Errorf("load schemas/openapi.yaml: %w", err)
	}
	if !doc.IsOpenAPI31OrLater() {
		return nil, fmt.Errorf("schemas/openapi.yaml is OpenAPI %s, want 3.1", doc.OpenAPI)
	}
	if err := doc.Validate(loader.Context); err != nil {
		return nil, fmt.Errorf("schemas/openapi.yaml is not a valid OpenAPI document: %w", err)
	}
	router, err := legacy.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("route schemas/openapi.yaml: %w", err)
	}
	return &Spec{doc: doc, router: router}, nil
}

// New is Load for tests: it stops the test if the description does not load.
func New(t testing.TB) *Spec {
	t.Helper()
	s, err := Load()
	if err != nil {
		t.Fatalf("openapitest: %v", err)
	}
	return s
}

// Operations lists the operations of the description, "METHOD /path",
// sorted.
func (s *Spec) Operations() []string {
	var out []string
	for path, item := range s.doc.Paths.Map() {
		for method := range item.Operations() {
			out = append(out, method+" "+path)
		}
	}
	slices.Sort(out)
	return out
}

// Check validates a request and the response to it (see Validate) and marks
// the test failed, with every mismatch, if they do not match the description.
func (s *Spec) Check(t testing.TB, req *http.Request, reqBody []byte, resp *http.Response, respBody []byte) {
	t.Helper()
	if err := s.Validate(req, reqBody, resp, respBody); err != nil {
		t.Errorf("openapitest: %s %s: %v", req.Method, req.URL.Path, err)
	}
}

// CheckResponse is Check for a request that is deliberately invalid (a test
// of a 400, 401, 413 or 415): it validates the response only (see
// ValidateResponse).
func (s *Spec) CheckResponse(t testing.TB, req *http.Request, reqBody []byte, resp *http.Response, respBody []byte) {
	t.Helper()
	if err := s.ValidateResponse(req, reqBody, resp, respBody); err != nil {
		t.Errorf("openapitest: %s %s: %v", req.Method, req.URL.Path, err)
	}
}

// Serve sends req to h through an httptest.ResponseRecorder, Checks the
// request and the response, and returns the response and its body (also
// left readable in resp.Body).
func (s *Spec) Serve(t testing.TB, h http.Handler, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	reqBody, err := readBody(&req.Body)
	if err != nil {
		t.Fatalf("openapitest: read request body: %v", err)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	resp := rec.Result()
	respBody, err := readBody(&resp.Body)
	if err != nil {
		t.Fatalf("openapitest: read response body: %v", err)
	}
	s.Check(t, req, reqBody, resp, respBody)
	return resp, respBody
}

// Validate checks a request and the response to it against the description
// and returns every mismatch, joined; each wraps ErrRequest or ErrResponse.
//
// reqBody and respBody are the bodies as sent; when nil, req.Body and
// resp.Body are read instead (and replaced with readers of the same bytes).
// A gzip Content-Encoding is undone before validation. req is not modified
// otherwise, and may already have been served (its Body drained).
//
// The request must name an operation of the description, carry
// "Authorization: Bearer <key>" where the operation has a security
// requirement (which scope the key has cannot be seen), and match its
// parameters and body schema. The response must have a status documented
// for the operation, its documented headers (Retry-After on a 503) and a
// Content-Type and body that match the documented content.
//
// Rules of docs/api.md that JSON Schema cannot express are checked too:
//   - no error message or field (of an error response or of a batch result)
//     contains an identifier value of the request (values of at least 6
//     bytes, shorter ones occur by chance);
//   - a /v1/check/batch answer has one result per contact, echoing each
//     contact's ref;
//   - a /v1/subjects/lookup answer's keys point at identifiers of the
//     request;
//   - a /v1/links answer has one result per recipient, echoing each
//     recipient's ref, and a result's url and mailto are the ones in its
//     List-Unsubscribe;
//   - a /v1/filter answer echoes only well-formed lines of the request
//     (compared without surrounding spaces), in its order, as many as the
//     summary line's allowed count, and carries
//     the count trailers (Suppressd-Total, ...) with the summary's values,
//     or none after "# error=unavailable"; its checkpoint lines
//     (progress=true) count the lines echoed before them;
//   - a /v1/filter/rows answer starts with the request's header row, then
//     echoes well-formed rows of the request byte for byte, in its order,
//     as many as the allowed count; the summary line comes only when asked
//     for, the count trailers always, the malformed rows' lines are lines
//     where rows of the request start that were not echoed, and an error
//     message never repeats a value of the request's rows.
//
// A 404 to a path, or a 405 to a method, that the description lacks is
// valid when its body is the Error envelope with code not_found or
// method_not_allowed: docs/api.md promises them, OpenAPI cannot list them.
func (s *Spec) Validate(req *http.Request, reqBody []byte, resp *http.Response, respBody []byte) error {
	reqBody, err := bodyOf(reqBody, &req.Body)
	if err != nil {
		return fmt.Errorf("%w: read body: %v", ErrRequest, err)
	}
	return errors.Join(s.validateRequest(req, reqBody), s.ValidateResponse(req, reqBody, resp, respBody))
}

// ValidateRequest checks a request alone (see Validate).
func (s *Spec) ValidateRequest(req *http.Request, reqBody []byte) error {
	reqBody, err := bodyOf(reqBody, &req.Body)
	if err != nil {
		return fmt.Errorf("%w: read body: %v", ErrRequest, err)
	}
	return s.validateRequest(req, reqBody)
}

// ValidateResponse checks the response to a request, without checking the
// request itself: for tests that send invalid requests on purpose. reqBody
// (which may be nil) feeds the rules that relate the two (see Validate).
func (s *Spec) ValidateResponse(req *http.Request, reqBody []byte, resp *http.Response, respBody []byte) error {
	reqBody, err := bodyOf(reqBody, &req.Body)
	if err != nil {
		return fmt.Errorf("%w: read request body: %v", ErrResponse, err)
	}
	respBody, err = bodyOf(respBody, &resp.Body)
	if err != nil {
		return fmt.Errorf("%w: read body: %v", ErrResponse, err)
	}
	if resp.Header.Get("Content-Encoding") == "gzip" {
		if respBody, err = gunzip(respBody); err != nil {
			return fmt.Errorf("%w: Content-Encoding is gzip, but the body is not: %v", ErrResponse, err)
		}
	}
	reqBody, _ = requestBodyDecoded(req, reqBody) // a bad gzip request body is validateRequest's to report
	fail := func(err error) error { return fmt.Errorf("%w: %d: %v", ErrResponse, resp.StatusCode, err) }

	r := cloneWithBody(req, reqBody)
	route, params, err := s.router.FindRoute(r)
	if err != nil {
		if err := s.validateUnrouted(err, resp, respBody); err != nil {
			return fail(err)
		}
		return nil
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{
			Request: r, PathParams: params, Route: route, Options: requestOptions(),
		},
		Status:  resp.StatusCode,
		Header:  resp.Header,
		Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	in.SetBodyBytes(respBody)
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		return fail(err)
	}
	if err := extraChecks(req, route.Path, reqBody, resp, respBody); err != nil {
		return fail(err)
	}
	return nil
}

func (s *Spec) validateRequest(req *http.Request, body []byte) error {
	fail := func(err error) error { return fmt.Errorf("%w: %v", ErrRequest, err) }
	body, err := requestBodyDecoded(req, body)
	if err != nil {
		return fail(err)
	}
	r := cloneWithBody(req, body)
	route, params, err := s.router.FindRoute(r)
	if err != nil {
		return fail(fmt.Errorf("no operation %s %s in the description: %v", req.Method, req.URL.Path, err))
	}
	in := &openapi3filter.RequestValidationInput{Request: r, PathParams: params, Route: route, Options: requestOptions()}
	if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
		return fail(err)
	}
	return nil
}

func requestOptions() *openapi3filter.Options {
	return &openapi3filter.Options{
		MultiError:                        true,
		SkipSettingDefaults:               true,
		RejectWhenRequestBodyNotSpecified: true,
		AuthenticationFunc:                bearerPresent,
	}
}

// bearerPresent accepts a request that carries a bearer token: which scopes
// the key has is the server's business, not the description's.
func bearerPresent(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	if in.SecurityScheme.Type != "http" || !strings.EqualFold(in.SecurityScheme.Scheme, "bearer") {
		return in.NewError(fmt.Errorf("unsupported security scheme %q", in.SecuritySchemeName))
	}
	scheme, token, _ := strings.Cut(in.RequestValidationInput.Request.Header.Get("Authorization"), " ")
	if !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		return in.NewError(errors.New(`no "Authorization: Bearer <key>" header`))
	}
	return nil
}

// validateUnrouted accepts the 404 and 405 that docs/api.md promises for
// paths and methods the description does not have.
func (s *Spec) validateUnrouted(routeErr error, resp *http.Response, body []byte) error {
	var re *routers.RouteError
	if !errors.As(routeErr, &re) {
		return routeErr
	}
	var status int
	var code string
	switch re.Reason {
	case routers.ErrPathNotFound.Error():
		status, code = http.StatusNotFound, "not_found"
	case routers.ErrMethodNotAllowed.Error():
		status, code = http.StatusMethodNotAllowed, "method_not_allowed"
	default:
		return routeErr
	}
	if resp.StatusCode != status {
		return fmt.Errorf("the description has no such operation (%v), and the status is not %d", routeErr, status)
	}
	if ct := resp.Header.Get("Content-Type"); !isJSON(ct) {
		return fmt.Errorf("Content-Type %q, want application/json", ct)
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		return fmt.Errorf("body is not JSON: %v", err)
	}
	if err := s.doc.Components.Schemas["Error"].Value.VisitJSON(v, openapi3.EnableJSONSchema2020(), openapi3.VisitAsResponse()); err != nil {
		return fmt.Errorf("body doesn't match schema Error: %v", err)
	}
	if got := v.(map[string]any)["error"].(map[string]any)["code"]; got != code {
		return fmt.Errorf("error code %q, want %q with status %d", got, code, status)
	}
	return nil
}

// extraChecks are the rules of docs/api.md that the description cannot
// express. The body has already matched its schema.
func extraChecks(req *http.Request, path string, reqBody []byte, resp *http.Response, body []byte) error {
	switch {
	case path == "/v1/filter" && resp.StatusCode == http.StatusOK:
		return checkFilter(reqBody, resp, body)
	case path == "/v1/filter/rows" && resp.StatusCode == http.StatusOK:
		return checkFilterRows(req, reqBody, resp, body)
	case path == "/v1/filter/rows":
		return checkRowsError(reqBody, body)
	}
	if !isJSON(resp.Header.Get("Content-Type")) {
		return nil
	}
	var reqv, respv any
	_ = json.Unmarshal(reqBody, &reqv) // a request that is not JSON has no identifiers to look for
	if err := json.Unmarshal(body, &respv); err != nil {
		return fmt.Errorf("body is not JSON: %v", err)
	}
	var errs []error
	if vals := identifierValues(reqv); len(vals) > 0 {
		for _, text := range errorTexts(respv) {
			for _, v := range vals {
				if strings.Contains(text, v) {
					errs = append(errs, fmt.Errorf("an error message or field repeats identifier value %q (docs/api.md: messages never repeat an identifier's value)", v))
				}
			}
		}
	}
	if resp.StatusCode == http.StatusOK && reqv != nil {
		switch path {
		case "/v1/check/batch":
			errs = append(errs, checkBatch(reqv, respv))
		case "/v1/subjects/lookup":
			errs = append(errs, checkLookup(reqv, respv))
		case "/v1/links":
			errs = append(errs, checkLinks(reqv, respv))
		}
	}
	return errors.Join(errs...)
}

func checkBatch(reqv, respv any) error {
	contacts, _ := field(reqv, "contacts").([]any)
	results, _ := field(respv, "results").([]any)
	if len(results) != len(contacts) {
		return fmt.Errorf("%d results for %d contacts: want one per contact, in request order", len(results), len(contacts))
	}
	var errs []error
	for i := range contacts {
		want, ok := field(contacts[i], "ref").(string)
		if !ok {
			continue
		}
		if got := field(results[i], "ref"); got != want {
			errs = append(errs, fmt.Errorf("results[%d].ref is %v, want contacts[%d].ref %q echoed in request order", i, got, i, want))
		}
	}
	return errors.Join(errs...)
}

func checkLinks(reqv, respv any) error {
	recipients, _ := field(reqv, "recipients").([]any)
	results, _ := field(respv, "results").([]any)
	if len(results) != len(recipients) {
		return fmt.Errorf("%d results for %d recipients: want one per recipient, in request order", len(results), len(recipients))
	}
	var errs []error
	for i := range recipients {
		if want, ok := field(recipients[i], "ref").(string); ok {
			if got := field(results[i], "ref"); got != want {
				errs = append(errs, fmt.Errorf("results[%d].ref is %v, want recipients[%d].ref %q echoed in request order", i, got, i, want))
			}
		}
		lu, _ := field(field(results[i], "headers"), "List-Unsubscribe").(string)
		if lu == "" {
			continue
		}
		want := "<" + fmt.Sprint(field(results[i], "url")) + ">"
		if m, ok := field(results[i], "mailto").(string); ok {
			want += ", <" + m + ">"
		}
		if lu != want {
			errs = append(errs, fmt.Errorf("results[%d]: List-Unsubscribe is not <url> (and <mailto>) of the result", i))
		}
	}
	return errors.Join(errs...)
}

func checkLookup(reqv, respv any) error {
	ids, _ := field(reqv, "identifiers").([]any)
	keys, _ := field(respv, "keys").([]any)
	var errs []error
	for i, k := range keys {
		n, ok := field(k, "identifier").(float64)
		if !ok || int(n) >= len(ids) {
			errs = append(errs, fmt.Errorf("keys[%d].identifier is %v, but the request has %d identifiers", i, field(k, "identifier"), len(ids)))
		}
	}
	return errors.Join(errs...)
}

var (
	hashLine    = regexp.MustCompile(`^([0-9a-fA-F]{64}|[A-Za-z0-9+/_-]{43}=?)$`)
	summaryLine = regexp.MustCompile(`^# total=([0-9]+) allowed=([0-9]+) suppressed=([0-9]+) malformed=([0-9]+)$`)
	trailers    = []string{"Suppressd-Total", "Suppressd-Allowed", "Suppressd-Suppressed", "Suppressd-Malformed"}
	// checkpointLine is a progress=true checkpoint: counts so far, how far
	// the input is answered, and the bytes echoed before it.
	checkpointLine = regexp.MustCompile(`^# at total=([0-9]+) allowed=([0-9]+) suppressed=([0-9]+) malformed=([0-9]+) in_bytes=([0-9]+) in_lines=([0-9]+) out_bytes=([0-9]+)( malformed_lines=[0-9]+(,[0-9]+)*)?$`)
	rowsSummary    = regexp.MustCompile(`^# total=([0-9]+) allowed=([0-9]+) suppressed=([0-9]+) malformed=([0-9]+)( malformed_lines=([0-9]+(,[0-9]+)*))?$`)
)

// checkFilter checks a 200 answer of /v1/filter, whose body has matched
// the schema's pattern (it ends with a summary line).
func checkFilter(reqBody []byte, resp *http.Response, body []byte) error {
	lines := splitLines(string(body))
	if len(lines) == 0 {
		return errors.New("no summary line")
	}
	summary, rest := lines[len(lines)-1], lines[:len(lines)-1]
	var (
		errs   []error
		echoed []string
		sent   int
	)
	for i, l := range rest {
		if m := checkpointLine.FindStringSubmatch(l); m != nil {
			if n, _ := strconv.Atoi(m[2]); n != len(echoed) {
				errs = append(errs, fmt.Errorf("checkpoint %q after %d echoed lines", l, len(echoed)))
			}
			if n, _ := strconv.Atoi(m[7]); n != sent {
				errs = append(errs, fmt.Errorf("checkpoint %q after %d bytes of echoed lines", l, sent))
			}
			continue
		}
		if !hashLine.MatchString(l) {
			errs = append(errs, fmt.Errorf("line %d is not a SHA-256 in hex or base64: malformed lines are never echoed", i+1))
		}
		echoed = append(echoed, l)
		sent += len(l) + 1
	}
	if reqBody != nil {
		in := splitLines(string(reqBody))
		j := 0
		for _, l := range echoed {
			for j < len(in) && in[j] != l {
				j++
			}
			if j == len(in) {
				errs = append(errs, fmt.Errorf("line %q is not a line of the request, or not in input order", l))
				break
			}
			j++
		}
	}
	if m := summaryLine.FindStringSubmatch(summary); m != nil {
		if n, _ := strconv.Atoi(m[2]); n != len(echoed) {
			errs = append(errs, fmt.Errorf("summary says allowed=%d, but %d lines are echoed", n, len(echoed)))
		}
		for i, name := range trailers {
			if got := resp.Trailer.Get(name); got != m[i+1] {
				errs = append(errs, fmt.Errorf("trailer %s is %q, want %q as in the summary line", name, got, m[i+1]))
			}
		}
	} else { // "# error=unavailable" or "# error=read"
		for _, name := range trailers {
			if got := resp.Trailer.Get(name); got != "" {
				errs = append(errs, fmt.Errorf("trailer %s is %q after a mid-stream failure, want none", name, got))
			}
		}
	}
	return errors.Join(errs...)
}

// splitLines splits text into its non-blank lines, without their line end
// or surrounding spaces: whether "exactly as it was sent" covers spaces
// around a hash is not said, and the server trims them.
func splitLines(s string) []string {
	var out []string
	for l := range strings.Lines(s) {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// identifierValues returns the values of the identifiers of a check, batch,
// lookup or links request.
func identifierValues(reqv any) []string {
	var out []string
	add := func(ids any) {
		list, _ := ids.([]any)
		for _, id := range list {
			if v, ok := field(id, "value").(string); ok && len(v) >= minLeakLen {
				out = append(out, v)
			}
		}
	}
	add(field(reqv, "identifiers"))
	contacts, _ := field(reqv, "contacts").([]any)
	for _, c := range contacts {
		add(field(c, "identifiers"))
	}
	recipients, _ := field(reqv, "recipients").([]any)
	for _, r := range recipients {
		add([]any{field(r, "identifier")})
	}
	return out
}

// errorTexts returns the messages and fields of an error response or of the
// errors of a batch or links answer.
func errorTexts(respv any) []string {
	var out []string
	add := func(e any) {
		for _, k := range []string{"message", "field"} {
			if s, ok := field(e, k).(string); ok {
				out = append(out, s)
			}
		}
	}
	add(field(respv, "error"))
	results, _ := field(respv, "results").([]any)
	for _, r := range results {
		add(field(r, "error"))
	}
	return out
}

// field returns v[name] if v is a JSON object.
func field(v any, name string) any {
	m, _ := v.(map[string]any)
	return m[name]
}

func isJSON(contentType string) bool {
	mt, _, _ := strings.Cut(contentType, ";")
	return strings.EqualFold(strings.TrimSpace(mt), "application/json")
}

// requestBodyDecoded undoes a request's gzip Content-Encoding.
func requestBodyDecoded(req *http.Request, body []byte) ([]byte, error) {
	if !strings.EqualFold(req.Header.Get("Content-Encoding"), "gzip") || len(body) == 0 {
		return body, nil
	}
	b, err := gunzip(body)
	if err != nil {
		return nil, fmt.Errorf("Content-Encoding is gzip, but the body is not: %v", err)
	}
	return b, nil
}

func gunzip(b []byte) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	return io.ReadAll(zr)
}

// cloneWithBody returns a copy of req that reads body.
func cloneWithBody(req *http.Request, body []byte) *http.Request {
	r := req.Clone(context.Background())
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	return r
}

// bodyOf returns b, or when b is nil reads *rc and replaces it with a
// reader of the same bytes.
func bodyOf(b []byte, rc *io.ReadCloser) ([]byte, error) {
	if b != nil {
		return b, nil
	}
	return readBody(rc)
}

func readBody(rc *io.ReadCloser) ([]byte, error) {
	if *rc == nil || *rc == http.NoBody {
		return nil, nil
	}
	b, err := io.ReadAll(*rc)
	_ = (*rc).Close()
	*rc = io.NopCloser(bytes.NewReader(b))
	return b, err
}
