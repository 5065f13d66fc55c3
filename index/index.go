// Package index keeps, in every API replica, the set of storage keys that
// have a record in the store's active generation, so a read of a key that
// has none (nearly every key of a check or an audience) is answered in
// memory instead of with a Redis round trip. A key in the set is read from
// the store as before.
//
//	store (Redis) ── snapshot of the active generation ──┐
//	                                                     ▼
//	ledger (Kafka) ── every record from where the ──▶  Set ◀── Store.Get: absent keys
//	                  store's writers are                      answered "no record";
//	store ── the generation pointer, each Check ──▶ freshness  the rest read from Redis
//
// # Fresh within a bound, or not used
//
// The set may lack only what reached the store in the last MaxLag. Two
// watermarks say how far it is known to be complete, and reads use it only
// while both are younger than MaxLag, falling back to the store for every
// key otherwise (while loading, when the feed lags or breaks, when Redis
// does not answer):
//
//   - the feed's: the ledger's end offsets were asked at time t and the
//     feed has delivered every record before them. A store write happens
//     after its ledger record is appended (the apply stage reads only what
//     is below the end), so every key written to the store before t is in
//     the set.
//   - the generation's: a read of the generation pointer sent at time t
//     named the generation the set was loaded from, so no switch to
//     another one (a rebuild, a store emptied and rebuilt, another layout)
//     happened before t. A switch drops the set and loads the new
//     generation.
//
// # Why the ledger is the feed
//
// The feed is the ledger topic, read by every replica without a consumer
// group, rather than a stream the apply script would write into Redis. The
// ledger is already the log of every write the store gets (the apply stage
// and every rebuild write from it), so it costs the write path nothing; a
// replica that was away catches up from Kafka, which keeps it for ever,
// instead of reloading because a trimmed stream lost its place; a Redis
// stream would be one more write per apply, more memory in Redis, and on a
// cluster one stream per slot group to block on. Its one subtlety is that a
// ledger record exists before the store holds it, which only ever makes
// the set larger than the store (a key read from Redis that has no record
// yet), never smaller.
//
// The snapshot is made so that the set never lacks a key the store has:
// the feed first notes the apply stage's committed offsets (everything
// before them is in the store), then the active generation is scanned, then
// the feed delivers every record from those offsets on. A key the store
// gets after the scan started comes from a record at or after them; one it
// had before is in the scan (a generation never loses a record, and a
// rebuilt one holds every record the ledger had when it became active).
package index

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/suppressd/suppressd/internal/overlap"
	"github.com/suppressd/suppressd/suppression"
)

// Snapshot is the store as the index loads it.
type Snapshot interface {
	// ActiveGeneration names the active generation as the store says now,
	// never from a cache, with a name that differs for every build (a
	// store emptied and rebuilt under the same generation name is another
	// build). It fails as reads do: suppression.ErrNotBuilt,
	// ErrLayoutMismatch, ErrUnavailable.
	ActiveGeneration(ctx context.Context) (string, error)
	// GenerationKeys calls fn with the keys of every record of generation
	// gen (a name ActiveGeneration gave), by namespace, not concurrently.
	// A key is passed as far as the store keeps it: at least its leading
	// shard bits (the Set's) and its bytes 3 to 6 must be the key's. Every
	// record the generation holds when the call starts is passed; one
	// written while it runs may or may not be.
	GenerationKeys(ctx context.Context, gen string, fn func(ns string, keys []suppression.StorageKey) error) error
}

// Feed is the change feed: the ledger, as every store write comes from it.
type Feed interface {
	// Follow calls started once it has noted how far the store's writers
	// have written (every record before that point is in the store),
	// before anything else; then add with the namespace and keys of every
	// record from that point on, in order per partition (ref is the
	// record's time, for the visibility metric); and fresh(t) whenever
	// every record appended before t has been passed to add. add and fresh
	// may be called concurrently. Follow returns nil when ctx ends, or an
	// error when it cannot go on (the index then reloads).
	Follow(ctx context.Context, started func(), add func(ns string, keys []suppression.StorageKey, ref time.Time), fresh func(asOf time.Time)) error
}

// Options configure an Index. The zero value is usable.
type Options struct {
	// MaxLag is how old the set may be: reads use it only while everything
	// that reached the store MaxLag ago is known to be in it. Default
	// 250ms.
	MaxLag time.Duration
	// Check is how often the generation pointer is read. Default a fifth
	// of MaxLag, so a healthy index is never near its bound.
	Check time.Duration
	// ShardBits are the Set's (see NewSet). Default DefaultShardBits.
	ShardBits int
	// Retry is the wait before loading again after a load failed or the
	// set was dropped. Default 1s.
	Retry time.Duration
}

// DefaultMaxLag is the default of Options.MaxLag.
const DefaultMaxLag = 250 * time.Millisecond

