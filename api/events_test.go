package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/internal/openapitest"
	"github.com/suppressd/suppressd/internal/testenv"
	"github.com/suppressd/suppressd/internal/testkafka"
	"github.com/suppressd/suppressd/internal/teststore"
	"github.com/suppressd/suppressd/publish"
	"github.com/suppressd/suppressd/schemas"
	"github.com/suppressd/suppressd/store/redisstore"
	"github.com/suppressd/suppressd/suppression"
)

const publishKey = "sdk_test_publish"

// TestPublishEvents publishes through /v1/events to the real broker: Kafka
// down gives 503 and no event; the retry publishes exactly one; a duplicate
// publishes nothing; an invalid event lists its violations.
func TestPublishEvents(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	topic := testkafka.Unique("unsub")
	testkafka.CreateTopic(ctx, t, brokers[0], topic, 1)
	rdb := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t)})
	defer rdb.Close()
	store := teststore.Build(t, rdb, redisstore.Options{Prefix: teststore.Prefix()})
	publog := redisstore.NewPublishLog(rdb, store.Options().Prefix)
	v, err := schemas.New()
	require.NoError(t, err)
	keys := testKeys(t)
	more, err := ParseKeys("publisher:publish:" + sha(publishKey))
	require.NoError(t, err)
	keys = append(keys, more...)
	topics := publish.Topics{Unsubscribes: topic, Consent: topic, Erasure: topic}

	serve := func(brokers []string) *httptest.Server {
		w := publish.NewWriter(brokers, nil)
		t.Cleanup(func() { _ = w.Close() })
		pub := publish.New(w, topics, norm, 2*time.Second, nil)
		s := New(store, Options{Keys: keys, Normalizer: norm, Publisher: pub, Validator: v, PublishLog: publog}, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
		srv := httptest.NewServer(s.Handler())
		t.Cleanup(srv.Close)
		return srv
	}
	spec := openapitest.New(t)
	post := func(srv *httptest.Server, body []byte) (int, map[string]any) {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/events", strings.NewReader(string(body)))
		req.Header.Set("Authorization", "Bearer "+publishKey)
		req.Header.Set("Content-Type", "application/json")
		resp, err := srv.Client().Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var out map[string]any
		b := make([]byte, 0)
		buf := make([]byte, 4096)
		for {
			n, err := resp.Body.Read(buf)
			b = append(b, buf[:n]...)
			if err != nil {
				break
			}
		}
		spec.CheckResponse(t, req, body, resp, b)
		require.NoError(t, json.Unmarshal(b, &out), string(b))
		return resp.StatusCode, out
	}

	e := suppression.Event{ID: fmt.Sprintf("req-%d", time.Now().UnixNano()), Source: "/crm", Type: suppression.EventUnsubscribe,
		OccurredAt: time.Now().Add(-time.Second), Identifiers: []suppression.Identifier{{Type: suppression.IDEmail, Value: "publish.me@example.org"}},
		Scopes: []suppression.Scope{"email"}, Origin: suppression.OriginCustomer}
	require.NoError(t, e.Normalize(time.Time{}))
	raw, err := schemas.Encode(e)
	require.NoError(t, err)

	// Kafka down: a broker address nothing listens on.
	down := serve([]string{freeAddr(t)})
	status, body := post(down, raw)
	require.Equal(t, http.StatusServiceUnavailable, status, body)
	require.Equal(t, "unavailable", body["error"].(map[string]any)["code"])

	up := serve(brokers)
	status, body = post(up, raw)
	require.Equal(t, http.StatusAccepted, status, body)
	require.Equal(t, e.ID, body["id"])
	require.NotContains(t, body, "duplicate")
	status, body = post(up, raw)
	require.Equal(t, http.StatusAccepted, status, body)
	require.Equal(t, true, body["duplicate"], "a retry is recognised")

	msgs := testkafka.ReadAll(ctx, t, brokers, topic, 1, 5)
	require.Len(t, msgs, 1, "exactly one event for the request id")
	require.Equal(t, raw, msgs[0].Value)
	require.NotContains(t, string(msgs[0].Key), "publish.me", "the message key is a hash, not the address")
	require.True(t, strings.HasPrefix(string(msgs[0].Key), "email:"))

	bad := []byte(`{"specversion":"1.0","id":"x","source":"/crm","type":"io.suppressd.unsubscribe.v1","time":"2026-11-28T10:00:00Z",` +
		`"data":{"identifiers":[{"type":"email","value":"leaky@example.org"}],"scopes":["everything"],"origin":"martian"}}`)
	status, body = post(up, bad)
	require.Equal(t, http.StatusBadRequest, status)
	violations := body["error"].(map[string]any)["violations"].([]any)
	var paths []string
	for _, vi := range violations {
		paths = append(paths, vi.(map[string]any)["path"].(string))
	}
	require.ElementsMatch(t, []string{"/data/origin", "/data/scopes/0"}, paths)
	require.NotContains(t, fmt.Sprint(body), "leaky@example.org")

	// An opt-out dated an hour ahead is published, not refused: the consumer
	// dates it at its reference time. Refusing it would leave the person
	// contactable.
	future := e
	future.ID, future.OccurredAt = fmt.Sprintf("fut-%d", time.Now().UnixNano()), time.Now().Add(time.Hour)
	futureRaw, err := schemas.Encode(future)
	require.NoError(t, err)
	status, body = post(up, futureRaw)
	require.Equal(t, http.StatusAccepted, status, body)
	require.Len(t, testkafka.ReadAll(ctx, t, brokers, topic, 1, 5), 2, "the future-dated opt-out is on the topic")

	// An unsuppress needs the admin scope as well.
	un := suppression.Event{ID: fmt.Sprintf("un-%d", time.Now().UnixNano()), Source: "/admin", Type: suppression.EventUnsuppress,
		OccurredAt: time.Now().Add(-time.Second), Identifiers: e.Identifiers, Scopes: []suppression.Scope{"email"},
		Origin: suppression.OriginAdmin, Reason: suppression.ReasonErasure, Justification: "erasure withdrawn, ticket 4411"}
	require.NoError(t, un.Normalize(time.Time{}))
	unRaw, err := schemas.Encode(un)
	require.NoError(t, err)
	status, body = post(up, unRaw)
	require.Equal(t, http.StatusForbidden, status, body)
	require.Contains(t, body["error"].(map[string]any)["message"], "admin")

	// The admin import endpoint: a Mailgun bounces export, one bad row.
	export := "address,code,error,created_at\n" +
		"bounced.one@example.org,550,No such user,\"Thu, 13 Oct 2026 18:02:00 UTC\"\n" +
		"not-an-address,550,No such user,\"Thu, 13 Oct 2026 18:02:00 UTC\"\n" +
		"bounced.two@example.org,550,Mailbox full,\"Fri, 14 Oct 2026 09:00:00 UTC\"\n"
	ireq, _ := http.NewRequest(http.MethodPost, up.URL+"/v1/import?format=mailgun&kind=bounces&scope=email", strings.NewReader(export))
	ireq.Header.Set("Authorization", "Bearer "+adminKey)
	ireq.Header.Set("Content-Type", "text/csv")
	iresp, err := up.Client().Do(ireq)
	require.NoError(t, err)
	var imp struct {
		Published, Rejected int
		Rows                []struct {
			Line   int
			Reason string
		} `json:"rejected_rows"`
	}
	ib, _ := io.ReadAll(iresp.Body)
	iresp.Body.Close()
	spec.CheckResponse(t, ireq, []byte(export), iresp, ib)
	require.Equal(t, http.StatusOK, iresp.StatusCode, string(ib))
	require.NoError(t, json.Unmarshal(ib, &imp))
	require.Equal(t, 2, imp.Published)
	require.Equal(t, 1, imp.Rejected)
	require.Equal(t, 3, imp.Rows[0].Line)
	require.NotContains(t, string(ib), "not-an-address")
	all := testkafka.ReadAll(ctx, t, brokers, topic, 1, 10)
	require.Len(t, all, 4, "the earlier events and the two imported rows")
	for _, m := range all[2:] {
		d, err := v.Decode(m.Value, m.Time, norm)
		require.NoError(t, err)
		require.Equal(t, suppression.ReasonHardBounce, d.Event.Reason)
		require.Equal(t, suppression.OriginSystem, d.Event.Origin)
	}
	ireq, _ = http.NewRequest(http.MethodPost, up.URL+"/v1/import?format=mailgun", strings.NewReader(export))
	ireq.Header.Set("Authorization", "Bearer "+publishKey)
	iresp, err = up.Client().Do(ireq)
	require.NoError(t, err)
	iresp.Body.Close()
	require.Equal(t, http.StatusForbidden, iresp.StatusCode, "imports need the admin scope")

	req, _ := http.NewRequest(http.MethodPost, up.URL+"/v1/events", strings.NewReader(string(raw)))
	req.Header.Set("Authorization", "Bearer "+checkKey)
	resp, err := up.Client().Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusForbidden, resp.StatusCode, "publishing needs the publish scope")
}

func freeAddr(t *testing.T) string {
	srv := httptest.NewServer(http.NotFoundHandler())
	addr := srv.Listener.Addr().String()
	srv.Close()
	return addr
}
