package api

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/client"
	"github.com/suppressd/suppressd/internal/openapitest"
	"github.com/suppressd/suppressd/internal/testenv"
	"github.com/suppressd/suppressd/internal/teststore"
	"github.com/suppressd/suppressd/store/redisstore"
	"github.com/suppressd/suppressd/suppression"
)

const (
	checkKey  = "sdk_test_check"
	filterKey = "sdk_test_filter"
	adminKey  = "sdk_test_admin"
	linksKey  = "sdk_test_links"
)

func testKeys(t testing.TB) []Key {
	h := func(s string) string { d := sha256.Sum256([]byte(s)); return hex.EncodeToString(d[:]) }
	keys, err := ParseKeys("sender:check:" + h(checkKey) + ",exporter:filter:" + h(filterKey) + ",privacy:admin+check:" + h(adminKey) + ",mailer:check+links:" + h(linksKey))
	require.NoError(t, err)
	return keys
}

var norm = suppression.Normalizer{DefaultRegion: "US"}

type env struct {
	t     testing.TB
	spec  *openapitest.Spec
	srv   *httptest.Server
	store *redisstore.Store
	keyer suppression.Keyer
	logs  *bytes.Buffer
	reg   *prometheus.Registry // the server's metrics, served on /metrics
}

func newEnv(t testing.TB, rdb redis.UniversalClient, opts Options) *env {
	t.Helper()
	keyer := suppression.NewKeyer([]byte("api-test-pepper"))
	store := teststore.Build(t, rdb, redisstore.Options{Prefix: teststore.Prefix(), Keying: keyer.Fingerprint()})
	opts.Keyer = keyer
	if opts.Keys == nil {
		opts.Keys = testKeys(t)
	}
	if opts.Normalizer == (suppression.Normalizer{}) {
		opts.Normalizer = norm
	}
	logs := &bytes.Buffer{}
	reg := prometheus.NewRegistry()
	if opts.Gatherer == nil {
		opts.Gatherer = reg
	}
	s := New(store, opts, slog.New(slog.NewJSONHandler(logs, nil)), reg)
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return &env{t: t, spec: openapitest.New(t), srv: srv, store: store, keyer: keyer, logs: logs, reg: reg}
}

// suppress applies an event's change straight to the store, as the consumer
// would after reading it from Kafka.
func (e *env) suppress(typ suppression.EventType, id suppression.Identifier, scopes ...suppression.Scope) {
	e.t.Helper()
	ev := suppression.Event{ID: fmt.Sprintf("e-%d", time.Now().UnixNano()), Source: "/test", Type: typ,
		OccurredAt: time.Now().Add(-time.Minute), Identifiers: []suppression.Identifier{id}, Scopes: scopes, Origin: suppression.OriginRecipient}
	require.NoError(e.t, ev.Normalize(time.Time{}))
	keys, err := norm.Expand(ev.Identifiers...)
	require.NoError(e.t, err)
	ws := suppression.AppendWrites(nil, &ev, e.keyer.StorageKeys(nil, keys))
	_, err = e.store.Apply(context.Background(), ws)
	require.NoError(e.t, err)
}

// metrics scrapes the server's /metrics: each sample's value by its series
// as written ("name{label=\"value\",...}", labels sorted).
func (e *env) metrics() map[string]float64 {
	e.t.Helper()
	resp, err := http.Get(e.srv.URL + "/metrics")
	require.NoError(e.t, err)
	defer resp.Body.Close()
	require.Equal(e.t, http.StatusOK, resp.StatusCode)
	b, err := io.ReadAll(resp.Body)
	require.NoError(e.t, err)
	out := map[string]float64{}
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		require.NoError(e.t, err, line)
		out[line[:i]] = v
	}
	return out
}

// do sends a request and returns status, headers and body.
func (e *env) do(method, path, key, contentType string, body []byte) (int, http.Header, []byte) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, bytes.NewReader(body))
	require.NoError(e.t, err)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := e.srv.Client().Do(req)
	require.NoError(e.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(e.t, err)
	// Every exchange is held to schemas/openapi.yaml: the request too when
	// it was meant to be valid (tests of bad input send invalid ones).
	if resp.StatusCode < 400 {
		e.spec.Check(e.t, req, body, resp, b)
	} else {
		e.spec.CheckResponse(e.t, req, body, resp, b)
	}
	for k, v := range resp.Trailer {
		resp.Header[k] = v
	}
	return resp.StatusCode, resp.Header, b
}

