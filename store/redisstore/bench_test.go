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

	"github.com/suppressd/suppressd/internal/benchmix"
	"github.com/suppressd/suppressd/internal/testenv"
	"github.com/suppressd/suppressd/internal/testredis"
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

// mixWrites returns the writes of the apply stage for identifiers [from,
// from+n) of the mix (internal/benchmix), under a pepper, as the ledger
// carries them: one global unsubscribe on each match key. Also how many
// keys they are.
func mixWrites(b *testing.B, from, n int) []suppression.Write {
	b.Helper()
	var norm suppression.Normalizer
	keyer := suppression.NewKeyer([]byte("memory-benchmark-pepper"))
	at := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	ws := make([]suppression.Write, 0, n*2)
	var sks []suppression.StorageKey
	for i := from; i < from+n; i++ {
		e, err := benchmix.Event(i, at)
		if err != nil {
			b.Fatal(err)
		}
		mks, err := norm.Expand(e.Identifiers...)
		if err != nil {
			b.Fatal(err)
		}
		ch := e.Change()
		for _, sk := range keyer.StorageKeys(sks[:0], mks) {
			ws = append(ws, suppression.Write{Namespace: e.Namespace, Key: sk, Scope: e.Scopes[0], Change: ch})
		}
	}
	return ws
}

// commandStats returns INFO commandstats' calls and microseconds per
// command.
func commandStats(b *testing.B, rdb *redis.Client) map[string][2]float64 {
	b.Helper()
	info, err := rdb.Info(context.Background(), "commandstats").Result()
	if err != nil {
		b.Fatal(err)
	}
	out := map[string][2]float64{}
	for _, line := range strings.Split(info, "\r\n") {
		name, rest, ok := strings.Cut(strings.TrimPrefix(line, "cmdstat_"), ":")
		if !ok || name == line {
			continue
		}
		var calls, usec float64
		for _, kv := range strings.Split(rest, ",") {
			k, v, _ := strings.Cut(kv, "=")
			f, _ := strconv.ParseFloat(v, 64)
			switch k {
			case "calls":
				calls = f
			case "usec":
				usec = f
			}
		}
		out[name] = [2]float64{calls, usec}
	}
	return out
}

// BenchmarkMemory loads SUPPRESSD_BENCH_IDENTIFIERS (default 1,000,000)
// identifiers of the mix (80 % emails, a third of them Gmail, 20 % phones:
// 1.73 match keys each), one global unsubscribe each, into a redis-server
// of its own configured as docs/operations.md says
// (hash-max-listpack-entries 512, hash-max-listpack-value 256), and reports
// INFO used_memory's growth per match key and per identifier, and the time
// Redis spent applying them (INFO commandstats: the scripts, and the
// HSETNX/HSET inside them), per key. Twice: with the unsubscribe link's
// source, which records name in a byte, and with another of the same
// length, which they spell out.
func BenchmarkMemory(b *testing.B) {
	n := 1_000_000
	if v, err := strconv.Atoi(strings.TrimSpace(getenv("SUPPRESSD_BENCH_IDENTIFIERS"))); err == nil && v > 0 {
		n = v
	}
	chunk := 5000 // identifiers per batch
	if v, err := strconv.Atoi(getenv("SUPPRESSD_BENCH_CHUNK")); err == nil && v > 0 {
		chunk = v
	}
	var batches [][]suppression.Write
	keys := 0
	for from := 0; from < n; from += chunk {
		ws := mixWrites(b, from, min(chunk, n-from))
		keys += len(ws)
		batches = append(batches, ws)
	}
	for _, source := range []string{benchmix.Source, "/consent-platform"} {
		b.Run("source="+source, func(b *testing.B) {
			for _, ws := range batches {
				for i := range ws {
					ws[i].Change.Source = source
				}
			}
			ctx := context.Background()
			for i := 0; i < b.N; i++ {
				srv := testredis.StartVolatile(b)
				rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
				for k, v := range map[string]string{"hash-max-listpack-entries": "512", "hash-max-listpack-value": "256"} {
					if err := rdb.ConfigSet(ctx, k, v).Err(); err != nil {
						b.Fatal(err)
					}
				}
				s := buildStore(b, rdb, Options{})
				if err := rdb.ConfigResetStat(ctx).Err(); err != nil {
					b.Fatal(err)
				}
				before := usedMemory(b, rdb)
				for _, ws := range batches {
					if _, err := s.Apply(ctx, ws); err != nil {
						b.Fatal(err)
					}
				}
				after := usedMemory(b, rdb)
				stats := commandStats(b, rdb)
				b.ReportMetric(float64(after-before)/float64(keys), "bytes/key")
				b.ReportMetric(float64(after-before)/float64(n), "bytes/identifier")
				b.ReportMetric(float64(keys)/float64(n), "keys/identifier")
				b.ReportMetric(stats["evalsha"][1]/float64(keys), "redis-script-us/key")
				b.ReportMetric((stats["hsetnx"][1]+stats["hset"][1]+stats["hget"][1])/float64(keys), "redis-hash-us/key")
				_ = rdb.Close()
				srv.Stop()
			}
		})
	}
}
