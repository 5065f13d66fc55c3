package redisstore

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/suppressd/suppressd/internal/testenv"
	"github.com/suppressd/suppressd/suppression"
)

func benchKey(i int) suppression.StorageKey {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(i))
	return sha256.Sum256(b[:])
}

func benchWrites(from, n int) []suppression.Write {
	ws := make([]suppression.Write, n)
	at := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	for i := range ws {
		id := from + i
		ws[i] = suppression.Write{Namespace: "default", Key: benchKey(id), Scope: suppression.ScopeGlobal, Change: suppression.Change{
			Action: suppression.ActionSuppress, Reason: suppression.ReasonUnsubscribe,
			Stamp:  suppression.NewStamp(at, "/unsubscribe-link", strconv.Itoa(id)),
			Origin: suppression.OriginRecipient, Source: "/unsubscribe-link",
		}}
	}
	return ws
}

func usedMemory(b *testing.B, rdb *redis.Client) int64 {
	b.Helper()
	info, err := rdb.Info(context.Background(), "memory").Result()
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	b.Fatal("no used_memory in INFO")
	return 0
}

// BenchmarkApply measures write throughput into the standalone server in
// batches of 1,000 one-scope suppressions (a consumer's batch).
func BenchmarkApply(b *testing.B) {
	rdb := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(b)})
	defer rdb.Close()
	bits, _ := strconv.Atoi(getenv("BITS"))
	s := buildStore(b, rdb, Options{Prefix: uniquePrefix(), BucketBits: bits})
	const batch = 1000
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.Apply(ctx, benchWrites(i*batch, batch)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "keys/s")
}

// BenchmarkGet measures pipelined reads of 1,000 keys, most of them absent,
// as the filter endpoint does.
func BenchmarkGet(b *testing.B) {
	rdb := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(b)})
	defer rdb.Close()
	s := buildStore(b, rdb, Options{Prefix: uniquePrefix()})
	ctx := context.Background()
	if _, err := s.Apply(ctx, benchWrites(0, 10000)); err != nil {
		b.Fatal(err)
	}
	keys := make([]suppression.StorageKey, 1000)
	for i := range keys {
		keys[i] = benchKey(i * 97) // 1 in ~10 present
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.Get(ctx, "default", keys); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(keys))/b.Elapsed().Seconds(), "keys/s")
}

// BenchmarkMemoryPerKey loads SUPPRESSD_BENCH_KEYS (default 1,000,000) keys,
// one global unsubscribe each, into a flushed standalone server and reports
// INFO used_memory growth per key. It needs the server to itself: it runs
// FLUSHALL.
func BenchmarkMemoryPerKey(b *testing.B) {
	rdb := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(b)})
	defer rdb.Close()
	ctx := context.Background()
	n := 1_000_000
	if v, err := strconv.Atoi(strings.TrimSpace(getenv("SUPPRESSD_BENCH_KEYS"))); err == nil && v > 0 {
		n = v
	}
	for i := 0; i < b.N; i++ {
		if err := rdb.FlushAll(ctx).Err(); err != nil {
			b.Fatal(err)
		}
		if err := rdb.ConfigSet(ctx, "hash-max-listpack-entries", "512").Err(); err != nil {
			b.Fatal(err)
		}
		s := buildStore(b, rdb, Options{})
		before := usedMemory(b, rdb)
		for from := 0; from < n; from += 5000 {
			if _, err := s.Apply(ctx, benchWrites(from, min(5000, n-from))); err != nil {
				b.Fatal(err)
			}
		}
		after := usedMemory(b, rdb)
		b.ReportMetric(float64(after-before)/float64(n), "bytes/key")
	}
}
