package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/internal/testkafka"
	"github.com/suppressd/suppressd/internal/testredis"
	"github.com/suppressd/suppressd/internal/testsentinel"
)

// TestEmptiedRedisFailsClosedAndRebuilds kills a redis-server that keeps
// nothing on disk and starts it again empty, while checks run against
// `serve --role api,consumer`: no check ever answers "allowed" for a person
// who opted out (the store answers "not built", never "no record"; the API
// writes nothing), readiness drops, and the consumer rebuilds the store from
// Kafka by itself, after which every suppression is back.
func TestEmptiedRedisFailsClosedAndRebuilds(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv := testredis.StartVolatile(t)
	brokers, topic := servingEnv(ctx, t, srv.Addr())
	t.Setenv("SUPPRESSD_REDIS_DIAL_TIMEOUT", "200ms")
	t.Setenv("SUPPRESSD_REDIS_READ_TIMEOUT", "300ms")
	t.Setenv("SUPPRESSD_API_STORE_TIMEOUT", "300ms")
	addr, logs := serveInProcess(t, "api,consumer")

	const n = 40
	emails := make([]string, n)
	for i := range emails {
		emails[i] = fmt.Sprintf("gone%d@example.org", i)
	}
	w := testkafka.Writer(brokers, topic)
	defer w.Close()
	require.NoError(t, w.WriteMessages(ctx, unsubscribes(t, emails...)...))
	client := &http.Client{Timeout: 2 * time.Second}
	allSuppressed := func() bool {
		for _, e := range emails {
			status, allowed, err := checkEmail(client, addr, e)
			if err != nil || status != http.StatusOK || allowed {
				return false
			}
		}
		return true
	}
	require.Eventually(t, allSuppressed, 30*time.Second, 50*time.Millisecond, "every opt-out visible\n%s", logs.String())

	// Checks keep running through the loss and the rebuild.
	var (
		allowedWrongly, unavailable, answered atomic.Int64
		wg                                    sync.WaitGroup
	)
	stop := make(chan struct{})
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				status, allowed, err := checkEmail(client, addr, emails[i%n])
				switch {
				case err != nil:
				case status == http.StatusOK && allowed:
					allowedWrongly.Add(1)
				case status == http.StatusOK:
					answered.Add(1)
				case status == http.StatusServiceUnavailable:
					unavailable.Add(1)
				}
			}
		}()
	}
	time.Sleep(200 * time.Millisecond)
	srv.Kill()
	srv.Start() // empty: no persistence
	probe := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer probe.Close()
	require.Eventually(t, func() bool {
		status, _, err := get(client, "http://"+addr+"/readyz")
		return err == nil && status == http.StatusServiceUnavailable
	}, 10*time.Second, 10*time.Millisecond, "readiness drops once the data is gone")

	require.Eventually(t, func() bool {
		status, _, err := get(client, "http://"+addr+"/readyz")
		return err == nil && status == http.StatusOK
	}, 60*time.Second, 50*time.Millisecond, "ready again after the rebuild\n%s", logs.String())
	require.Eventually(t, allSuppressed, 10*time.Second, 50*time.Millisecond, "every suppression is back")
	close(stop)
	wg.Wait()
	require.Zero(t, allowedWrongly.Load(), "a check answered allowed for a person who opted out")
	require.Positive(t, unavailable.Load(), "checks failed closed while the store was gone")
	require.Positive(t, answered.Load())
	require.Contains(t, logs.String(), "rebuilding it from Kafka")
	t.Logf("checks: %d answered suppressed, %d answered 503, 0 allowed", answered.Load(), unavailable.Load())

	_, metrics, err := get(client, "http://"+addr+"/metrics")
	require.NoError(t, err)
	require.Contains(t, metrics, `suppressd_store_rebuilds_total{outcome="done"} 2`, "the first build and the rebuild")
	require.Contains(t, metrics, "suppressd_store_ready 1")
}

// TestStoreTimeoutIsHonoured: with Redis stalled (CLIENT PAUSE), a check
// answers 503 after SUPPRESSD_API_STORE_TIMEOUT, not after the longer
// SUPPRESSD_REDIS_READ_TIMEOUT.
func TestStoreTimeoutIsHonoured(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv := testredis.StartVolatile(t)
	servingEnv(ctx, t, srv.Addr())
	t.Setenv("SUPPRESSD_REDIS_READ_TIMEOUT", "10s")
	t.Setenv("SUPPRESSD_API_STORE_TIMEOUT", "200ms")
	// The read path through Redis is what is timed: a serving read index
	// would answer this address (never opted out) from memory for up to
	// its bound after the stall (TestIndexServesAndFailsClosed).
	t.Setenv("SUPPRESSD_INDEX_ENABLED", "false")
	addr, _ := serveInProcess(t, "api,consumer")
	client := &http.Client{Timeout: 30 * time.Second}
	status, _, err := checkEmail(client, addr, "paused@example.org")
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, status)

	admin := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer admin.Close()
	require.NoError(t, admin.Do(ctx, "CLIENT", "PAUSE", "6000", "ALL").Err())
	defer admin.Do(context.Background(), "CLIENT", "UNPAUSE")
	start := time.Now()
	status, _, err = checkEmail(client, addr, "paused@example.org")
	took := time.Since(start)
	require.NoError(t, err)
	require.Equal(t, http.StatusServiceUnavailable, status)
	// 200ms is the bound; 10s the read timeout it must not wait for. The
	// margin absorbs a loaded 2-core machine.
	require.Less(t, took, 3*time.Second, "answered after %s", took)
	t.Logf("a stalled Redis answered 503 after %s (store timeout 200ms, read timeout 10s)", took.Round(time.Millisecond))
}

