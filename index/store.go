package index

import (
	"context"
	"time"

	"github.com/suppressd/suppressd/suppression"
)

// Store is a suppression.Store whose reads go through an Index: while the
// index is fresh, a key it does not hold gets a nil Record (no record)
// without asking the store, and only the keys it holds are read from the
// store; while it is not, every key is read from the store. Writes and
// readiness are the store's.
//
// Its answers keep the store's contract with one difference: a read of keys
// none of which has a record succeeds while the store is unreachable, for
// as long as the index stays fresh (at most its MaxLag, as the index's own
// checks of the store then stop answering). Such an answer is true: those
// keys had no record MaxLag ago.
type Store struct {
	suppression.Store
	idx *Index
}

// NewStore returns store read through idx.
func NewStore(store suppression.Store, idx *Index) *Store { return &Store{Store: store, idx: idx} }

var _ suppression.Store = (*Store)(nil)

// Get implements suppression.Store.
func (s *Store) Get(ctx context.Context, ns string, keys []suppression.StorageKey) ([]suppression.Record, error) {
	v, reason := s.idx.serving(time.Now())
	if v == nil {
		s.idx.m.fallbacks.WithLabelValues(reason).Inc()
		s.idx.m.keys.WithLabelValues(answerFallback).Add(float64(len(keys)))
		return s.Store.Get(ctx, ns, keys)
	}
	salt := SaltOf(ns)
	var (
		held []int // positions of the keys the set holds
		sub  []suppression.StorageKey
	)
	for i := range keys {
		if v.set.Has(salt, &keys[i]) {
			held = append(held, i)
		}
	}
	if len(keys)-len(held) > 0 {
		s.idx.m.memory.Add(float64(len(keys) - len(held)))
	}
	out := make([]suppression.Record, len(keys))
	switch len(held) {
	case 0:
		return out, nil
	case len(keys):
		s.idx.m.store.Add(float64(len(keys)))
		return s.Store.Get(ctx, ns, keys)
	}
	s.idx.m.store.Add(float64(len(held)))
	sub = make([]suppression.StorageKey, len(held))
	for j, i := range held {
		sub[j] = keys[i]
	}
	recs, err := s.Store.Get(ctx, ns, sub)
	if err != nil {
		return nil, err
	}
	for j, i := range held {
		out[i] = recs[j]
	}
	return out, nil
}
