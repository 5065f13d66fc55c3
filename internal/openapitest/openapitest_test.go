package openapitest

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers/legacy"
	"github.com/stretchr/testify/require"
)

var (
	specOnce sync.Once
	spec     *Spec
	specErr  error
)

func loadSpec(t *testing.T) *Spec {
	t.Helper()
	specOnce.Do(func() { spec, specErr = Load() })
	require.NoError(t, specErr)
	return spec
}

// jsonRequest is a request with a JSON body and a bearer key.
func jsonRequest(method, path, body string) (*http.Request, []byte) {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer test-key")
	return req, []byte(body)
}

// response is a response as a client sees it.
func response(status int, contentType, body string, header ...string) (*http.Response, []byte) {
	h := http.Header{}
	if contentType != "" {
		h.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		h.Set(header[i], header[i+1])
	}
	return &http.Response{
		StatusCode: status, Status: http.StatusText(status), Header: h, Trailer: http.Header{},
		Body: io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body)),
	}, []byte(body)
}

const (
	checkReq     = `{"namespace":"default","identifiers":[{"type":"email","value":"alice@example.org"}],"channel":"email","purpose":"marketing","topic":"newsletter"}`
	suppressed   = `{"scope":"topic:newsletter","reason":"unsubscribe","origin":"recipient","source":"/unsubscribe-link","since":"2026-11-28T10:00:00Z"}`
	checkBlocked = `{"allowed":false,"suppression":` + suppressed + `}`
)

// validate runs Validate on a JSON request and a JSON response.
func validate(t *testing.T, method, path, reqBody string, status int, respBody string, header ...string) error {
	t.Helper()
	req, rb := jsonRequest(method, path, reqBody)
	resp, body := response(status, "application/json", respBody, header...)
	return loadSpec(t).Validate(req, rb, resp, body)
}

// requireMismatch asserts that err reports a mismatch on side (ErrRequest or
// ErrResponse) whose text contains every one of want.
func requireMismatch(t *testing.T, err error, side error, want ...string) {
	t.Helper()
	require.Error(t, err)
	require.ErrorIs(t, err, side)
	for _, w := range want {
		require.Contains(t, err.Error(), w)
	}
}

func TestSpecLoads(t *testing.T) {
	s := loadSpec(t)
	require.Equal(t, "3.1.0", s.doc.OpenAPI)
	require.True(t, s.doc.IsOpenAPI31OrLater())
	require.Equal(t, "suppressd API", s.doc.Info.Title)
	require.NotEmpty(t, s.doc.Info.Version)
	require.NotEmpty(t, s.doc.Info.Description)

	// Every /v1 operation requires a bearer key with its scope, and says so
	// in its description; the operations endpoints need none.
	scopes := map[string]string{
		"POST /v1/check": "check", "POST /v1/check/batch": "check",
		"POST /v1/filter": "filter", "POST /v1/filter/rows": "filter", "POST /v1/subjects/lookup": "admin",
		"POST /v1/events": "publish", "POST /v1/import": "admin",
		"POST /v1/links": "links",
	}
	for path, item := range s.doc.Paths.Map() {
		for method, op := range item.Operations() {
			name := method + " " + path
			require.NotNil(t, op.Security, name)
			if scope, ok := scopes[name]; ok {
				require.Len(t, *op.Security, 1, name)
				require.Equal(t, []string{scope}, (*op.Security)[0]["bearer"], name)
				require.Contains(t, op.Description, "Required scope: `"+scope+"`", name)
				for _, code := range []string{"400", "401", "403", "415", "500"} {
					require.NotNil(t, op.Responses.Value(code), "%s has no %s response", name, code)
				}
				if name != "POST /v1/filter" && name != "POST /v1/filter/rows" {
					require.NotNil(t, op.Responses.Value("413"), "%s has no 413 response", name)
				}
				if name == "POST /v1/links" {
					// Minting asks neither the store nor Kafka: it never
					// answers 503.
					require.Nil(t, op.Responses.Value("503"), name)
					continue
				}
				require.NotNil(t, op.Responses.Value("503").Value.Headers["Retry-After"], name)
			} else {
				require.Empty(t, *op.Security, name)
			}
		}
	}
}

// TestEveryDocumentedOperationIsDescribed holds the description to
// docs/api.md: every "## GET /x" or "## POST /x" heading there is an
// operation here, and the other way round.
func TestEveryDocumentedOperationIsDescribed(t *testing.T) {
	md, err := os.ReadFile("../../docs/api.md")
	require.NoError(t, err)
	heading := regexp.MustCompile(`(?m)^## (.*)$`)
	op := regexp.MustCompile(`\b(GET|POST|PUT|PATCH|DELETE) (/[^\s,()]*)`)
	var documented []string
	for _, h := range heading.FindAllStringSubmatch(string(md), -1) {
		for _, m := range op.FindAllStringSubmatch(h[1], -1) {
			documented = append(documented, m[1]+" "+m[2])
		}
	}
	slices.Sort(documented)
	require.Equal(t, []string{
		"GET /healthz", "GET /metrics", "GET /readyz",
		"POST /v1/check", "POST /v1/check/batch", "POST /v1/events", "POST /v1/filter", "POST /v1/filter/rows", "POST /v1/import", "POST /v1/links", "POST /v1/subjects/lookup",
	}, documented, "the headings of docs/api.md changed: update this test and schemas/openapi.yaml")
	require.Equal(t, documented, loadSpec(t).Operations())
}

