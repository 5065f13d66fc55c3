package redisstore

import (
	"context"
	"fmt"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/suppression"
)

// TestGenerationKeys: what a replica's index loads is every key of the
// active generation, in its namespace, as far as the store keeps it (the
// bucket's bits and bytes 3 to 18), on every topology and bucket width;
// another generation's keys, and markers, are not in it.
func TestGenerationKeys(t *testing.T) {
	ctx := context.Background()
	for name, rdb := range servers(t) {
		for _, bits := range []int{4, 16, 20} {
			t.Run(fmt.Sprintf("%s/%d bits", name, bits), func(t *testing.T) {
				s := newStore(t, rdb, bits)
				want := map[string]map[suppression.StorageKey]bool{"default": {}, "brand2": {}}
				var ws []suppression.Write
				for i := range 300 {
					ns := "default"
					if i%3 == 0 {
						ns = "brand2"
					}
					w := suppressWrite(key(i))
					w.Namespace = ns
					ws = append(ws, w)
					want[ns][stored(key(i), bits)] = true
				}
				_, err := s.Apply(ctx, ws)
				require.NoError(t, err)

				gen, err := s.ActiveGeneration(ctx)
				require.NoError(t, err)
				require.Regexp(t, regexp.MustCompile(`^g1@[0-9]{13}$`), gen)
				got := map[string]map[suppression.StorageKey]bool{"default": {}, "brand2": {}}
				require.NoError(t, s.GenerationKeys(ctx, gen, func(ns string, keys []suppression.StorageKey) error {
					for _, k := range keys {
						require.False(t, got[ns][k], "a key passed twice")
						got[ns][k] = true
					}
					return nil
				}))
				require.Equal(t, want, got)

				// A generation being built is not the active one's.
				r, err := NewRebuilds(rdb, s.Options())
				require.NoError(t, err)
				tg, err := r.Begin(ctx, "g2", "test", time.Minute)
				require.NoError(t, err)
				_, err = tg.Apply(ctx, []suppression.Write{suppressWrite(key(1000))})
				require.NoError(t, err)
				n := 0
				require.NoError(t, s.GenerationKeys(ctx, gen, func(string, []suppression.StorageKey) error { n++; return nil }))
				require.Positive(t, n)
				require.NoError(t, s.GenerationKeys(ctx, gen, func(_ string, keys []suppression.StorageKey) error {
					for _, k := range keys {
						require.NotEqual(t, stored(key(1000), bits), k)
					}
					return nil
				}))
			})
		}
	}
}

// stored is a storage key as far as the store keeps it.
func stored(k suppression.StorageKey, bits int) suppression.StorageKey {
	top := uint32(k[0])<<16 | uint32(k[1])<<8 | uint32(k[2])
	top = top >> (24 - bits) << (24 - bits)
	k[0], k[1], k[2] = byte(top>>16), byte(top>>8), byte(top)
	clear(k[19:])
	return k
}

// TestActiveGenerationNamesEachBuild: the name changes with every build,
// even of the same generation name (a store emptied and rebuilt from
// scratch starts at g1 again), and the pointer's refusals are the reads'.
func TestActiveGenerationNamesEachBuild(t *testing.T) {
	ctx := context.Background()
	for name, rdb := range servers(t) {
		t.Run(name, func(t *testing.T) {
			s := newStore(t, rdb, 8)
			first, err := s.ActiveGeneration(ctx)
			require.NoError(t, err)

			require.NoError(t, rdb.Del(ctx, s.key).Err()) // emptied
			_, err = s.ActiveGeneration(ctx)
			require.ErrorIs(t, err, suppression.ErrNotBuilt)

			time.Sleep(2 * time.Millisecond) // one millisecond of the server's clock at least
			r, err := NewRebuilds(rdb, s.Options())
			require.NoError(t, err)
			_, err = r.Begin(ctx, "g1", "test", time.Minute)
			require.NoError(t, err)
			require.NoError(t, r.Finish(ctx, "g1", "test"))
			again, err := s.ActiveGeneration(ctx)
			require.NoError(t, err)
			require.NotEqual(t, first, again, "a rebuilt g1 is another build")

			other, err := New(rdb, Options{Prefix: s.Options().Prefix, BucketBits: 8, Keying: "another pepper"})
			require.NoError(t, err)
			_, err = other.ActiveGeneration(ctx)
			require.ErrorIs(t, err, suppression.ErrLayoutMismatch)
		})
	}
}
