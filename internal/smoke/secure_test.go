package smoke

// The secured servers of the test command: Kafka's SASL_SSL listener
// (SCRAM-SHA-512 over TLS) and the TLS-only, ACL-protected redis-server,
// reached through the project's own configuration types
// (internal/kafkaconn, internal/redisconn) as the binary reaches them. The
// refusals matter as much as the round trips: a wrong password or a
// certificate the client does not trust must fail, and say why.

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/internal/kafkaconn"
	"github.com/suppressd/suppressd/internal/redisconn"
	"github.com/suppressd/suppressd/internal/testenv"
	"github.com/suppressd/suppressd/internal/testkafka"
	"github.com/suppressd/suppressd/internal/teststore"
	"github.com/suppressd/suppressd/store/redisstore"
	"github.com/suppressd/suppressd/suppression"
)

func kafkaSASLConfig(t *testing.T) kafkaconn.Config {
	t.Helper()
	l := testenv.KafkaSASL(t)
	return kafkaconn.Config{
		Brokers: l.Brokers, SASLMechanism: l.Mechanism, SASLUsername: l.Username, SASLPassword: l.Password,
		TLS: true, TLSCAFile: l.CAFile, DialTimeout: 10 * time.Second,
	}
}

func redisTLSConfig(t *testing.T) redisconn.Config {
	t.Helper()
	s := testenv.RedisTLS(t)
	return redisconn.Config{
		Addrs: []string{s.Addr}, Username: s.Username, Password: s.Password, TLS: true, TLSCAFile: s.CAFile,
		DialTimeout: 5 * time.Second, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second,
	}
}

// requireErrorNames checks that err exists and that its text says what is
// wrong: at least one of words (case-insensitive), and, when setting is
// not empty, the name of the setting to fix.
func requireErrorNames(t *testing.T, err error, setting string, words ...string) {
	t.Helper()
	require.Error(t, err)
	msg := strings.ToLower(err.Error())
	named := false
	for _, w := range words {
		named = named || strings.Contains(msg, strings.ToLower(w))
	}
	require.True(t, named, "the error should name the cause (one of %q): %v", words, err)
	if setting != "" {
		require.Contains(t, err.Error(), setting, "the error should name the setting to fix")
	}
	t.Logf("refused: %v", err)
}

func TestSmokeKafkaSASLSSL(t *testing.T) {
	t.Parallel()
	cfg := kafkaSASLConfig(t)
	require.NoError(t, cfg.Validate())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	dialer, err := cfg.Dialer()
	require.NoError(t, err)
	transport, err := cfg.Transport()
	require.NoError(t, err)
	defer transport.CloseIdleConnections()

	const n = 10
	topic := testkafka.Unique("smoke-sasl")
	testkafka.CreateTopicVia(ctx, t, dialer, cfg.Brokers[0], topic, 2)

	w := &kafka.Writer{
		Addr: kafka.TCP(cfg.Brokers...), Transport: transport, Topic: topic, Balancer: &kafka.Hash{},
		RequiredAcks: kafka.RequireAll, BatchTimeout: 10 * time.Millisecond, ErrorLogger: testkafka.Logger(t),
	}
	defer w.Close()
	want := map[string]string{}
	var msgs []kafka.Message
	for i := range n {
		k, v := fmt.Sprintf("key-%02d", i), fmt.Sprintf("value-%02d", i)
		want[k] = v
		msgs = append(msgs, kafka.Message{Key: []byte(k), Value: []byte(v)})
	}
	require.NoError(t, w.WriteMessages(ctx, msgs...))

	// A consumer group over the same listener: the group coordinator's
	// connection authenticates too.
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers: cfg.Brokers, Dialer: dialer, GroupID: topic + "-group", Topic: topic,
		StartOffset: kafka.FirstOffset, MaxWait: 200 * time.Millisecond,
		HeartbeatInterval: time.Second, SessionTimeout: 10 * time.Second, RebalanceTimeout: 5 * time.Second,
		JoinGroupBackoff: 500 * time.Millisecond, ErrorLogger: testkafka.Logger(t),
	})
	defer r.Close()
	got := map[string]string{}
	for len(got) < n {
		m, err := r.FetchMessage(ctx)
		require.NoError(t, err, "fetch after %d of %d messages", len(got), n)
		got[string(m.Key)] = string(m.Value)
		require.NoError(t, r.CommitMessages(ctx, m))
	}
	require.Equal(t, want, got)
}

func TestSmokeKafkaSASLSSLRefusals(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// dial tries cfg both ways the binary talks to Kafka: a Dialer
	// connection (readers, admin) and a write through a Transport.
	dial := func(t *testing.T, cfg kafkaconn.Config) (dialErr, writeErr error) {
		t.Helper()
		dialer, err := cfg.Dialer()
		require.NoError(t, err)
		if conn, err := dialer.DialContext(ctx, "tcp", cfg.Brokers[0]); err != nil {
			dialErr = err
		} else {
			_ = conn.Close()
		}
		transport, err := cfg.Transport()
		require.NoError(t, err)
		defer transport.CloseIdleConnections()
		w := &kafka.Writer{Addr: kafka.TCP(cfg.Brokers...), Transport: transport, Topic: testkafka.Unique("smoke-refused"),
			RequiredAcks: kafka.RequireAll, MaxAttempts: 1, BatchTimeout: time.Millisecond}
		defer w.Close()
		writeErr = w.WriteMessages(ctx, kafka.Message{Value: []byte("never stored")})
		return dialErr, writeErr
	}

	t.Run("wrong password", func(t *testing.T) {
		cfg := kafkaSASLConfig(t)
		cfg.SASLPassword += "-wrong"
		dialErr, writeErr := dial(t, cfg)
		requireErrorNames(t, dialErr, "", "SASL", "authentication")
		requireErrorNames(t, writeErr, "", "SASL", "authentication")
	})
	t.Run("untrusted CA", func(t *testing.T) {
		cfg := kafkaSASLConfig(t)
		cfg.TLSCAFile = testenv.UntrustedCA(t)
		dialErr, writeErr := dial(t, cfg)
		requireErrorNames(t, dialErr, "", "x509", "certificate")
		requireErrorNames(t, writeErr, "", "x509", "certificate")
	})
}

