// Package storetest holds the contract of suppression.Store as a test suite
// any implementation must pass: the Redis store on a standalone server, on
// the cluster and on miniredis, and the in-memory store, all run it.
package storetest

import (
	"context"
	"crypto/sha256"
	mrand "math/rand/v2"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/suppression"
)

// Key returns a storage key for a small integer.
func Key(i int) suppression.StorageKey { return sha256.Sum256([]byte{byte(i), byte(i >> 8), 's', 't'}) }

var (
	reasons = []suppression.Reason{suppression.ReasonUnsubscribe, suppression.ReasonErasure, suppression.ReasonHardBounce, suppression.ReasonComplaint, suppression.ReasonGPC}
	scopes  = []suppression.Scope{"*", "email", "topic:news"}
	origins = []suppression.Origin{suppression.OriginRecipient, suppression.OriginSystem, suppression.OriginAdmin, suppression.OriginCustomer}
)

// RandomWrites makes n writes to a few keys and scopes of namespace ns,
// with colliding times (where merge rules break).
func RandomWrites(rng *mrand.Rand, ns string, n, keys int) []suppression.Write {
	ws := make([]suppression.Write, n)
	for i := range ws {
		c := suppression.Change{
			Action: suppression.ActionSuppress,
			Reason: reasons[rng.IntN(len(reasons))],
			Stamp:  suppression.Stamp{At: 1_700_000_000_000 + int64(rng.IntN(5)), Tag: rng.Uint64()},
			Origin: origins[rng.IntN(len(origins))],
			Source: []string{"/unsubscribe-link", "/mail-pipeline", "urn:dsr"}[rng.IntN(3)],
		}
		if rng.IntN(3) == 0 {
			c.Action = suppression.ActionLift
			if rng.IntN(2) == 0 {
				c.Reason = ""
			}
		}
		ws[i] = suppression.Write{Namespace: ns, Key: Key(rng.IntN(keys)), Scope: scopes[rng.IntN(len(scopes))], Change: c}
	}
	return ws
}

// Expected folds writes through the domain's merge rule, per namespace and
// key.
func Expected(ws []suppression.Write) map[string]map[suppression.StorageKey]suppression.Record {
	out := map[string]map[suppression.StorageKey]suppression.Record{}
	for _, w := range ws {
		if out[w.Namespace] == nil {
			out[w.Namespace] = map[suppression.StorageKey]suppression.Record{}
		}
		rec := out[w.Namespace][w.Key]
		if rec == nil {
			rec = suppression.Record{}
			out[w.Namespace][w.Key] = rec
		}
		rec[w.Scope], _ = rec[w.Scope].Apply(w.Change)
	}
	return out
}

// RequireState reads every key the writes name and requires the records
// the merge rule computes.
func RequireState(t testing.TB, s suppression.Store, ws []suppression.Write, msg string) {
	t.Helper()
	for ns, want := range Expected(ws) {
		keys := make([]suppression.StorageKey, 0, len(want))
		for k := range want {
			keys = append(keys, k)
		}
		got, err := s.Get(context.Background(), ns, keys)
		require.NoError(t, err)
		require.Len(t, got, len(keys))
		for i, k := range keys {
			require.Equal(t, want[k], got[i], "%s: namespace %s key %s", msg, ns, k)
		}
	}
}

