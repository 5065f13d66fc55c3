package client_test

import (
	"bufio"
	"compress/gzip"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// The fake below implements docs/api.md closely enough to test the
// client against the contract rather than against itself: it decodes
// requests into its own types with unknown fields rejected, so a field the
// client misnames fails the test.

const (
	testKey      = "test-key"       // every scope
	checkOnlyKey = "check-only-key" // scope check only
)

type fakeIdentifier struct {
	Type  string `json:"type"`
	Value string `json:"value"`
}

type fakeCheckRequest struct {
	Namespace   string           `json:"namespace"`
	Identifiers []fakeIdentifier `json:"identifiers"`
	Channel     string           `json:"channel"`
	Purpose     string           `json:"purpose"`
	Topic       string           `json:"topic"`
}

type fakeBatchRequest struct {
	Namespace string `json:"namespace"`
	Channel   string `json:"channel"`
	Purpose   string `json:"purpose"`
	Topic     string `json:"topic"`
	Contacts  []struct {
		Ref         string           `json:"ref"`
		Identifiers []fakeIdentifier `json:"identifiers"`
	} `json:"contacts"`
}

// suppressedJSON is what the fake stores for every suppressed value.
var suppressedJSON = map[string]any{
	"scope": "*", "reason": "unsubscribe", "origin": "recipient",
	"source": "/unsubscribe-link", "since": "2026-11-28T10:00:00Z",
}

type fake struct {
	srv *httptest.Server

	// outage, when set, may answer call n (1-based, per path) with an
	// error status instead of the real answer.
	outage func(path string, n int) (status int, retryAfter string)
	// filterEnd writes the end of a filter response; nil writes the
	// summary line and trailers as the contract says.
	filterEnd func(w http.ResponseWriter, total, allowed, suppressed, malformed int)
	// checkDelay, when set, is slept before answering a check/batch.
	checkDelay func() time.Duration
	// hang makes check requests wait for the client to give up.
	hang bool
	// maxContacts, when set, answers 413 to batches larger than it, as the
	// server does past its match-key limit.
	maxContacts int

	mu             sync.Mutex
	calls          map[string]int
	times          map[string][]time.Time
	batchSizes     []int
	filterQuery    url.Values
	filterEncoding string
}

func newFake(t *testing.T) *fake {
	t.Helper()
	f := &fake{calls: map[string]int{}, times: map[string][]time.Time{}}
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/check", f.wrap("check", f.check))
	mux.HandleFunc("/v1/check/batch", f.wrap("check", f.batch))
	mux.HandleFunc("/v1/filter", f.wrap("filter", f.filter))
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fake) callCount(path string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[path]
}

func (f *fake) callTimes(path string) []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Time(nil), f.times[path]...)
}

func writeError(w http.ResponseWriter, status int, code, msg, field string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	e := map[string]string{"code": code, "message": msg}
	if field != "" {
		e["field"] = field
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"error": e})
}

// wrap does what every endpoint shares: method, auth and scope, call
// counting and injected outages.
func (f *fake) wrap(scope string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.calls[r.URL.Path]++
		n := f.calls[r.URL.Path]
		f.times[r.URL.Path] = append(f.times[r.URL.Path], time.Now())
		f.mu.Unlock()

		if r.Method != http.MethodPost {
			writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "use POST", "")
			return
		}
		key, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		switch {
		case !ok || (key != testKey && key != checkOnlyKey):
			writeError(w, http.StatusUnauthorized, "unauthorized", "missing or unknown API key", "")
			return
		case key == checkOnlyKey && scope != "check":
			writeError(w, http.StatusForbidden, "forbidden", "key lacks scope "+scope, "")
			return
		}
		if f.outage != nil {
			if status, ra := f.outage(r.URL.Path, n); status != 0 {
				if ra != "" {
					w.Header().Set("Retry-After", ra)
				}
				writeError(w, status, "unavailable", "store unavailable", "")
				return
			}
		}
		h(w, r)
	}
}

// verdict answers one contact: nil, nil when allowed.
func verdict(ids []fakeIdentifier, prefix string) (suppression map[string]any, errObj map[string]string) {
	for i, id := range ids {
		if id.Type == "email" && !strings.Contains(id.Value, "@") {
			return nil, map[string]string{
				"code": "invalid_request", "message": "invalid email: no @",
				"field": fmt.Sprintf("%s[%d].value", prefix, i),
			}
		}
	}
	for _, id := range ids {
		if strings.HasPrefix(id.Value, "suppressed") {
			return suppressedJSON, nil
		}
	}
	return nil, nil
}

// pause applies hang and checkDelay; false means do not answer.
func (f *fake) pause(r *http.Request) bool {
	if f.hang {
		// The server notices the client hanging up only once the body
		// is read.
		_, _ = io.Copy(io.Discard, r.Body)
		<-r.Context().Done()
		return false
	}
	if f.checkDelay != nil {
		time.Sleep(f.checkDelay())
	}
	return true
}