func get(client *http.Client, url string) (int, string, error) {
	resp, err := client.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	var b strings.Builder
	_, err = io.Copy(&b, resp.Body)
	return resp.StatusCode, b.String(), err
}

// TestSentinelFailoverLosesNothingCommitted runs `serve --role
// api,consumer` in Sentinel mode with SUPPRESSD_STORE_DURABILITY=replicas:1
// on a master, a replica and three Sentinels. While the replica cannot
// acknowledge (SIGSTOP), the consumer applies its batch but commits nothing:
// no offset is committed for a write only the master holds (it waits,
// retrying, without moving on). Then the master is killed (-9): after the
// failover every event is in the new master (the uncommitted ones are
// applied again), checks fail closed during the switch and never answer
// "allowed" for anyone suppressed, and with no replica left to confirm, the
// consumer still commits nothing.
func TestSentinelFailoverLosesNothingCommitted(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	tp := testsentinel.Start(t)
	brokers, topic := servingEnv(ctx, t, strings.Join(tp.Sentinels, ","))
	for k, v := range map[string]string{
		"SUPPRESSD_REDIS_MASTER_NAME":        tp.MasterName,
		"SUPPRESSD_STORE_DURABILITY":         "replicas:1",
		"SUPPRESSD_STORE_DURABILITY_TIMEOUT": "300ms",
		"SUPPRESSD_REDIS_DIAL_TIMEOUT":       "300ms",
		"SUPPRESSD_REDIS_READ_TIMEOUT":       "1s",
		"SUPPRESSD_API_STORE_TIMEOUT":        "500ms",
		// A wave published at once is one batch.
		"SUPPRESSD_CONSUMER_BATCH_WAIT": "300ms",
	} {
		t.Setenv(k, v)
	}
	addr, logs := serveInProcess(t, "api,consumer")
	client := &http.Client{Timeout: 3 * time.Second}
	w := testkafka.Writer(brokers, topic)
	defer w.Close()
	kc := &kafka.Client{Addr: kafka.TCP(brokers...), Transport: &kafka.Transport{}}
	// committed counts the ledger records the apply stage has committed,
	// less the genesis record. (The ingest stage commits the intake topics
	// once the ledger, in Kafka, holds their records: that needs nothing of
	// Redis.)
	ledgerTopic := topic + "-ledger"
	committed := func() int64 {
		resp, err := kc.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: topic + "-apply", Topics: map[string][]int{ledgerTopic: {0, 1}}})
		require.NoError(t, err)
		var n int64
		for _, p := range resp.Topics[ledgerTopic] {
			n += max(0, p.CommittedOffset)
		}
		return n - 1
	}
	wave := func(from, to int) []string {
		var emails []string
		for i := from; i < to; i++ {
			emails = append(emails, fmt.Sprintf("durable%d@example.org", i))
		}
		return emails
	}
	suppressed := func(emails []string) func() bool {
		return func() bool {
			for _, e := range emails {
				status, allowed, err := checkEmail(client, addr, e)
				if err != nil || status != http.StatusOK || allowed {
					return false
				}
			}
			return true
		}
	}
	first, second := wave(0, 100), wave(100, 200)
	require.NoError(t, w.WriteMessages(ctx, unsubscribes(t, first...)...))
	require.Eventually(t, suppressed(first), 30*time.Second, 50*time.Millisecond, "the first wave is visible\n%s", logs.String())
	require.Eventually(t, func() bool { return committed() == 100 }, 10*time.Second, 50*time.Millisecond, "and committed")

	// The replica stops acknowledging: the master takes the second wave,
	// but none of it may be committed.
	require.NoError(t, syscall.Kill(tp.Replica.PID(), syscall.SIGSTOP))
	resumed := false
	defer func() {
		if !resumed {
			_ = syscall.Kill(tp.Replica.PID(), syscall.SIGCONT)
		}
	}()
	require.NoError(t, w.WriteMessages(ctx, unsubscribes(t, second...)...))
	// Batches are applied and committed in order: the first batch of the
	// wave is applied to the master and waits for its confirmation; the
	// rest of the wave waits behind it.
	someVisible := func() bool {
		for _, e := range second {
			if status, allowed, err := checkEmail(client, addr, e); err == nil && status == http.StatusOK && !allowed {
				return true
			}
		}
		return false
	}
	require.Eventually(t, someVisible, 20*time.Second, 50*time.Millisecond, "the second wave's first batch is applied to the master")
	time.Sleep(time.Second) // several confirmation timeouts
	require.Equal(t, int64(100), committed(), "offsets committed for writes only the master holds")

	// Checks run through the crash and the failover.
	var allowedWrongly, unavailable atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			status, allowed, err := checkEmail(client, addr, first[i%len(first)])
			switch {
			case err == nil && status == http.StatusOK && allowed:
				allowedWrongly.Add(1)
			case err == nil && status == http.StatusServiceUnavailable:
				unavailable.Add(1)
			}
		}
	})
	tp.Master.Kill()
	require.NoError(t, syscall.Kill(tp.Replica.PID(), syscall.SIGCONT))
	resumed = true
	promoted := tp.WaitFailover(tp.Master)
	require.Equal(t, tp.Replica.Addr(), promoted.Addr())
	require.Eventually(t, suppressed(append(first, second...)), 60*time.Second, 100*time.Millisecond,
		"every event is in the new master\n%s", logs.String())
	close(stop)
	wg.Wait()
	require.Zero(t, allowedWrongly.Load(), "a check answered allowed for a suppressed person during the failover")
	t.Logf("during the failover: %d checks answered 503", unavailable.Load())

	// With no replica left to confirm, the consumer still commits nothing:
	// it waits for one (a restarted replica, which Sentinel attaches).
	require.Equal(t, int64(100), committed())
}
