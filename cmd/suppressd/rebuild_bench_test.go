package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/compress"
	"github.com/segmentio/kafka-go/protocol"

	"github.com/suppressd/suppressd/consumer"
	"github.com/suppressd/suppressd/internal/benchmix"
	"github.com/suppressd/suppressd/internal/testenv"
	"github.com/suppressd/suppressd/internal/testkafka"
	"github.com/suppressd/suppressd/internal/testredis"
	"github.com/suppressd/suppressd/internal/teststore"
	"github.com/suppressd/suppressd/ledger"
	"github.com/suppressd/suppressd/store/redisstore"
	"github.com/suppressd/suppressd/suppression"
)

// benchPepper is the pepper of the rebuild benchmark's ledger: storage
// keys are HMACs, as in production.
var benchPepper = []byte("rebuild-benchmark-pepper")

// benchLedger is a ledger topic of the mix, written once per process and
// replayed by every run of BenchmarkRebuild.
type benchLedger struct {
	topic   string
	events  int     // records, the genesis record aside
	keys    int     // storage keys over all records
	value   float64 // mean encoded record (the message's value), bytes
	onTopic float64 // mean record on the topic: key, value and Kafka's record and batch framing
	// the same, had the batch been compressed with zstd (the storage
	// keys, random bytes, do not compress)
	onTopicZstd float64
}

var (
	ledgerOnce sync.Once
	ledgerMade benchLedger
)

// ledgerBatch is how many records the ingest stage's writer puts in one
// Kafka batch of a partition: a consumer batch of 2,000 events over 6
// partitions.
const ledgerBatch = 2000 / 6

// makeBenchLedger writes the genesis record and n records of the mix to a
// new 6-partition topic, as the ingest stage would (keyed by the primary
// storage key, acks from all replicas).
func makeBenchLedger(b *testing.B, n int) benchLedger {
	ledgerOnce.Do(func() {
		brokers := testenv.KafkaBrokers(b)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		l := benchLedger{topic: testkafka.Unique("bench-ledger"), events: n}
		testkafka.CreateTopic(ctx, b, brokers[0], l.topic, 6)
		w := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: l.topic, Balancer: &kafka.Hash{},
			RequiredAcks: kafka.RequireAll, BatchSize: 10000, BatchBytes: 16 << 20, BatchTimeout: time.Millisecond,
			Transport: &kafka.Transport{MetadataTTL: time.Second}}
		defer w.Close()
		var norm suppression.Normalizer
		keyer := suppression.NewKeyer(benchPepper)
		at := time.Now().Add(-time.Hour)
		msgs := []kafka.Message{consumer.GenesisMessage(at.Add(-time.Hour))}
		var sample []kafka.Message
		var valueBytes int
		for i := range n {
			e, err := benchmix.Event(i, at)
			if err != nil {
				b.Fatal(err)
			}
			mks, err := norm.Expand(e.Identifiers...)
			if err != nil {
				b.Fatal(err)
			}
			rec := ledger.FromEvent(&e, keyer.StorageKeys(nil, mks), at)
			value, err := ledger.Encode(&rec)
			if err != nil {
				b.Fatal(err)
			}
			l.keys += len(rec.Keys)
			valueBytes += len(value)
			msg := kafka.Message{Key: rec.Keys[0][:], Value: value, Time: rec.Reference}
			if len(sample) < ledgerBatch {
				sample = append(sample, msg)
			}
			msgs = append(msgs, msg)
			if len(msgs) == 10_000 || i == n-1 {
				if err := w.WriteMessages(ctx, msgs...); err != nil {
					b.Fatal(err)
				}
				msgs = msgs[:0]
			}
		}
		l.value = float64(valueBytes) / float64(n)
		// A topic holds the record batches as the producer sent them
		// (uncompressed here): the batch of a partition, framing and all,
		// divided by its records.
		for _, c := range []struct {
			codec compress.Compression
			size  *float64
		}{{0, &l.onTopic}, {compress.Zstd, &l.onTopicZstd}} {
			recs := make([]protocol.Record, len(sample))
			for i, m := range sample {
				recs[i] = protocol.Record{Time: m.Time, Key: protocol.NewBytes(m.Key), Value: protocol.NewBytes(m.Value)}
			}
			var buf bytes.Buffer
			rs := protocol.RecordSet{Version: 2, Attributes: protocol.Attributes(c.codec), Records: protocol.NewRecordReader(recs...)}
			if _, err := rs.WriteTo(&buf); err != nil {
				b.Fatal(err)
			}
			*c.size = float64(buf.Len()) / float64(len(sample))
		}
		ledgerMade = l
	})
	if ledgerMade.topic == "" {
		b.Fatal("the benchmark ledger was not written")
	}
	return ledgerMade
}

