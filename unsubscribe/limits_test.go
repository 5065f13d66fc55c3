package unsubscribe

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/internal/testenv"
	"github.com/suppressd/suppressd/internal/testkafka"
	"github.com/suppressd/suppressd/internal/teststore"
	"github.com/suppressd/suppressd/publish"
	"github.com/suppressd/suppressd/store/redisstore"
	"github.com/suppressd/suppressd/suppression"
)

// realPublishing returns the handler's publisher and publish log as the api
// role wires them: Kafka (a topic of the test's own for every event type)
// and Redis; and a function that reads back what reached the topic.
func realPublishing(t *testing.T) (Publisher, PublishLog, func(want int) []string) {
	t.Helper()
	brokers := testenv.KafkaBrokers(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	topic := testkafka.Unique("links")
	testkafka.CreateTopic(ctx, t, brokers[0], topic, 1)
	w := publish.NewWriter(brokers, nil)
	t.Cleanup(func() { _ = w.Close() })
	pub := publish.New(w, publish.Topics{Unsubscribes: topic, Consent: topic, Erasure: topic}, suppression.Normalizer{}, 5*time.Second, nil)
	rdb := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t)})
	t.Cleanup(func() { _ = rdb.Close() })
	read := func(want int) []string {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		// Ask for one more than expected: a duplicate must show up.
		var types []string
		for _, m := range testkafka.ReadAll(ctx, t, brokers, topic, 1, want+1) {
			var ev struct {
				Type string `json:"type"`
			}
			require.NoError(t, json.Unmarshal(m.Value, &ev))
			types = append(types, ev.Type)
		}
		return types
	}
	return pub, redisstore.NewPublishLog(rdb, teststore.Prefix()), read
}

// TestRepeatsPublishOnce: the same link and action publish one event, on
// the real broker, however often they are requested: a burst of one-click
// POSTs at once, clicks one after the other, and every page view with
// Sec-GPC. Each repeat is answered with the page the first one got. Before,
// 300 requests put 300 identical events on topics kept for ever.
func TestRepeatsPublishOnce(t *testing.T) {
	pub, plog, onTopic := realPublishing(t)
	counted := &countingPublisher{next: pub}
	e := newEnv(t, func(o *Options) {
		o.Publisher, o.PublishLog = counted, plog
		o.TokenRate, o.ClientRate = -1, -1 // the limits are another test's
	})
	path := "/u/" + e.token

	var wg sync.WaitGroup
	var done atomic.Int32
	for range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, body := e.gmailPost(path)
			if resp.StatusCode == http.StatusOK && strings.Contains(body, "unsubscribed") {
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	require.EqualValues(t, 40, done.Load(), "every click of the burst gets the page of a done unsubscribe")
	for range 10 {
		resp, body := e.rfcPost(path)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.Contains(t, body, "unsubscribed")
	}
	gpc := http.Header{"Sec-Gpc": {"1"}}
	for range 20 {
		resp, body := getConfirm(e, gpc)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.Contains(t, body, "Global Privacy Control", "the signal is acknowledged on every view")
	}
	require.Equal(t, map[suppression.EventType]int{suppression.EventUnsubscribe: 1, suppression.EventGPC: 1}, counted.byType(),
		"one unsubscribe and one gpc event reached Kafka, for 50 clicks and 20 views")
	require.ElementsMatch(t, []string{"io.suppressd.unsubscribe.v1", "io.suppressd.gpc.v1"}, onTopic(2),
		"and that is what the topic holds")
	require.Contains(t, e.logs.String(), "already published")
}

// countingPublisher counts what reached the real publisher without error.
type countingPublisher struct {
	next Publisher
	mu   sync.Mutex
	n    map[suppression.EventType]int
}

func (c *countingPublisher) Publish(ctx context.Context, e suppression.Event) error {
	err := c.next.Publish(ctx, e)
	if err == nil {
		c.mu.Lock()
		if c.n == nil {
			c.n = map[suppression.EventType]int{}
		}
		c.n[e.Type]++
		c.mu.Unlock()
	}
	return err
}

func (c *countingPublisher) byType() map[suppression.EventType]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[suppression.EventType]int{}
	for k, v := range c.n {
		out[k] = v
	}
	return out
}

// TestRateLimits: one link, and one client address, get a bounded number
// of requests a minute; past it the answer is 429 with Retry-After, a page
// that says nothing was done, and nothing is published.
func TestRateLimits(t *testing.T) {
	pub, plog, _ := realPublishing(t)
	counted := &countingPublisher{next: pub}
	var now atomic.Pointer[time.Time]
	start := testNow
	now.Store(&start)
	e := newEnv(t, func(o *Options) {
		o.Publisher, o.PublishLog = counted, plog
		o.TokenRate, o.ClientRate, o.ClientIPHeader = 3, 5, "X-Forwarded-For"
		o.Now = func() time.Time { return *now.Load() }
	})
	from := func(addr string) http.Header {
		return http.Header{"X-Forwarded-For": {"203.0.113.66, " + addr}, "Sec-Gpc": {"1"}}
	}
	// Three views of one link from one address: allowed.
	for range 3 {
		resp, _ := getConfirm(e, from("198.51.100.1"))
		require.Equal(t, http.StatusOK, resp.StatusCode)
	}
	// The fourth, from anywhere: that link is over its rate.
	resp, body := getConfirm(e, from("198.51.100.2"))
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	require.NotEmpty(t, resp.Header.Get("Retry-After"))
	require.Contains(t, body, "Too many requests")
	requireSecurityHeaders(t, resp)
	resp, _ = e.gmailPost("/u/" + e.token)
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode, "a one-click POST too")

	// Other links from the first address: two more, then the address is
	// over its rate (3 + 2 = 5), whatever link it brings.
	other := func() string {
		c := newsletterClaims()
		c.Identifier.Value = "other" + time.Now().Format("150405.000000000") + "@example.org"
		return mint(t, e.ring, c, testNow.Add(-time.Hour))
	}
	for range 2 {
		resp, _ := e.do(http.MethodGet, "/u/"+other(), "", nil, from("198.51.100.1"))
		require.Equal(t, http.StatusOK, resp.StatusCode)
	}
	resp, body = e.do(http.MethodGet, "/u/"+other(), "", nil, from("198.51.100.1"))
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode, "the address is over its rate")
	require.Contains(t, body, "Too many requests")
	// The client's own X-Forwarded-For entries do not count: only the
	// proxy's (the last).
	resp, _ = e.do(http.MethodGet, "/u/"+other(), "", nil, http.Header{"X-Forwarded-For": {"198.51.100.9, 198.51.100.1"}})
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)

	published := counted.byType()
	require.Equal(t, 3, published[suppression.EventGPC], "one gpc per link that was let through (the first and two others), none for a 429")

	// A minute later the window has turned.
	later := testNow.Add(time.Minute)
	now.Store(&later)
	resp, _ = getConfirm(e, from("198.51.100.1"))
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, 3, counted.byType()[suppression.EventGPC], "and the repeat of the first link publishes nothing")
}
