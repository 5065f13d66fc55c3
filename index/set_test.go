package index

import (
	"crypto/rand"
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
