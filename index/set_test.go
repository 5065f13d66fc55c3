package index

import (
	"crypto/rand"
	mrand "math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/suppression"
)

func randomKey(t testing.TB) suppression.StorageKey {
	var k suppression.StorageKey
	_, err := rand.Read(k[:])
	require.NoError(t, err)
	return k
}

// TestSetHoldsWhatWasAdded: every key added is found, in its namespace
// only; keys never added are not (the fingerprints are 48 bits wide at 16
// shard bits, 44 at 12, so a false match among these 20,000 lookups is
// about a one in 20,000 event); adding twice adds once.
func TestSetHoldsWhatWasAdded(t *testing.T) {
	for _, bits := range []int{12, 16, 24} {
		s := NewSet(bits)
		added := map[suppression.StorageKey]bool{}
		a, b := SaltOf("default"), SaltOf("brand2")
		for range 50_000 {
			k := randomKey(t)
			require.True(t, s.Add(a, &k))
			require.False(t, s.Add(a, &k), "a second add is not new")
			added[k] = true
		}
		require.EqualValues(t, len(added), s.Len())
		for k := range added {
			require.True(t, s.Has(a, &k), "bits %d: an added key is missing", bits)
		}
		others, falseMatches := 0, 0
		for k := range added {
			if s.Has(b, &k) {
				falseMatches++
			}
			o := randomKey(t)
			if s.Has(a, &o) {
				falseMatches++
			}
			if others++; others == 10_000 {
				break
			}
		}
		require.Zero(t, falseMatches, "bits %d: keys never added (or added in another namespace) found", bits)
		require.Positive(t, s.Bytes())
	}
}

// TestSetKeepsWhatTheStoreKeeps: the set tells keys apart by their leading
// shard bits and bytes 3 to 6, the part every store layout keeps; a key
// rebuilt from the store's bucket and field (other bytes zero) is the same
// key to it.
func TestSetKeepsWhatTheStoreKeeps(t *testing.T) {
	s := NewSet(16)
	salt := SaltOf("default")
	k := randomKey(t)
	s.Add(salt, &k)
	stored := k
	stored[2] = 0 // below 16 bucket bits
	clear(stored[19:])
	require.True(t, s.Has(salt, &stored))
	other := k
	other[4] ^= 1
	require.False(t, s.Has(salt, &other))
	other = k
	other[1] ^= 1
	require.False(t, s.Has(salt, &other))
}

// TestSetConcurrent adds and looks up from many goroutines (for the race
// detector): nothing added is ever missing.
func TestSetConcurrent(t *testing.T) {
	s := NewSet(8)
	salt := SaltOf("default")
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 2000 {
				k := randomKey(t)
				s.Add(salt, &k)
				if !s.Has(salt, &k) {
					t.Error("a key just added is missing")
					return
				}
			}
		})
	}
	wg.Wait()
	require.EqualValues(t, 16000, s.Len())
}

// TestSetSearchAgreesWithBinarySearch: the guessing search of a shard
// answers as slices.BinarySearch does, for both fingerprint widths, on
// random shards (the usual case), on shards whose values bunch at one end
// or sit at the extremes (the guess far off: the scan gives way to halving)
// and on the smallest shards; every value present, its neighbours, 0 and
// the largest value are asked.
func TestSetSearchAgreesWithBinarySearch(t *testing.T) {
	testSearch[uint32](t)
	testSearch[uint16](t)
}

func testSearch[F fingerprint](t *testing.T) {
	s := newFPSet[F](DefaultShardBits)
	top := F(0) - 1 // the largest fingerprint
	r := mrand.New(mrand.NewPCG(1, 2))
	sorted := func(xs []F) []F { xs = slices.Clone(xs); slices.Sort(xs); return slices.Compact(xs) }
	var shards [][]F
	for _, n := range []int{1, 2, 3, 17, 150, 1000, 5000} {
		uniform := make([]F, n)
		low := make([]F, n)
		high := make([]F, n)
		for i := range n {
			uniform[i] = F(r.Uint64())
			low[i] = F(r.IntN(n * 2))
			high[i] = top - F(r.IntN(n*2))
		}
		ends := []F{0, top}
		if n > 2 {
			ends = []F{0, 1, top / 2, top - 1, top}
		}
		shards = append(shards, sorted(uniform), sorted(low), sorted(high), sorted(append(slices.Clone(low[:n/2]), high[:n/2]...)), sorted(ends))
	}
	asked := 0
	for _, xs := range shards {
		check := func(fp F) {
			_, want := slices.BinarySearch(xs, fp)
			if got := s.search(xs, fp); got != want {
				t.Fatalf("%T: search(%d) in a shard of %d = %v, binary search says %v", fp, fp, len(xs), got, want)
			}
			asked++
		}
		for _, x := range xs {
			check(x)
			check(x - 1)
			check(x + 1)
		}
		check(0)
		check(top)
		for range 1000 {
			check(F(r.Uint64()))
		}
		require.False(t, s.search(nil, 0))
	}
	require.Greater(t, asked, 10_000)
}