func mustJSON(t testing.TB, v any) []byte {
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b
}

func (e *env) postJSON(path, key string, v any) (int, map[string]any) {
	e.t.Helper()
	body, err := json.Marshal(v)
	require.NoError(e.t, err)
	status, h, b := e.do(http.MethodPost, path, key, "application/json", body)
	require.Equal(e.t, "application/json", h.Get("Content-Type"), "every answer is JSON: %s", b)
	var out map[string]any
	require.NoError(e.t, json.Unmarshal(b, &out), string(b))
	return status, out
}

func email(v string) suppression.Identifier {
	return suppression.Identifier{Type: suppression.IDEmail, Value: v}
}

func check(ids []suppression.Identifier, channel, purpose, topic string) map[string]any {
	return map[string]any{"identifiers": ids, "channel": channel, "purpose": purpose, "topic": topic}
}

func TestCheck(t *testing.T) {
	for name, rdb := range testenv.RedisClients(t) {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, rdb, Options{})
			e.suppress(suppression.EventUnsubscribe, email("news@example.org"), "topic:newsletter")
			e.suppress(suppression.EventUnsubscribe, email("all@example.org"), "*")
			e.suppress(suppression.EventErasureRequested, email("erased@example.org"))
			e.suppress(suppression.EventHardBounce, email("bounced@example.org"), "email")
			e.suppress(suppression.EventGPC, suppression.Identifier{Type: suppression.IDPhone, Value: "(800) 555-0100"})
			e.suppress(suppression.EventConsentWithdrawn, suppression.Identifier{Type: suppression.IDUserID, Value: "cust-42"}, "profiling")

			tests := []struct {
				name    string
				req     map[string]any
				allowed bool
				scope   string
				reason  string
			}{
				{"topic unsubscribe, that topic", check([]suppression.Identifier{email("News@Example.org ")}, "email", "marketing", "newsletter"), false, "topic:newsletter", "unsubscribe"},
				{"topic unsubscribe, other topic", check([]suppression.Identifier{email("news@example.org")}, "email", "marketing", "offers"), true, "", ""},
				{"global unsubscribe blocks sms", check([]suppression.Identifier{email("all@example.org")}, "sms", "marketing", ""), false, "*", "unsubscribe"},
				{"global unsubscribe does not block receipts", check([]suppression.Identifier{email("all@example.org")}, "email", "transactional", ""), true, "", ""},
				{"erasure blocks receipts", check([]suppression.Identifier{email("erased@example.org")}, "email", "transactional", ""), false, "*", "erasure"},
				{"hard bounce blocks receipts", check([]suppression.Identifier{email("bounced@example.org")}, "email", "transactional", ""), false, "email", "hard_bounce"},
				{"hard bounce does not block sms", check([]suppression.Identifier{email("bounced@example.org")}, "sms", "marketing", ""), true, "", ""},
				{"gpc blocks advertising", check([]suppression.Identifier{{Type: suppression.IDPhone, Value: "+18005550100"}}, "ads", "advertising", ""), false, "advertising", "gpc"},
				{"gpc does not block email marketing", check([]suppression.Identifier{{Type: suppression.IDPhone, Value: "+18005550100"}}, "email", "marketing", ""), true, "", ""},
				{"consent withdrawn for profiling", check([]suppression.Identifier{{Type: suppression.IDUserID, Value: "cust-42"}}, "ads", "profiling", ""), false, "profiling", "consent_withdrawn"},
				{"any identifier of the contact", check([]suppression.Identifier{email("fresh@example.org"), {Type: suppression.IDUserID, Value: "cust-42"}}, "email", "profiling", ""), false, "profiling", "consent_withdrawn"},
				{"unknown contact", check([]suppression.Identifier{email("nobody@example.org")}, "email", "marketing", ""), true, "", ""},
			}
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					status, body := e.postJSON("/v1/check", checkKey, tc.req)
					require.Equal(t, http.StatusOK, status, body)
					require.Equal(t, tc.allowed, body["allowed"])
					if tc.allowed {
						require.NotContains(t, body, "suppression")
						return
					}
					s := body["suppression"].(map[string]any)
					require.Equal(t, tc.scope, s["scope"])
					require.Equal(t, tc.reason, s["reason"])
					require.NotEmpty(t, s["since"])
				})
			}
		})
	}
}

