package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"maps"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/internal/testenv"
	"github.com/suppressd/suppressd/internal/testkafka"
)

// TestOneClickEndToEnd runs the api and consumer roles against the real
// broker and Redis, mints a link with `suppressd link`, and follows it as a
// mail provider would: the GET changes nothing, the one-click POST answers
// 200 only once the unsubscribe is on Kafka, and the consumer makes it
// visible through /v1/check.
func TestOneClickEndToEnd(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	redisAddr := testenv.RedisAddr(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	topic := testkafka.Unique("unsub")
	env, names := serviceTopics(topic)
	for _, name := range names {
		testkafka.CreateTopic(ctx, t, brokers[0], name, 3)
	}
	apiAddr := freePort(t)
	apiKey := "sdk_e2e_key"
	h := sha256.Sum256([]byte(apiKey))
	secret := make([]byte, 32)
	for i := range secret {
		secret[i] = byte(i * 7)
	}
	maps.Copy(env, map[string]string{
		"SUPPRESSD_ROLE":                 "api,consumer",
		"SUPPRESSD_API_ADDR":             apiAddr,
		"SUPPRESSD_API_KEYS":             "e2e:check+publish:" + hex.EncodeToString(h[:]),
		"SUPPRESSD_KAFKA_BROKERS":        strings.Join(brokers, ","),
		"SUPPRESSD_REDIS_ADDRS":          redisAddr,
		"SUPPRESSD_STORE_PREFIX":         strings.ReplaceAll(testkafka.Unique("oc"), "-", ""),
		"SUPPRESSD_LINK_KEYS":            "k1:" + base64.StdEncoding.EncodeToString(secret),
		"SUPPRESSD_LINK_BASE_URL":        "http://" + apiAddr,
		"SUPPRESSD_LINK_MAILTO":          "unsubscribe@example.org",
		"SUPPRESSD_LOG_FORMAT":           "json",
		"SUPPRESSD_CONSUMER_BATCH_WAIT":  "5ms",
		"SUPPRESSD_CONSUMER_BACKOFF_MIN": "20ms",
	})
	for k, v := range env {
		t.Setenv(k, v)
	}
	serveInProcess(t, "") // the roles of SUPPRESSD_ROLE

	var out, errb bytes.Buffer
	require.Equal(t, 0, run(ctx, []string{"link", "--email", "One.Click@example.org", "--scope", "topic:news", "--campaign", "c-42"}, stdio{out: &out, err: &errb}), errb.String())
	require.Contains(t, out.String(), "List-Unsubscribe-Post: List-Unsubscribe=One-Click\n")
	require.NotContains(t, out.String(), "One.Click", "the link does not expose the address")
	url := regexp.MustCompile(`<(http://[^>]+)>`).FindStringSubmatch(out.String())[1]
	token := url[strings.LastIndex(url, "/u/")+len("/u/"):]
	require.Contains(t, out.String(), "<mailto:unsubscribe@example.org?subject=unsubscribe%20"+token+">", "the mailto carries the token")

	checkAllowed := func() bool {
		req, _ := http.NewRequest(http.MethodPost, "http://"+apiAddr+"/v1/check",
			strings.NewReader(`{"identifiers":[{"type":"email","value":"one.click@example.org"}],"channel":"email","purpose":"marketing","topic":"news"}`))
		req.Header.Set("Authorization", "Bearer "+apiKey)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		return strings.Contains(b.String(), `"allowed":true`)
	}
	require.True(t, checkAllowed())

	// A link scanner's GET: a page, no change.
	resp, err := http.Get(url)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	time.Sleep(300 * time.Millisecond)
	require.True(t, checkAllowed(), "a GET unsubscribes no one")

	// The mail provider's one-click POST.
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err = client.Post(url, "application/x-www-form-urlencoded", strings.NewReader("List-Unsubscribe=One-Click"))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Empty(t, resp.Header.Get("Location"))
	require.Empty(t, resp.Header.Get("Set-Cookie"))

	msgs := testkafka.ReadAll(ctx, t, brokers, topic, 3, 1)
	require.Len(t, msgs, 1, "the unsubscribe was on Kafka when the 200 came")
	require.Contains(t, string(msgs[0].Value), `"io.suppressd.unsubscribe.v1"`)
	require.Eventually(t, func() bool { return !checkAllowed() }, 30*time.Second, 50*time.Millisecond,
		"the consumer applies the one-click unsubscribe")

	// The api role's /metrics counts the pages and what was published.
	resp, err = http.Get("http://" + apiAddr + "/metrics")
	require.NoError(t, err)
	var page bytes.Buffer
	_, err = page.ReadFrom(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	m := parseMetrics(t, page.String())
	require.Equal(t, map[string]float64{"confirm/shown": 1, "unsubscribe/unsubscribed": 1},
		joined(series2(m, "suppressd_unsubscribe_requests_total", "page", "outcome")))
	require.Equal(t, map[string]float64{"one_click/published": 1},
		joined(series2(m, "suppressd_unsubscribe_events_total", "via", "outcome")))
	require.Equal(t, map[string]float64{"unsubscribe/published": 1},
		joined(series2(m, "suppressd_publish_events_total", "type", "outcome")))
}