func TestValidCheckPasses(t *testing.T) {
	require.NoError(t, validate(t, "POST", "/v1/check", checkReq, 200, `{"allowed":true}`))
	require.NoError(t, validate(t, "POST", "/v1/check", checkReq, 200, checkBlocked))
	// Optional fields may be left out; a charset on the Content-Type is fine.
	req, rb := jsonRequest("POST", "/v1/check", `{"identifiers":[{"type":"phone","value":"+1 415 555 0100"},{"type":"user_id","value":"42"}],"channel":"sms","purpose":"transactional"}`)
	resp, body := response(200, "application/json; charset=utf-8", `{"allowed":true}`)
	require.NoError(t, loadSpec(t).Validate(req, rb, resp, body))
}

func TestBodiesAreReadWhenNotGiven(t *testing.T) {
	req, _ := jsonRequest("POST", "/v1/check", checkReq)
	resp, _ := response(200, "application/json", checkBlocked)
	require.NoError(t, loadSpec(t).Validate(req, nil, resp, nil))
	// Both bodies are still readable afterwards.
	b, err := io.ReadAll(req.Body)
	require.NoError(t, err)
	require.Equal(t, checkReq, string(b))
	b, err = io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, checkBlocked, string(b))
}

func TestMissingRequiredResponseFieldFails(t *testing.T) {
	err := validate(t, "POST", "/v1/check", checkReq, 200, `{"suppression":`+suppressed+`}`)
	requireMismatch(t, err, ErrResponse, "allowed")
	require.NotErrorIs(t, err, ErrRequest)

	// A suppression without its reason.
	err = validate(t, "POST", "/v1/check", checkReq, 200,
		`{"allowed":false,"suppression":{"scope":"*","origin":"recipient","since":"2026-11-28T10:00:00Z"}}`)
	requireMismatch(t, err, ErrResponse, "reason")

	// allowed:false must say which suppression stops the send...
	err = validate(t, "POST", "/v1/check", checkReq, 200, `{"allowed":false}`)
	requireMismatch(t, err, ErrResponse, "suppression")
	// ... and allowed:true must not carry one.
	err = validate(t, "POST", "/v1/check", checkReq, 200, `{"allowed":true,"suppression":`+suppressed+`}`)
	requireMismatch(t, err, ErrResponse)

	// An error without its message.
	err = validate(t, "POST", "/v1/check", checkReq, 400, `{"error":{"code":"invalid_request"}}`)
	requireMismatch(t, err, ErrResponse, "message")
}

func TestUndocumentedStatusFails(t *testing.T) {
	err := validate(t, "POST", "/v1/check", checkReq, http.StatusTeapot, `{"error":{"code":"internal","message":"teapot"}}`)
	requireMismatch(t, err, ErrResponse, "418", "status is not supported")

	// 413 is documented for the JSON endpoints, not for the streamed filter.
	req := filterRequest("/v1/filter?type=email_sha256", hexA+"\n", false)
	resp, body := response(413, "application/json", `{"error":{"code":"too_large","message":"too large"}}`)
	requireMismatch(t, loadSpec(t).ValidateResponse(req, nil, resp, body), ErrResponse, "413", "status is not supported")

	// /healthz answers 200 only.
	req = httptest.NewRequest("GET", "/healthz", nil)
	resp, body = response(503, "application/json", `{"status":"unavailable"}`)
	requireMismatch(t, loadSpec(t).Validate(req, nil, resp, body), ErrResponse, "503")
}

func TestUnknownRequestFieldFails(t *testing.T) {
	err := validate(t, "POST", "/v1/check",
		`{"identifiers":[{"type":"email","value":"alice@example.org"}],"channel":"email","purpose":"marketing","topik":"newsletter"}`,
		200, `{"allowed":true}`)
	requireMismatch(t, err, ErrRequest, "topik")
	require.NotErrorIs(t, err, ErrResponse)

	// Unknown fields of nested request objects too.
	err = validate(t, "POST", "/v1/check/batch",
		`{"channel":"email","purpose":"marketing","contacts":[{"ref":"r-1","identifiers":[{"type":"email","value":"a@example.org","hashed":false}]}]}`,
		200, `{"results":[{"ref":"r-1","allowed":true}]}`)
	requireMismatch(t, err, ErrRequest, "hashed")
}

func TestWrongEnumFails(t *testing.T) {
	// In a request: an unknown identifier type, channel or purpose.
	err := validate(t, "POST", "/v1/check",
		`{"identifiers":[{"type":"fax","value":"+1 415 555 0100"}],"channel":"email","purpose":"marketing"}`,
		200, `{"allowed":true}`)
	requireMismatch(t, err, ErrRequest, "fax")
	err = validate(t, "POST", "/v1/check",
		`{"identifiers":[{"type":"email","value":"alice@example.org"}],"channel":"carrier_pigeon","purpose":"marketing"}`,
		200, `{"allowed":true}`)
	requireMismatch(t, err, ErrRequest, "carrier_pigeon")

	// In a response: an unknown reason, origin or scope.
	for _, bad := range []string{
		strings.Replace(checkBlocked, `"unsubscribe"`, `"bored"`, 1),
		strings.Replace(checkBlocked, `"recipient"`, `"martian"`, 1),
		strings.Replace(checkBlocked, `"topic:newsletter"`, `"topic:"`, 1),
	} {
		requireMismatch(t, validate(t, "POST", "/v1/check", checkReq, 200, bad), ErrResponse)
	}

	// An error code that is not in the list, or not the one of its status.
	err = validate(t, "POST", "/v1/check", checkReq, 400, `{"error":{"code":"oops","message":"bad"}}`)
	requireMismatch(t, err, ErrResponse, "oops")
	err = validate(t, "POST", "/v1/check", checkReq, 403, `{"error":{"code":"unauthorized","message":"no"}}`)
	requireMismatch(t, err, ErrResponse, "unauthorized")
}

