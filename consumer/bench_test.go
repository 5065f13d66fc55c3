package consumer

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"

	"github.com/suppressd/suppressd/internal/benchmix"
	"github.com/suppressd/suppressd/internal/testenv"
	"github.com/suppressd/suppressd/internal/testkafka"
	"github.com/suppressd/suppressd/internal/testredis"
	"github.com/suppressd/suppressd/internal/teststore"
	"github.com/suppressd/suppressd/schemas"
	"github.com/suppressd/suppressd/store/redisstore"
	"github.com/suppressd/suppressd/suppression"
)

// The end-to-end benchmarks need the test command's Kafka (Redis is a
// redis-server of their own, so other tests' commands do not count):
//
//	scripts/bench.sh EndToEnd|Freshness
//
// SUPPRESSD_BENCH_EVENTS sets the events per run (default 200,000),
// SUPPRESSD_BENCH_RATE and SUPPRESSD_BENCH_SECONDS the freshness load
// (default 10,000 events/s for 10 s).

func benchEnv(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

type benchRig struct {
	brokers []string
	topic   string
	addr    string // Redis
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
	// A redis-server of its own, set up as docs/operations.md says.
	r.addr = testredis.StartVolatile(b).Addr()
	r.rdb = redis.NewClient(&redis.Options{Addr: r.addr})
	b.Cleanup(func() { _ = r.rdb.Close() })
	for k, v := range map[string]string{"hash-max-listpack-entries": "512", "hash-max-listpack-value": "256"} {
		if err := r.rdb.ConfigSet(ctx, k, v).Err(); err != nil {
			b.Fatal(err)
		}
	}
	r.store = teststore.Build(b, r.rdb, redisstore.Options{Prefix: teststore.Prefix(), Keying: testKeyer.Fingerprint()})
	r.writer = &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: r.topic, Balancer: &kafka.Hash{},
		RequiredAcks: kafka.RequireAll, BatchSize: 1000, BatchBytes: 8 << 20, BatchTimeout: 5 * time.Millisecond,
		Transport: &kafka.Transport{MetadataTTL: time.Second}}
	b.Cleanup(func() { _ = r.writer.Close() })
	return r
}

// emailEvent is the mix of the README's earlier end-to-end figures: two in
// three plain addresses (one match key), one in three gmail addresses with
// dots and a tag (four keys: plain, Google's two forms and TikTok's).
func emailEvent(i int, at time.Time) (suppression.Event, error) {
	addr := fmt.Sprintf("user%d@example.org", i)
	if i%3 == 2 {
		addr = fmt.Sprintf("first.last%d+news@gmail.com", i)
	}
	e := suppression.Event{
		ID: "bench-" + strconv.Itoa(i), Source: "/unsubscribe-link", Type: suppression.EventUnsubscribe, OccurredAt: at,
		Identifiers: []suppression.Identifier{{Type: suppression.IDEmail, Value: addr}},
		Scopes:      []suppression.Scope{suppression.ScopeGlobal}, Origin: suppression.OriginRecipient,
	}
	return e, e.Normalize(time.Time{})
}

// mixes are the identifiers the end-to-end benchmarks publish: emails as
// before, and the mix of internal/benchmix (a fifth phones, whose decoding
// at ingest costs several times an email's).
var mixes = []struct {
	name  string
	event func(int, time.Time) (suppression.Event, error)
}{{"emails", emailEvent}, {"mix", benchmix.Event}}

