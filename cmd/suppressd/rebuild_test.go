package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/consumer"
	"github.com/suppressd/suppressd/internal/testenv"
	"github.com/suppressd/suppressd/internal/testkafka"
	"github.com/suppressd/suppressd/internal/teststore"
	"github.com/suppressd/suppressd/ledger"
	"github.com/suppressd/suppressd/store/redisstore"
	"github.com/suppressd/suppressd/suppression"
)

func unsubscribeEvent(t *testing.T, id, email string, at time.Time) suppression.Event {
	e := suppression.Event{
		ID: id, Source: "/test", Type: suppression.EventUnsubscribe, OccurredAt: at,
		Identifiers: []suppression.Identifier{{Type: suppression.IDEmail, Value: email}},
		Scopes:      []suppression.Scope{"email"}, Origin: suppression.OriginRecipient,
	}
	require.NoError(t, e.Normalize(time.Time{}))
	return e
}

// TestRebuildFromTheLedger loses nothing: a rebuild replays the ledger into
// a new generation on the Redis Cluster while the apply stage keeps going,
// switches to it, and drops the old one.
func TestRebuildFromTheLedger(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	clusterAddrs := testenv.RedisClusterAddrs(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	topic := testkafka.Unique("ledger")
	testkafka.CreateTopic(ctx, t, brokers[0], topic, 3)
	prefix := strings.ReplaceAll(testkafka.Unique("r"), "-", "")
	for k, v := range map[string]string{
		"SUPPRESSD_KAFKA_BROKERS": strings.Join(brokers, ","),
		"SUPPRESSD_REDIS_ADDRS":   strings.Join(clusterAddrs, ","),
		"SUPPRESSD_REDIS_CLUSTER": "true",
		"SUPPRESSD_TOPIC_LEDGER":  topic,
		"SUPPRESSD_STORE_PREFIX":  prefix,
	} {
		t.Setenv(k, v)
	}

	keyer := suppression.NewKeyer(nil) // the command's: no pepper configured
	norm := suppression.Normalizer{}
	// recordOf is what the ingest stage makes of an event.
	recordOf := func(e suppression.Event) (ledger.Record, kafka.Message) {
		keys, err := norm.Expand(e.Identifiers...)
		require.NoError(t, err)
		rec := ledger.FromEvent(&e, keyer.StorageKeys(nil, keys), e.OccurredAt)
		raw, err := ledger.Encode(&rec)
		require.NoError(t, err)
		return rec, kafka.Message{Key: rec.Keys[0][:], Value: raw}
	}
	writesFor := func(e suppression.Event) []suppression.Write {
		rec, _ := recordOf(e)
		return rec.AppendWrites(nil)
	}

	const n = 300
	at := time.Now().Add(-time.Hour)
	msgs := []kafka.Message{consumer.GenesisMessage(at.Add(-time.Hour))}
	emails := make([]string, n)
	for i := range emails {
		emails[i] = fmt.Sprintf("rebuild%d@example.org", i)
		_, msg := recordOf(unsubscribeEvent(t, fmt.Sprintf("r-%d", i), emails[i], at))
		msgs = append(msgs, msg)
	}
	msgs = append(msgs, kafka.Message{Key: []byte("bad"), Value: []byte(`{"not":"a ledger record"}`)})
	w := testkafka.Writer(brokers, topic)
	defer w.Close()
	require.NoError(t, w.WriteMessages(ctx, msgs...))

	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: clusterAddrs})
	defer rdb.Close()
	gens := teststore.Build(t, rdb, redisstore.Options{Prefix: prefix, Keying: keyer.Fingerprint(), Refresh: 100 * time.Millisecond})
	// The old generation holds something only it has: it must be gone after --drop-old.
	_, err := gens.Apply(ctx, writesFor(unsubscribeEvent(t, "old-only", "old.only@example.org", at)))
	require.NoError(t, err)

	// The apply stage keeps going during the rebuild: each record reaches
	// the ledger and is then applied, as the stages would. Records applied
	// before it noticed the rebuild reach the new generation by replay,
	// later ones by its dual writes.
	var wg sync.WaitGroup
	var live atomic.Int64
	liveCtx, stopLive := context.WithCancel(ctx)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; liveCtx.Err() == nil; i++ {
			e := unsubscribeEvent(t, fmt.Sprintf("live-%d", i), fmt.Sprintf("live%d@example.org", i), time.Now())
			_, msg := recordOf(e)
			if w.WriteMessages(liveCtx, msg) != nil {
				return
			}
			if _, err := gens.Apply(liveCtx, writesFor(e)); err == nil {
				live.Add(1)
			} else {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()

	var out, errb bytes.Buffer
	code := run(ctx, []string{"rebuild", "--drop-old", "--grace", "1s", "--progress", "50ms"}, stdio{out: &out, err: &errb})
	stopLive()
	wg.Wait()
	require.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", out.String(), errb.String())
	require.Contains(t, out.String(), "rebuilding generation g2 (active: g1)")
	require.Regexp(t, `generation g2 is active: [0-9]+ events applied, 1 invalid skipped`, out.String())
	require.Contains(t, out.String(), "progress: ")
	require.Regexp(t, `dropped generation g1: [1-9][0-9]* keys`, out.String())

	// Readers notice the switch within their refresh period (100ms here).
	require.Eventually(t, func() bool {
		active, err := gens.Active(ctx)
		return err == nil && active == "g2"
	}, 5*time.Second, 20*time.Millisecond, "readers switch to g2")
	count := func(emails []string) int {
		c := 0
		for _, e := range emails {
			keys, err := norm.Expand(suppression.Identifier{Type: suppression.IDEmail, Value: e})
			require.NoError(t, err)
			recs, err := gens.Get(ctx, suppression.DefaultNamespace, keyer.StorageKeys(nil, keys))
			require.NoError(t, err)
			if recs[0] != nil && recs[0]["email"].Suppressed() {
				c++
			}
		}
		return c
	}
	require.Equal(t, n, count(emails), "every record of the ledger is in the new generation")
	require.Zero(t, count([]string{"old.only@example.org"}), "the old generation is dropped, and nothing of it was copied")
	var liveEmails []string
	for i := 0; i < int(live.Load()); i++ {
		liveEmails = append(liveEmails, fmt.Sprintf("live%d@example.org", i))
	}
	require.Greater(t, len(liveEmails), 10)
	require.Equal(t, len(liveEmails), count(liveEmails), "writes made during the rebuild reached the new generation")

	// The active generation cannot be rebuilt in place.
	out.Reset()
	errb.Reset()
	require.Equal(t, 1, run(ctx, []string{"rebuild", "--generation", "g2", "--grace", "0s"}, stdio{out: &out, err: &errb}))
	require.Contains(t, errb.String(), "generation g2 is the active one")

	// A ledger that does not begin with its genesis record may be missing
	// history (intake events from before the ledger existed): a rebuild from
	// it would forget those opt-outs, so it is refused unless forced.
	partial := testkafka.Unique("ledger")
	testkafka.CreateTopic(ctx, t, brokers[0], partial, 1)
	pw := testkafka.Writer(brokers, partial)
	defer pw.Close()
	_, msg := recordOf(unsubscribeEvent(t, "partial-1", "partial@example.org", at))
	require.NoError(t, pw.WriteMessages(ctx, msg))
	t.Setenv("SUPPRESSD_TOPIC_LEDGER", partial)
	out.Reset()
	errb.Reset()
	require.Equal(t, 1, run(ctx, []string{"rebuild", "--grace", "0s"}, stdio{out: &out, err: &errb}), "stdout:\n%s", out.String())
	require.Contains(t, errb.String(), "the ledger has no genesis record")
	require.Contains(t, out.String(), "rebuild of g3 aborted; g2 stays active")
	active, err := gens.Active(ctx)
	require.NoError(t, err)
	require.Equal(t, "g2", active)
	require.Equal(t, n, count(emails), "the refused rebuild changed nothing readers see")
}
