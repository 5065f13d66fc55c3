package consumer

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/internal/testenv"
	"github.com/suppressd/suppressd/internal/testkafka"
	"github.com/suppressd/suppressd/schemas"
	"github.com/suppressd/suppressd/suppression"
)

// TestRebalanceLosesNothing starts a second consumer in the group in the
// middle of a stream, then stops the first: the partitions move twice, and
// every event ends applied.
func TestRebalanceLosesNothing(t *testing.T) {
	rdb := testenv.RedisClients(t)["standalone"]
	h := start(t, rdb, Options{BatchSize: 20})
	const n = 3000
	now := time.Now().Add(-time.Minute)
	emails := make([]string, n)
	evs := make([]suppression.Event, n)
	for i := range evs {
		emails[i] = fmt.Sprintf("rebalance%d@example.org", i)
		evs[i] = event(suppression.EventUnsubscribe, emails[i], now, "email")
	}
	h.publish(evs[:n/3]...)
	eventually(t, "the first consumer is applying", func() bool { return counter(t, h, "events", "unsubscribe", outcomeApplied) > 0 })

	// A second member joins: the group rebalances while events flow.
	reader := kafka.NewReader(kafka.ReaderConfig{
		Brokers: h.brokers, GroupID: h.topic + "-group", GroupTopics: []string{h.topic, h.admin},
		StartOffset: kafka.FirstOffset, MaxWait: 100 * time.Millisecond, ErrorLogger: testkafka.Logger(t),
	})
	v, err := schemas.New()
	require.NoError(t, err)
	ledgerW := testkafka.Writer(h.brokers, h.ledger)
	defer ledgerW.Close()
	second := New(reader, testkafka.Writer(h.brokers, h.dlq),
		&Ingest{Validator: v, Normalizer: normalizer, Keyer: testKeyer, Ledger: ledgerW, AdminTopic: h.admin},
		Options{Stage: "ingest", BatchSize: 20}, slog.New(slog.NewJSONHandler(h.logs, nil)), prometheus.NewRegistry())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- second.Run(ctx); _ = reader.Close() }()
	defer func() {
		cancel()
		require.NoError(t, <-done)
	}()
	// Keep events flowing, a few at a time, until the second member has
	// applied some: the rebalance happens while events are in flight.
	secondApplied := func() float64 {
		return testutil.ToFloat64(second.m.events.WithLabelValues("unsubscribe", outcomeApplied))
	}
	next := n / 3
	for ; next < 2*n/3 && secondApplied() == 0; next += 25 {
		h.publish(evs[next : next+25]...)
		time.Sleep(250 * time.Millisecond)
	}
	h.publish(evs[next : 2*n/3]...)
	eventually(t, "the second consumer got partitions", func() bool { return secondApplied() > 0 })
	// The first leaves: its partitions move to the second.
	h.stopIngest()
	h.publish(evs[2*n/3:]...)

	keys := make([]suppression.StorageKey, n)
	for i, e := range emails {
		keys[i] = storageKeys(t, e)[0]
	}
	applied := func() int {
		recs, err := h.store.Get(context.Background(), suppression.DefaultNamespace, keys)
		require.NoError(t, err)
		c := 0
		for _, r := range recs {
			if r != nil && r["email"].Suppressed() {
				c++
			}
		}
		return c
	}
	deadline := time.Now().Add(60 * time.Second)
	for applied() < n {
		require.True(t, time.Now().Before(deadline), "only %d of %d applied across the rebalances", applied(), n)
		time.Sleep(100 * time.Millisecond)
	}
	require.Equal(t, n, applied())
}
