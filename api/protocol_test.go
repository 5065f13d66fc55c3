package api

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/internal/testenv"
	"github.com/suppressd/suppressd/internal/testredis"
	"github.com/suppressd/suppressd/internal/teststore"
	"github.com/suppressd/suppressd/store/redisstore"
	"github.com/suppressd/suppressd/suppression"
)

// TestProtocol holds the API to HTTP's and JSON's rules where clients and
// tools rely on them: a 405 says what is allowed, the auth scheme is
// case-insensitive, null is not a string, and a byte order mark is not
// part of the first hash.
func TestProtocol(t *testing.T) {
	e := newEnv(t, testenv.RedisClients(t)["standalone"], Options{})
	e.suppress(suppression.EventUnsubscribe, email("bom@example.org"), "*")

	t.Run("405 names the allowed methods", func(t *testing.T) {
		for _, tc := range []struct{ method, path, allow string }{
			{http.MethodGet, "/v1/check", "POST"},
			{http.MethodPut, "/v1/filter", "POST"},
			{http.MethodDelete, "/v1/events", "POST"},
			{http.MethodPost, "/healthz", "GET, HEAD"},
		} {
			status, h, b := e.do(tc.method, tc.path, checkKey, "", nil)
			require.Equal(t, http.StatusMethodNotAllowed, status, "%s %s: %s", tc.method, tc.path, b)
			require.Equal(t, tc.allow, h.Get("Allow"), "%s %s", tc.method, tc.path)
			require.Contains(t, string(b), `"method_not_allowed"`)
		}
	})

	t.Run("the bearer scheme in any case", func(t *testing.T) {
		body := mustJSON(t, check([]suppression.Identifier{email("a@example.org")}, "email", "marketing", ""))
		for _, scheme := range []string{"bearer", "BEARER", "Bearer"} {
			req, err := http.NewRequest(http.MethodPost, e.srv.URL+"/v1/check", bytes.NewReader(body))
			require.NoError(t, err)
			req.Header.Set("Authorization", scheme+" "+checkKey)
			resp, err := e.srv.Client().Do(req)
			require.NoError(t, err)
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			require.Equal(t, http.StatusOK, resp.StatusCode, "%s: %s", scheme, b)
		}
		for _, h := range []string{"Basic " + checkKey, "Bearer", "Bearer ", checkKey} {
			req, err := http.NewRequest(http.MethodPost, e.srv.URL+"/v1/check", bytes.NewReader(body))
			require.NoError(t, err)
			req.Header.Set("Authorization", h)
			resp, err := e.srv.Client().Do(req)
			require.NoError(t, err)
			resp.Body.Close()
			require.Equal(t, http.StatusUnauthorized, resp.StatusCode, "%q", h)
		}
	})

	t.Run("null is not a string", func(t *testing.T) {
		id := `"identifiers":[{"type":"email","value":"a@example.org"}]`
		for _, tc := range []struct{ path, body, field string }{
			{"/v1/check", `{` + id + `,"channel":"email","purpose":"marketing","topic":null}`, "topic"},
			{"/v1/check", `{` + id + `,"channel":"email","purpose":"marketing","namespace":null}`, "namespace"},
			{"/v1/check", `{` + id + `,"channel":null,"purpose":"marketing"}`, "channel"},
			{"/v1/check/batch", `{"channel":"email","purpose":"marketing","contacts":[{"ref":null,` + id + `}]}`, "contacts.ref"},
			{"/v1/subjects/lookup", `{"namespace":null,` + id + `}`, "namespace"},
			{"/v1/check", `{"identifiers":[{"type":"email","value":null}],"channel":"email","purpose":"marketing"}`, "identifiers.value"},
			{"/v1/check/batch", `{"channel":"email","purpose":"marketing","contacts":[null]}`, "contacts"},
			{"/v1/check/batch", `{"channel":"email","purpose":"marketing","contacts":[{"identifiers":null}]}`, "contacts.identifiers"},
			{"/v1/check/batch", `{"channel":"email","purpose":"marketing","contacts":[{"identifiers":[null]}]}`, "contacts.identifiers"},
		} {
			key := checkKey
			if tc.path == "/v1/subjects/lookup" {
				key = adminKey
			}
			status, _, b := e.do(http.MethodPost, tc.path, key, "application/json", []byte(tc.body))
			require.Equal(t, http.StatusBadRequest, status, "%s %s: %s", tc.path, tc.body, b)
			var eb errorBody
			require.NoError(t, json.Unmarshal(b, &eb))
			require.Equal(t, tc.field, eb.Error.Field, eb.Error.Message)
			require.Contains(t, eb.Error.Message, "null")
		}
	})

	t.Run("JSON is UTF-8", func(t *testing.T) {
		// encoding/json makes U+FFFD of each invalid byte: the address
		// checked would be another one than the sender's.
		body := `{"identifiers":[{"type":"email","value":"a` + "\xff" + `@example.org"}],"channel":"email","purpose":"marketing"}`
		status, _, b := e.do(http.MethodPost, "/v1/check", checkKey, "application/json", []byte(body))
		require.Equal(t, http.StatusBadRequest, status, string(b))
		require.Contains(t, string(b), "not valid UTF-8 (at byte 42)")
	})

	t.Run("a batch ref is bounded", func(t *testing.T) {
		// It is echoed: unbounded, one contact would make the server
		// repeat the whole 16 MiB body.
		body := `{"channel":"email","purpose":"marketing","contacts":[{"ref":"r"},{"ref":"` + strings.Repeat("é", 257) + `","identifiers":[{"type":"email","value":"a@example.org"}]}]}`
		status, _, b := e.do(http.MethodPost, "/v1/check/batch", checkKey, "application/json", []byte(body))
		require.Equal(t, http.StatusRequestEntityTooLarge, status, string(b))
		require.Contains(t, string(b), `"field":"contacts[1].ref"`)
		require.Contains(t, string(b), "at most 256 characters")
		ok := `{"channel":"email","purpose":"marketing","contacts":[{"ref":"` + strings.Repeat("é", 256) + `","identifiers":[{"type":"email","value":"a@example.org"}]}]}`
		status, _, b = e.do(http.MethodPost, "/v1/check/batch", checkKey, "application/json", []byte(ok))
		require.Equal(t, http.StatusOK, status, string(b))
	})

	t.Run("filter drops a byte order mark", func(t *testing.T) {
		in := "\xEF\xBB\xBF" + sha("bom@example.org") + "\n" + sha("kept@example.org") + "\n"
		status, _, b := e.do(http.MethodPost, "/v1/filter?type=email_sha256", filterKey, "text/plain", []byte(in))
		require.Equal(t, http.StatusOK, status)
		require.Equal(t, sha("kept@example.org")+"\n# total=2 allowed=1 suppressed=1 malformed=0\n", string(b),
			"the first line is the suppressed hash, not a malformed line")
	})
}