func TestRequestNeedsBearerKey(t *testing.T) {
	req, rb := jsonRequest("POST", "/v1/check", checkReq)
	req.Header.Del("Authorization")
	resp, body := response(200, "application/json", `{"allowed":true}`)
	requireMismatch(t, loadSpec(t).Validate(req, rb, resp, body), ErrRequest, "Authorization")

	// A test of the 401 itself checks the response only.
	resp, body = response(401, "application/json", `{"error":{"code":"unauthorized","message":"no API key"}}`)
	require.NoError(t, loadSpec(t).ValidateResponse(req, rb, resp, body))

	// The operations endpoints need no key.
	req = httptest.NewRequest("GET", "/healthz", nil)
	resp, body = response(200, "application/json", `{"status":"ok"}`)
	require.NoError(t, loadSpec(t).Validate(req, nil, resp, body))
}

func TestRequestContentTypeChecked(t *testing.T) {
	req, rb := jsonRequest("POST", "/v1/check", checkReq)
	req.Header.Set("Content-Type", "text/plain")
	resp, body := response(415, "application/json", `{"error":{"code":"unsupported_media_type","message":"want application/json"}}`)
	requireMismatch(t, loadSpec(t).Validate(req, rb, resp, body), ErrRequest, "text/plain")
	require.NoError(t, loadSpec(t).ValidateResponse(req, rb, resp, body))
}

func TestUnavailableNeedsRetryAfter(t *testing.T) {
	const unavailable = `{"error":{"code":"unavailable","message":"store did not answer in time"}}`
	requireMismatch(t, validate(t, "POST", "/v1/check", checkReq, 503, unavailable), ErrResponse, "Retry-After")
	requireMismatch(t, validate(t, "POST", "/v1/check", checkReq, 503, unavailable, "Retry-After", "soon"), ErrResponse, "Retry-After")
	require.NoError(t, validate(t, "POST", "/v1/check", checkReq, 503, unavailable, "Retry-After", "1"))
}

func TestResponseContentTypeChecked(t *testing.T) {
	req, rb := jsonRequest("POST", "/v1/check", checkReq)
	resp, body := response(200, "text/plain; charset=utf-8", `{"allowed":true}`)
	requireMismatch(t, loadSpec(t).Validate(req, rb, resp, body), ErrResponse, "text/plain")
	resp, body = response(200, "", `{"allowed":true}`)
	requireMismatch(t, loadSpec(t).Validate(req, rb, resp, body), ErrResponse, "Content-Type")
}

func TestErrorMessageMustNotRepeatIdentifier(t *testing.T) {
	req := `{"identifiers":[{"type":"email","value":"alice@example"}],"channel":"email","purpose":"marketing"}`
	err := validate(t, "POST", "/v1/check", req, 400,
		`{"error":{"code":"invalid_request","message":"invalid email \"alice@example\": no TLD","field":"identifiers[0].value"}}`)
	requireMismatch(t, err, ErrResponse, "repeats identifier value")
	require.NoError(t, validate(t, "POST", "/v1/check", req, 400,
		`{"error":{"code":"invalid_request","message":"invalid email: no TLD","field":"identifiers[0].value"}}`))

	// In a batch result's error too.
	batch := `{"channel":"email","purpose":"marketing","contacts":[{"identifiers":[{"type":"email","value":"bob-at-example.org"}]}]}`
	err = validate(t, "POST", "/v1/check/batch", batch, 200,
		`{"results":[{"allowed":false,"error":{"code":"invalid_request","message":"bob-at-example.org has no @"}}]}`)
	requireMismatch(t, err, ErrResponse, "repeats identifier value")
}

func TestBatch(t *testing.T) {
	const req = `{"namespace":"default","channel":"email","purpose":"marketing","topic":"newsletter","contacts":[
		{"ref":"r-1","identifiers":[{"type":"email","value":"a@example.org"}]},
		{"ref":"r-2","identifiers":[{"type":"email","value":"b@example.org"}]},
		{"ref":"r-3","identifiers":[{"type":"email","value":"c-example.org"}]},
		{"identifiers":[{"type":"maid","value":"6d92078a-8246-4ba4-ae5b-76104861e7dc"}]}]}`
	const ok = `{"results":[{"ref":"r-1","allowed":true},
		{"ref":"r-2","allowed":false,"suppression":` + suppressed + `},
		{"ref":"r-3","allowed":false,"error":{"code":"invalid_request","message":"invalid email: no @","field":"contacts[2].identifiers[0].value"}},
		{"allowed":true}]}`
	require.NoError(t, validate(t, "POST", "/v1/check/batch", req, 200, ok))

	// One result per contact, in request order.
	err := validate(t, "POST", "/v1/check/batch", req, 200, `{"results":[{"ref":"r-1","allowed":true}]}`)
	requireMismatch(t, err, ErrResponse, "1 results for 4 contacts")
	swapped := strings.NewReplacer(`"ref":"r-1"`, `"ref":"r-2"`, `"ref":"r-2"`, `"ref":"r-1"`).Replace(ok)
	requireMismatch(t, validate(t, "POST", "/v1/check/batch", req, 200, swapped), ErrResponse, "results[0].ref")

	// allowed:false with neither a suppression nor an error, or with both.
	for _, bad := range []string{
		`{"ref":"r-1","allowed":false}`,
		`{"ref":"r-1","allowed":false,"suppression":` + suppressed + `,"error":{"code":"invalid_request","message":"x"}}`,
	} {
		body := `{"results":[` + bad + `,{"ref":"r-2","allowed":true},{"ref":"r-3","allowed":true},{"allowed":true}]}`
		requireMismatch(t, validate(t, "POST", "/v1/check/batch", req, 200, body), ErrResponse)
	}

	// Limits: at most 16 identifiers a contact, and the batch is lenient
	// about them: the contact gets the error, the batch is answered.
	ids := strings.Repeat(`{"type":"user_id","value":"u"},`, 17)
	tooMany := `{"channel":"email","purpose":"marketing","contacts":[{"identifiers":[` + strings.TrimSuffix(ids, ",") + `]}]}`
	require.NoError(t, validate(t, "POST", "/v1/check/batch", tooMany, 200,
		`{"results":[{"allowed":false,"error":{"code":"too_large","message":"contacts[0].identifiers: at most 16 identifiers per contact, got 17","field":"contacts[0].identifiers"}}]}`))
	// Its JSON types are the batch's: a number for a value is a 400.
	requireMismatch(t, validate(t, "POST", "/v1/check/batch", `{"channel":"email","purpose":"marketing","contacts":[{"identifiers":[{"type":"email","value":7}]}]}`, 200, `{"results":[{"allowed":true}]}`), ErrRequest)
}