// Run runs the contract against stores made by fresh, each empty and ready.
func Run(t *testing.T, fresh func(t *testing.T) suppression.Store) {
	ctx := context.Background()

	t.Run("ready and empty", func(t *testing.T) {
		s := fresh(t)
		require.NoError(t, s.Ready(ctx))
		recs, err := s.Get(ctx, "default", []suppression.StorageKey{Key(1), Key(2)})
		require.NoError(t, err)
		require.Equal(t, []suppression.Record{nil, nil}, recs, "a key never written has a nil record")
		recs, err = s.Get(ctx, "default", nil)
		require.NoError(t, err)
		require.Empty(t, recs)
	})

	t.Run("merge rule in any batching and order, replay changes nothing", func(t *testing.T) {
		rng := mrand.New(mrand.NewPCG(7, 8))
		for round := 0; round < 25; round++ {
			s := fresh(t)
			ws := append(RandomWrites(rng, "default", 5+rng.IntN(40), 6), RandomWrites(rng, "other", 5, 6)...)
			shuffled := append([]suppression.Write(nil), ws...)
			rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
			for len(shuffled) > 0 {
				n := 1 + rng.IntN(len(shuffled))
				_, err := s.Apply(ctx, shuffled[:n])
				require.NoError(t, err)
				shuffled = shuffled[n:]
			}
			RequireState(t, s, ws, "in pieces")
			changed, err := s.Apply(ctx, ws)
			require.NoError(t, err)
			require.Zero(t, changed, "a replay changed records")
			RequireState(t, s, ws, "after replay")
		}
	})

	t.Run("changed counts registers", func(t *testing.T) {
		s := fresh(t)
		w := suppression.Write{Namespace: "default", Key: Key(3), Scope: "email", Change: suppression.Change{
			Action: suppression.ActionSuppress, Reason: suppression.ReasonUnsubscribe, Stamp: suppression.Stamp{At: 10, Tag: 1},
			Origin: suppression.OriginRecipient, Source: "s"}}
		n, err := s.Apply(ctx, []suppression.Write{w})
		require.NoError(t, err)
		require.Equal(t, 1, n)
		n, err = s.Apply(ctx, []suppression.Write{w})
		require.NoError(t, err)
		require.Zero(t, n, "the same event twice")
	})

	t.Run("keys in order, duplicates and namespaces apart", func(t *testing.T) {
		s := fresh(t)
		ws := RandomWrites(mrand.New(mrand.NewPCG(3, 4)), "acme", 30, 4)
		ws = append(ws, suppression.Write{Namespace: "acme", Key: Key(9), Scope: "*", Change: suppression.Change{
			Action: suppression.ActionSuppress, Reason: suppression.ReasonErasure, Stamp: suppression.Stamp{At: 5, Tag: 5},
			Origin: suppression.OriginCustomer, Source: "dsr"}})
		_, err := s.Apply(ctx, ws)
		require.NoError(t, err)
		want := Expected(ws)["acme"]
		keys := []suppression.StorageKey{Key(9), Key(100), Key(9), Key(0)}
		got, err := s.Get(ctx, "acme", keys)
		require.NoError(t, err)
		for i, k := range keys {
			require.Equal(t, want[k], got[i], "position %d", i)
		}
		other, err := s.Get(ctx, "beta", keys)
		require.NoError(t, err)
		require.Equal(t, []suppression.Record{nil, nil, nil, nil}, other, "another namespace sees nothing")
	})

	t.Run("concurrent writers", func(t *testing.T) {
		s := fresh(t)
		ws := RandomWrites(mrand.New(mrand.NewPCG(9, 10)), "default", 300, 8)
		var wg sync.WaitGroup
		for w := 0; w < 6; w++ {
			mine := append([]suppression.Write(nil), ws...)
			r := mrand.New(mrand.NewPCG(uint64(w), 1))
			r.Shuffle(len(mine), func(i, j int) { mine[i], mine[j] = mine[j], mine[i] })
			wg.Add(1)
			go func() {
				defer wg.Done()
				for len(mine) > 0 {
					n := min(len(mine), 1+r.IntN(20))
					if _, err := s.Apply(ctx, mine[:n]); err != nil {
						t.Error(err)
						return
					}
					mine = mine[n:]
				}
			}()
		}
		wg.Wait()
		RequireState(t, s, ws, "concurrent writers")
	})

	t.Run("deadline is honoured", func(t *testing.T) {
		s := fresh(t)
		dctx, cancel := context.WithCancel(ctx)
		cancel()
		_, err := s.Get(dctx, "default", []suppression.StorageKey{Key(1)})
		require.Error(t, err, "a cancelled read answers nothing")
		require.ErrorIs(t, err, suppression.ErrUnavailable)
	})
}