// BenchmarkRebuild runs `suppressd rebuild` (through run, as main does)
// over a ledger of SUPPRESSD_BENCH_LEDGER_EVENTS (default 1,000,000)
// records of the mix of internal/benchmix, on a redis-server of its own
// and on the test command's cluster, and reports events/s beside
// `redis-benchmark -P 64` HSET on the same Redis in the same run, and what
// the rebuild cost in CPU: this process's per event, Redis's per key.
// scripts/bench.sh Rebuild.
func BenchmarkRebuild(b *testing.B) {
	n := 1_000_000
	if v, err := strconv.Atoi(os.Getenv("SUPPRESSD_BENCH_LEDGER_EVENTS")); err == nil && v > 0 {
		n = v
	}
	for _, topology := range []string{"standalone", "cluster"} {
		b.Run(topology, func(b *testing.B) {
			l := makeBenchLedger(b, n)
			var (
				addrs []string
				rdb   redis.UniversalClient
			)
			if topology == "cluster" {
				addrs = testenv.RedisClusterAddrs(b)
				rdb = redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
			} else {
				// A redis-server of its own, set up as docs/operations.md
				// says: other tests' commands on the shared one would be
				// counted in its CPU time, and a store of a million
				// events is no one else's business.
				srv := testredis.StartVolatile(b)
				addrs = []string{srv.Addr()}
				rdb = redis.NewClient(&redis.Options{Addr: addrs[0]})
				for k, v := range map[string]string{"hash-max-listpack-entries": "512", "hash-max-listpack-value": "256"} {
					if err := rdb.ConfigSet(context.Background(), k, v).Err(); err != nil {
						b.Fatal(err)
					}
				}
			}
			defer rdb.Close()
			prefix := teststore.Prefix()
			for k, v := range map[string]string{
				"SUPPRESSD_KAFKA_BROKERS": strings.Join(testenv.KafkaBrokers(b), ","),
				"SUPPRESSD_REDIS_ADDRS":   strings.Join(addrs, ","),
				"SUPPRESSD_REDIS_CLUSTER": strconv.FormatBool(topology == "cluster"),
				"SUPPRESSD_TOPIC_LEDGER":  l.topic,
				"SUPPRESSD_STORE_PREFIX":  prefix,
				"SUPPRESSD_PEPPER":        base64.StdEncoding.EncodeToString(benchPepper),
				"SUPPRESSD_LOG_LEVEL":     "warn",
			} {
				b.Setenv(k, v)
			}
			opts := redisstore.Options{Prefix: prefix, Keying: suppression.NewKeyer(benchPepper).Fingerprint()}
			teststore.Build(b, rdb, opts)
			rebuilds, err := redisstore.NewRebuilds(rdb, opts)
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			defer func() {
				// Leave the shared Redis as it was: every generation and the pointer.
				if active, err := rebuilds.Active(ctx); err == nil && active != "" {
					_, _ = rebuilds.Drop(ctx, active)
				}
				_ = rdb.Del(ctx, prefix+":generations").Err()
			}()
			var elapsed time.Duration
			var cpu, self, ceiling float64
			var heapPeak uint64
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				// The ceiling before and after: on a shared machine the load
				// changes within a run.
				ceiling += ceilingHSET(b, rdb, addrs, topology == "cluster", n) / float64(2*b.N)
				cpu0, self0 := redisCPU(b, rdb), processCPU(b)
				var out, errb bytes.Buffer
				stopSampling := sampleHeap(&heapPeak)
				start := time.Now()
				// No grace: nothing else writes this store. --drop-old keeps
				// one generation in the shared Redis.
				if err := runCommand(ctx, &out, &errb, "rebuild", "--grace", "0s", "--drop-old", "--progress", "1h"); err != nil {
					b.Fatal(err)
				}
				elapsed += time.Since(start)
				stopSampling()
				cpu += redisCPU(b, rdb) - cpu0
				self += processCPU(b) - self0
				ceiling += ceilingHSET(b, rdb, addrs, topology == "cluster", n) / float64(2*b.N)
				// The genesis record is counted with the events.
				if want := fmt.Sprintf(": %d events applied, 0 invalid skipped", l.events+1); !strings.Contains(out.String(), want) {
					b.Fatalf("the rebuild did not apply every record (want %q):\n%s", want, out.String())
				}
			}
			b.StopTimer()
			rate := float64(l.events*b.N) / elapsed.Seconds()
			b.ReportMetric(rate, "events/s")
			b.ReportMetric(rate*float64(l.keys)/float64(l.events), "keys/s")
			b.ReportMetric(1e6*cpu/float64(l.keys*b.N), "redis-cpu-us/key")
			b.ReportMetric(1e6*self/float64(l.events*b.N), "suppressd-cpu-us/event")
			b.ReportMetric(ceiling, "redis-benchmark-writes/s")
			b.ReportMetric(100*rate/ceiling, "%-of-ceiling")
			b.ReportMetric(float64(heapPeak)/(1<<20), "heap-peak-MiB")
			b.ReportMetric(l.value, "ledger-value-bytes/record")
			b.ReportMetric(l.onTopic, "ledger-topic-bytes/record")
			b.ReportMetric(l.onTopicZstd, "ledger-topic-zstd-bytes/record")
		})
	}
}

