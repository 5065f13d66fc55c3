package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/internal/testenv"
	"github.com/suppressd/suppressd/internal/testkafka"
)

// TestWebhookThroughServe is the mail provider's path as serve wires it: a
// signed Mailgun complaint to the api role's /hooks/mailgun is published to
// the intake topic before the 200, ingested, applied, and the next check
// for the address says suppressed. A retry of the same event (a new token,
// as Mailgun sends it) publishes nothing twice; a replayed delivery, an
// unsigned one and one signed with another key are refused and publish
// nothing; a provider without credentials is not served.
func TestWebhookThroughServe(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	brokers, topic := servingEnv(ctx, t, testenv.RedisAddr(t))
	const signingKey = "key-serve-test-0123456789abcdef"
	t.Setenv("SUPPRESSD_HOOKS_MAILGUN_SIGNING_KEY", signingKey)
	addr, logs := serveInProcess(t, "api,consumer")
	client := &http.Client{Timeout: 10 * time.Second}

	const email = "Complainer.Hook@example.org"
	status, allowed, err := checkEmail(client, addr, email)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, status)
	require.True(t, allowed, "nobody has complained yet")

	// A retry carries the same event data, its timestamp included (the
	// event id is Mailgun's id with it): one instant for every delivery.
	happened := time.Now().Add(-time.Minute).Unix()
	event := func(id string) []byte {
		return []byte(fmt.Sprintf(`{"id":%q,"timestamp":%d.25,"event":"complained","recipient":%q,"message":{"headers":{"message-id":"m-1@mg.example.org"}}}`,
			id, happened, email))
	}
	post := func(key, token string, eventData []byte) (int, string) {
		ts := strconv.FormatInt(time.Now().Unix(), 10)
		m := hmac.New(sha256.New, []byte(key))
		m.Write([]byte(ts + token))
		body, err := json.Marshal(map[string]any{
			"signature":  map[string]string{"timestamp": ts, "token": token, "signature": hex.EncodeToString(m.Sum(nil))},
			"event-data": json.RawMessage(eventData),
		})
		require.NoError(t, err)
		resp, err := client.Post("http://"+addr+"/hooks/mailgun", "application/json", bytes.NewReader(body))
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	code, body := post(signingKey, "token-0001-0123456789012345678901234567890123456789", event("hook-complaint-1"))
	require.Equal(t, http.StatusOK, code, body)
	require.JSONEq(t, `{"published":1,"duplicates":0,"ignored":0}`, body)
	require.Eventually(t, func() bool {
		status, allowed, err := checkEmail(client, addr, email)
		return err == nil && status == http.StatusOK && !allowed
	}, 30*time.Second, 50*time.Millisecond, "the complaint suppresses the address\n%s", logs.String())

	// Mailgun retries with a new token: the event is known, nothing is
	// published again.
	code, body = post(signingKey, "token-0002-0123456789012345678901234567890123456789", event("hook-complaint-1"))
	require.Equal(t, http.StatusOK, code, body)
	require.JSONEq(t, `{"published":0,"duplicates":1,"ignored":0}`, body)
	// The same delivery again is a replay.
	code, body = post(signingKey, "token-0002-0123456789012345678901234567890123456789", event("hook-complaint-1"))
	require.Equal(t, http.StatusConflict, code, body)
	require.Contains(t, body, "replayed")
	// Another key's signature, and none, are refused.
	code, body = post("key-someone-else-0123456789abcdef", "token-0003-0123456789012345678901234567890123456789", event("hook-complaint-2"))
	require.Equal(t, http.StatusUnauthorized, code, body)
	resp, err := client.Post("http://"+addr+"/hooks/mailgun", "application/json", bytes.NewReader([]byte(`{"event-data":`+string(event("hook-complaint-3"))+`}`)))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	// A provider without credentials is not there at all.
	resp, err = client.Post("http://"+addr+"/hooks/sendgrid", "application/json", strings.NewReader(`[]`))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNotFound, resp.StatusCode)

	// Exactly one event reached Kafka from the webhook, and it does not
	// carry the signing key.
	var fromHook int
	for _, msg := range testkafka.ReadAll(ctx, t, brokers, topic, 2, 1000) {
		if bytes.Contains(msg.Value, []byte(`"/hooks/mailgun"`)) {
			fromHook++
			require.NotContains(t, string(msg.Value), signingKey)
		}
	}
	require.Equal(t, 1, fromHook, "one complaint, published once")
	require.NotContains(t, logs.String(), signingKey)
	require.NotContains(t, strings.ToLower(logs.String()), strings.ToLower(email), "no address in the logs")
}
