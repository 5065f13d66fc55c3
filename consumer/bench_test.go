package consumer

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"

	"github.com/suppressd/suppressd/internal/testenv"
	"github.com/suppressd/suppressd/internal/testkafka"
	"github.com/suppressd/suppressd/internal/teststore"
	"github.com/suppressd/suppressd/schemas"
	"github.com/suppressd/suppressd/store/redisstore"
	"github.com/suppressd/suppressd/suppression"
)

// The end-to-end benchmarks need the test command's servers:
//
//	scripts/bench.sh EndToEnd|Freshness
//
// SUPPRESSD_BENCH_EVENTS sets the events per run (default 200,000),
// SUPPRESSD_BENCH_RATE and SUPPRESSD_BENCH_SECONDS the freshness load
// (default 20,000 events/s for 10 s).

func benchEnv(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

type benchRig struct {
	brokers []string
	topic   string
	rdb     *redis.Client
	store   *redisstore.Store
	writer  *kafka.Writer
}

func newBenchRig(b *testing.B, partitions int) *benchRig {
	brokers := testenv.KafkaBrokers(b)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r := &benchRig{brokers: brokers, topic: testkafka.Unique("bench")}
	testkafka.CreateTopic(ctx, b, brokers[0], r.topic, partitions)
	testkafka.CreateTopic(ctx, b, brokers[0], r.topic+"-ledger", partitions)
	r.rdb = redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(b)})
	b.Cleanup(func() { _ = r.rdb.Close() })
	r.store = teststore.Build(b, r.rdb, redisstore.Options{Prefix: teststore.Prefix(), Keying: testKeyer.Fingerprint()})
	r.writer = &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: r.topic, Balancer: &kafka.Hash{},
		RequiredAcks: kafka.RequireAll, BatchSize: 1000, BatchBytes: 8 << 20, BatchTimeout: 5 * time.Millisecond,
		Transport: &kafka.Transport{MetadataTTL: time.Second}}
	b.Cleanup(func() { _ = r.writer.Close() })
	return r
}

// benchAddress mixes the two common shapes: two in three plain addresses
// (one match key), one in three gmail addresses with dots and a tag (four
// keys: plain, Google's two forms and TikTok's).
func benchAddress(i int) string {
	if i%3 == 2 {
		return fmt.Sprintf("first.last%d+news@gmail.com", i)
	}
	return fmt.Sprintf("user%d@example.org", i)
}

func benchMessage(b *testing.B, i int, at time.Time) kafka.Message {
	e := suppression.Event{
		ID: "bench-" + strconv.Itoa(i), Source: "/unsubscribe-link", Type: suppression.EventUnsubscribe, OccurredAt: at,
		Identifiers: []suppression.Identifier{{Type: suppression.IDEmail, Value: benchAddress(i)}},
		Scopes:      []suppression.Scope{suppression.ScopeGlobal}, Origin: suppression.OriginRecipient,
	}
	if err := e.Normalize(time.Time{}); err != nil {
		b.Fatal(err)
	}
	raw, err := schemas.Encode(e)
	if err != nil {
		b.Fatal(err)
	}
	return kafka.Message{Key: []byte(e.Identifiers[0].Value), Value: raw}
}

// consumer runs both stages, intake to ledger to Redis, and returns the
// apply stage (whose counts say what reached the store).
func (r *benchRig) consumer(b *testing.B, reg prometheus.Registerer) (*Consumer, func()) {
	reader := func(group, topic string) *kafka.Reader {
		return kafka.NewReader(kafka.ReaderConfig{
			Brokers: r.brokers, GroupID: group, GroupTopics: []string{topic}, StartOffset: kafka.FirstOffset,
			MinBytes: 1, MaxBytes: 10 << 20, MaxWait: 100 * time.Millisecond, QueueCapacity: 2000,
		})
	}
	v, err := schemas.New()
	if err != nil {
		b.Fatal(err)
	}
	ledgerW := &kafka.Writer{Addr: kafka.TCP(r.brokers...), Topic: r.topic + "-ledger", Balancer: &kafka.Hash{},
		RequiredAcks: kafka.RequireAll, BatchSize: 10000, BatchBytes: 16 << 20, BatchTimeout: time.Millisecond,
		Transport: &kafka.Transport{MetadataTTL: time.Second}}
	ir, ar := reader(r.topic, r.topic), reader(r.topic+"-apply", r.topic+"-ledger")
	ing := New(ir, testkafka.Writer(r.brokers, r.topic+"-dlq"),
		&Ingest{Validator: v, Normalizer: normalizer, Keyer: testKeyer, Ledger: ledgerW}, Options{Stage: "ingest"}, slog.New(slog.DiscardHandler), reg)
	app := New(ar, testkafka.Writer(r.brokers, r.topic+"-dlq"), &Apply{Store: r.store}, Options{Stage: "apply"}, slog.New(slog.DiscardHandler), reg)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, c := range []*Consumer{ing, app} {
		wg.Go(func() {
			if err := c.Run(ctx); err != nil {
				b.Error(err)
			}
		})
	}
	return app, func() { cancel(); wg.Wait(); _ = ir.Close(); _ = ar.Close(); _ = ledgerW.Close() }
}

