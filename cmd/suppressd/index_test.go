package main

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/internal/testkafka"
	"github.com/suppressd/suppressd/internal/testredis"
)

// TestIndexServesAndFailsClosed runs `serve --role api,consumer` with the
// read index: once it serves, /readyz says so and a check of an address
// that never opted out is answered without Redis (the metric counts it);
// with Redis stalled (CLIENT PAUSE) the index stops answering past its
// bound, so every check fails closed with a 503, the opted-out address's
// and the other's alike, and /readyz says the index lags; once Redis
// answers again the index serves again.
func TestIndexServesAndFailsClosed(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv := testredis.StartVolatile(t)
	brokers, topic := servingEnv(ctx, t, srv.Addr())
	t.Setenv("SUPPRESSD_INDEX_MAX_LAG", "100ms")
	t.Setenv("SUPPRESSD_API_STORE_TIMEOUT", "200ms")
	addr, logs := serveInProcess(t, "api,consumer")
	client := &http.Client{Timeout: 10 * time.Second}

	w := testkafka.Writer(brokers, topic)
	defer w.Close()
	require.NoError(t, w.WriteMessages(ctx, unsubscribes(t, "gone@example.org")...))
	require.Eventually(t, func() bool {
		status, allowed, err := checkEmail(client, addr, "gone@example.org")
		return err == nil && status == http.StatusOK && !allowed
	}, 30*time.Second, 20*time.Millisecond, "the opt-out is visible\n%s", logs.String())
	require.Eventually(t, func() bool {
		status, body, err := get(client, "http://"+addr+"/readyz")
		return err == nil && status == http.StatusOK && containsAll(body, `"index":{"state":"serving"`, `"keys":`)
	}, 30*time.Second, 20*time.Millisecond, "the index serves\n%s", logs.String())

	status, allowed, err := checkEmail(client, addr, "never@example.org")
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, status)
	require.True(t, allowed)
	_, metrics, err := get(client, "http://"+addr+"/metrics")
	require.NoError(t, err)
	require.Regexp(t, `suppressd_index_keys_read_total\{answer="memory"\} [1-9]`, metrics)
	require.Contains(t, metrics, "suppressd_index_serving 1")

	admin := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer admin.Close()
	require.NoError(t, admin.Do(ctx, "CLIENT", "PAUSE", "4000", "ALL").Err())
	defer admin.Do(context.Background(), "CLIENT", "UNPAUSE")
	time.Sleep(300 * time.Millisecond) // past the bound, and its checks
	for _, email := range []string{"never@example.org", "gone@example.org"} {
		status, _, err := checkEmail(client, addr, email)
		require.NoError(t, err)
		require.Equal(t, http.StatusServiceUnavailable, status, "%s: the stale index does not answer; Redis cannot", email)
	}
	_, body, err := get(client, "http://"+addr+"/readyz")
	require.NoError(t, err)
	require.Contains(t, body, `"state":"lagging"`)

	require.NoError(t, admin.Do(ctx, "CLIENT", "UNPAUSE").Err())
	require.Eventually(t, func() bool {
		status, allowed, err := checkEmail(client, addr, "never@example.org")
		return err == nil && status == http.StatusOK && allowed
	}, 30*time.Second, 20*time.Millisecond)
	_, metrics, err = get(client, "http://"+addr+"/metrics")
	require.NoError(t, err)
	require.Regexp(t, `suppressd_index_fallback_reads_total\{reason="(feed|generation)"\} [1-9]`, metrics)
}

func containsAll(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}