// TestClientGoneIsNotAStoreError: a client that hangs up while the store
// is slow is not a store outage. It used to be counted in
// suppressd_api_store_errors_total and logged as one, so the alert on that
// counter fired for impatient clients.
func TestClientGoneIsNotAStoreError(t *testing.T) {
	srv := testredis.Start(t)
	// As the binary's client (internal/redisconn): a canceled context
	// abandons a read at once.
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), ContextTimeoutEnabled: true})
	defer rdb.Close()
	keyer := suppression.NewKeyer([]byte("api-test-pepper"))
	store := teststore.Build(t, rdb, redisstore.Options{Prefix: teststore.Prefix(), Keying: keyer.Fingerprint()})
	reg := prometheus.NewRegistry()
	var logs testenv.Buffer
	s := New(store, Options{Keys: testKeys(t), Normalizer: norm, Keyer: keyer, StoreTimeout: 5 * time.Second},
		slog.New(slog.NewJSONHandler(&logs, nil)), reg)
	hs := httptest.NewServer(s.Handler())
	defer hs.Close()

	// Every client of this private redis-server waits 1.5s.
	require.NoError(t, rdb.Do(context.Background(), "CLIENT", "PAUSE", "1500", "ALL").Err())
	body := mustJSON(t, check([]suppression.Identifier{email("a@example.org")}, "email", "marketing", ""))
	const impatient = 3
	for range impatient {
		ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, hs.URL+"/v1/check", bytes.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+checkKey)
		_, err = hs.Client().Do(req)
		cancel()
		require.Error(t, err, "the client gave up first")
	}
	require.Eventually(t, func() bool {
		return testutil.ToFloat64(s.m.canceled) == impatient
	}, 5*time.Second, 20*time.Millisecond, "each hang-up is counted as a canceled read\n%s", logs.String())
	require.Zero(t, testutil.ToFloat64(s.m.storeErr), "no store error: the store was slow, the clients left")
	require.Zero(t, testutil.ToFloat64(s.m.checks.WithLabelValues("unavailable")))
	require.NotContains(t, logs.String(), "store read failed")
	require.Equal(t, float64(impatient), testutil.ToFloat64(s.m.requests.WithLabelValues("check", "499")))
	require.False(t, strings.Contains(logs.String(), `"level":"WARN"`), "nothing to warn about: %s", logs.String())
}
