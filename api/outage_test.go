package api

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/client"
	"github.com/suppressd/suppressd/internal/openapitest"
	"github.com/suppressd/suppressd/internal/testenv"
	"github.com/suppressd/suppressd/internal/testredis"
	"github.com/suppressd/suppressd/internal/teststore"
	"github.com/suppressd/suppressd/store/redisstore"
	"github.com/suppressd/suppressd/suppression"
)

// TestFailClosed stops Redis under the API: checks answer 503 with
// Retry-After (never "allowed"), readiness drops, and both come back when
// Redis does, without a restart.
func TestFailClosed(t *testing.T) {
	srv := testredis.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), DialTimeout: 100 * time.Millisecond,
		ReadTimeout: 100 * time.Millisecond, WriteTimeout: 100 * time.Millisecond, MaxRetries: -1})
	defer rdb.Close()
	e := newEnv(t, rdb, Options{StoreTimeout: 300 * time.Millisecond, RetryAfter: 2 * time.Second})
	e.suppress(suppression.EventUnsubscribe, email("gone@example.org"), "*")
	req := check([]suppression.Identifier{email("gone@example.org")}, "email", "marketing", "")
	fresh := check([]suppression.Identifier{email("never.seen@example.org")}, "email", "marketing", "")

	status, body := e.postJSON("/v1/check", checkKey, req)
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, false, body["allowed"])

	srv.Stop()
	for _, r := range []map[string]any{req, fresh} {
		status, h, b := e.do(http.MethodPost, "/v1/check", checkKey, "application/json", mustJSON(t, r))
		require.Equal(t, http.StatusServiceUnavailable, status, string(b))
		require.Equal(t, "2", h.Get("Retry-After"))
		require.Contains(t, string(b), `"code":"unavailable"`)
		require.NotContains(t, string(b), `"allowed"`)
	}
	// The Go client, retrying its 503s, ends with "suppressed" and the error.
	cl, err := client.New(e.srv.URL, checkKey, client.Options{MaxAttempts: 2, BackoffBase: 10 * time.Millisecond, BackoffCap: 50 * time.Millisecond})
	require.NoError(t, err)
	res, err := cl.Check(context.Background(), client.CheckRequest{
		Identifiers: []client.Identifier{{Type: client.TypeEmail, Value: "never.seen@example.org"}}, Channel: "email", Purpose: "marketing"})
	require.Error(t, err)
	require.True(t, client.IsUnavailable(err), "%v", err)
	require.False(t, res.Allowed, "fail closed: an unanswered check is a suppressed contact")

	status, _, b := e.do(http.MethodPost, "/v1/filter?type=email_sha256", filterKey, "text/plain", []byte(sha("x@example.org")+"\n"))
	require.Equal(t, http.StatusServiceUnavailable, status, "a filter that cannot ask the store sends no line: %s", b)
	status, _, _ = e.do(http.MethodGet, "/readyz", "", "", nil)
	require.Equal(t, http.StatusServiceUnavailable, status)

	srv.Start()
	require.Eventually(t, func() bool {
		status, _, _ := e.do(http.MethodGet, "/readyz", "", "", nil)
		return status == http.StatusOK
	}, 10*time.Second, 50*time.Millisecond, "ready again once Redis is back")
	status, body = e.postJSON("/v1/check", checkKey, req)
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, false, body["allowed"], "the data survived (AOF) and checks resume without a restart")
	status, body = e.postJSON("/v1/check", checkKey, fresh)
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, true, body["allowed"])
	res, err = cl.Check(context.Background(), client.CheckRequest{
		Identifiers: []client.Identifier{{Type: client.TypeEmail, Value: "never.seen@example.org"}}, Channel: "email", Purpose: "marketing"})
	require.NoError(t, err)
	require.True(t, res.Allowed, "the client's answers resume too")
}

// TestReadinessNamesTheCause: /readyz is ready only when checks can be
// answered. A replica configured with another pepper than the list was
// built with, or one whose store holds no list, is 503 with the reason,
// answers every check 503, and creates no store state while doing so.
func TestReadinessNamesTheCause(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t)})
	defer rdb.Close()
	ctx := context.Background()
	built := teststore.Prefix()
	teststore.Build(t, rdb, redisstore.Options{Prefix: built, Keying: suppression.NewKeyer([]byte("pepper-a")).Fingerprint()})
	empty := teststore.Prefix()

	serve := func(prefix, pepper string) *env {
		keyer := suppression.NewKeyer([]byte(pepper))
		store, err := redisstore.New(rdb, redisstore.Options{Prefix: prefix, Keying: keyer.Fingerprint()})
		require.NoError(t, err)
		s := New(store, Options{Keys: testKeys(t), Normalizer: norm, Keyer: keyer}, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
		srv := httptest.NewServer(s.Handler())
		t.Cleanup(srv.Close)
		return &env{t: t, spec: openapitest.New(t), srv: srv, keyer: keyer}
	}
	req := check([]suppression.Identifier{email("anyone@example.org")}, "email", "marketing", "")
	for _, tc := range []struct {
		name, prefix, pepper, reason string
	}{
		{"same configuration", built, "pepper-a", ""},
		{"another pepper", built, "pepper-b", "layout_mismatch"},
		{"never built", empty, "pepper-a", "not_built"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := serve(tc.prefix, tc.pepper)
			status, _, b := e.do(http.MethodGet, "/readyz", "", "", nil)
			status2, body := e.postJSON("/v1/check", checkKey, req)
			if tc.reason == "" {
				require.Equal(t, http.StatusOK, status, string(b))
				require.Equal(t, http.StatusOK, status2)
				require.Equal(t, true, body["allowed"])
				return
			}
			require.Equal(t, http.StatusServiceUnavailable, status)
			var ready map[string]string
			require.NoError(t, json.Unmarshal(b, &ready))
			require.Equal(t, tc.reason, ready["reason"], ready["detail"])
			require.NotEmpty(t, ready["detail"])
			require.Equal(t, http.StatusServiceUnavailable, status2, "no check is answered from a store this replica cannot read: %v", body)
		})
	}
	keys, err := rdb.Keys(ctx, empty+":*").Result()
	require.NoError(t, err)
	require.Empty(t, keys, "the API created store state")
}
