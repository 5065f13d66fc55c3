package main

import (
	"bytes"
	"context"
	"maps"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/internal/kafkaconn"
	"github.com/suppressd/suppressd/internal/testenv"
	"github.com/suppressd/suppressd/internal/testkafka"
	"github.com/suppressd/suppressd/internal/teststore"
	"github.com/suppressd/suppressd/suppression"
)

// secureEnv configures suppressd to reach Kafka only through the test
// command's SASL_SSL listener (SCRAM-SHA-512 over TLS, its CA) and Redis
// only through the TLS-only redis-server as its ACL user (keys sd* and the
// store's commands), on fresh topics, and returns the secrets it set, so a
// test can look for them in what suppressd prints.
func secureEnv(ctx context.Context, t *testing.T) (kafkaPassword, redisPassword string) {
	t.Helper()
	k, r := testenv.KafkaSASL(t), testenv.RedisTLS(t)
	topic := testkafka.Unique("secure")
	env, names := serviceTopics(topic)
	maps.Copy(env, map[string]string{
		"SUPPRESSD_KAFKA_BROKERS":        strings.Join(k.Brokers, ","),
		"SUPPRESSD_KAFKA_SASL_MECHANISM": k.Mechanism,
		"SUPPRESSD_KAFKA_SASL_USERNAME":  k.Username,
		"SUPPRESSD_KAFKA_SASL_PASSWORD":  k.Password,
		"SUPPRESSD_KAFKA_TLS":            "true",
		"SUPPRESSD_KAFKA_TLS_CA_FILE":    k.CAFile,
		"SUPPRESSD_REDIS_ADDRS":          r.Addr,
		"SUPPRESSD_REDIS_USERNAME":       r.Username,
		"SUPPRESSD_REDIS_PASSWORD":       r.Password,
		"SUPPRESSD_REDIS_TLS":            "true",
		"SUPPRESSD_REDIS_TLS_CA_FILE":    r.CAFile,
		// The ACL user may touch keys that start with "sd" only.
		"SUPPRESSD_STORE_PREFIX":         "sd" + teststore.Prefix(),
		"SUPPRESSD_API_ADDR":             "127.0.0.1:0",
		"SUPPRESSD_API_KEYS":             "ops:check+publish+admin:" + sha256hex(testAPIKey),
		"SUPPRESSD_PEPPER":               "c2VjdXJlLXRyYW5zcG9ydC1wZXBwZXI=",
		"SUPPRESSD_CONSUMER_BATCH_WAIT":  "5ms",
		"SUPPRESSD_CONSUMER_BACKOFF_MIN": "20ms",
		"SUPPRESSD_CONSUMER_BACKOFF_MAX": "500ms",
		"SUPPRESSD_LOG_FORMAT":           "json",
	})
	for k, v := range env {
		t.Setenv(k, v)
	}
	cfg := kafkaconn.Config{Brokers: k.Brokers, SASLMechanism: k.Mechanism, SASLUsername: k.Username, SASLPassword: k.Password,
		TLS: true, TLSCAFile: k.CAFile, DialTimeout: 10 * time.Second}
	dialer, err := cfg.Dialer()
	require.NoError(t, err)
	for _, tp := range names {
		testkafka.CreateTopicVia(ctx, t, dialer, k.Brokers[0], tp, 2)
	}
	return k.Password, r.Password
}