func TestCheckBatch(t *testing.T) {
	for name, rdb := range testenv.RedisClients(t) {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, rdb, Options{})
			e.suppress(suppression.EventUnsubscribe, email("b1@example.org"), "email")
			contacts := []map[string]any{
				{"ref": "r0", "identifiers": []suppression.Identifier{email("b0@example.org")}},
				{"ref": "r1", "identifiers": []suppression.Identifier{email("b1@example.org")}},
				{"ref": "r2", "identifiers": []suppression.Identifier{email("not an address")}},
				{"identifiers": []suppression.Identifier{email("B1@example.org"), email("b3@example.org")}},
			}
			status, body := e.postJSON("/v1/check/batch", checkKey, map[string]any{"channel": "email", "purpose": "marketing", "contacts": contacts})
			require.Equal(t, http.StatusOK, status, body)
			results := body["results"].([]any)
			require.Len(t, results, 4)
			r := func(i int) map[string]any { return results[i].(map[string]any) }
			require.Equal(t, "r0", r(0)["ref"])
			require.Equal(t, true, r(0)["allowed"])
			require.Equal(t, false, r(1)["allowed"])
			require.Equal(t, "unsubscribe", r(1)["suppression"].(map[string]any)["reason"])
			require.Equal(t, false, r(2)["allowed"])
			errObj := r(2)["error"].(map[string]any)
			require.Equal(t, "contacts[2].identifiers[0].value", errObj["field"])
			require.NotContains(t, errObj["message"], "not an address", "no identifier value in errors")
			require.Equal(t, false, r(3)["allowed"], "one identifier of the contact is enough")

			// 10,000 contacts in one call.
			many := make([]map[string]any, 10_000)
			for i := range many {
				many[i] = map[string]any{"identifiers": []suppression.Identifier{email(fmt.Sprintf("m%d@example.org", i))}}
			}
			many[7777]["identifiers"] = []suppression.Identifier{email("b1@example.org")}
			status, body = e.postJSON("/v1/check/batch", checkKey, map[string]any{"channel": "email", "purpose": "marketing", "contacts": many})
			require.Equal(t, http.StatusOK, status)
			results = body["results"].([]any)
			require.Len(t, results, 10_000)
			for i, res := range results {
				require.Equal(t, i != 7777, res.(map[string]any)["allowed"], "contact %d", i)
			}
		})
	}
}

func sha(s string) string { d := sha256.Sum256([]byte(s)); return hex.EncodeToString(d[:]) }

