package consumer

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/internal/kafkaconn"
	"github.com/suppressd/suppressd/internal/testenv"
	"github.com/suppressd/suppressd/internal/testkafka"
	"github.com/suppressd/suppressd/ledger"
	"github.com/suppressd/suppressd/suppression"
)

func feedRecord(t *testing.T, i int) kafka.Message {
	t.Helper()
	k := storageKeys(t, "feed"+string(rune('a'+i%26))+time.Now().Format("150405.000000000")+"@example.org")[0]
	now := time.Now()
	rec := ledger.Record{Type: suppression.EventUnsubscribe, Reason: suppression.ReasonUnsubscribe, Origin: suppression.OriginRecipient,
		Namespace: "default", Scopes: []suppression.Scope{suppression.ScopeGlobal}, Keys: []suppression.StorageKey{k},
		Source: "/feed-test", ID: now.Format(time.RFC3339Nano), OccurredAt: now, Reference: now}
	b, err := ledger.Encode(&rec)
	require.NoError(t, err)
	return kafka.Message{Key: k[:], Value: b}
}

// TestLedgerFeedFreshMeansComplete: whenever the feed says fresh(t), every
// record whose write the broker acknowledged before t has been added;
// records before the apply group's committed offsets are not (the store
// has them); the genesis record adds nothing.
func TestLedgerFeedFreshMeansComplete(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	brokers := testenv.KafkaBrokers(t)
	topic := testkafka.Unique("ledger")
	group := topic + "-apply"
	testkafka.CreateTopic(ctx, t, brokers[0], topic, 3)
	w := testkafka.Writer(brokers, topic)
	defer w.Close()

	// The apply stage has applied (and committed) the first 30 records.
	var early []kafka.Message
	for i := range 30 {
		early = append(early, feedRecord(t, i))
	}
	require.NoError(t, w.WriteMessages(ctx, append([]kafka.Message{GenesisMessage(time.Now())}, early...)...))
	gr := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, GroupID: group, GroupTopics: []string{topic}, StartOffset: kafka.FirstOffset, MaxWait: 100 * time.Millisecond})
	for range 31 {
		m, err := gr.FetchMessage(ctx)
		require.NoError(t, err)
		require.NoError(t, gr.CommitMessages(ctx, m))
	}
	require.NoError(t, gr.Close())

	var (
		mu       sync.Mutex
		added    = map[string]int{}
		acked    = map[string]time.Time{} // key -> when its write returned
		freshes  int
		problems []string
	)
	started := make(chan struct{})
	fctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	feed := LedgerFeed{Kafka: kafkaconn.Config{Brokers: brokers, DialTimeout: 5 * time.Second}, Topic: topic, Group: group, Probe: 10 * time.Millisecond}
	go func() {
		done <- feed.Follow(fctx, func() { close(started) }, func(ns string, keys []suppression.StorageKey, _ time.Time) {
			mu.Lock()
			defer mu.Unlock()
			if ns != "default" {
				problems = append(problems, "namespace "+ns)
			}
			for _, k := range keys {
				added[string(k[:])]++
			}
		}, func(at time.Time) {
			mu.Lock()
			defer mu.Unlock()
			freshes++
			for k, when := range acked {
				if when.Before(at) && added[k] == 0 {
					problems = append(problems, "fresh as of "+at.Format(time.StampMicro)+" without a record acknowledged at "+when.Format(time.StampMicro))
				}
			}
		})
	}()
	<-started
	for i := range 200 {
		m := feedRecord(t, i)
		require.NoError(t, w.WriteMessages(ctx, m))
		mu.Lock()
		acked[string(m.Key)] = time.Now()
		mu.Unlock()
		if i%20 == 0 {
			time.Sleep(30 * time.Millisecond)
		}
	}
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(added) == 200
	}, 20*time.Second, 10*time.Millisecond)
	before := func() int { mu.Lock(); defer mu.Unlock(); return freshes }()
	time.Sleep(100 * time.Millisecond)
	stop()
	require.NoError(t, <-done)

	mu.Lock()
	defer mu.Unlock()
	require.Empty(t, problems)
	require.Greater(t, freshes, before, "an idle ledger keeps the feed fresh")
	for _, m := range early {
		require.Zero(t, added[string(m.Key)], "a record before the committed offsets was added")
	}
	for k, n := range added {
		require.Equal(t, 1, n, "key %x added %d times", k[:4], n)
	}
}
