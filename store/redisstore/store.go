package redisstore

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/suppressd/suppressd/suppression"
)

// Store is the Redis suppression store: suppression.Store on the active
// layout generation, with the writes of a running rebuild going to the
// generation being built as well.
//
// The pointer is one hash, "<prefix>:generations": "active" names the
// generation readers use, "building" the one a rebuild fills, and
// "layout:<generation>" the layout fingerprint each was built with. Each
// Store re-reads it at most every Options.Refresh. No read and no write ever
// creates it: only a rebuild (Rebuilds) does, so a server that lost it has
// no active generation and answers ErrNotBuilt until rebuilt.
//
// A Store is safe for concurrent use.
type Store struct {
	rdb  redis.UniversalClient
	opts Options
	key  string

	mu      sync.Mutex
	checked time.Time
	ptr     pointer
}

// pointer is what the generations hash said when last read.
type pointer struct {
	active, building       *generation
	activeErr, buildingErr error // why a generation cannot be used
}

// New returns a Store on an existing client. It does not contact Redis.
func New(rdb redis.UniversalClient, opts Options) (*Store, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	return &Store{rdb: rdb, opts: opts, key: opts.Prefix + ":generations"}, nil
}

var _ suppression.Store = (*Store)(nil)

// Options returns the store's options, defaults filled in.
func (s *Store) Options() Options { return s.opts }

// current returns the generations to read and write, re-reading the
// pointer when it is older than Refresh.
func (s *Store) current(ctx context.Context) (pointer, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.checked.IsZero() && time.Since(s.checked) < s.opts.Refresh {
		return s.ptr, nil
	}
	fields, err := s.rdb.HGetAll(ctx, s.key).Result()
	if err != nil {
		return pointer{}, fmt.Errorf("%w: read the generation pointer: %w", suppression.ErrUnavailable, err)
	}
	use := func(gen string, old *generation) (*generation, error) {
		if err := s.usable(fields, gen); err != nil {
			return nil, err
		}
		if old != nil && old.gen == gen {
			return old, nil
		}
		return newGeneration(s.rdb, s.opts, gen), nil
	}
	var p pointer
	if gen := fields["active"]; gen == "" {
		p.activeErr = errNoActive
	} else {
		p.active, p.activeErr = use(gen, s.ptr.active)
	}
	if gen := fields["building"]; gen != "" && gen != fields["active"] {
		p.building, p.buildingErr = use(gen, s.ptr.building)
	}
	s.ptr, s.checked = p, time.Now()
	return p, nil
}

var errNoActive = fmt.Errorf("%w: no active generation (never built, or Redis lost its data)", suppression.ErrNotBuilt)

// usable checks that generation gen, as the pointer's fields describe it,
// was built with this replica's layout.
func (s *Store) usable(fields map[string]string, gen string) error {
	l, mine := fields["layout:"+gen], s.opts.Layout()
	switch {
	case l == "":
		return fmt.Errorf("%w: generation %s has no recorded layout", suppression.ErrNotBuilt, gen)
	case l != mine:
		return fmt.Errorf("%w: generation %s uses %s, this replica %s (same bucket bits, group bits and pepper everywhere, or a rebuild)",
			suppression.ErrLayoutMismatch, gen, l, mine)
	}
	return nil
}

// invalidate makes the next call re-read the pointer.
func (s *Store) invalidate() {
	s.mu.Lock()
	s.checked = time.Time{}
	s.mu.Unlock()
}

// Active returns the name of the generation readers use.
func (s *Store) Active(ctx context.Context) (string, error) {
	p, err := s.current(ctx)
	if err != nil {
		return "", err
	}
	if p.activeErr != nil {
		return "", p.activeErr
	}
	return p.active.gen, nil
}

// Apply implements suppression.Store: it writes to the active generation
// and, during a rebuild, to the one being built, so nothing written while a
// rebuild replays is missing from the new generation when it takes over.
func (s *Store) Apply(ctx context.Context, writes []suppression.Write) (int, error) {
	p, err := s.current(ctx)
	if err != nil {
		return 0, err
	}
	if p.activeErr != nil {
		return 0, p.activeErr
	}
	if p.buildingErr != nil {
		// Dual-writing with another layout would corrupt the new
		// generation: stop (writers retry) until restarted with it.
		return 0, fmt.Errorf("generation being built: %w", p.buildingErr)
	}
	n, err := p.active.apply(ctx, writes)
	if err != nil {
		s.invalidate()
		return 0, err
	}
	if p.building != nil {
		if _, err := p.building.apply(ctx, writes); err != nil {
			s.invalidate()
			return 0, fmt.Errorf("generation %s (being built): %w", p.building.gen, err)
		}
	}
	return n, nil
}

// Get implements suppression.Store, reading the active generation.
func (s *Store) Get(ctx context.Context, ns string, keys []suppression.StorageKey) ([]suppression.Record, error) {
	p, err := s.current(ctx)
	if err != nil {
		return nil, err
	}
	if p.activeErr != nil {
		return nil, p.activeErr
	}
	recs, err := p.active.get(ctx, ns, keys)
	if err != nil {
		s.invalidate()
		return nil, err
	}
	return recs, nil
}

// Ready implements suppression.Store: the pointer names an active
// generation built with this replica's layout, and every group marker of
// it is present.
func (s *Store) Ready(ctx context.Context) error {
	p, err := s.current(ctx)
	if err != nil {
		return err
	}
	if p.activeErr != nil {
		return p.activeErr
	}
	missing, err := p.active.missingMarkers(ctx)
	if err != nil {
		return err
	}
	if missing > 0 {
		s.invalidate()
		return fmt.Errorf("%w: generation %s: %d of %d group markers are missing (a server lost its data)",
			suppression.ErrNotBuilt, p.active.gen, missing, p.active.groups())
	}
	return nil
}
