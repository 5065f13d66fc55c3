package redisstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/suppressd/suppressd/suppression"
)

// Generations routes reads and writes to the layout generation in use, so a
// rebuild can fill a fresh generation from Kafka while the service runs, and
// switch to it when it has caught up.
//
// The pointer is one hash, "<prefix>:generations", with the field "active"
// (the generation readers use; "g1" when absent) and, while a rebuild runs,
// "building" (the generation being filled). Writers apply every batch to both,
// so nothing published during the rebuild is missing from the new
// generation once it becomes active. Each replica re-reads the pointer at
// most every Refresh; a rebuild waits RefreshGrace after announcing itself
// before it starts replaying, so every writer is dual-writing by then.
//
// A Generations is safe for concurrent use.
type Generations struct {
	rdb     redis.UniversalClient
	opts    Options
	refresh time.Duration
	key     string

	mu       sync.Mutex
	checked  time.Time
	active   *Store
	building *Store
}

// DefaultRefresh is how often the pointer is re-read.
const DefaultRefresh = time.Second

// RefreshGrace is how long after announcing a rebuild every writer is sure
// to be dual-writing: two refresh periods plus time for a batch in flight.
func RefreshGrace(refresh time.Duration) time.Duration { return 2*refresh + 5*time.Second }

// NewGenerations returns the router. opts.Generation is ignored: the pointer
// decides. refresh <= 0 means DefaultRefresh.
func NewGenerations(rdb redis.UniversalClient, opts Options, refresh time.Duration) (*Generations, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	if refresh <= 0 {
		refresh = DefaultRefresh
	}
	return &Generations{rdb: rdb, opts: opts, refresh: refresh, key: opts.Prefix + ":generations"}, nil
}

func (g *Generations) store(gen string) (*Store, error) {
	o := g.opts
	o.Generation = gen
	return New(g.rdb, o)
}

// ErrLayoutMismatch is returned when a generation was written with another
// key layout (bucket or group bits, layout or normalisation version, or
// pepper) than this replica's: its reads would miss every record and answer
// "allowed", so it refuses instead.
var ErrLayoutMismatch = errors.New("key layout mismatch")

// Layout is the fingerprint of everything that decides where a record lives.
func (o Options) Layout() string {
	return fmt.Sprintf("v%d.n%d.b%d.g%d.k%s", LayoutVersion, suppression.NormalizationVersion,
		o.BucketBits, o.GroupBits, o.Keyer.Fingerprint())
}

// current returns the stores to read from and to write to.
func (g *Generations) current(ctx context.Context) (active, building *Store, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.active != nil && time.Since(g.checked) < g.refresh {
		return g.active, g.building, nil
	}
	fields, err := g.rdb.HGetAll(ctx, g.key).Result()
	if err != nil {
		return nil, nil, fmt.Errorf("read layout generation: %w", err)
	}
	activeGen := fields["active"]
	if activeGen == "" {
		activeGen = "g1"
	}
	buildingGen := fields["building"]
	mine := g.opts.Layout()
	if l := fields["layout:"+activeGen]; l == "" {
		// The first replica to use a generation records its layout.
		if err := g.rdb.HSetNX(ctx, g.key, "layout:"+activeGen, mine).Err(); err != nil {
			return nil, nil, fmt.Errorf("record layout: %w", err)
		}
		if l, err = g.rdb.HGet(ctx, g.key, "layout:"+activeGen).Result(); err != nil {
			return nil, nil, fmt.Errorf("read layout: %w", err)
		}
		if l != mine {
			return nil, nil, fmt.Errorf("%w: generation %s uses %s, this replica %s", ErrLayoutMismatch, activeGen, l, mine)
		}
	} else if l != mine {
		return nil, nil, fmt.Errorf("%w: generation %s uses %s, this replica %s", ErrLayoutMismatch, activeGen, l, mine)
	}
	if buildingGen != "" && buildingGen != activeGen {
		if l := fields["layout:"+buildingGen]; l != "" && l != mine {
			// Dual-writing with another layout would corrupt the new
			// generation: stop (writers retry) until restarted with it.
			return nil, nil, fmt.Errorf("%w: generation %s being built uses %s, this replica %s", ErrLayoutMismatch, buildingGen, l, mine)
		}
	}
	if g.active == nil || g.active.opts.Generation != activeGen {
		if g.active, err = g.store(activeGen); err != nil {
			return nil, nil, err
		}
	}
	switch {
	case buildingGen == "" || buildingGen == activeGen:
		g.building = nil
	case g.building == nil || g.building.opts.Generation != buildingGen:
		if g.building, err = g.store(buildingGen); err != nil {
			return nil, nil, err
		}
	}
	g.checked = time.Now()
	return g.active, g.building, nil
}

