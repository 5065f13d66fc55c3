package webhook

import (
	"context"
	"sync"
	"time"
)

// ttlSet is a bounded set of keys that expire, safe for concurrent use. When
// full, the key inserted first goes first: both users insert keys whose
// lifetimes are about equal, so that is about the one closest to expiring.
type ttlSet struct {
	mu    sync.Mutex
	max   int
	now   func() time.Time
	keys  map[string]ttlEntry
	queue []queued // insertion order; entries whose key was removed or re-added are skipped
	seq   uint64
}

type ttlEntry struct {
	until time.Time
	seq   uint64
}

type queued struct {
	key string
	seq uint64
}

func newTTLSet(max int, now func() time.Time) *ttlSet {
	return &ttlSet{max: max, now: now, keys: map[string]ttlEntry{}}
}

// reserve adds key until the given time and reports true, or reports false
// if the key is already there and has not expired.
func (s *ttlSet) reserve(key string, until time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if e, ok := s.keys[key]; ok && now.Before(e.until) {
		return false
	}
	s.add(key, until, now)
	return true
}

// contains reports whether key is there and has not expired.
func (s *ttlSet) contains(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.keys[key]
	return ok && s.now().Before(e.until)
}

// put adds key, or moves its expiry.
func (s *ttlSet) put(key string, until time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.add(key, until, s.now())
}

// release removes key.
func (s *ttlSet) release(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.keys, key)
}

func (s *ttlSet) add(key string, until, now time.Time) {
	s.seq++
	s.keys[key] = ttlEntry{until: until, seq: s.seq}
	s.queue = append(s.queue, queued{key: key, seq: s.seq})
	// Drop from the front what is stale in the queue (removed, re-added or
	// expired) and, while over the bound, the oldest live entries.
	for len(s.queue) > 0 {
		q := s.queue[0]
		e, live := s.keys[q.key]
		live = live && e.seq == q.seq
		if live && len(s.keys) <= s.max && now.Before(e.until) {
			break
		}
		if live {
			delete(s.keys, q.key)
		}
		s.queue[0] = queued{}
		s.queue = s.queue[1:]
	}
	// Entries removed out of order leave the queue longer than the map;
	// compact it before it grows without bound.
	if len(s.queue) > 2*s.max+64 {
		kept := make([]queued, 0, len(s.keys))
		for _, q := range s.queue {
			if e, ok := s.keys[q.key]; ok && e.seq == q.seq {
				kept = append(kept, q)
			}
		}
		s.queue = kept
	}
}

// memoryLog is the PublishLog of one process, used when none is given.
type memoryLog struct{ set *ttlSet }

func newMemoryLog(max int, now func() time.Time) *memoryLog {
	return &memoryLog{set: newTTLSet(max, now)}
}

func (l *memoryLog) Published(_ context.Context, source, id string) (bool, error) {
	return l.set.contains(source + "\x00" + id), nil
}

func (l *memoryLog) RecordPublished(_ context.Context, source, id string, ttl time.Duration) error {
	l.set.put(source+"\x00"+id, l.set.now().Add(ttl))
	return nil
}

// keyedMutex serialises work per key; the zero value is ready.
type keyedMutex struct {
	mu   sync.Mutex
	held map[string]chan struct{}
}

// lock waits until no one else holds key, or ctx is done.
func (k *keyedMutex) lock(ctx context.Context, key string) (unlock func(), err error) {
	for {
		k.mu.Lock()
		if k.held == nil {
			k.held = map[string]chan struct{}{}
		}
		ch, busy := k.held[key]
		if !busy {
			ch = make(chan struct{})
			k.held[key] = ch
			k.mu.Unlock()
			return func() {
				k.mu.Lock()
				delete(k.held, key)
				k.mu.Unlock()
				close(ch)
			}, nil
		}
		k.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}