func TestLinks(t *testing.T) {
	const req = `{"namespace":"acme","scopes":["topic:newsletter"],"campaign_id":"c-1","recipients":[
		{"ref":"r-1","identifier":{"type":"email","value":"alice@example.org"}},
		{"ref":"r-2","identifier":{"type":"phone","value":"+14155550100"},"scopes":["sms"],"list_id":"l-1"},
		{"identifier":{"type":"email","value":"bob-at-example.org"}}]}`
	const tok = "k1.AbC-_9"
	const result = `"headers":{"List-Unsubscribe":"<https://mail.example.org/u/` + tok + `>, <mailto:unsubscribe@example.org?subject=unsubscribe%20` + tok + `>",
		"List-Unsubscribe-Post":"List-Unsubscribe=One-Click"},"url":"https://mail.example.org/u/` + tok + `","mailto":"mailto:unsubscribe@example.org?subject=unsubscribe%20` + tok + `"`
	const bad = `{"error":{"code":"invalid_request","message":"recipients[2].identifier.value: invalid email: no @","field":"recipients[2].identifier.value"}}`
	ok := `{"expires_at":"2027-02-26T10:00:00Z","results":[{"ref":"r-1",` + result + `},{"ref":"r-2",` + result + `},` + bad + `]}`
	require.NoError(t, validate(t, "POST", "/v1/links", req, 200, ok))
	noMailto := `{"expires_at":"2027-02-26T10:00:00Z","results":[{"ref":"r-1","headers":{"List-Unsubscribe":"<https://mail.example.org/u/` + tok +
		`>","List-Unsubscribe-Post":"List-Unsubscribe=One-Click"},"url":"https://mail.example.org/u/` + tok + `"},{"ref":"r-2","error":{"code":"invalid_request","message":"x"}},` + bad + `]}`
	require.NoError(t, validate(t, "POST", "/v1/links", req, 200, noMailto))

	for name, body := range map[string]string{
		"one result short":              strings.Replace(ok, `,`+bad, ``, 1),
		"refs swapped":                  strings.NewReplacer(`"ref":"r-1"`, `"ref":"r-2"`, `"ref":"r-2"`, `"ref":"r-1"`).Replace(ok),
		"links and an error":            strings.Replace(ok, `{"ref":"r-1",`, `{"ref":"r-1","error":{"code":"invalid_request","message":"x"},`, 1),
		"neither links nor an error":    strings.Replace(ok, `{"ref":"r-1",`+result+`}`, `{"ref":"r-1"}`, 1),
		"two https links":               strings.Replace(ok, `, <mailto:`, `, <https://other.example.org/u/k1.x>, <mailto:`, 1),
		"another url than the header's": strings.Replace(ok, `"url":"https://mail.example.org/u/`, `"url":"https://mail.example.org/u/k2.x`, 1),
		"mailto without the token":      strings.ReplaceAll(ok, `?subject=unsubscribe%20`+tok, `?subject=unsubscribe`),
		"no expiry":                     strings.Replace(ok, `"expires_at":"2027-02-26T10:00:00Z",`, ``, 1),
		"the address in an error":       strings.Replace(ok, `invalid email: no @`, `bob-at-example.org has no @`, 1),
	} {
		t.Run(name, func(t *testing.T) {
			requireMismatch(t, validate(t, "POST", "/v1/links", req, 200, body), ErrResponse)
		})
	}

	// A server without link keys.
	require.NoError(t, validate(t, "POST", "/v1/links", req, 404, `{"error":{"code":"not_found","message":"minting links is not enabled"}}`))
	// Unknown fields in a recipient are the client's mistake.
	requireMismatch(t, validate(t, "POST", "/v1/links", `{"recipients":[{"identifier":{"type":"email","value":"a@example.org"},"topic":"x"}]}`, 200,
		`{"expires_at":"2027-02-26T10:00:00Z","results":[{`+result+`}]}`), ErrRequest)
}