// Active returns the name of the generation readers use.
func (g *Generations) Active(ctx context.Context) (string, error) {
	a, _, err := g.current(ctx)
	if err != nil {
		return "", err
	}
	return a.opts.Generation, nil
}

// Apply writes to the active generation and, during a rebuild, to the one
// being built. See Store.Apply.
func (g *Generations) Apply(ctx context.Context, writes []Write) (int, error) {
	active, building, err := g.current(ctx)
	if err != nil {
		return 0, err
	}
	n, err := active.Apply(ctx, writes)
	if err != nil || building == nil {
		return n, err
	}
	if _, err := building.Apply(ctx, writes); err != nil {
		return 0, fmt.Errorf("generation %s (rebuilding): %w", building.opts.Generation, err)
	}
	return n, nil
}

// Get reads from the active generation. See Store.Get.
func (g *Generations) Get(ctx context.Context, ns string, keys []suppression.MatchKey) ([]Record, error) {
	active, _, err := g.current(ctx)
	if err != nil {
		return nil, err
	}
	return active.Get(ctx, ns, keys)
}

// Ping reports whether Redis answers.
func (g *Generations) Ping(ctx context.Context) error {
	if err := g.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis ping: %w", err)
	}
	return nil
}

// BeginRebuild announces that gen is being built: from now on writers fill
// it too. It fails if another rebuild is under way.
func (g *Generations) BeginRebuild(ctx context.Context, gen string) (*Store, error) {
	s, err := g.store(gen)
	if err != nil {
		return nil, err
	}
	vals, err := g.rdb.HMGet(ctx, g.key, "active", "building").Result()
	if err != nil {
		return nil, err
	}
	if b, _ := vals[1].(string); b != "" {
		return nil, fmt.Errorf("generation %s is already being built; finish or abort that rebuild first", b)
	}
	if a, _ := vals[0].(string); a == gen || (a == "" && gen == "g1") {
		return nil, fmt.Errorf("generation %s is the active one", gen)
	}
	if err := g.rdb.HSet(ctx, g.key, "building", gen, "layout:"+gen, g.opts.Layout()).Err(); err != nil {
		return nil, err
	}
	g.invalidate()
	return s, nil
}

// FinishRebuild makes the built generation the active one.
func (g *Generations) FinishRebuild(ctx context.Context, gen string) error {
	_, err := g.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, g.key, "active", gen)
		p.HDel(ctx, g.key, "building")
		return nil
	})
	g.invalidate()
	return err
}

// AbortRebuild forgets a rebuild; the half-built generation stays until
// dropped.
func (g *Generations) AbortRebuild(ctx context.Context) error {
	err := g.rdb.HDel(ctx, g.key, "building").Err()
	g.invalidate()
	return err
}

func (g *Generations) invalidate() {
	g.mu.Lock()
	g.checked = time.Time{}
	g.mu.Unlock()
}

// idemKey is where a published event's idempotency record lives: outside
// every generation (it is not derived from Kafka), under a hash of its
// source and id.
func (g *Generations) idemKey(source, id string) string {
	h := sha256.Sum256([]byte(source + "\x00" + id))
	return g.opts.Prefix + ":published:" + hex.EncodeToString(h[:16])
}

// Published reports whether an event with this source and id was recorded
// as published.
func (g *Generations) Published(ctx context.Context, source, id string) (bool, error) {
	n, err := g.rdb.Exists(ctx, g.idemKey(source, id)).Result()
	return n == 1, err
}

// RecordPublished records an event as published for ttl.
func (g *Generations) RecordPublished(ctx context.Context, source, id string, ttl time.Duration) error {
	return g.rdb.Set(ctx, g.idemKey(source, id), "1", ttl).Err()
}
