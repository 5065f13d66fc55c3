package index

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/internal/testenv"
	"github.com/suppressd/suppressd/ledger"
	"github.com/suppressd/suppressd/store/redisstore"
	"github.com/suppressd/suppressd/suppression"
)

// The index's promise, tested as a property on the real servers: an answer
// "no record" for a key at time t is never given when the store's active
// generation held that key at t minus the bound. Writes go through the
// ledger and the real apply stage; meanwhile replica connections are
// delayed, stalled and cut, replicas restart (a snapshot taken while the
// ledger moves), the active generation loses records (as a failover to a
// replica that lacked them does), rebuilds switch generations, and the
// store is emptied and rebuilt. Three checkers read through the replica all
// along; an oracle reads the store directly and notes when it first saw
// each key.

// TestIndexProperty runs the property with every kind of trouble (each at
// least once), for SUPPRESSD_TEST_INDEX_SECONDS (default 10, which keeps
// the test near 15 s; longer runs find rarer interleavings) from the seed
// SUPPRESSD_TEST_SEED (default the clock; the log names it).
func TestIndexProperty(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s, err := strconv.ParseUint(os.Getenv("SUPPRESSD_TEST_SEED"), 10, 64); err == nil {
		seed = s
	}
	secs := 10
	if s, err := strconv.Atoi(os.Getenv("SUPPRESSD_TEST_INDEX_SECONDS")); err == nil && s > 0 {
		secs = s
	}
	t.Logf("seed %d (SUPPRESSD_TEST_SEED=%d reruns it), %ds", seed, seed, secs)
	res := runProperty(t, seed, time.Duration(secs)*time.Second, true, nil)
	t.Logf("%d answers (%d errors: the store unreachable, or not built); keys answered in memory %.0f, read from Redis %.0f; reads while stale %.0f, while loading %.0f; generation switches followed %.0f; operations %v",
		res.answers, res.errors, res.memory, res.stored, res.fallbacks, res.loading, res.switches, res.ops)
	require.Empty(t, res.violations, "answers \"no record\" for keys the store held longer than the bound (seed %d)", seed)
	require.Greater(t, res.memory, 1000.0, "the index answered from memory")
	require.Positive(t, res.stored, "held keys were read from Redis")
	require.Positive(t, res.fallbacks, "the faults made the index fall back")
	require.Positive(t, res.switches, "generation switches were followed")
}

// TestIndexPropertyCatchesAGap: the same checkers, against a replica whose
// feed drops every third record's keys (and still reports itself fresh),
// find the answers it gets wrong (within 30s; it stops at the first): the
// property can fail.
func TestIndexPropertyCatchesAGap(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	res := runProperty(t, seed, 30*time.Second, false, func(f Feed) Feed { return &leakyFeed{Feed: f} })
	require.NotEmpty(t, res.violations, "a feed that loses records is caught (seed %d)", seed)
	t.Logf("caught %d wrong answers, the first: %s", len(res.violations), res.violations[0])
}

// leakyFeed is a broken feed: it drops every third record.
type leakyFeed struct {
	Feed
	n atomic.Int64
}

func (l *leakyFeed) Follow(ctx context.Context, started func(), add func(string, []suppression.StorageKey, time.Time), fresh func(time.Time)) error {
	return l.Feed.Follow(ctx, started, func(ns string, keys []suppression.StorageKey, ref time.Time) {
		if l.n.Add(1)%3 != 0 {
			add(ns, keys, ref)
		}
	}, fresh)
}

type propertyResult struct {
	violations                          []string
	answers, errors                     int64
	memory, stored, fallbacks, switches float64
	loading                             float64
	ops                                 map[string]int
	mu                                  sync.Mutex
}

func (p *propertyResult) caught() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.violations) > 0
}

func (p *propertyResult) violation(s string) {
	p.mu.Lock()
	if len(p.violations) < 20 {
		p.violations = append(p.violations, s)
	}
	p.mu.Unlock()
}

// collect adds a replica's counters to the totals.
func (p *propertyResult) collect(rep *replica) {
	m := rep.idx.m
	p.memory += testutil.ToFloat64(m.memory)
	p.stored += testutil.ToFloat64(m.store)
	p.loading += testutil.ToFloat64(m.fallbacks.WithLabelValues(reasonLoading))
	for _, r := range []string{reasonFeed, reasonGeneration} {
		p.fallbacks += testutil.ToFloat64(m.fallbacks.WithLabelValues(r))
	}
	p.switches += testutil.ToFloat64(m.loads.WithLabelValues("switched"))
}

type nsKey struct {
	ns string
	k  suppression.StorageKey
}

