package consumer

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/internal/testredis"
	"github.com/suppressd/suppressd/suppression"
)

// committed returns how many of the ledger's records the apply stage has
// committed: the sum over partitions of the committed offset (the next offset
// to read; the topic is fresh, so offsets start at 0).
func committed(t *testing.T, h *harness) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client := &kafka.Client{Addr: kafka.TCP(h.brokers...), Timeout: 10 * time.Second}
	res, err := client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: h.applyGroup(), Topics: map[string][]int{h.ledger: {0, 1, 2}}})
	require.NoError(t, err)
	require.NoError(t, res.Error)
	var n int64
	for _, p := range res.Topics[h.ledger] {
		require.NoError(t, p.Error)
		if p.CommittedOffset > 0 {
			n += p.CommittedOffset
		}
	}
	return n
}

// TestRedisOutageLosesNoEvent stops Redis in the middle of a stream of
// events and starts it again: the consumer waits (retrying, committing
// nothing), then applies every event, and none is lost.
func TestRedisOutageLosesNoEvent(t *testing.T) {
	const (
		total  = 600
		before = 200 // applied before Redis stops; the rest arrive while it is down
	)
	srv := testredis.Start(t)
	// Short timeouts so a dead server fails a call fast. go-redis reads
	// MaxRetries 0 as "3", so 1 is the smallest explicit retry count.
	rdb := redis.NewClient(&redis.Options{
		Addr: srv.Addr(), DialTimeout: 200 * time.Millisecond, ReadTimeout: 200 * time.Millisecond,
		WriteTimeout: 200 * time.Millisecond, MaxRetries: 1, DialerRetries: 1,
	})
	t.Cleanup(func() { _ = rdb.Close() })
	// A short ShutdownGrace only matters when an assertion fails during the
	// outage: the clean-up's stop then gives up the batch in hand after 2s
	// instead of 15s.
	opts := Options{BackoffMin: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond, BatchSize: 50, ShutdownGrace: 2 * time.Second}
	h := start(t, rdb, opts)

	now := time.Now().Add(-time.Minute)
	emails := make([]string, total)
	evs := make([]suppression.Event, total)
	for i := range evs {
		emails[i] = fmt.Sprintf("outage-%d@example.org", i)
		evs[i] = event(suppression.EventUnsubscribe, emails[i], now, "email")
	}
	applied := func() float64 { return counter(t, h, "events", "unsubscribe", outcomeApplied) }

	h.publish(evs[:before]...)
	eventually(t, "the first events applied", func() bool { return applied() == before })
	// A slow reply under load may already have failed an attempt; the
	// outage must add to whatever is there.
	errorsBefore := counter(t, h, "store_errors")
	pidBefore := srv.PID()

	// Redis goes away; the rest of the stream keeps arriving.
	srv.Stop()
	h.publish(evs[before:]...)
	eventually(t, "the consumer hits the dead store", func() bool { return counter(t, h, "store_errors") > errorsBefore })
	firstErrors := counter(t, h, "store_errors")
	// For a second the consumer keeps retrying: nothing is applied, nothing
	// skipped, nothing committed past the failure, and Run does not give up.
	for end := time.Now().Add(time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		require.Equal(t, float64(before), applied(), "nothing can be applied while Redis is down")
		require.LessOrEqual(t, committed(t, h), int64(before), "nothing committed past the failure")
		select {
		case err := <-h.exited:
			t.Fatalf("the consumer stopped during the outage: %v", err)
		default:
		}
	}
	require.Greater(t, counter(t, h, "store_errors"), firstErrors, "the consumer keeps retrying the store")
	require.Contains(t, h.logs.String(), `"what":"effect"`, "the retries are logged")
	// What was applied before the outage is committed (its last commit may
	// still have been in flight when Redis stopped), and nothing else.
	eventually(t, "the events applied before the outage committed", func() bool { return committed(t, h) == before })
	t.Logf("outage: %.0f failed store attempts, %.0f events applied, %d committed", counter(t, h, "store_errors"), applied(), committed(t, h))

	// Redis is back, on the same port with the same data directory.
	restarted := time.Now()
	srv.Start() // checks that the new process is the one answering on the port
	t.Logf("redis-server answered %v after the restart began", time.Since(restarted).Round(time.Millisecond))
	require.NotEqual(t, pidBefore, srv.PID(), "a new redis-server process serves the store")
	eventually(t, "every event applied after the outage", func() bool { return applied() >= total })
	t.Logf("all %d events applied %v after Redis was restarted", total, time.Since(restarted).Round(time.Millisecond))

	// Every one of the N people is suppressed, on every match key of their
	// address. The first events were committed before the outage and are
	// never redelivered, so they are here only because the store kept them
	// across the restart.
	emailScope := suppression.ChannelScope(suppression.ChannelEmail)
	suppressed, fullyWritten := 0, 0
	for _, email := range emails {
		m, ok := h.decide(email, marketingEmail)
		if ok && m.Reason == suppression.ReasonUnsubscribe && m.Scope == emailScope {
			suppressed++
		}
		recs, err := h.store.Get(context.Background(), suppression.DefaultNamespace, storageKeys(t, email))
		require.NoError(t, err)
		all := len(recs) > 0
		for _, rec := range recs {
			_, has := rec[emailScope]
			all = all && has
		}
		if all {
			fullyWritten++
		}
	}
	require.Equal(t, total, suppressed, "people suppressed after the outage")
	require.Equal(t, total, fullyWritten, "people whose every match key holds the suppression")

	// The events counter counts a batch once, after the store accepted it: a
	// failed attempt is retried in place and counted only when it succeeds,
	// and nothing is redelivered while Kafka stays up (no rebalance, commits
	// succeed). So exactly N, not "at least N".
	require.Equal(t, float64(total), applied(), "each event counted once")
	eventually(t, "every event committed", func() bool { return committed(t, h) == total })

	// Nothing was committed past the failure, and everything after it was:
	// a new consumer in the same group reads none of the old events, only
	// what is published now.
	h.stop()
	h.run(t, rdb, opts)
	h.publish(event(suppression.EventUnsubscribe, "after-outage@example.org", now, "email"))
	eventually(t, "the new event applied", func() bool { return applied() >= 1 })
	for end := time.Now().Add(time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		require.Equal(t, 1.0, applied(), "no event from before the restart was read again")
	}
	_, ok := h.decide("after-outage@example.org", marketingEmail)
	require.True(t, ok)
}
