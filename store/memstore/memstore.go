// Package memstore is a suppression.Store in memory: the contract of
// suppression.Store without Redis, for unit tests of the API and the
// consumer, and for proving that nothing above the store depends on Redis.
// It holds everything in one map under one lock; it is not for production.
package memstore

import (
	"context"
	"fmt"

	"github.com/suppressd/suppressd/suppression"
)

// Store is a suppression.Store in memory, for unit tests and tools. It is always
// ready unless told otherwise. Safe for concurrent use.
type Store struct {
	mu      chan struct{} // a one-slot semaphore: lock with ctx
	records map[memKey]suppression.Record
	err     error
}

type memKey struct {
	ns  string
	key suppression.StorageKey
}

// New returns an empty, ready in-memory store.
func New() *Store {
	return &Store{mu: make(chan struct{}, 1), records: map[memKey]suppression.Record{}}
}

func (m *Store) lock(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w: %w", suppression.ErrUnavailable, err)
	}
	select {
	case m.mu <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", suppression.ErrUnavailable, ctx.Err())
	}
}

func (m *Store) unlock() { <-m.mu }

// SetError makes every call fail with err (nil restores the store), to
// test callers' failure paths.
func (m *Store) SetError(err error) {
	m.mu <- struct{}{}
	m.err = err
	<-m.mu
}

// Apply implements suppression.Store.
func (m *Store) Apply(ctx context.Context, writes []suppression.Write) (int, error) {
	if err := m.lock(ctx); err != nil {
		return 0, err
	}
	defer m.unlock()
	if m.err != nil {
		return 0, m.err
	}
	changed := 0
	for _, w := range writes {
		k := memKey{w.Namespace, w.Key}
		rec := m.records[k]
		next, ok := rec[w.Scope].Apply(w.Change)
		if !ok {
			continue
		}
		copied := make(suppression.Record, len(rec)+1)
		for s, st := range rec {
			copied[s] = st
		}
		copied[w.Scope] = next
		m.records[k] = copied
		changed++
	}
	return changed, nil
}

// Get implements suppression.Store. The records returned are shared: the
// caller must not modify them.
func (m *Store) Get(ctx context.Context, ns string, keys []suppression.StorageKey) ([]suppression.Record, error) {
	if err := m.lock(ctx); err != nil {
		return nil, err
	}
	defer m.unlock()
	if m.err != nil {
		return nil, m.err
	}
	out := make([]suppression.Record, len(keys))
	for i, k := range keys {
		out[i] = m.records[memKey{ns, k}]
	}
	return out, nil
}

// Ready implements suppression.Store.
func (m *Store) Ready(ctx context.Context) error {
	if err := m.lock(ctx); err != nil {
		return err
	}
	defer m.unlock()
	return m.err
}