// TestFilterAcrossPlatforms: an unsubscribe that carried only the raw
// address filters the lists Google, Meta and TikTok hashed by their own
// rules.
func TestFilterAcrossPlatforms(t *testing.T) {
	for name, rdb := range testenv.RedisClients(t) {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, rdb, Options{FilterChunk: 3}) // small chunks: the boundaries are exercised
			e.suppress(suppression.EventUnsubscribe, email("Cloudy.SanFrancisco+shopping@gmail.com"), "*")
			e.suppress(suppression.EventGPC, suppression.Identifier{Type: suppression.IDPhone, Value: "(800) 555-0100"})
			googleForm := sha("cloudysanfrancisco@gmail.com")
			metaForm := sha("cloudy.sanfrancisco+shopping@gmail.com")
			tiktokForm := sha("cloudy.sanfrancisco@gmail.com")
			d := sha256.Sum256([]byte("someone.else@example.org"))
			keep := []string{sha("a@example.org"), strings.ToUpper(sha("b@example.org")), base64.StdEncoding.EncodeToString(d[:])}
			for _, tc := range []struct {
				platform string
				blocked  string
			}{{"google", googleForm}, {"meta", metaForm}, {"tiktok", strings.ToUpper(tiktokForm)}} {
				t.Run(tc.platform, func(t *testing.T) {
					in := strings.Join([]string{keep[0], tc.blocked, keep[1], "", "not-a-hash", keep[2], "  " + tc.blocked + "  "}, "\n") + "\n"
					status, h, body := e.do(http.MethodPost, "/v1/filter?type=email_sha256&platform="+tc.platform, filterKey, "text/plain", []byte(in))
					require.Equal(t, http.StatusOK, status, string(body))
					require.Equal(t, "text/plain; charset=utf-8", h.Get("Content-Type"))
					lines := strings.Split(strings.TrimRight(string(body), "\n"), "\n")
					require.Equal(t, append(append([]string{}, keep...), "# total=6 allowed=3 suppressed=2 malformed=1"), lines,
						"allowed lines as sent, in order, then the summary")
					require.Equal(t, "6", h.Get("Suppressd-Total"))
					require.Equal(t, "2", h.Get("Suppressd-Suppressed"))
					require.Equal(t, "1", h.Get("Suppressd-Malformed"))
				})
			}
			t.Run("phones, gzip", func(t *testing.T) {
				var buf bytes.Buffer
				gz := gzip.NewWriter(&buf)
				fmt.Fprintf(gz, "%s\n%s\n%s\n", sha("+18005550100"), sha("18005550100"), sha("+16502530000"))
				require.NoError(t, gz.Close())
				sent := buf.Bytes()
				req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/v1/filter?type=phone_sha256&platform=meta", bytes.NewReader(sent))
				req.Header.Set("Authorization", "Bearer "+filterKey)
				req.Header.Set("Content-Type", "text/plain")
				req.Header.Set("Content-Encoding", "gzip")
				resp, err := e.srv.Client().Do(req)
				require.NoError(t, err)
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				e.spec.Check(t, req, sent, resp, b)
				require.Equal(t, sha("+16502530000")+"\n# total=3 allowed=1 suppressed=2 malformed=0\n", string(b),
					"both the Google/X form (+) and the Meta/Snap form (digits) of the GPC phone are dropped")
			})
			t.Run("purpose scoping", func(t *testing.T) {
				// The gmail address unsubscribed from everything; the phone only
				// opted out of advertising and sale/sharing.
				in := sha("+18005550100") + "\n"
				status, _, body := e.do(http.MethodPost, "/v1/filter?type=phone_sha256&channel=email&purpose=marketing", filterKey, "text/plain", []byte(in))
				require.Equal(t, http.StatusOK, status)
				require.Equal(t, in+"# total=1 allowed=1 suppressed=0 malformed=0\n", string(body))
			})
		})
	}
}

func TestLookup(t *testing.T) {
	e := newEnv(t, testenv.RedisClients(t)["standalone"], Options{})
	e.suppress(suppression.EventUnsubscribe, email("seen@gmail.com"), "email")
	e.suppress(suppression.EventResubscribe, email("seen@gmail.com"), "topic:news")
	status, body := e.postJSON("/v1/subjects/lookup", adminKey, map[string]any{"identifiers": []suppression.Identifier{email("Seen@gmail.com")}})
	require.Equal(t, http.StatusOK, status, body)
	keys := body["keys"].([]any)
	require.Len(t, keys, 1, "a gmail address without dots or tag has one form")
	k := keys[0].(map[string]any)
	require.ElementsMatch(t, []any{"meta", "x", "linkedin", "snap", "google", "tiktok"}, k["platforms"])
	require.Regexp(t, `^email:[0-9a-f]{8}$`, k["key"])
	scopes := k["scopes"].([]any)
	require.Len(t, scopes, 2)
	first := scopes[0].(map[string]any)
	require.Equal(t, "email", first["scope"])
	require.Equal(t, true, first["suppressed"])
	reg := first["registers"].([]any)[0].(map[string]any)
	require.Equal(t, "suppress", reg["action"])
	require.Equal(t, "unsubscribe", reg["reason"])
	require.Equal(t, "/test", reg["source"])
	second := scopes[1].(map[string]any)
	require.Equal(t, "topic:news", second["scope"])
	require.Equal(t, false, second["suppressed"])
	require.Equal(t, "lift", second["registers"].([]any)[0].(map[string]any)["action"])

	status, body = e.postJSON("/v1/subjects/lookup", checkKey, map[string]any{"identifiers": []suppression.Identifier{email("seen@gmail.com")}})
	require.Equal(t, http.StatusForbidden, status)
	require.Equal(t, "forbidden", body["error"].(map[string]any)["code"])
}

