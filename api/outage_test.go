package api

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/client"
	"github.com/suppressd/suppressd/internal/testredis"
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