// oracle knows, for every key written, since when the store's active
// generation is known to hold it: it reads the store directly, without an
// index, and notes the end of the first read that found the key. (A key
// is never removed from a generation, except by the test's own losses and
// emptyings, made under the oracle's lock, which forget what they remove.)
type oracle struct {
	store  *redisstore.Store
	mu     sync.Mutex
	all    []nsKey
	unseen map[nsKey]bool
	seen   map[nsKey]time.Time
}

func (o *oracle) add(ns string, keys []suppression.StorageKey) {
	o.mu.Lock()
	for _, k := range keys {
		nk := nsKey{ns, k}
		if _, ok := o.seen[nk]; !ok && !o.unseen[nk] {
			o.unseen[nk] = true
			o.all = append(o.all, nk)
		}
	}
	o.mu.Unlock()
}

func (o *oracle) run(ctx context.Context) {
	for ctx.Err() == nil {
		o.mu.Lock()
		byNS := map[string][]suppression.StorageKey{}
		for nk := range o.unseen {
			byNS[nk.ns] = append(byNS[nk.ns], nk.k)
		}
		for ns, keys := range byNS {
			recs, err := o.store.Get(ctx, ns, keys)
			end := time.Now()
			if err != nil {
				continue
			}
			for i, rec := range recs {
				if rec != nil {
					nk := nsKey{ns, keys[i]}
					delete(o.unseen, nk)
					o.seen[nk] = end
				}
			}
		}
		o.mu.Unlock()
		time.Sleep(5 * time.Millisecond)
	}
}

// since says since when the store is known to hold the key.
func (o *oracle) since(nk nsKey) (time.Time, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	t, ok := o.seen[nk]
	return t, ok
}

// forget runs f, which removes keys from the store, and forgets the keys
// it removed (all of them, when keys is nil).
func (o *oracle) forget(keys []nsKey, f func()) {
	o.mu.Lock()
	defer o.mu.Unlock()
	f()
	if keys == nil {
		for nk := range o.seen {
			keys = append(keys, nk)
		}
	}
	for _, nk := range keys {
		if _, ok := o.seen[nk]; ok {
			delete(o.seen, nk)
			o.unseen[nk] = true
		}
	}
}

func (o *oracle) pick(rng *rand.Rand) (nsKey, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.all) == 0 {
		return nsKey{}, false
	}
	return o.all[rng.IntN(len(o.all))], true
}

func (o *oracle) seenKeys(n int) []nsKey {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []nsKey
	for nk := range o.seen { // map order is random enough
		if out = append(out, nk); len(out) == n {
			break
		}
	}
	return out
}

var namespaces = []string{"default", "brand2"}