// TestServeThroughSecuredTransports runs `suppressd serve --role
// api,consumer` configured only with the secured transports: an opt-out
// published through POST /v1/events goes to Kafka over SASL_SSL, through
// ingest and the ledger and apply, into Redis over TLS as the ACL user, and
// /v1/check says suppressed. Then the operator's commands that read the
// ledger (`suppressd subjects`, `suppressd rebuild`) work through the same
// transports.
func TestServeThroughSecuredTransports(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	kafkaPassword, redisPassword := secureEnv(ctx, t)
	addr, logs, stop := serveStoppable(t, "api,consumer")
	client := &http.Client{Timeout: 5 * time.Second}

	const email = "Secure.Person@Example.org"
	body := `{"specversion":"1.0","id":"secure-1","source":"/crm","type":"io.suppressd.unsubscribe.v1",` +
		`"time":"` + time.Now().UTC().Format(time.RFC3339) + `","data":{"identifiers":[{"type":"email","value":"` + email + `"}],"scopes":["email"],"origin":"recipient"}}`
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/v1/events", strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+testAPIKey)
	req.Header.Set("Content-Type", "application/cloudevents+json")
	resp, err := client.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusAccepted, resp.StatusCode, "POST /v1/events publishes over SASL_SSL")

	require.Eventually(t, func() bool {
		status, allowed, err := checkEmail(client, addr, strings.ToLower(email))
		return err == nil && status == http.StatusOK && !allowed
	}, time.Minute, 50*time.Millisecond, "the opt-out never became visible through Kafka SASL_SSL and Redis TLS\n%s", logs.String())
	status, allowed, err := checkEmail(client, addr, "someone.else@example.org")
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, status)
	require.True(t, allowed, "only the person who opted out is suppressed")
	stop()

	var out, errb bytes.Buffer
	require.NoError(t, runCommand(ctx, &out, &errb, "subjects", "--email", email))
	require.Contains(t, out.String(), "id=secure-1", "subjects reads the ledger over SASL_SSL")
	require.Contains(t, out.String(), "state held now:", "and the state from Redis over TLS")
	require.NotContains(t, strings.ToLower(out.String()), "secure.person")

	out.Reset()
	errb.Reset()
	require.NoError(t, runCommand(ctx, &out, &errb, "rebuild", "--grace", "0s", "--drop-old"))
	require.Contains(t, out.String(), "generation g2 is active")
	s, err := load("")
	require.NoError(t, err)
	d, err := openStore(s)
	require.NoError(t, err)
	defer d.close()
	mks, err := s.normalizer.Expand(suppression.Identifier{Type: suppression.IDEmail, Value: email})
	require.NoError(t, err)
	recs, err := d.store.Get(ctx, suppression.DefaultNamespace, s.keyer.StorageKeys(nil, mks))
	require.NoError(t, err)
	require.True(t, recs[0]["email"].Suppressed(), "the rebuild restored the opt-out from the ledger, through both transports")

	for _, text := range []string{logs.String(), out.String(), errb.String()} {
		require.NotContains(t, text, kafkaPassword)
		require.NotContains(t, text, redisPassword)
	}
}

// TestServeRefusesBadCredentials: a wrong password or a CA that did not
// sign the server's certificate, for Kafka and for Redis, stops `suppressd
// serve` at start (and `suppressd subjects`) with an error that names the
// cause and the variables to fix, and prints no secret.
func TestServeRefusesBadCredentials(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	kafkaPassword, redisPassword := secureEnv(ctx, t)
	otherCA := testenv.UntrustedCA(t)
	const wrong = "not-the-password-3f9a"
	tests := []struct {
		name  string
		set   map[string]string
		wants []string // in the error, all of them
	}{
		{"kafka wrong password", map[string]string{"SUPPRESSD_KAFKA_SASL_PASSWORD": wrong},
			[]string{"SASL", "SUPPRESSD_KAFKA_SASL_USERNAME/SUPPRESSD_KAFKA_SASL_PASSWORD", "authentication failed"}},
		{"kafka untrusted CA", map[string]string{"SUPPRESSD_KAFKA_TLS_CA_FILE": otherCA},
			[]string{"SUPPRESSD_KAFKA_TLS_CA_FILE", "certificate", "not trusted"}},
		{"redis wrong password", map[string]string{"SUPPRESSD_REDIS_PASSWORD": wrong},
			[]string{"SUPPRESSD_REDIS_USERNAME/SUPPRESSD_REDIS_PASSWORD", "authentication failed"}},
		{"redis untrusted CA", map[string]string{"SUPPRESSD_REDIS_TLS_CA_FILE": otherCA},
			[]string{"SUPPRESSD_REDIS_TLS_CA_FILE", "certificate", "not trusted"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.set {
				t.Setenv(k, v)
			}
			// serve, and an operator's command that reads the ledger
			// and the store.
			for _, args := range [][]string{{"serve", "--role", "api,consumer"}, {"subjects", "--email", "someone@example.org"}} {
				var out, errb bytes.Buffer
				sctx, cancel := context.WithTimeout(ctx, time.Minute)
				start := time.Now()
				code := run(sctx, args, stdio{out: &out, err: &errb})
				cancel()
				require.NotEqual(t, 0, code, "%s ran with a bad secret:\n%s", args[0], errb.String())
				require.NotErrorIs(t, sctx.Err(), context.DeadlineExceeded, "%s neither started nor failed within a minute", args[0])
				t.Logf("%s refused in %s: %s", args[0], time.Since(start).Round(time.Millisecond), lastLine(errb.String()))
				for _, w := range tc.wants {
					require.Contains(t, errb.String(), w)
				}
				for _, secret := range []string{kafkaPassword, redisPassword, wrong} {
					require.NotContains(t, out.String()+errb.String(), secret, "a secret was printed")
				}
			}
		})
	}
}

// lastLine is the last non-empty line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