func TestLookup(t *testing.T) {
	const req = `{"namespace":"default","identifiers":[{"type":"email","value":"alice@example.org"}]}`
	const ok = `{"keys":[{"identifier":0,"key":"email:1a2b3c4d","platforms":["meta","x","linkedin","snap"],
		"scopes":[{"scope":"*","suppressed":true,"registers":[
			{"action":"suppress","reason":"unsubscribe","origin":"recipient","source":"/unsubscribe-link","at":"2026-11-28T10:00:00Z"},
			{"action":"lift","reason":"","origin":"recipient","at":"2026-11-27T10:00:00Z"},
			{"action":"lift","origin":"customer","at":"2026-11-26T10:00:00Z"},
			{"action":"lift","reason":"complaint","origin":"admin","source":"ticket-1","at":"2026-11-25T10:00:00Z"}]}]}]}`
	require.NoError(t, validate(t, "POST", "/v1/subjects/lookup", req, 200, ok))

	for name, bad := range map[string]string{
		"suppress without reason": strings.Replace(ok, `"reason":"unsubscribe",`, ``, 1),
		"suppress, empty reason":  strings.Replace(ok, `"reason":"unsubscribe"`, `"reason":""`, 1),
		"unknown action":          strings.Replace(ok, `"action":"lift","reason":""`, `"action":"delete","reason":""`, 1),
		"full hash in key":        strings.Replace(ok, `email:1a2b3c4d`, `email:1a2b3c4d5e6f`, 1),
		"unknown platform":        strings.Replace(ok, `"snap"`, `"myspace"`, 1),
		"no such identifier":      strings.Replace(ok, `"identifier":0`, `"identifier":1`, 1),
	} {
		t.Run(name, func(t *testing.T) {
			requireMismatch(t, validate(t, "POST", "/v1/subjects/lookup", req, 200, bad), ErrResponse)
		})
	}
}

func TestOperationsEndpoints(t *testing.T) {
	s := loadSpec(t)
	for _, c := range []struct {
		path, contentType, body string
		status                  int
		ok                      bool
	}{
		{"/healthz", "application/json", `{"status":"ok"}`, 200, true},
		{"/healthz", "application/json", `{"status":"fine"}`, 200, false},
		{"/readyz", "application/json", `{"status":"ready"}`, 200, true},
		{"/readyz", "application/json", `{"status":"unavailable","reason":"not_built","detail":"store not built"}`, 503, true},
		{"/readyz", "application/json", `{"status":"unavailable","reason":"store"}`, 503, false},
		{"/readyz", "application/json", `{"status":"ready"}`, 503, false},
		{"/metrics", "text/plain; version=0.0.4; charset=utf-8; escaping=underscores", "# HELP up 1\nup 1\n", 200, true},
		{"/metrics", "application/json", `{}`, 200, false},
	} {
		t.Run(fmt.Sprintf("%s %d %s", c.path, c.status, c.body), func(t *testing.T) {
			req := httptest.NewRequest("GET", c.path, nil)
			resp, body := response(c.status, c.contentType, c.body)
			err := s.Validate(req, nil, resp, body)
			if c.ok {
				require.NoError(t, err)
			} else {
				requireMismatch(t, err, ErrResponse)
			}
		})
	}
}

func TestUnknownPathOrMethod(t *testing.T) {
	s := loadSpec(t)
	// Not an operation: the request fails...
	req := httptest.NewRequest("GET", "/v1/check", nil)
	resp, body := response(405, "application/json", `{"error":{"code":"method_not_allowed","message":"use POST"}}`)
	requireMismatch(t, s.Validate(req, nil, resp, body), ErrRequest, "no operation GET /v1/check")
	// ... but the 404 and 405 of docs/api.md are valid answers to it.
	require.NoError(t, s.ValidateResponse(req, nil, resp, body))
	resp, body = response(405, "text/plain; charset=utf-8", "Method Not Allowed\n")
	requireMismatch(t, s.ValidateResponse(req, nil, resp, body), ErrResponse, "application/json")
	resp, body = response(404, "application/json", `{"error":{"code":"not_found","message":"no such path"}}`)
	requireMismatch(t, s.ValidateResponse(req, nil, resp, body), ErrResponse, "405")

	req = httptest.NewRequest("POST", "/v1/nope", nil)
	require.NoError(t, s.ValidateResponse(req, nil, resp, body))
	resp, body = response(404, "application/json", `{"error":{"code":"method_not_allowed","message":"no such path"}}`)
	requireMismatch(t, s.ValidateResponse(req, nil, resp, body), ErrResponse, "not_found")
	resp, body = response(200, "application/json", `{}`)
	requireMismatch(t, s.ValidateResponse(req, nil, resp, body), ErrResponse, "no matching operation")
}

const (
	hexA = "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"
	hexB = "FCDE2B2EDBA56BF408601FB721FE9B5C338D10EE429EA04FAE5511B68FBF8FB9"
	b64C = "LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564"
)

func filterRequest(target, body string, gz bool) *http.Request {
	b := []byte(body)
	if gz {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		_, _ = zw.Write(b)
		_ = zw.Close()
		b = buf.Bytes()
	}
	req := httptest.NewRequest("POST", target, bytes.NewReader(b))
	req.Header.Set("Content-Type", "text/plain")
	req.Header.Set("Authorization", "Bearer test-key")
	if gz {
		req.Header.Set("Content-Encoding", "gzip")
	}
	return req
}

func filterResponse(body string, trailer ...string) (*http.Response, []byte) {
	resp, b := response(200, "text/plain; charset=utf-8", body)
	for i := 0; i+1 < len(trailer); i += 2 {
		resp.Trailer.Set(trailer[i], trailer[i+1])
	}
	return resp, b
}

var counts = []string{"Suppressd-Total", "4", "Suppressd-Allowed", "2", "Suppressd-Suppressed", "1", "Suppressd-Malformed", "1"}