func (o *Options) setDefaults() {
	if o.MaxLag <= 0 {
		o.MaxLag = DefaultMaxLag
	}
	if o.Check <= 0 {
		o.Check = o.MaxLag / 5
	}
	if o.ShardBits <= 0 {
		o.ShardBits = DefaultShardBits
	}
	if o.Retry <= 0 {
		o.Retry = time.Second
	}
}

// Index is a replica's set of the keys the active generation holds, with
// the feed and the checks that keep it fresh. Run loads and follows it;
// Store reads through it. Safe for concurrent use.
type Index struct {
	snap  Snapshot
	feed  Feed
	opts  Options
	log   *slog.Logger
	m     *metrics
	epoch time.Time // the monotonic clock's origin for the watermarks

	cur  atomic.Pointer[view] // nil: no complete set
	note atomic.Pointer[string]

	// observe, when set by a test or benchmark, is called with every key
	// the feed adds, once it is in the set.
	observe func(ns string, k suppression.StorageKey)
}

// view is one loaded set and how fresh it is.
type view struct {
	set *Set
	gen string
	// feedAt and genAt are the watermarks, in nanoseconds since the
	// index's epoch: every key written to the store before feedAt is in
	// set; no generation other than gen was active before genAt.
	feedAt, genAt atomic.Int64
	loaded        atomic.Bool
}

func advance(w *atomic.Int64, t int64) {
	for {
		old := w.Load()
		if t <= old || w.CompareAndSwap(old, t) {
			return
		}
	}
}

// New returns an index of snap's active generation, fed by feed. It does
// nothing until Run.
func New(snap Snapshot, feed Feed, opts Options, log *slog.Logger, reg prometheus.Registerer) *Index {
	opts.setDefaults()
	x := &Index{snap: snap, feed: feed, opts: opts, log: log.With("component", "index"), epoch: time.Now()}
	x.setNote("loading: not started")
	x.m = newMetrics(reg, x)
	return x
}

// Options returns the options, defaults filled in.
func (x *Index) Options() Options { return x.opts }

func (x *Index) mono(t time.Time) int64 { return int64(t.Sub(x.epoch)) }

func (x *Index) setNote(s string) { x.note.Store(&s) }

// Fallback reasons: why a read went to the store for every key.
const (
	reasonLoading    = "loading"    // no complete set
	reasonFeed       = "feed"       // the feed's watermark is older than MaxLag
	reasonGeneration = "generation" // the generation check's is
)

// serving returns the set reads may use now, or why none.
func (x *Index) serving(now time.Time) (*view, string) {
	v := x.cur.Load()
	if v == nil {
		return nil, reasonLoading
	}
	t, bound := x.mono(now), int64(x.opts.MaxLag)
	if t-v.feedAt.Load() > bound {
		return nil, reasonFeed
	}
	if t-v.genAt.Load() > bound {
		return nil, reasonGeneration
	}
	return v, ""
}

// Run loads the set and keeps it current until ctx ends; it reloads after
// a generation switch or a feed failure, and retries a load that failed.
// It returns nil when ctx ends.
func (x *Index) Run(ctx context.Context) error {
	for {
		err := x.load(ctx)
		x.cur.Store(nil)
		if ctx.Err() != nil {
			return nil
		}
		switch {
		case errors.Is(err, errSwitched):
			x.m.loads.WithLabelValues("switched").Inc()
			x.log.Info("the active generation changed; loading it", "err", err)
			continue // at once: the new generation is there to load
		default:
			x.m.loads.WithLabelValues("failed").Inc()
			x.setNote("loading: " + err.Error())
			x.log.Warn("index unavailable; reads go to the store until it loads again", "reason", suppression.StoreErrorReason(err), "err", err, "retry_in", x.opts.Retry)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(x.opts.Retry):
		}
	}
}

// errSwitched: the generation pointer names another generation (or build)
// than the set's.
var errSwitched = errors.New("generation switched")

