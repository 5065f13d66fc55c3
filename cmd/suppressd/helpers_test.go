package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/internal/envconf"
	"github.com/suppressd/suppressd/internal/testenv"
	"github.com/suppressd/suppressd/internal/testkafka"
	"github.com/suppressd/suppressd/internal/teststore"
	"github.com/suppressd/suppressd/schemas"
	"github.com/suppressd/suppressd/suppression"
)

// testKeyer keys the writes tests make directly into a store.
var testKeyer = suppression.NewKeyer([]byte("cmd-test-pepper"))

// runCommand runs a command through run(), as main does, and returns nil
// for exit 0, else an error naming the code and what the command said.
func runCommand(ctx context.Context, out, errb *bytes.Buffer, args ...string) error {
	if code := run(ctx, args, stdio{out: out, err: errb}); code != 0 {
		return fmt.Errorf("suppressd %v: exit %d: %s", args, code, errb.String())
	}
	return nil
}

// buildStore builds the first generation of the configured store, empty,
// as the consumer role does for a new deployment.
func buildStore(t *testing.T, d *storeDeps) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := d.rebuilds.Begin(ctx, "g1", "test", time.Minute)
	require.NoError(t, err)
	require.NoError(t, d.rebuilds.Finish(ctx, "g1", "test"))
}

// servingEnv points the configuration at the test command's Kafka (fresh
// topics of their own) and at redisAddr, with fast consumer settings, and
// returns the unsubscribes topic.
func servingEnv(ctx context.Context, t *testing.T, redisAddr string) (brokers []string, topic string) {
	t.Helper()
	brokers = testenv.KafkaBrokers(t)
	topic = testkafka.Unique("unsub")
	env, names := serviceTopics(topic)
	maps.Copy(env, map[string]string{
		"SUPPRESSD_KAFKA_BROKERS":        strings.Join(brokers, ","),
		"SUPPRESSD_REDIS_ADDRS":          redisAddr,
		"SUPPRESSD_STORE_PREFIX":         teststore.Prefix(),
		"SUPPRESSD_API_ADDR":             "127.0.0.1:0",
		"SUPPRESSD_API_KEYS":             "ops:check+publish+admin:" + sha256hex(testAPIKey),
		"SUPPRESSD_PEPPER":               "c2FmZXR5LXRlc3QtcGVwcGVyLTE2Yg==",
		"SUPPRESSD_CONSUMER_BATCH_WAIT":  "5ms",
		"SUPPRESSD_CONSUMER_BACKOFF_MIN": "20ms",
		"SUPPRESSD_CONSUMER_BACKOFF_MAX": "500ms",
		"SUPPRESSD_LOG_FORMAT":           "json",
	})
	for k, v := range env {
		t.Setenv(k, v)
	}
	for _, tp := range names {
		testkafka.CreateTopic(ctx, t, brokers[0], tp, 2)
	}
	return brokers, topic
}

// serviceTopics names the topics of a serving test under topic: the
// configuration naming them and the consumer group, and the topics to
// create.
func serviceTopics(topic string) (env map[string]string, names []string) {
	env = map[string]string{
		"SUPPRESSD_TOPIC_UNSUBSCRIBES": topic,
		"SUPPRESSD_TOPIC_CONSENT":      topic + "-consent",
		"SUPPRESSD_TOPIC_ERASURE":      topic + "-erasure",
		"SUPPRESSD_TOPIC_ADMIN":        topic + "-admin",
		"SUPPRESSD_TOPIC_LEDGER":       topic + "-ledger",
		"SUPPRESSD_TOPIC_DEAD_LETTER":  topic + "-dlq",
		"SUPPRESSD_CONSUMER_GROUP":     topic,
	}
	return env, []string{topic, topic + "-consent", topic + "-erasure", topic + "-admin", topic + "-ledger", topic + "-dlq"}
}

// testAPIKey is the API key servingEnv configures.
const testAPIKey = "sdk_serving_test"

// serveInProcess runs serve with the given roles and the environment's
// configuration until the test ends, and returns the listener's address
// once serve says it is ready, with its logs.
func serveInProcess(t *testing.T, roles string) (string, *testenv.Buffer) {
	t.Helper()
	addr, logs, _ := serveStoppable(t, roles)
	return addr, logs
}

// serveStoppable is serveInProcess with a function that stops serve
// before the test ends.
func serveStoppable(t *testing.T, roles string) (string, *testenv.Buffer, func()) {
	t.Helper()
	s, err := load(roles)
	require.NoError(t, err)
	return serveSettings(t, s)
}

// settingsFrom is load with the variables in env instead of the process's
// environment: for tests that run in parallel (t.Setenv forbids it).
func settingsFrom(t *testing.T, env map[string]string, roles string) *settings {
	t.Helper()
	var c Config
	require.NoError(t, envconf.Read(envPrefix, &c, func(k string) (string, bool) { v, ok := env[k]; return v, ok }))
	c.Roles, c.rolesFlag = strings.Split(roles, ","), true
	s, err := c.settle()
	require.NoError(t, err)
	return s
}

// serveSettings is serveStoppable with settings made already.
func serveSettings(t *testing.T, s *settings) (string, *testenv.Buffer, func()) {
	t.Helper()
	logs := &testenv.Buffer{}
	addr := make(chan string, 1)
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, s, s.logger(logs), func(a string) { addr <- a }) }()
	stopped := false
	halt := func() {
		if stopped {
			return
		}
		stopped = true
		stop()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(30 * time.Second):
			t.Error("serve did not stop")
		}
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("serve's log:\n%s", logs.String())
		}
		halt()
	})
	select {
	case a := <-addr:
		return a, logs, halt
	case err := <-done:
		t.Fatalf("serve stopped: %v\n%s", err, logs.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("serve not ready in time\n%s", logs.String())
	}
	return "", nil, nil
}

// checkEmail asks POST /v1/check for an email address: the status and, on
// 200, whether it is allowed.
func checkEmail(client *http.Client, addr, email string) (int, bool, error) {
	body := `{"identifiers":[{"type":"email","value":"` + email + `"}],"channel":"email","purpose":"marketing"}`
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/v1/check", strings.NewReader(body))
	if err != nil {
		return 0, false, err
	}
	req.Header.Set("Authorization", "Bearer "+testAPIKey)
	resp, err := client.Do(req)
	if err != nil {
		return 0, false, err
	}
	defer resp.Body.Close()
	var out struct {
		Allowed bool `json:"allowed"`
	}
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			return 0, false, err
		}
	}
	return resp.StatusCode, out.Allowed, nil
}

// unsubscribes makes one unsubscribe message per address, dated a minute ago.
func unsubscribes(t *testing.T, emails ...string) []kafka.Message {
	t.Helper()
	var msgs []kafka.Message
	for _, email := range emails {
		e := suppression.Event{ID: "u-" + email, Source: "/test", Type: suppression.EventUnsubscribe, OccurredAt: time.Now().Add(-time.Minute),
			Identifiers: []suppression.Identifier{{Type: suppression.IDEmail, Value: email}},
			Scopes:      []suppression.Scope{"email"}, Origin: suppression.OriginRecipient}
		require.NoError(t, e.Normalize(time.Time{}))
		raw, err := schemas.Encode(e)
		require.NoError(t, err)
		msgs = append(msgs, kafka.Message{Key: []byte(e.ID), Value: raw})
	}
	return msgs
}