func benchMessage(b *testing.B, event func(int, time.Time) (suppression.Event, error), i int, at time.Time) kafka.Message {
	e, err := event(i, at)
	if err != nil {
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

// BenchmarkEndToEnd drains a topic of pre-published unsubscribes through
// both stages (intake to ledger to Redis) and reports events/s beside
// redis-benchmark's pipelined write rate on the same Redis, before and
// after (the load of a shared machine moves within a run).
func BenchmarkEndToEnd(b *testing.B) {
	n := benchEnv("SUPPRESSD_BENCH_EVENTS", 200_000)
	for _, mix := range mixes {
		b.Run("mix="+mix.name, func(b *testing.B) {
			var total time.Duration
			var ceiling, self, redisCPU float64
			keys, timed := 0, 0
			for i := 0; i < b.N; i++ {
				r := newBenchRig(b, 6)
				at := time.Now().Add(-time.Minute)
				msgs := make([]kafka.Message, 0, 10_000)
				ctx := context.Background()
				for j := 0; j < n; j++ {
					msgs = append(msgs, benchMessage(b, mix.event, j, at))
					if len(msgs) == cap(msgs) || j == n-1 {
						if err := r.writer.WriteMessages(ctx, msgs...); err != nil {
							b.Fatal(err)
						}
						msgs = msgs[:0]
					}
				}
				ceiling += testenv.RedisBenchmark(b, r.addr, n, "hset", "bench:ceiling:__rand_int__", "f", "__rand_int__") / float64(2*b.N)
				c, stop := r.consumer(b, prometheus.NewRegistry())
				// The clock starts at the first applied batch: joining the
				// groups is not throughput.
				for applied(c) == 0 {
					time.Sleep(time.Millisecond)
				}
				start, from := time.Now(), applied(c)
				self0, redis0 := processCPU(b), serverCPU(b, r.rdb)
				for applied(c) < float64(n) {
					time.Sleep(5 * time.Millisecond)
				}
				total += time.Since(start)
				self += processCPU(b) - self0
				redisCPU += serverCPU(b, r.rdb) - redis0
				timed += n - int(from) // only what the clock saw
				keys += int(testutil.ToFloat64(c.m.changed))
				stop()
				ceiling += testenv.RedisBenchmark(b, r.addr, n, "hset", "bench:ceiling:__rand_int__", "f", "__rand_int__") / float64(2*b.N)
			}
			rate := float64(timed) / total.Seconds()
			b.ReportMetric(rate, "events/s")
			b.ReportMetric(rate*float64(keys)/float64(n*b.N), "keys/s") // keys per event, at the timed rate
			b.ReportMetric(ceiling, "redis-benchmark-writes/s")
			b.ReportMetric(100*rate/ceiling, "%-of-ceiling")
			// What the events cost in CPU, whoever else shares the machine:
			// both stages in this process (the publisher is idle by then),
			// and Redis.
			b.ReportMetric(1e6*self/float64(timed), "suppressd-cpu-us/event")
			b.ReportMetric(1e6*redisCPU/float64(timed), "redis-cpu-us/event")
		})
	}
}

// BenchmarkFreshness publishes the mix at a steady rate while both stages
// run and reports, from the apply stage's histograms, the opt-out
// freshness (occurred_at to visible in Redis) and the delay (the event
// reaching its intake topic to visible in Redis) at p50 and p99, estimated
// within their histogram buckets as Prometheus's histogram_quantile does.
// The events are published the moment they are made, so both measure
// suppressd and its Kafka and Redis.
func BenchmarkFreshness(b *testing.B) {
	rate := benchEnv("SUPPRESSD_BENCH_RATE", 10_000)
	seconds := benchEnv("SUPPRESSD_BENCH_SECONDS", 10)
	for i := 0; i < b.N; i++ {
		r := newBenchRig(b, 6)
		reg := prometheus.NewRegistry()
		c, stop := r.consumer(b, reg)
		// Joining the groups is not freshness: the load starts once a
		// first event has gone through both stages, and only what the
		// histograms gain from then on counts.
		sent := 0
		var last time.Time
		for applied(c) == 0 {
			if time.Since(last) > time.Second {
				if err := r.writer.WriteMessages(context.Background(), benchMessage(b, benchmix.Event, sent, time.Now())); err != nil {
					b.Fatal(err)
				}
				sent++
				last = time.Now()
			}
			time.Sleep(5 * time.Millisecond)
		}
		for applied(c) < float64(sent) {
			time.Sleep(5 * time.Millisecond)
		}
		warm := gatherStages(b, reg)
		// Every 10 ms, what is due by then: a slow write is caught up
		// with, so the rate offered is the rate asked for.
		t := time.NewTicker(10 * time.Millisecond)
		begin := time.Now()
		warmSent := sent
		deadline := begin.Add(time.Duration(seconds) * time.Second)
		for now := range t.C {
			if now.After(deadline) {
				break
			}
			msgs := make([]kafka.Message, warmSent+int(float64(rate)*now.Sub(begin).Seconds())-sent)
			for j := range msgs {
				msgs[j] = benchMessage(b, benchmix.Event, sent+j, time.Now())
			}
			if err := r.writer.WriteMessages(context.Background(), msgs...); err != nil {
				b.Fatal(err)
			}
			sent += len(msgs)
		}
		offered := float64(sent-warmSent) / time.Since(begin).Seconds()
		t.Stop()
		for applied(c) < float64(sent) {
			time.Sleep(5 * time.Millisecond)
		}
		stop()
		b.ReportMetric(offered, "offered-events/s")
		for _, m := range []struct{ metric, stage, unit string }{
			{"suppressd_optout_freshness_seconds", "apply", "freshness"},
			{"suppressd_consumer_delay_seconds", "apply", "delay"},
			{"suppressd_consumer_delay_seconds", "ingest", "ingest-delay"}, // the first stage's part
		} {
			h := since(stageHistogram(b, reg, m.metric, m.stage), warm[m.metric+"/"+m.stage])
			b.ReportMetric(1000*quantile(h, 0.50), "p50-"+m.unit+"-ms")
			b.ReportMetric(1000*quantile(h, 0.99), "p99-"+m.unit+"-ms")
		}
	}
}

// stageHistogram returns a stage's series of a histogram.
func stageHistogram(b *testing.B, reg *prometheus.Registry, name, stage string) *dto.Histogram {
	mfs, err := reg.Gather()
	if err != nil {
		b.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if mf.GetName() == name && l.GetName() == "stage" && l.GetValue() == stage {
					return m.GetHistogram()
				}
			}
		}
	}
	b.Fatalf("no %s{stage=%q}", name, stage)
	return nil
}