func TestFilter(t *testing.T) {
	s := loadSpec(t)
	const in = hexA + "\n\nnot-a-hash\n" + hexB + "\r\n" + b64C + "\n"
	const out = hexA + "\n" + b64C + "\n# total=4 allowed=2 suppressed=1 malformed=1\n"
	for _, gz := range []bool{false, true} {
		t.Run(fmt.Sprintf("gzip=%v", gz), func(t *testing.T) {
			req := filterRequest("/v1/filter?type=email_sha256&platform=meta&channel=ads&purpose=advertising&namespace=default", in, gz)
			resp, body := filterResponse(out, counts...)
			require.NoError(t, s.Validate(req, nil, resp, body))
		})
	}

	target := "/v1/filter?type=email_sha256"
	check := func(t *testing.T, in, out string, trailer ...string) error {
		t.Helper()
		resp, body := filterResponse(out, trailer...)
		return s.Validate(filterRequest(target, in, false), nil, resp, body)
	}
	// A mid-stream failure: no count trailers.
	require.NoError(t, check(t, in, hexA+"\n# error=unavailable\n"))
	requireMismatch(t, check(t, in, hexA+"\n# error=unavailable\n", counts...), ErrResponse, "mid-stream")
	// Every answer ends with a summary line.
	requireMismatch(t, check(t, in, hexA+"\n"+b64C+"\n", counts...), ErrResponse, "pattern")
	// Trailers repeat the summary.
	requireMismatch(t, check(t, in, out), ErrResponse, "Suppressd-Total")
	requireMismatch(t, check(t, in, out, slices.Replace(slices.Clone(counts), 7, 8, "0")...), ErrResponse, "Suppressd-Malformed")
	// Lines are echoed as sent, in input order, never malformed.
	requireMismatch(t, check(t, in, b64C+"\n"+hexA+"\n# total=4 allowed=2 suppressed=1 malformed=1\n", counts...), ErrResponse, "input order")
	requireMismatch(t, check(t, in, strings.ToUpper(hexA)+"\n"+b64C+"\n# total=4 allowed=2 suppressed=1 malformed=1\n", counts...), ErrResponse, "not a line of the request")
	requireMismatch(t, check(t, in, hexA+"\nnot-a-hash\n# total=4 allowed=2 suppressed=1 malformed=1\n", counts...), ErrResponse, "not a SHA-256")
	requireMismatch(t, check(t, in, hexA+"\n# total=4 allowed=2 suppressed=1 malformed=1\n", counts...), ErrResponse, "allowed=2, but 1 lines")

	// The type parameter is required and an enum; the others are checked too.
	for _, bad := range []string{"/v1/filter", "/v1/filter?type=email", "/v1/filter?type=email_sha256&platform=myspace", "/v1/filter?type=email_sha256&purpose=fun"} {
		resp, body := filterResponse(out, counts...)
		requireMismatch(t, s.Validate(filterRequest(bad, in, false), nil, resp, body), ErrRequest, "parameter")
	}
	// The answer is text/plain; charset=utf-8; errors are JSON.
	resp, body := response(200, "application/json", `{}`)
	requireMismatch(t, s.Validate(filterRequest(target, in, false), nil, resp, body), ErrResponse, "application/json")
	resp, body = response(400, "application/json", `{"error":{"code":"invalid_request","message":"type: want email_sha256 or phone_sha256","field":"type"}}`)
	require.NoError(t, s.ValidateResponse(filterRequest("/v1/filter?type=email", in, false), nil, resp, body))
	// A gzip Content-Encoding whose body is not gzip.
	req := filterRequest(target, in, false)
	req.Header.Set("Content-Encoding", "gzip")
	resp, body = filterResponse(out, counts...)
	requireMismatch(t, s.Validate(req, nil, resp, body), ErrRequest, "gzip")
}

// recordingTB records what Check reports instead of failing the test.
type recordingTB struct {
	testing.TB
	errors []string
}

func (r *recordingTB) Helper() {}
func (r *recordingTB) Errorf(format string, args ...any) {
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

func TestCheckReportsToTheTest(t *testing.T) {
	s := loadSpec(t)
	rec := &recordingTB{TB: t}
	req, rb := jsonRequest("POST", "/v1/check", checkReq)
	resp, body := response(200, "application/json", `{"allowed":true}`)
	s.Check(rec, req, rb, resp, body)
	require.Empty(t, rec.errors)

	resp, body = response(200, "application/json", `{"allowed":"yes"}`)
	s.Check(rec, req, rb, resp, body)
	require.Len(t, rec.errors, 1)
	require.Contains(t, rec.errors[0], "POST /v1/check")
	require.Contains(t, rec.errors[0], "allowed")

	rec.errors = nil
	req.Header.Del("Authorization")
	resp, body = response(401, "application/json", `{"error":{"code":"unauthorized","message":"no key"}}`)
	s.CheckResponse(rec, req, rb, resp, body)
	require.Empty(t, rec.errors)
}

func TestServe(t *testing.T) {
	s := loadSpec(t)
	var got []byte
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, _ = io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, checkBlocked)
	})
	req, _ := jsonRequest("POST", "/v1/check", checkReq)
	resp, body := s.Serve(t, h, req)
	require.Equal(t, checkReq, string(got), "the handler reads the whole request body")
	require.Equal(t, 200, resp.StatusCode)
	require.Equal(t, checkBlocked, string(body))

	// A handler that drifts from the description fails the test.
	rec := &recordingTB{TB: t}
	drifted := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, `{"error":{"code":"unavailable","message":"store down"}}`)
	})
	req, _ = jsonRequest("POST", "/v1/check", checkReq)
	s.Serve(rec, drifted, req)
	require.Len(t, rec.errors, 1)
	require.Contains(t, rec.errors[0], "Retry-After")

	// Trailers set by a streaming handler reach the filter checks.
	filter := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "Suppressd-Total, Suppressd-Allowed, Suppressd-Suppressed, Suppressd-Malformed")
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, hexA+"\n# total=1 allowed=1 suppressed=0 malformed=0\n")
		w.Header().Set("Suppressd-Total", "1")
		w.Header().Set("Suppressd-Allowed", "1")
		w.Header().Set("Suppressd-Suppressed", "0")
		w.Header().Set("Suppressd-Malformed", "0")
	})
	s.Serve(t, filter, filterRequest("/v1/filter?type=email_sha256", hexA+"\n", true))
}