// runProperty runs writers, checkers and, with chaos, the trouble, for d.
func runProperty(t *testing.T, seed uint64, d time.Duration, chaos bool, feed func(Feed) Feed) *propertyResult {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := newRig(t, 3)
	rng := rand.New(rand.NewPCG(seed, 1))
	opts := testOpts()
	bound := opts.MaxLag
	res := &propertyResult{ops: map[string]int{}}
	f := newFaults()
	var cur atomic.Pointer[replica]
	cur.Store(r.replica(f, feed, opts))
	defer func() { res.collect(cur.Load()) }()
	// The clock starts once the first replica serves: on a loaded machine
	// its first load is slow, and the run is about what comes after.
	cur.Load().waitServing(t, time.Minute)

	prdb := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t), DB: testDB, PoolSize: 8})
	t.Cleanup(func() { _ = prdb.Close() })
	po := r.opts
	po.Refresh = time.Millisecond
	ps, err := redisstore.New(prdb, po)
	require.NoError(t, err)
	o := &oracle{store: ps, unseen: map[nsKey]bool{}, seen: map[nsKey]time.Time{}}

	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() { o.run(ctx) })
	wrng := rand.New(rand.NewPCG(rng.Uint64(), 2))
	wg.Go(func() { // the writers: bursts of records, new keys and known ones
		for ctx.Err() == nil {
			n := 1 + wrng.IntN(20)
			if wrng.IntN(20) == 0 {
				n = 300
			}
			recs := make([]ledger.Record, 0, n)
			for range n {
				ns := namespaces[wrng.IntN(len(namespaces))]
				keys := make([]suppression.StorageKey, 1+wrng.IntN(3))
				for i := range keys {
					if nk, ok := o.pick(wrng); ok && nk.ns == ns && wrng.IntN(10) < 3 {
						keys[i] = nk.k
					} else {
						keys[i] = randomKey(t)
					}
				}
				o.add(ns, keys)
				recs = append(recs, record(ns, keys...))
			}
			if err := r.write(ctx, recs...); err != nil && ctx.Err() == nil {
				t.Errorf("write the ledger: %v", err)
				return
			}
			sleep(ctx, time.Duration(wrng.IntN(40))*time.Millisecond)
		}
	})
	for c := range 3 {
		crng := rand.New(rand.NewPCG(rng.Uint64(), uint64(3+c)))
		wg.Go(func() { // the checkers
			for ctx.Err() == nil {
				ns := namespaces[crng.IntN(len(namespaces))]
				keys := make([]suppression.StorageKey, 1+crng.IntN(16))
				// The third checker, and a third of the others' reads, ask
				// only for keys never written: a fresh index answers them
				// without touching Redis, so they go on while Redis is
				// stalled, and show the index falling back.
				unwritten := c == 2 || crng.IntN(3) == 0
				for i := range keys {
					if nk, ok := o.pick(crng); ok && !unwritten && crng.IntN(4) != 0 {
						keys[i] = nk.k
					} else {
						keys[i] = randomKey(t)
					}
				}
				rep := cur.Load()
				t0 := time.Now()
				rctx, done := context.WithTimeout(ctx, time.Second)
				recs, err := rep.store.Get(rctx, ns, keys)
				done()
				if ctx.Err() != nil {
					return
				}
				atomic.AddInt64(&res.answers, 1)
				if err != nil {
					atomic.AddInt64(&res.errors, 1)
					sleep(ctx, 5*time.Millisecond)
					continue
				}
				for i, rec := range recs {
					if rec != nil {
						continue
					}
					if since, ok := o.since(nsKey{ns, keys[i]}); ok && since.Before(t0.Add(-bound)) {
						st := rep.idx.Status()
						res.violation(fmt.Sprintf("at %s, key %s of %s: no record, but the store held it from %s, %s before (index %s, generation %s)",
							t0.Format("15:04:05.000"), keys[i], ns, since.Format("15:04:05.000"), t0.Sub(since).Round(time.Millisecond), st.State, st.Generation))
					}
				}
				sleep(ctx, time.Duration(crng.IntN(3))*time.Millisecond)
			}
		})
	}

	deadline := time.Now().Add(d)
	kinds := []string{"delay", "stall", "cut", "restart", "lose", "rebuild", "empty"}
	var schedule []string
	if chaos {
		schedule = append(schedule, kinds...)
		rng.Shuffle(len(schedule), func(i, j int) { schedule[i], schedule[j] = schedule[j], schedule[i] })
	}
	// Every kind of trouble happens once, however long the first ones took
	// on a busy machine; then random ones until the deadline.
	for time.Now().Before(deadline) || len(schedule) > 0 {
		sleep(ctx, time.Duration(20+rng.IntN(300))*time.Millisecond)
		if !chaos {
			if res.caught() {
				break // the control has what it needs
			}
			continue
		}
		op := kinds[rng.IntN(len(kinds))]
		if len(schedule) > 0 {
			op, schedule = schedule[0], schedule[1:]
		}
		res.ops[op]++
		switch op {
		case "delay":
			f.setDelay(time.Duration(1+rng.IntN(120)) * time.Millisecond)
			sleep(ctx, time.Duration(100+rng.IntN(1200))*time.Millisecond)
			f.setDelay(0)
		case "stall":
			resume := f.stall()
			sleep(ctx, time.Duration(50+rng.IntN(900))*time.Millisecond)
			resume()
		case "cut":
			f.cut()
		case "restart":
			old := cur.Swap(r.replica(f, feed, opts))
			old.stop()
			res.collect(old)
		case "lose":
			gen, err := r.rebuilds.Active(ctx)
			if err != nil || gen == "" {
				continue
			}
			lost := o.seenKeys(1 + rng.IntN(5))
			o.forget(lost, func() {
				for _, nk := range lost {
					bucket, field := r.opts.BucketOf(gen, nk.ns, nk.k)
					r.rdb.HDel(ctx, bucket, field)
				}
			})
		case "rebuild":
			if _, err := r.rebuild(ctx, r.opts.SwitchGrace(), rng.IntN(2) == 0); err != nil && ctx.Err() == nil {
				t.Errorf("rebuild: %v", err)
			}
		case "empty":
			o.forget(nil, func() { r.dropAll(ctx) })
			sleep(ctx, time.Duration(rng.IntN(300))*time.Millisecond)
			if _, err := r.rebuild(ctx, 0, false); err != nil && ctx.Err() == nil && !errors.Is(err, redisstore.ErrRebuildBusy) {
				t.Errorf("rebuild of the emptied store: %v", err)
			}
		}
	}
	// Let the last trouble pass, so the run ends with the index serving.
	sleep(ctx, time.Second)
	cancel()
	wg.Wait()
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("SUPPRESSD_TEST_LOGS") != "" {
			t.Logf("logs:\n%s", r.logs.String())
		}
	})
	return res
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