func TestBadInput(t *testing.T) {
	e := newEnv(t, testenv.RedisClients(t)["standalone"], Options{MaxBatch: 5, MaxBody: 4096})
	okCheck := `{"identifiers":[{"type":"email","value":"a@example.org"}],"channel":"email","purpose":"marketing"}`
	tests := []struct {
		name        string
		method      string
		path        string
		key         string
		contentType string
		body        string
		status      int
		code        string
		field       string
	}{
		{"no key", "POST", "/v1/check", "", "", okCheck, 401, "unauthorized", ""},
		{"wrong key", "POST", "/v1/check", "sdk_nope", "", okCheck, 401, "unauthorized", ""},
		{"wrong scope", "POST", "/v1/check", filterKey, "", okCheck, 403, "forbidden", ""},
		{"filter needs filter scope", "POST", "/v1/filter?type=email_sha256", checkKey, "text/plain", "", 403, "forbidden", ""},
		{"malformed JSON", "POST", "/v1/check", checkKey, "", `{"identifiers": [`, 400, "invalid_request", ""},
		{"wrong type", "POST", "/v1/check", checkKey, "", `{"identifiers":"a@example.org","channel":"email","purpose":"marketing"}`, 400, "invalid_request", "identifiers"},
		{"unknown field", "POST", "/v1/check", checkKey, "", `{"identifiers":[{"type":"email","value":"a@example.org"}],"channel":"email","purpose":"marketing","emial":"x"}`, 400, "invalid_request", "emial"},
		{"unknown identifier type", "POST", "/v1/check", checkKey, "", `{"identifiers":[{"type":"fax","value":"1"}],"channel":"email","purpose":"marketing"}`, 400, "invalid_request", "identifiers[0].type"},
		{"invalid identifier value", "POST", "/v1/check", checkKey, "", `{"identifiers":[{"type":"phone","value":"12"}],"channel":"email","purpose":"marketing"}`, 400, "invalid_request", "identifiers[0].value"},
		{"no identifiers", "POST", "/v1/check", checkKey, "", `{"identifiers":[],"channel":"email","purpose":"marketing"}`, 400, "invalid_request", "identifiers"},
		{"missing channel", "POST", "/v1/check", checkKey, "", `{"identifiers":[{"type":"email","value":"a@example.org"}],"purpose":"marketing"}`, 400, "invalid_request", "channel"},
		{"unknown purpose", "POST", "/v1/check", checkKey, "", `{"identifiers":[{"type":"email","value":"a@example.org"}],"channel":"email","purpose":"spam"}`, 400, "invalid_request", "purpose"},
		{"bad namespace", "POST", "/v1/check", checkKey, "", `{"namespace":"Acme Corp","identifiers":[{"type":"email","value":"a@example.org"}],"channel":"email","purpose":"marketing"}`, 400, "invalid_request", "namespace"},
		{"oversized body", "POST", "/v1/check", checkKey, "", `{"identifiers":[{"type":"email","value":"` + strings.Repeat("a", 5000) + `@example.org"}],"channel":"email","purpose":"marketing"}`, 413, "too_large", ""},
		{"batch too long", "POST", "/v1/check/batch", checkKey, "", `{"channel":"email","purpose":"marketing","contacts":[` + strings.TrimSuffix(strings.Repeat(`{"identifiers":[{"type":"email","value":"a@example.org"}]},`, 6), ",") + `]}`, 413, "too_large", "contacts"},
		{"too many identifiers", "POST", "/v1/check", checkKey, "", `{"identifiers":[` + strings.TrimSuffix(strings.Repeat(`{"type":"email","value":"a@example.org"},`, 17), ",") + `],"channel":"email","purpose":"marketing"}`, 413, "too_large", "identifiers"},
		{"xml", "POST", "/v1/check", checkKey, "application/xml", okCheck, 415, "unsupported_media_type", ""},
		{"filter without type", "POST", "/v1/filter", filterKey, "text/plain", "", 400, "invalid_request", "type"},
		{"filter with raw emails", "POST", "/v1/filter?type=email", filterKey, "text/plain", "", 400, "invalid_request", "type"},
		{"filter unknown platform", "POST", "/v1/filter?type=email_sha256&platform=myspace", filterKey, "text/plain", "", 400, "invalid_request", "platform"},
		{"filter brotli", "POST", "/v1/filter?type=email_sha256", filterKey, "text/plain", "", 415, "unsupported_media_type", ""},
		{"unknown path", "GET", "/v1/contacts", checkKey, "", "", 404, "not_found", ""},
		{"identifiers in a URL are not a thing", "GET", "/v1/check?email=a@example.org", checkKey, "", "", 405, "method_not_allowed", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, e.srv.URL+tc.path, strings.NewReader(tc.body))
			require.NoError(t, err)
			if tc.key != "" {
				req.Header.Set("Authorization", "Bearer "+tc.key)
			}
			if tc.contentType != "" {
				req.Header.Set("Content-Type", tc.contentType)
			}
			if tc.name == "filter brotli" {
				req.Header.Set("Content-Encoding", "br")
			}
			resp, err := e.srv.Client().Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			require.Equal(t, tc.status, resp.StatusCode, string(b))
			e.spec.CheckResponse(t, req, []byte(tc.body), resp, b)
			require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
			var body errorBody
			require.NoError(t, json.Unmarshal(b, &body), string(b))
			require.Equal(t, tc.code, body.Error.Code)
			require.Equal(t, tc.field, body.Error.Field, body.Error.Message)
			require.NotEmpty(t, body.Error.Message)
			require.NotContains(t, body.Error.Message, "a@example.org")
		})
	}
}

