package main

import (
	"context"
	"maps"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/internal/testenv"
	"github.com/suppressd/suppressd/internal/testkafka"
	"github.com/suppressd/suppressd/internal/teststore"
)

// brokerOutage is how long the broker stays dead before it is started
// again (its JVM then takes seconds more to listen): long enough for both
// stages to notice (kafka-go heartbeats every 3s) and to fail to leave
// their groups while it is down.
const brokerOutage = 3 * time.Second

// resumeBound is a liveness bound, not a timing: it is far above the few
// seconds a resume takes (docs/operations.md has the figures), and below
// the 30s session timeout the coordinator would wait for a member that
// never left, which is what this test exists to catch.
const resumeBound = 20 * time.Second

// TestBrokerRestartResumesConsuming kills the Kafka broker (SIGKILL) under
// `suppressd serve --role api,consumer` and starts it again: both stages
// rejoin their consumer groups and an opt-out published once the broker is
// back is visible to /v1/check within seconds, not after the coordinator
// has waited out the session timeout of the members that died with the
// broker's connections. The broker is the test's own, so the other tests'
// broker stays up.
func TestBrokerRestartResumesConsuming(t *testing.T) {
	t.Parallel()
	redisAddr := testenv.RedisAddr(t)
	started := time.Now()
	broker := testkafka.StartBroker(t)
	t.Logf("own broker started in %s", time.Since(started).Round(time.Millisecond))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the broker's log:\n%s", broker.LogTail())
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	topic := testkafka.Unique("restart")
	env, names := serviceTopics(topic)
	maps.Copy(env, map[string]string{
		"SUPPRESSD_KAFKA_BROKERS":        broker.Addr(),
		"SUPPRESSD_REDIS_ADDRS":          redisAddr,
		"SUPPRESSD_STORE_PREFIX":         teststore.Prefix(),
		"SUPPRESSD_API_ADDR":             "127.0.0.1:0",
		"SUPPRESSD_API_KEYS":             "ops:check+publish+admin:" + sha256hex(testAPIKey),
		"SUPPRESSD_PEPPER":               "cmVzdGFydC10ZXN0LXBlcHBlci0xNmI=",
		"SUPPRESSD_CONSUMER_BATCH_WAIT":  "5ms",
		"SUPPRESSD_CONSUMER_BACKOFF_MIN": "20ms",
		"SUPPRESSD_CONSUMER_BACKOFF_MAX": "500ms",
		"SUPPRESSD_LOG_FORMAT":           "json",
		// The default session timeout: what the broker would wait for a
		// member that never left.
		"SUPPRESSD_CONSUMER_SESSION_TIMEOUT": "30s",
	})
	for _, tp := range names {
		testkafka.CreateTopic(ctx, t, broker.Addr(), tp, 2)
	}
	addr, logs, _ := serveSettings(t, settingsFrom(t, env, "api,consumer"))
	client := &http.Client{Timeout: 2 * time.Second}
	w := testkafka.Writer([]string{broker.Addr()}, topic)
	t.Cleanup(func() { _ = w.Close() })

	// publish writes the opt-out of email, retrying while the broker
	// cannot take it yet (leaders being elected after the restart).
	publish := func(email string) {
		t.Helper()
		var err error
		for ctx.Err() == nil {
			wctx, done := context.WithTimeout(ctx, 5*time.Second)
			err = w.WriteMessages(wctx, unsubscribes(t, email)...)
			done()
			if err == nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("could not publish the opt-out of %s: %v", email, err)
	}
	// visible waits until /v1/check says email is suppressed.
	visible := func(email string, within time.Duration) (time.Duration, bool) {
		start := time.Now()
		for time.Since(start) < within {
			status, allowed, err := checkEmail(client, addr, email)
			if err == nil && status == http.StatusOK && !allowed {
				return time.Since(start), true
			}
			time.Sleep(20 * time.Millisecond)
		}
		return time.Since(start), false
	}

	publish("before-restart@example.org")
	_, ok := visible("before-restart@example.org", time.Minute)
	require.True(t, ok, "the first opt-out is never visible: the stages do not consume at all")

	broker.Kill()
	time.Sleep(brokerOutage)
	restarted := time.Now()
	broker.Start()
	back := time.Now()
	t.Logf("broker restarted in %s", back.Sub(restarted).Round(time.Millisecond))
	publish("after-restart@example.org")
	published := time.Since(back)
	took, ok := visible("after-restart@example.org", time.Minute)
	resumed := published + took
	t.Logf("broker back -> opt-out published %s -> visible %s: resumed %s after the broker's return", published.Round(time.Millisecond),
		took.Round(time.Millisecond), resumed.Round(time.Millisecond))
	require.True(t, ok, "consumption did not resume within a minute of the broker's return")
	require.Less(t, resumed, resumeBound, "consumption resumed only %s after the broker's return: did a stage rejoin as a new member and wait out the old one's session timeout?", resumed)
	require.False(t, strings.Contains(logs.String(), `"msg":"stopped"`) && strings.Contains(logs.String(), "fetch:"), "a stage stopped during the outage")
}