// load builds a set of the active generation and keeps it current until it
// must be dropped; it returns why.
func (x *Index) load(ctx context.Context) error {
	start := time.Now()
	gen, err := x.snap.ActiveGeneration(ctx)
	if err != nil {
		return fmt.Errorf("the active generation: %w", err)
	}
	v := &view{set: NewSet(x.opts.ShardBits), gen: gen}
	v.genAt.Store(x.mono(start))

	lctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel(nil) // before the wait: the feed and the checks stop

	started := make(chan struct{})
	var once sync.Once
	feedDone := make(chan error, 1)
	wg.Go(func() {
		err := x.feed.Follow(lctx, func() { once.Do(func() { close(started) }) }, x.adder(v), func(t time.Time) {
			advance(&v.feedAt, x.mono(t))
		})
		if err == nil && lctx.Err() == nil {
			err = errors.New("the feed stopped")
		}
		feedDone <- err
	})
	x.setNote(fmt.Sprintf("loading %s: finding where the store's writers are in the ledger", gen))
	select {
	case <-started:
	case err := <-feedDone:
		return fmt.Errorf("feed: %w", err)
	case <-ctx.Done():
		return ctx.Err()
	}
	wg.Go(func() { x.watch(lctx, v, cancel) })

	x.setNote(fmt.Sprintf("loading %s: reading its keys", gen))
	err = x.snap.GenerationKeys(lctx, gen, func(ns string, keys []suppression.StorageKey) error {
		salt := SaltOf(ns)
		for i := range keys {
			v.set.Add(salt, &keys[i])
		}
		return nil
	})
	if cause := context.Cause(lctx); cause != nil && lctx.Err() != nil {
		return cause
	}
	if err != nil {
		return fmt.Errorf("snapshot of %s: %w", gen, err)
	}
	took := time.Since(start)
	v.loaded.Store(true)
	x.cur.Store(v)
	x.m.loads.WithLabelValues("done").Inc()
	x.m.loadSeconds.Set(took.Seconds())
	x.setNote("")
	x.log.Info("index loaded", "generation", gen, "keys", v.set.Len(), "bytes", v.set.Bytes(), "took", took.Round(time.Millisecond))

	select {
	case err := <-feedDone:
		return fmt.Errorf("feed: %w", err)
	case <-lctx.Done():
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return context.Cause(lctx)
	}
}

// adder returns the feed's add for view v.
func (x *Index) adder(v *view) func(string, []suppression.StorageKey, time.Time) {
	return func(ns string, keys []suppression.StorageKey, ref time.Time) {
		salt := SaltOf(ns)
		for i := range keys {
			v.set.Add(salt, &keys[i])
			if x.observe != nil {
				x.observe(ns, keys[i])
			}
		}
		if v.loaded.Load() && !ref.IsZero() {
			x.m.visibility.Observe(max(0, time.Since(ref).Seconds()))
		}
	}
}

// watch reads the generation pointer every Check, advancing v's
// generation watermark while it names v's generation, and cancels the load
// when it names another. Reads overlap (up to four): one slow answer does
// not hold back the next. An unanswered read leaves the watermark where it
// is: reads go to the store once it is older than MaxLag.
func (x *Index) watch(ctx context.Context, v *view, cancel context.CancelCauseFunc) {
	var health overlap.Health
	overlap.Every(ctx, x.opts.Check, 4, func(sent time.Time) {
		cctx, done := context.WithTimeout(ctx, max(x.opts.MaxLag, time.Second))
		gen, err := x.snap.ActiveGeneration(cctx)
		done()
		if ctx.Err() != nil {
			return
		}
		switch {
		case err == nil && gen == v.gen:
			advance(&v.genAt, x.mono(sent))
		case err == nil:
			cancel(fmt.Errorf("%w: %s is active, the index holds %s", errSwitched, gen, v.gen))
			return
		case errors.Is(err, suppression.ErrNotBuilt), errors.Is(err, suppression.ErrLayoutMismatch):
			// Nothing to serve from: the store was emptied, or laid out
			// otherwise. Its next build is another generation.
			cancel(fmt.Errorf("the active generation: %w", err))
			return
		}
		switch failed, recovered := health.Report(err); {
		case failed:
			x.log.Warn("the generation pointer does not answer; reads go to the store once the index is older than its bound", "err", err)
		case recovered:
			x.log.Info("the generation pointer answers again", "generation", gen)
		}
	})
}

// Status is what /readyz says of the index.
type Status struct {
	// State is serving (reads of keys without a record are answered in
	// memory), lagging (loaded, but a watermark is older than the bound:
	// every read goes to the store), loading (likewise, until a set is
	// loaded) or off (no index configured).
	State      string `json:"state"`
	Generation string `json:"generation,omitempty"`
	Keys       int64  `json:"keys,omitempty"`
	// StalenessMS is how old the older watermark is, in milliseconds.
	StalenessMS *float64 `json:"staleness_ms,omitempty"`
	Detail      string   `json:"detail,omitempty"`
}

// Status reports the index's state.
func (x *Index) Status() Status {
	now := time.Now()
	v, reason := x.serving(now)
	if v == nil {
		v = x.cur.Load()
	}
	if v == nil {
		return Status{State: "loading", Detail: *x.note.Load()}
	}
	st := Status{State: "serving", Generation: v.gen, Keys: v.set.Len()}
	age := float64(x.mono(now)-min(v.feedAt.Load(), v.genAt.Load())) / 1e6
	st.StalenessMS = &age
	switch reason {
	case reasonFeed:
		st.State, st.Detail = "lagging", fmt.Sprintf("the ledger feed is behind the %s bound: reads go to the store", x.opts.MaxLag)
	case reasonGeneration:
		st.State, st.Detail = "lagging", fmt.Sprintf("the generation pointer was last confirmed over %s ago: reads go to the store", x.opts.MaxLag)
	}
	return st
}