func TestFilterMalformedLines(t *testing.T) {
	e := newEnv(t, testenv.RedisClients(t)["standalone"], Options{})
	long := strings.Repeat("f", 5000)
	in := sha("x@example.org") + "\n" + long + "\n" + "zz" + sha("x@example.org")[2:] + "\n" + sha("y@example.org")[:63] + "\n\r\n" + sha("y@example.org")
	status, _, body := e.do(http.MethodPost, "/v1/filter?type=email_sha256", filterKey, "text/plain", []byte(in))
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, sha("x@example.org")+"\n"+sha("y@example.org")+"\n# total=5 allowed=2 suppressed=0 malformed=3\n", string(body),
		"a last line without newline counts; malformed lines are never echoed")
}

func getenvDefault(k, def string) string {
	if v, ok := os.LookupEnv(k); ok {
		return v
	}
	return def
}

// TestBatchBoundedByMatchKeys: contacts within the documented limits (at
// most 10,000 per batch, 16 identifiers each) can still expand into more
// match keys than the store reads within its deadline (a Gmail address has
// four forms). Such a batch used to answer 503, which the client took as
// "suppressed" for everyone. It is now a 413 naming the key limit, and the
// Go client, with its defaults, splits it and gets every answer.
func TestBatchBoundedByMatchKeys(t *testing.T) {
	rdb := testenv.RedisClients(t)["standalone"]
	e := newEnv(t, rdb, Options{})
	e.suppress(suppression.EventUnsubscribe, email("first.last.7+news@gmail.com"), "email")
	const contacts, perContact = 2000, 16
	req := client.BatchRequest{Channel: "email", Purpose: "marketing"}
	wire := make([]map[string]any, contacts)
	for i := range contacts {
		var ids []client.Identifier
		var wids []suppression.Identifier
		for j := range perContact {
			v := fmt.Sprintf("first.last.%d+list%d@gmail.com", i, j)
			if j == 0 {
				v = fmt.Sprintf("first.last.%d+news@gmail.com", i)
			}
			ids = append(ids, client.Identifier{Type: client.TypeEmail, Value: v})
			wids = append(wids, email(v))
		}
		req.Contacts = append(req.Contacts, client.Contact{Ref: strconv.Itoa(i), Identifiers: ids})
		wire[i] = map[string]any{"identifiers": wids}
	}
	status, body := e.postJSON("/v1/check/batch", checkKey, map[string]any{"channel": "email", "purpose": "marketing", "contacts": wire})
	require.Equal(t, http.StatusRequestEntityTooLarge, status, body)
	msg := body["error"].(map[string]any)["message"].(string)
	require.Contains(t, msg, "50000 match keys")

	cl, err := client.New(e.srv.URL, checkKey, client.Options{})
	require.NoError(t, err)
	results, err := cl.CheckBatch(context.Background(), req)
	require.NoError(t, err, "the client splits what the server finds too large")
	require.Len(t, results, contacts)
	for i, r := range results {
		require.NoError(t, r.Err)
		require.Equal(t, i != 7, r.Allowed, "contact %d", i)
	}
}
