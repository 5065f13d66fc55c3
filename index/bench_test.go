package index

import (
	"context"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/suppressd/suppressd/ledger"
	"github.com/suppressd/suppressd/suppression"
)

// The index's benchmarks: scripts/bench.sh 'Set|IndexLoad|IndexFreshness'.
// BenchmarkSetMemory needs no server.

func benchEnv(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// keyStream makes random storage keys quickly (the keys are HMACs: as good
// as random), without holding them.
type keyStream struct{ r *rand.ChaCha8 }

func newKeyStream(seed byte) *keyStream { return &keyStream{r: rand.NewChaCha8([32]byte{seed})} }

func (s *keyStream) next() suppression.StorageKey {
	var k suppression.StorageKey
	_, _ = s.r.Read(k[:])
	return k
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// BenchmarkSetMemory fills a set with SUPPRESSD_BENCH_KEYS random keys
// (default 10,000,000) and reports the heap it takes per key, the lookup
// cost of an absent key, and how often an absent key matches (each match
// is a Redis read the index did not spare): for the index's set of 32-bit
// fingerprints, for the same with 16-bit ones (a filter of two bytes a
// key), and for a Go map of 64-bit fingerprints (the obvious exact set),
// at up to 2,000,000 keys. The heap per key of the 32-bit set at ten
// million keys is what the chart's memory budget counts.
func BenchmarkSetMemory(b *testing.B) {
	n := benchEnv("SUPPRESSD_BENCH_KEYS", 10_000_000)
	const lookups = 2_000_000
	salt := SaltOf("default")
	type impl struct {
		name string
		max  int
		add  func(k *suppression.StorageKey)
		has  func(k *suppression.StorageKey) bool
		drop func()
	}
	fill := func(b *testing.B, im impl) {
		keys := min(n, im.max)
		before := heapInUse()
		ks := newKeyStream(1)
		start := time.Now()
		for range keys {
			k := ks.next()
			im.add(&k)
		}
		addTook := time.Since(start)
		bytes := heapInUse() - before
		abs := newKeyStream(2)
		probe := make([]suppression.StorageKey, 4096)
		matches := 0
		start = time.Now()
		for i := 0; i < lookups; i += len(probe) {
			for j := range probe {
				probe[j] = abs.next()
			}
			for j := range probe {
				if im.has(&probe[j]) {
					matches++
				}
			}
		}
		lookTook := time.Since(start)
		// What the lookups cost without the key making: the probe loop alone.
		gen := newKeyStream(3)
		start = time.Now()
		for i := 0; i < lookups; i += len(probe) {
			for j := range probe {
				probe[j] = gen.next()
			}
		}
		lookTook -= time.Since(start)
		b.ReportMetric(float64(keys), im.name+"-keys")
		b.ReportMetric(float64(bytes)/float64(keys), im.name+"-B/key")
		b.ReportMetric(float64(bytes)/(1<<20), im.name+"-heap-MiB")
		b.ReportMetric(float64(addTook.Nanoseconds())/float64(keys), im.name+"-add-ns")
		b.ReportMetric(float64(lookTook.Nanoseconds())/lookups, im.name+"-lookup-ns")
		b.ReportMetric(float64(matches)/lookups*1e6, im.name+"-false-matches-per-million")
		im.drop()
	}
	for i := 0; i < b.N; i++ {
		s32 := newFPSet[uint32](DefaultShardBits)
		fill(b, impl{"fp32", n, func(k *suppression.StorageKey) { s32.Add(salt, k) }, func(k *suppression.StorageKey) bool { return s32.Has(salt, k) },
			func() { b.ReportMetric(float64(s32.Bytes())/float64(s32.Len()), "fp32-counted-B/key"); s32 = nil }})
		s16 := newFPSet[uint16](DefaultShardBits)
		fill(b, impl{"fp16", n, func(k *suppression.StorageKey) { s16.Add(salt, k) }, func(k *suppression.StorageKey) bool { return s16.Has(salt, k) },
			func() { s16 = nil }})
		m := map[uint64]struct{}{}
		fp := func(k *suppression.StorageKey) uint64 {
			var v uint64
			for _, c := range k[:8] {
				v = v<<8 | uint64(c)
			}
			return v
		}
		fill(b, impl{"map", 2_000_000, func(k *suppression.StorageKey) { m[fp(k)] = struct{}{} }, func(k *suppression.StorageKey) bool { _, ok := m[fp(k)]; return ok },
			func() { m = nil }})
	}
}

// BenchmarkIndexLoad puts SUPPRESSD_BENCH_KEYS (default 1,000,000) keys in
// the store (directly, as a rebuild would) and measures a replica's load
// of them: the warm-up before its index serves, keys per second, and the
// heap the loaded set takes.
func BenchmarkIndexLoad(b *testing.B) {
	n := benchEnv("SUPPRESSD_BENCH_KEYS", 1_000_000)
	r := newRig(b, 1)
	ctx := context.Background()
	ks := newKeyStream(4)
	var ws []suppression.Write
	for i := range n {
		ws = append(ws, suppression.Write{Namespace: suppression.DefaultNamespace, Key: ks.next(), Scope: suppression.ScopeGlobal,
			Change: suppression.Change{Action: suppression.ActionSuppress, Reason: suppression.ReasonUnsubscribe,
				Stamp: suppression.Stamp{At: 1, Tag: uint64(i)}, Origin: suppression.OriginRecipient, Source: "/bench"}})
		if len(ws) == 10_000 || i == n-1 {
			if _, err := r.store.Apply(ctx, ws); err != nil {
				b.Fatal(err)
			}
			ws = ws[:0]
		}
	}
	for i := 0; i < b.N; i++ {
		before := heapInUse()
		start := time.Now()
		rep := r.replica(newFaults(), nil, Options{})
		rep.waitServing(b, 10*time.Minute)
		took := time.Since(start)
		heap := heapInUse() - before
		if got := rep.idx.Status().Keys; got != int64(n) {
			b.Fatalf("loaded %d keys, want %d", got, n)
		}
		rep.stop()
		b.ReportMetric(took.Seconds(), "load-s")
		b.ReportMetric(float64(n)/took.Seconds(), "keys/s")
		b.ReportMetric(float64(heap)/float64(n), "heap-B/key")
	}
}

// timedStore notes when each key was first given to the store: the start
// of the Apply that wrote it (the write is somewhere in that call; the
// start makes the lag measured the longest it can be).
type timedStore struct {
	suppression.Store
	mu      sync.Mutex
	written map[suppression.StorageKey]time.Time
}

func (s *timedStore) Apply(ctx context.Context, ws []suppression.Write) (int, error) {
	start := time.Now()
	n, err := s.Store.Apply(ctx, ws)
	if err == nil {
		s.mu.Lock()
		for _, w := range ws {
			if _, ok := s.written[w.Key]; !ok {
				s.written[w.Key] = start
			}
		}
		s.mu.Unlock()
	}
	return n, err
}

// BenchmarkIndexFreshness writes SUPPRESSD_BENCH_RATE (default 10,000)
// ledger records a second, of two new keys each, for
// SUPPRESSD_BENCH_SECONDS (default 10), while the real apply stage writes
// them to Redis and a replica's index follows the ledger. It reports the
// lag from each key's store write (the start of the apply that wrote it)
// to its being in the index, 0 when the index had it first, at p50, p99
// and the maximum; the replica's own visibility histogram (from the
// record's time, before both) at p99; and the index's staleness (the age
// of its older watermark, what the bound is held to), sampled every 5ms,
// at p99 and the maximum.
func BenchmarkIndexFreshness(b *testing.B) {
	rate := benchEnv("SUPPRESSD_BENCH_RATE", 10_000)
	seconds := benchEnv("SUPPRESSD_BENCH_SECONDS", 10)
	for i := 0; i < b.N; i++ {
		ts := &timedStore{written: map[suppression.StorageKey]time.Time{}}
		r := newRigWith(b, 6, func(s suppression.Store) suppression.Store { ts.Store = s; return ts })
		rep := r.replica(newFaults(), nil, Options{})
		rep.waitServing(b, time.Minute)
		var (
			mu      sync.Mutex
			visible = map[suppression.StorageKey]time.Time{}
		)
		rep.idx.observe = func(_ string, k suppression.StorageKey) {
			now := time.Now()
			mu.Lock()
			if _, ok := visible[k]; !ok {
				visible[k] = now
			}
			mu.Unlock()
		}
		var stale, feedStale, genStale []time.Duration
		stop := make(chan struct{})
		var sampled sync.WaitGroup
		sampled.Go(func() {
			t := time.NewTicker(5 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case now := <-t.C:
					if v := rep.idx.cur.Load(); v != nil {
						m := rep.idx.mono(now)
						stale = append(stale, time.Duration(m-min(v.feedAt.Load(), v.genAt.Load())))
						feedStale = append(feedStale, time.Duration(m-v.feedAt.Load()))
						genStale = append(genStale, time.Duration(m-v.genAt.Load()))
					}
				}
			}
		})
		ctx := context.Background()
		ks := newKeyStream(5)
		var sent atomic.Int64
		// Every tick sends what is due by then: a late tick is caught up,
		// so the rate holds on a busy machine.
		t := time.NewTicker(10 * time.Millisecond)
		begin := time.Now()
		deadline := begin.Add(time.Duration(seconds) * time.Second)
		due := 0
		var (
			keys    []suppression.StorageKey
			writers sync.WaitGroup
			failed  atomic.Pointer[error]
		)
		inFlight := make(chan struct{}, 32) // a slow write does not hold back the next tick's
		for now := range t.C {
			if now.After(deadline) {
				break
			}
			n := int(now.Sub(begin).Seconds()*float64(rate)) - due
			if n <= 0 {
				continue
			}
			due += n
			recs := make([]ledger.Record, n)
			for j := range recs {
				a, c := ks.next(), ks.next()
				keys = append(keys, a, c)
				recs[j] = record(suppression.DefaultNamespace, a, c)
			}
			inFlight <- struct{}{}
			writers.Go(func() {
				defer func() { <-inFlight }()
				if err := r.write(ctx, recs...); err != nil {
					failed.Store(&err)
				}
				sent.Add(int64(len(recs)))
			})
		}
		t.Stop()
		writers.Wait()
		if err := failed.Load(); err != nil {
			b.Fatal(*err)
		}
		// Every key in the store, and in the index.
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
			ts.mu.Lock()
			stored := len(ts.written)
			ts.mu.Unlock()
			mu.Lock()
			seen := len(visible)
			mu.Unlock()
			if stored >= len(keys) && seen >= len(keys) {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("%d of %d keys stored, %d visible", stored, len(keys), seen)
			}
		}
		close(stop)
		sampled.Wait()
		lags := make([]time.Duration, 0, len(keys))
		for _, k := range keys {
			lags = append(lags, max(0, visible[k].Sub(ts.written[k])))
		}
		slices.Sort(lags)
		slices.Sort(stale)
		slices.Sort(feedStale)
		slices.Sort(genStale)
		q := func(xs []time.Duration, p float64) float64 {
			return xs[int(p*float64(len(xs)-1))].Seconds() * 1000
		}
		_, p99vis := quantiles(b, rep.reg, "suppressd_index_visibility_seconds")
		b.ReportMetric(float64(sent.Load())/float64(seconds), "records/s")
		b.ReportMetric(q(lags, 0.5), "store-to-index-p50-ms")
		b.ReportMetric(q(lags, 0.99), "store-to-index-p99-ms")
		b.ReportMetric(q(lags, 1), "store-to-index-max-ms")
		b.ReportMetric(p99vis*1000, "record-to-index-p99-ms-bucket")
		b.ReportMetric(q(stale, 0.99), "staleness-p99-ms")
		b.ReportMetric(q(stale, 1), "staleness-max-ms")
		b.ReportMetric(q(feedStale, 0.99), "feed-staleness-p99-ms")
		b.ReportMetric(q(genStale, 0.99), "generation-staleness-p99-ms")
		b.ReportMetric(q(stale, 0.5), "staleness-p50-ms")
		serving := 0
		for _, s := range stale {
			if s <= rep.idx.opts.MaxLag {
				serving++
			}
		}
		b.ReportMetric(100*float64(serving)/float64(len(stale)), "serving-%-of-time")
		rep.stop()
	}
}

// quantiles returns the upper bounds of the buckets holding p50 and p99 of
// a histogram.
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