// gatherStages returns every stage's histograms, by name/stage.
func gatherStages(b *testing.B, reg *prometheus.Registry) map[string]*dto.Histogram {
	mfs, err := reg.Gather()
	if err != nil {
		b.Fatal(err)
	}
	out := map[string]*dto.Histogram{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "stage" && m.GetHistogram() != nil {
					out[mf.GetName()+"/"+l.GetValue()] = m.GetHistogram()
				}
			}
		}
	}
	return out
}

// since returns what histogram h gained since the snapshot was (nil: none).
func since(h, was *dto.Histogram) *dto.Histogram {
	if was == nil {
		return h
	}
	u64 := func(v uint64) *uint64 { return &v }
	out := &dto.Histogram{SampleCount: u64(h.GetSampleCount() - was.GetSampleCount())}
	for i, bk := range h.GetBucket() {
		out.Bucket = append(out.Bucket, &dto.Bucket{UpperBound: bk.UpperBound,
			CumulativeCount: u64(bk.GetCumulativeCount() - was.GetBucket()[i].GetCumulativeCount())})
	}
	return out
}

// quantile estimates the q-quantile of a histogram as histogram_quantile
// does: linearly within the bucket it falls in.
func quantile(h *dto.Histogram, q float64) float64 {
	rank := q * float64(h.GetSampleCount())
	lower, below := 0.0, 0.0
	for _, bk := range h.GetBucket() {
		upper, cum := bk.GetUpperBound(), float64(bk.GetCumulativeCount())
		if cum >= rank {
			if cum == below {
				return upper
			}
			return lower + (upper-lower)*(rank-below)/(cum-below)
		}
		lower, below = upper, cum
	}
	return math.Inf(1)
}

// processCPU returns the CPU seconds (user and system) this process has
// used.
func processCPU(b *testing.B) float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// serverCPU returns the CPU seconds (user and system) a redis-server has
// used.
func serverCPU(b *testing.B, rdb *redis.Client) float64 {
	info, err := rdb.Info(context.Background(), "cpu").Result()
	if err != nil {
		b.Fatal(err)
	}
	total := 0.0
	for _, line := range strings.Split(info, "\r\n") {
		if name, v, ok := strings.Cut(line, ":"); ok && (name == "used_cpu_sys" || name == "used_cpu_user") {
			f, _ := strconv.ParseFloat(v, 64)
			total += f
		}
	}
	return total
}