func TestErrorsNameTheSide(t *testing.T) {
	// A request and a response that are both wrong report both.
	err := validate(t, "POST", "/v1/check", `{"channel":"email","purpose":"marketing"}`, 200, `{}`)
	require.True(t, errors.Is(err, ErrRequest) && errors.Is(err, ErrResponse), "%v", err)
	require.Contains(t, err.Error(), "identifiers")
	require.Contains(t, err.Error(), "allowed")
}

func TestNamesArePatterned(t *testing.T) {
	for _, bad := range []string{`"topic":"News Letter"`, `"topic":"-"`, `"namespace":"-x"`, `"namespace":"` + strings.Repeat("a", 65) + `"`} {
		req := `{"identifiers":[{"type":"email","value":"alice@example.org"}],"channel":"email","purpose":"marketing",` + bad + `}`
		requireMismatch(t, validate(t, "POST", "/v1/check", req, 200, `{"allowed":true}`), ErrRequest)
	}
	for _, bad := range []string{`{"type":"email","value":""}`, `{"type":"email","value":"` + strings.Repeat("a", 321) + `"}`, `{"type":"email"}`} {
		req := `{"identifiers":[` + bad + `],"channel":"email","purpose":"marketing"}`
		requireMismatch(t, validate(t, "POST", "/v1/check", req, 200, `{"allowed":true}`), ErrRequest)
	}
	requireMismatch(t, validate(t, "POST", "/v1/check", `{"identifiers":[],"channel":"email","purpose":"marketing"}`, 200, `{"allowed":true}`), ErrRequest)
}

// TestLibraryValidatesOpenAPI31 is the evidence that kin-openapi, at the
// version in go.mod, validates JSON Schema 2020-12 as OpenAPI 3.1 has it
// (type arrays with "null", const, numeric exclusiveMinimum, prefixItems,
// if/then), rather than reading the document as 3.0 and ignoring what it
// does not know. A downgrade that loses this fails here.
func TestLibraryValidatesOpenAPI31(t *testing.T) {
	const doc = `
openapi: 3.1.0
info: {title: t, version: "1"}
paths:
  /x:
    post:
      requestBody:
        required: true
        content:
          application/json:
            schema:
              type: object
              additionalProperties: false
              properties:
                maybe: {type: [string, "null"]}
                fixed: {const: 7}
                positive: {type: number, exclusiveMinimum: 0}
                pair: {type: array, prefixItems: [{type: string}, {type: integer}], items: false}
                kind: {type: string}
                size: {type: integer}
              if: {properties: {kind: {const: big}}, required: [kind]}
              then: {required: [size]}
      responses:
        "204": {description: ok}
`
	loader := openapi3.NewLoader()
	d, err := loader.LoadFromData([]byte(doc))
	require.NoError(t, err)
	require.NoError(t, d.Validate(loader.Context))
	router, err := legacy.NewRouter(d)
	require.NoError(t, err)
	validate := func(body string) error {
		req := httptest.NewRequest("POST", "/x", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		route, params, err := router.FindRoute(req)
		require.NoError(t, err)
		return openapi3filter.ValidateRequest(t.Context(), &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route})
	}
	for _, ok := range []string{`{"maybe":null}`, `{"maybe":"x"}`, `{"fixed":7}`, `{"positive":0.5}`, `{"pair":["a",1]}`, `{"kind":"big","size":1}`, `{"kind":"small"}`} {
		require.NoError(t, validate(ok), ok)
	}
	for _, bad := range []string{`{"maybe":1}`, `{"fixed":8}`, `{"positive":0}`, `{"pair":[1,"a"]}`, `{"pair":["a",1,2]}`, `{"kind":"big"}`, `{"other":1}`} {
		require.Error(t, validate(bad), bad)
	}
}

func TestFilterEdges(t *testing.T) {
	s := loadSpec(t)
	// An empty body is an empty audience.
	resp, body := filterResponse("# total=0 allowed=0 suppressed=0 malformed=0\n", "Suppressd-Total", "0", "Suppressd-Allowed", "0", "Suppressd-Suppressed", "0", "Suppressd-Malformed", "0")
	require.NoError(t, s.Validate(filterRequest("/v1/filter?type=phone_sha256", "", false), nil, resp, body))
	// Spaces around a line are not part of the hash.
	resp, body = filterResponse(hexA+"\n# total=1 allowed=1 suppressed=0 malformed=0\n", "Suppressd-Total", "1", "Suppressd-Allowed", "1", "Suppressd-Suppressed", "0", "Suppressd-Malformed", "0")
	require.NoError(t, s.Validate(filterRequest("/v1/filter?type=email_sha256", "  "+hexA+" \r\n", false), nil, resp, body))
	// An empty batch is not a valid request.
	err := validate(t, "POST", "/v1/check/batch", `{"channel":"email","purpose":"marketing","contacts":[]}`, 400,
		`{"error":{"code":"invalid_request","message":"contacts: at least one contact is required","field":"contacts"}}`)
	requireMismatch(t, err, ErrRequest, "contacts")
	require.NotErrorIs(t, err, ErrResponse)
}