// tlsScript is a Lua read-modify-write on two keys of one hash tag: the
// shape of the store's apply script, on keys the ACL user may touch.
var tlsScript = redis.NewScript(`
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('SET', KEYS[2], ARGV[1] .. '=' .. n)
return n
`)

func TestSmokeRedisTLSACL(t *testing.T) {
	t.Parallel()
	cfg := redisTLSConfig(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rdb, err := cfg.Client()
	require.NoError(t, err)
	t.Cleanup(func() { _ = rdb.Close() })
	require.NoError(t, rdb.Ping(ctx).Err())

	tag := "sd:{" + testkafka.Unique("smoke") + "}"
	keys := []string{tag + ":h", tag + ":last"}
	t.Cleanup(func() { rdb.Unlink(context.Background(), keys...) })
	for i := 1; i <= 3; i++ {
		n, err := tlsScript.Run(ctx, rdb, keys, "count").Int()
		require.NoError(t, err)
		require.Equal(t, i, n)
	}
	last, err := rdb.Get(ctx, keys[1]).Result()
	require.NoError(t, err)
	require.Equal(t, "count=3", last)

	// The store itself (building a generation, its Lua apply and read
	// scripts, SCRIPT LOAD), then the SCAN and UNLINK a rebuild's clean-up
	// uses: what the user is granted is enough for suppressd. A prefix of
	// its own ("sd..." as the ACL allows) keeps it apart from other tests on
	// this server.
	opts := redisstore.Options{Prefix: "sd" + teststore.Prefix()}
	store := teststore.Build(t, rdb, opts)
	sk := suppression.StorageKey{1, 2, 3}
	changed, err := store.Apply(ctx, []suppression.Write{{Namespace: "smoke", Key: sk, Scope: "*", Change: suppression.Change{
		Action: suppression.ActionSuppress, Reason: suppression.ReasonUnsubscribe,
		Stamp: suppression.Stamp{At: 1, Tag: 1}, Origin: suppression.OriginRecipient, Source: "smoke"}}})
	require.NoError(t, err)
	require.Equal(t, 1, changed)
	recs, err := store.Get(ctx, "smoke", []suppression.StorageKey{sk})
	require.NoError(t, err)
	require.Len(t, recs, 1)
	require.NotNil(t, recs[0], "the record written is read back")
	rebuilds, err := redisstore.NewRebuilds(rdb, opts)
	require.NoError(t, err)
	_, err = rebuilds.Begin(ctx, "g2", "smoke", time.Minute)
	require.NoError(t, err)
	require.NoError(t, rebuilds.Finish(ctx, "g2", "smoke"))
	dropped, err := rebuilds.Drop(ctx, "g1")
	require.NoError(t, err, "SCAN and UNLINK of a generation's keys")
	require.Greater(t, dropped, int64(1))

	// What the user may not do.
	err = rdb.Set(ctx, testkafka.Unique("outside-sd"), "x", time.Minute).Err()
	require.ErrorContains(t, err, "NOPERM", "a key outside sd:* is refused")
	_, err = tlsScript.Run(ctx, rdb, []string{"{x}:h", "{x}:last"}, "count").Result()
	require.ErrorContains(t, err, "NOPERM", "a script touching keys outside sd:* is refused")
	require.ErrorContains(t, rdb.FlushAll(ctx).Err(), "NOPERM")
	require.ErrorContains(t, rdb.ConfigSet(ctx, "maxmemory", "1").Err(), "NOPERM")
}

func TestSmokeRedisTLSACLRefusals(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ping := func(t *testing.T, cfg redisconn.Config) error {
		t.Helper()
		cfg.DialTimeout = 2 * time.Second
		rdb, err := cfg.Client()
		require.NoError(t, err)
		defer rdb.Close()
		return rdb.Ping(ctx).Err()
	}

	t.Run("wrong password", func(t *testing.T) {
		cfg := redisTLSConfig(t)
		cfg.Password += "-wrong"
		requireErrorNames(t, ping(t, cfg), "SUPPRESSD_REDIS_PASSWORD", "authentication")
	})
	t.Run("default user", func(t *testing.T) {
		// The password alone authenticates as the default user, which is off.
		cfg := redisTLSConfig(t)
		cfg.Username = ""
		requireErrorNames(t, ping(t, cfg), "SUPPRESSD_REDIS_PASSWORD", "authentication")
		cfg.Password = ""
		requireErrorNames(t, ping(t, cfg), "SUPPRESSD_REDIS_PASSWORD", "authentication")
	})
	t.Run("untrusted CA", func(t *testing.T) {
		cfg := redisTLSConfig(t)
		cfg.TLSCAFile = testenv.UntrustedCA(t)
		requireErrorNames(t, ping(t, cfg), "SUPPRESSD_REDIS_TLS", "x509", "certificate")
	})
	t.Run("no TLS", func(t *testing.T) {
		// The server speaks only TLS: a plaintext client gets no answer.
		// (No credentials: nothing secret goes out in the clear.)
		cfg := redisTLSConfig(t)
		cfg.TLS, cfg.Username, cfg.Password = false, "", ""
		require.Error(t, ping(t, cfg))
	})
}