func applied(c *Consumer) float64 {
	return testutil.ToFloat64(c.m.events.WithLabelValues("unsubscribe", outcomeApplied))
}

// BenchmarkEndToEnd drains a topic of pre-published unsubscribes into Redis
// and reports events/s beside redis-benchmark's pipelined write rate.
func BenchmarkEndToEnd(b *testing.B) {
	n := benchEnv("SUPPRESSD_BENCH_EVENTS", 200_000)
	var total time.Duration
	keys, timed := 0, 0
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		r := newBenchRig(b, 6)
		at := time.Now().Add(-time.Minute)
		msgs := make([]kafka.Message, 0, 10_000)
		ctx := context.Background()
		for j := 0; j < n; j++ {
			msgs = append(msgs, benchMessage(b, j, at))
			if len(msgs) == cap(msgs) || j == n-1 {
				if err := r.writer.WriteMessages(ctx, msgs...); err != nil {
					b.Fatal(err)
				}
				msgs = msgs[:0]
			}
		}
		c, stop := r.consumer(b, prometheus.NewRegistry())
		// The clock starts at the first applied batch: joining the group
		// is not throughput.
		for applied(c) == 0 {
			time.Sleep(time.Millisecond)
		}
		b.StartTimer()
		start, from := time.Now(), applied(c)
		for applied(c) < float64(n) {
			time.Sleep(5 * time.Millisecond)
		}
		total += time.Since(start)
		timed += n - int(from) // only what the clock saw
		b.StopTimer()
		keys += int(testutil.ToFloat64(c.m.changed))
		stop()
	}
	rate := float64(timed) / total.Seconds()
	b.ReportMetric(rate, "events/s")
	b.ReportMetric(rate*float64(keys)/float64(n*b.N), "keys/s") // keys per event, at the timed rate
	ceiling := testenv.RedisBenchmark(b, testenv.RedisAddr(b), n, "hset", "bench:ceiling:__rand_int__", "f", "__rand_int__")
	b.ReportMetric(ceiling, "redis-benchmark-writes/s")
	b.ReportMetric(100*rate/ceiling, "%-of-ceiling")
}

// BenchmarkFreshness publishes at a steady rate while the consumer runs and
// reports the opt-out freshness (occurred_at to applied) at p50 and p99, as
// the upper bounds of the histogram buckets they fall in.
func BenchmarkFreshness(b *testing.B) {
	rate := benchEnv("SUPPRESSD_BENCH_RATE", 20_000)
	seconds := benchEnv("SUPPRESSD_BENCH_SECONDS", 10)
	for i := 0; i < b.N; i++ {
		r := newBenchRig(b, 6)
		reg := prometheus.NewRegistry()
		c, stop := r.consumer(b, reg)
		tick := 10 * time.Millisecond
		perTick := max(1, rate*int(tick)/int(time.Second))
		t := time.NewTicker(tick)
		sent := 0
		deadline := time.Now().Add(time.Duration(seconds) * time.Second)
		for now := range t.C {
			if now.After(deadline) {
				break
			}
			msgs := make([]kafka.Message, perTick)
			for j := range msgs {
				msgs[j] = benchMessage(b, sent+j, time.Now())
			}
			if err := r.writer.WriteMessages(context.Background(), msgs...); err != nil {
				b.Fatal(err)
			}
			sent += perTick
		}
		t.Stop()
		for applied(c) < float64(sent) {
			time.Sleep(5 * time.Millisecond)
		}
		stop()
		p50, p99 := quantiles(b, reg, "suppressd_optout_freshness_seconds")
		b.ReportMetric(float64(sent)/float64(seconds), "offered-events/s")
		b.ReportMetric(p50, "p50-freshness-s")
		b.ReportMetric(p99, "p99-freshness-s")
	}
}

// quantiles returns the upper bounds of the buckets holding p50 and p99.
func quantiles(b *testing.B, reg *prometheus.Registry, name string) (float64, float64) {
	mfs, err := reg.Gather()
	if err != nil {
		b.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		h := mf.GetMetric()[0].GetHistogram()
		count := float64(h.GetSampleCount())
		q := func(p float64) float64 {
			for _, bk := range h.GetBucket() {
				if float64(bk.GetCumulativeCount()) >= p*count {
					return bk.GetUpperBound()
				}
			}
			return -1
		}
		return q(0.50), q(0.99)
	}
	b.Fatalf("no %s", name)
	return 0, 0
}