func TestFilterCheckpoints(t *testing.T) {
	s := loadSpec(t)
	const in = hexA + "\nnot-a-hash\n" + hexB + "\n"
	check := func(out string) error {
		resp, body := filterResponse(out, "Suppressd-Total", "3", "Suppressd-Allowed", "1", "Suppressd-Suppressed", "1", "Suppressd-Malformed", "1")
		return s.Validate(filterRequest("/v1/filter?type=email_sha256&progress=true", in, false), nil, resp, body)
	}
	require.NoError(t, check(hexA+"\n# at total=2 allowed=1 suppressed=0 malformed=1 in_bytes=76 in_lines=2 out_bytes=65\n"+
		"# at total=3 allowed=1 suppressed=1 malformed=1 in_bytes=141 in_lines=3 out_bytes=65\n# total=3 allowed=1 suppressed=1 malformed=1\n"))
	requireMismatch(t, check("# at total=2 allowed=1 suppressed=0 malformed=1 in_bytes=76 in_lines=2 out_bytes=65\n"+hexA+"\n# total=3 allowed=1 suppressed=1 malformed=1\n"),
		ErrResponse, "after 0 echoed lines")
}

func rowsRequest(target, body string) *http.Request {
	req := httptest.NewRequest("POST", target, strings.NewReader(body))
	req.Header.Set("Content-Type", "text/csv")
	req.Header.Set("Authorization", "Bearer test-key")
	return req
}

func TestFilterRows(t *testing.T) {
	s := loadSpec(t)
	const (
		header = "\uFEFFEmail,Phone,Zip\r\n"
		rowA   = "a@example.org,\"+1 800\n555 0100\",94016\r\n"
		rowB   = "b@example.org,,\r\n"
		bad    = "c@example.org,94016\r\n"
		rowD   = "\"d@example.org\",+18005550101,\"9\"\"4\"" // no line end
		in     = header + rowA + "\r\n" + rowB + bad + rowD
	)
	trailer := func(total, allowed, suppressed, malformed, lines string) []string {
		t := []string{"Suppressd-Total", total, "Suppressd-Allowed", allowed, "Suppressd-Suppressed", suppressed, "Suppressd-Malformed", malformed}
		if lines != "" {
			t = append(t, "Suppressd-Malformed-Lines", lines)
		}
		return t
	}
	check := func(target, out string, tr ...string) error {
		resp, body := response(200, "text/csv; charset=utf-8; header=present", out)
		for i := 0; i+1 < len(tr); i += 2 {
			resp.Trailer.Set(tr[i], tr[i+1])
		}
		return s.Validate(rowsRequest(target, in), nil, resp, body)
	}
	ok := trailer("4", "2", "1", "1", "6")
	require.NoError(t, check("/v1/filter/rows?template=google", header+rowA+rowD, ok...))
	require.NoError(t, check("/v1/filter/rows?columns=email:Email,phone:Phone&summary=true",
		header+rowA+rowD+"\n# total=4 allowed=2 suppressed=1 malformed=1 malformed_lines=6\n", ok...))
	require.NoError(t, check("/v1/filter/rows?template=google&progress=true",
		header+rowA+"\x00# at total=3 allowed=1 suppressed=1 malformed=1 in_bytes=72 in_lines=6 out_bytes=59\n"+rowD+
			"\x00# at total=4 allowed=2 suppressed=1 malformed=1 in_bytes=111 in_lines=6 out_bytes=94\n\x00# total=4 allowed=2 suppressed=1 malformed=1 malformed_lines=6\n", ok...))
	// A failure midway: the error line, no trailers.
	require.NoError(t, check("/v1/filter/rows?template=google", header+rowA+"# error=unavailable\n"))

	requireMismatch(t, check("/v1/filter/rows?template=google", rowA+rowD, ok...), ErrResponse, "header row")
	requireMismatch(t, check("/v1/filter/rows?template=google", header+rowD+rowA, ok...), ErrResponse, "input order")
	requireMismatch(t, check("/v1/filter/rows?template=google", header+strings.ReplaceAll(rowA, "\r\n", "\n")+rowD, ok...), ErrResponse, "not a row of the request as sent")
	requireMismatch(t, check("/v1/filter/rows?template=google", header+rowA+bad+rowD, ok...), ErrResponse, "malformed rows are never echoed")
	requireMismatch(t, check("/v1/filter/rows?template=google", header+rowA+rowD, trailer("4", "3", "0", "1", "6")...), ErrResponse, "Suppressd-Allowed")
	requireMismatch(t, check("/v1/filter/rows?template=google", header+rowA+rowD, trailer("4", "2", "1", "1", "3")...), ErrResponse, "no row of the request starts")
	requireMismatch(t, check("/v1/filter/rows?template=google", header+rowA+rowD+"\n# total=4 allowed=2 suppressed=1 malformed=1 malformed_lines=6\n", ok...),
		ErrResponse, "not asked for")
	requireMismatch(t, check("/v1/filter/rows?template=google&summary=true", header+rowA+rowD, ok...), ErrResponse, "no summary line")
	requireMismatch(t, check("/v1/filter/rows?template=google&progress=true",
		header+rowA+"\x00# at total=3 allowed=1 suppressed=1 malformed=1 in_bytes=72 in_lines=6 out_bytes=54\n"+rowD+"\x00# total=4 allowed=2 suppressed=1 malformed=1 malformed_lines=6\n", ok...),
		ErrResponse, "after 59 bytes")
	// The parameters: a template of the enum, columns of the pattern.
	for _, bad := range []string{"/v1/filter/rows?template=myspace", "/v1/filter/rows?columns=fax:Fax", "/v1/filter/rows?template=google&summary=maybe"} {
		resp, body := response(200, "text/csv; charset=utf-8; header=present", header+rowA+rowD)
		requireMismatch(t, s.Validate(rowsRequest(bad, in), nil, resp, body), ErrRequest, "parameter")
	}
	// An error never repeats a value of the rows.
	resp, body := response(400, "application/json", `{"error":{"code":"invalid_request","message":"no such thing as b@example.org","field":"template"}}`)
	requireMismatch(t, s.ValidateResponse(rowsRequest("/v1/filter/rows?template=google", in), nil, resp, body), ErrResponse, "repeats the row value")
}