// redisCPU returns the CPU seconds (user and system) every master of rdb
// has used since it started.
func redisCPU(b *testing.B, rdb redis.UniversalClient) float64 {
	var mu sync.Mutex
	total := 0.0
	read := func(ctx context.Context, c *redis.Client) error {
		info, err := c.Info(ctx, "cpu").Result()
		if err != nil {
			return err
		}
		for _, line := range strings.Split(info, "\r\n") {
			name, v, ok := strings.Cut(line, ":")
			if ok && (name == "used_cpu_sys" || name == "used_cpu_user") {
				f, _ := strconv.ParseFloat(v, 64)
				mu.Lock()
				total += f
				mu.Unlock()
			}
		}
		return nil
	}
	if err := eachMaster(context.Background(), rdb, read); err != nil {
		b.Fatal(err)
	}
	return total
}

// ceilingHSET runs `redis-benchmark -P 64` HSET of n random keys against
// the same Redis (every master of a cluster, with --cluster, which puts
// each connection's keys in its node's slots through the {tag}) and
// deletes its keys afterwards.
func ceilingHSET(b *testing.B, rdb redis.UniversalClient, addrs []string, cluster bool, n int) float64 {
	prefix := "bench:" + teststore.Prefix() + ":"
	var rps float64
	if cluster {
		rps = testenv.RedisBenchmark(b, addrs[0], n, "--cluster", "hset", prefix+"{tag}:__rand_int__", "f", "__rand_int__")
	} else {
		rps = testenv.RedisBenchmark(b, addrs[0], n, "hset", prefix+"__rand_int__", "f", "__rand_int__")
	}
	err := eachMaster(context.Background(), rdb, func(ctx context.Context, m *redis.Client) error {
		iter := m.Scan(ctx, 0, prefix+"*", 5000).Iterator()
		pipe := m.Pipeline()
		for iter.Next(ctx) {
			pipe.Unlink(ctx, iter.Val()) // one key a call: on a cluster each has its own slot
			if pipe.Len() == 1000 {
				if _, err := pipe.Exec(ctx); err != nil {
					return err
				}
			}
		}
		if pipe.Len() > 0 {
			if _, err := pipe.Exec(ctx); err != nil {
				return err
			}
		}
		return iter.Err()
	})
	if err != nil {
		b.Fatal(err)
	}
	return rps
}

// eachMaster calls fn for the one server of a client, or every master of a
// cluster.
func eachMaster(ctx context.Context, rdb redis.UniversalClient, fn func(context.Context, *redis.Client) error) error {
	if c, ok := rdb.(*redis.ClusterClient); ok {
		return c.ForEachMaster(ctx, fn)
	}
	return fn(ctx, rdb.(*redis.Client))
}

// sampleHeap records the peak of the live heap (objects, reachable or not
// yet swept) every 20 ms into peak until the returned function is called.
func sampleHeap(peak *uint64) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			metrics.Read(s)
			*peak = max(*peak, s[0].Value.Uint64())
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

// processCPU returns the CPU seconds (user and system) this process has
// used: what a rebuild costs whatever else shares the machine.
func processCPU(b *testing.B) float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}
