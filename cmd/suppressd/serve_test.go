package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/internal/kafkaconn"
	"github.com/suppressd/suppressd/internal/testenv"
	"github.com/suppressd/suppressd/internal/testkafka"
	"github.com/suppressd/suppressd/schemas"
	"github.com/suppressd/suppressd/store/redisstore"
	"github.com/suppressd/suppressd/suppression"
)

// buildBinary builds suppressd once per test binary run, with the race
// detector: the tests run it as a subprocess.
var buildBinary = sync.OnceValues(func() (string, error) { return build("-race") })

// buildPlainBinary builds suppressd as it ships, for benchmarks.
var buildPlainBinary = sync.OnceValues(func() (string, error) { return build() })

func build(flags ...string) (string, error) {
	dir, err := os.MkdirTemp("", "suppressd-bin")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "suppressd")
	args := append(append([]string{"build"}, flags...), "-o", bin, ".")
	out, err := exec.Command("go", args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
}

func freePort(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().String()
}

type proc struct {
	cmd    *exec.Cmd
	stderr *testenv.Buffer
	ops    string
}

func startServe(t *testing.T, env []string, role string) *proc {
	t.Helper()
	return startServeUntil(t, env, role, "/readyz")
}

// startServeUntil starts serve and waits until path (/readyz, /healthz)
// answers 200.
func startServeUntil(t *testing.T, env []string, role, path string) *proc {
	t.Helper()
	bin, err := buildBinary()
	require.NoError(t, err)
	p := &proc{stderr: &testenv.Buffer{}, ops: freePort(t)}
	p.cmd = exec.Command(bin, "serve", "--role", role)
	p.cmd.Env = append(append(os.Environ(), env...), "SUPPRESSD_OPS_ADDR="+p.ops)
	p.cmd.Stderr = p.stderr
	require.NoError(t, p.cmd.Start())
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
			_ = p.cmd.Wait()
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + p.ops + path)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		require.True(t, time.Now().Before(deadline), "suppressd serve not ready:\n%s", p.stderr.String())
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *proc) metrics(t *testing.T) string {
	resp, err := http.Get("http://" + p.ops + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}

// TestServeStagesSurviveSIGKILL runs the real binary's two stages as
// processes of their own (`serve --role ingest` and `serve --role apply`)
// and kills each with SIGKILL in the middle of a stream, then starts it
// again: every event is applied exactly as once (the final records equal
// the ones the merge rule computes), none lost at either stage.
func TestServeStagesSurviveSIGKILL(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	redisAddr := testenv.RedisAddr(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	topic, dlq := testkafka.Unique("unsub"), testkafka.Unique("dlq")
	testkafka.CreateTopic(ctx, t, brokers[0], topic, 3)
	testkafka.CreateTopic(ctx, t, brokers[0], topic+"-admin", 1)
	testkafka.CreateTopic(ctx, t, brokers[0], topic+"-ledger", 3)
	testkafka.CreateTopic(ctx, t, brokers[0], dlq, 1)
	prefix := strings.ReplaceAll(testkafka.Unique("k"), "-", "")
	pepper := []byte("0123456789abcdef-test-pepper")
	env := []string{
		"SUPPRESSD_KAFKA_BROKERS=" + strings.Join(brokers, ","),
		"SUPPRESSD_REDIS_ADDRS=" + redisAddr,
		"SUPPRESSD_TOPIC_UNSUBSCRIBES=" + topic, "SUPPRESSD_TOPIC_CONSENT=", "SUPPRESSD_TOPIC_ERASURE=",
		"SUPPRESSD_TOPIC_ADMIN=" + topic + "-admin", "SUPPRESSD_TOPIC_LEDGER=" + topic + "-ledger",
		"SUPPRESSD_TOPIC_DEAD_LETTER=" + dlq,
		"SUPPRESSD_CONSUMER_GROUP=" + topic,
		"SUPPRESSD_CONSUMER_BATCH_SIZE=10",
		"SUPPRESSD_CONSUMER_SESSION_TIMEOUT=6s", // the broker's minimum: the killed member leaves the group sooner
		"SUPPRESSD_STORE_PREFIX=" + prefix,
		"SUPPRESSD_PEPPER=" + base64.StdEncoding.EncodeToString(pepper),
		"SUPPRESSD_PHONE_REGION=US",
	}

	const n = 4000
	at := time.Now().Add(-time.Minute)
	events := make([]suppression.Event, n)
	msgs := make([]kafka.Message, n)
	for i := range events {
		e := suppression.Event{
			ID: fmt.Sprintf("kill-%d", i), Source: "/test", Type: suppression.EventUnsubscribe, OccurredAt: at,
			Identifiers: []suppression.Identifier{{Type: suppression.IDEmail, Value: fmt.Sprintf("person%d@example.org", i)}},
			Scopes:      []suppression.Scope{"email"}, Origin: suppression.OriginRecipient,
		}
		require.NoError(t, e.Normalize(time.Time{}))
		events[i] = e
		raw, err := schemas.Encode(e)
		require.NoError(t, err)
		msgs[i] = kafka.Message{Key: []byte(e.Identifiers[0].Value), Value: raw}
	}

	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer rdb.Close()
	keyer := suppression.NewKeyer(pepper)
	store, err := redisstore.New(rdb, redisstore.Options{Prefix: prefix, Keying: keyer.Fingerprint()})
	require.NoError(t, err)
	norm := suppression.Normalizer{DefaultRegion: "US"}
	keys := make([]suppression.StorageKey, n)
	for i, e := range events {
		k, err := norm.Expand(e.Identifiers[0])
		require.NoError(t, err)
		keys[i] = keyer.StorageKey(k[0])
	}
	applied := func() int {
		recs, err := store.Get(ctx, suppression.DefaultNamespace, keys)
		if err != nil {
			return 0 // not built yet
		}
		c := 0
		for _, r := range recs {
			if r != nil {
				c++
			}
		}
		return c
	}
	ledgered := func() int64 {
		ranges, err := kafkaconn.Config{Brokers: brokers}.Ranges(ctx, []string{topic + "-ledger"})
		require.NoError(t, err)
		var n int64
		for _, r := range ranges {
			n += r.End
		}
		return n
	}
	waitFor := func(what string, cond func() bool, logs ...*proc) {
		deadline := time.Now().Add(90 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				var all string
				for _, p := range logs {
					all += p.stderr.String()
				}
				t.Fatalf("timed out waiting for %s:\n%s", what, all)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	// Ingest first: a new deployment, it starts the ledger with its genesis
	// record; apply then builds the store from that (empty) ledger.
	ingest := startServe(t, env, "ingest")
	apply := startServe(t, env, "apply")
	w := testkafka.Writer(brokers, topic)
	defer w.Close()
	require.NoError(t, w.WriteMessages(ctx, msgs...))

	// The ingest stage dies mid-stream.
	waitFor("some ledger records", func() bool { return ledgered() > n/10 }, ingest)
	require.NoError(t, ingest.cmd.Process.Signal(syscall.SIGKILL))
	_ = ingest.cmd.Wait()
	t.Logf("ingest killed with %d of %d events on the ledger", ledgered(), n)
	ingest2 := startServe(t, env, "ingest")

	// Then the apply stage.
	waitFor("some applied", func() bool { return applied() > n/4 }, apply, ingest2)
	require.NoError(t, apply.cmd.Process.Signal(syscall.SIGKILL))
	_ = apply.cmd.Wait()
	atKill := applied()
	require.Less(t, atKill, n, "the apply stage was killed before it finished (make the stream longer if this fails)")
	t.Logf("apply killed with %d of %d applied", atKill, n)
	apply2 := startServe(t, env, "apply")

	waitFor("every event applied", func() bool { return applied() == n }, apply2, ingest2)
	// Exactly once in effect: each record is the single register the event makes.
	recs, err := store.Get(ctx, suppression.DefaultNamespace, keys)
	require.NoError(t, err)
	for i, rec := range recs {
		want := suppression.Record{"email": {suppression.Register(events[i].Change())}}
		require.Equal(t, want, rec, "event %d", i)
	}
	m := apply2.metrics(t)
	require.Contains(t, m, `suppressd_consumer_events_total{outcome="applied",stage="apply",type="unsubscribe"}`)
	require.Contains(t, m, "suppressd_optout_freshness_seconds_bucket")
	require.NotContains(t, m, "suppressd_api_requests_total", "the api role is not running")

	// SIGTERM: a clean exit, status 0.
	for _, p := range []*proc{ingest2, apply2} {
		require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
		require.NoError(t, p.cmd.Wait(), p.stderr.String())
	}
	logs := ingest.stderr.String() + ingest2.stderr.String() + apply.stderr.String() + apply2.stderr.String()
	require.Contains(t, logs, `"msg":"consuming"`)
	require.NotContains(t, logs, "@example.org", "no address in any log line")
}

func TestServeRefusesMissingTopics(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	t.Setenv("SUPPRESSD_KAFKA_BROKERS", strings.Join(brokers, ","))
	t.Setenv("SUPPRESSD_REDIS_ADDRS", testenv.RedisAddr(t))
	t.Setenv("SUPPRESSD_TOPIC_UNSUBSCRIBES", testkafka.Unique("never-created"))
	t.Setenv("SUPPRESSD_OPS_ADDR", freePort(t))
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"serve", "--role", "consumer"}, stdio{out: &out, err: &errb})
	require.Equal(t, 1, code)
	require.Contains(t, errb.String(), "never-created")
	require.Contains(t, errb.String(), "do not exist: create them")
}

// TestServeRejectsBadConfig: each bad variable alone stops serve before
// anything starts, with exit 2 and a line naming the variable.
func TestServeRejectsBadConfig(t *testing.T) {
	for _, tc := range []struct{ env, want string }{
		{"SUPPRESSD_ROLE=janitor", `SUPPRESSD_ROLE: unknown role "janitor" (got "janitor", want api, consumer, ingest, apply, several comma-separated)`},
		{"SUPPRESSD_PEPPER=short", "SUPPRESSD_PEPPER: not base64 (want at least 16 random bytes, base64-encoded)"},
		{"SUPPRESSD_PEPPER=c2hvcnQ=", "SUPPRESSD_PEPPER: too short: 5 bytes (want at least 16 random bytes)"},
		{"SUPPRESSD_PHONE_REGION=XX", `SUPPRESSD_PHONE_REGION: not a region (got "XX", want an ISO 3166-1 alpha-2 code such as US, or empty)`},
		{"SUPPRESSD_KAFKA_SASL_MECHANISM=kerberos", `SUPPRESSD_KAFKA_SASL_MECHANISM: unknown mechanism (got "kerberos", want plain, scram-sha-256 or scram-sha-512)`},
		{"SUPPRESSD_STORE_BUCKET_BITS=40", `SUPPRESSD_STORE_BUCKET_BITS: out of range (got "40", want 1 to 24)`},
		{"SUPPRESSD_STORE_GROUP_BITS=20", `SUPPRESSD_STORE_GROUP_BITS: out of range (got "20", want 1 to the bucket bits (16))`},
		{"SUPPRESSD_STORE_PREFIX=sd:x", `SUPPRESSD_STORE_PREFIX: has ':', '{', '}' or a space (got "sd:x", want a plain word such as sd)`},
		{"SUPPRESSD_CONSUMER_BATCH_SIZE=abc", `SUPPRESSD_CONSUMER_BATCH_SIZE: not a number (got "abc", want a whole number)`},
		{"SUPPRESSD_CONSUMER_BACKOFF_MAX=1ms", `SUPPRESSD_CONSUMER_BACKOFF_MAX: shorter than SUPPRESSD_CONSUMER_BACKOFF_MIN (100ms) (got "1ms", want at least the minimum)`},
		{"SUPPRESSD_LOG_LEVEL=loud", `SUPPRESSD_LOG_LEVEL: unknown level (got "loud", want debug, info, warn or error)`},
		{"SUPPRESSD_LINK_TTL=24h", `SUPPRESSD_LINK_TTL: too short: a link must keep working for 30 days (got "24h", want at least 720h)`},
		{"SUPPRESSD_TOPIC_DEAD_LETTER=suppressd.consent", `SUPPRESSD_TOPIC_DEAD_LETTER: empty or a consumed topic (got "suppressd.consent", want a topic of its own)`},
		{"SUPPRESSD_REDIS_ADDRS=", `SUPPRESSD_REDIS_ADDRS: no address (got "", want host:port, comma-separated)`},
	} {
		t.Run(tc.env, func(t *testing.T) {
			k, v, _ := strings.Cut(tc.env, "=")
			t.Setenv(k, v)
			var out, errb bytes.Buffer
			code := run(context.Background(), []string{"serve"}, stdio{out: &out, err: &errb})
			require.Equal(t, 2, code)
			require.Equal(t, "suppressd serve: "+tc.want+"\n", errb.String())
		})
	}
}