func (f *fake) check(w http.ResponseWriter, r *http.Request) {
	if !f.pause(r) {
		return
	}
	if r.Header.Get("Content-Type") != "application/json" {
		writeError(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "want application/json", "")
		return
	}
	var req fakeCheckRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", "bad JSON: "+err.Error(), "")
		return
	}
	if req.Channel == "" || req.Purpose == "" {
		writeError(w, http.StatusBadRequest, "invalid_request", "channel and purpose are required", "channel")
		return
	}
	sup, errObj := verdict(req.Identifiers, "identifiers")
	if errObj != nil {
		writeError(w, http.StatusBadRequest, errObj["code"], errObj["message"], errObj["field"])
		return
	}
	ans := map[string]any{"allowed": sup == nil}
	if sup != nil {
		ans["suppression"] = sup
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(ans)
}

func (f *fake) batch(w http.ResponseWriter, r *http.Request) {
	if !f.pause(r) {
		return
	}
	var req fakeBatchRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, 16<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", "bad JSON: "+err.Error(), "")
		return
	}
	if req.Channel == "" || req.Purpose == "" {
		writeError(w, http.StatusBadRequest, "invalid_request", "channel and purpose are required", "channel")
		return
	}
	if len(req.Contacts) > 10000 {
		writeError(w, http.StatusRequestEntityTooLarge, "too_large", "at most 10000 contacts", "contacts")
		return
	}
	if f.maxContacts > 0 && len(req.Contacts) > f.maxContacts {
		f.mu.Lock()
		f.batchSizes = append(f.batchSizes, -len(req.Contacts))
		f.mu.Unlock()
		writeError(w, http.StatusRequestEntityTooLarge, "too_large", "contacts: the batch expands to more than 50000 match keys; split the batch", "contacts")
		return
	}
	f.mu.Lock()
	f.batchSizes = append(f.batchSizes, len(req.Contacts))
	f.mu.Unlock()
	results := make([]map[string]any, len(req.Contacts))
	for i, c := range req.Contacts {
		res := map[string]any{"allowed": false}
		if c.Ref != "" {
			res["ref"] = c.Ref
		}
		sup, errObj := verdict(c.Identifiers, fmt.Sprintf("contacts[%d].identifiers", i))
		switch {
		case errObj != nil:
			res["error"] = errObj
		case sup != nil:
			res["suppression"] = sup
		default:
			res["allowed"] = true
		}
		results[i] = res
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"results": results})
}

// fakeSuppressedHash is the fake's suppression list for filter: every
// hash starting with "0", about one in sixteen.
func fakeSuppressedHash(line string) bool { return strings.HasPrefix(line, "0") }

func validHex64(s string) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

func (f *fake) filter(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.filterQuery = r.URL.Query()
	f.filterEncoding = r.Header.Get("Content-Encoding")
	f.mu.Unlock()
	if t := r.URL.Query().Get("type"); t != "email_sha256" && t != "phone_sha256" {
		writeError(w, http.StatusBadRequest, "invalid_request", "type must be email_sha256 or phone_sha256", "type")
		return
	}
	// Echo lines while the upload is still coming: without full duplex
	// the HTTP/1 server stops the request body once the response starts.
	rc := http.NewResponseController(w)
	if err := rc.EnableFullDuplex(); err != nil {
		writeError(w, http.StatusInternalServerError, "internal", err.Error(), "")
		return
	}
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			writeError(w, http.StatusBadRequest, "invalid_request", "bad gzip", "")
			return
		}
		body = zr
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Trailer", "Suppressd-Total, Suppressd-Allowed, Suppressd-Suppressed, Suppressd-Malformed")
	br := bufio.NewReader(body)
	var total, allowed, suppressed, malformed int
	for {
		line, err := br.ReadString('\n')
		if s := strings.TrimRight(line, "\r\n"); strings.TrimSpace(s) != "" {
			total++
			switch {
			case !validHex64(strings.ToLower(s)):
				malformed++
			case fakeSuppressedHash(strings.ToLower(s)):
				suppressed++
			default:
				allowed++
				_, _ = io.WriteString(w, s+"\n")
			}
		}
		if err != nil {
			if err != io.EOF {
				return // the upload broke; so does the response
			}
			break
		}
		if br.Buffered() == 0 {
			_ = rc.Flush() // hand lines on before waiting for more input
		}
	}
	if f.filterEnd != nil {
		f.filterEnd(w, total, allowed, suppressed, malformed)
		return
	}
	fmt.Fprintf(w, "# total=%d allowed=%d suppressed=%d malformed=%d\n", total, allowed, suppressed, malformed)
	w.Header().Set("Suppressd-Total", fmt.Sprint(total))
	w.Header().Set("Suppressd-Allowed", fmt.Sprint(allowed))
	w.Header().Set("Suppressd-Suppressed", fmt.Sprint(suppressed))
	w.Header().Set("Suppressd-Malformed", fmt.Sprint(malformed))
}
