package index

import (
	"testing"

	"github.com/suppressd/suppressd/suppression"
)

var benchSet *Set

// BenchmarkSetHas looks up absent keys in a set of
// SUPPRESSD_BENCH_KEYS (default 10,000,000) keys.
func BenchmarkSetHas(b *testing.B) {
	n := benchEnv("SUPPRESSD_BENCH_KEYS", 10_000_000)
	salt := SaltOf("default")
	if benchSet == nil || benchSet.Len() != int64(n) {
		benchSet = NewSet(DefaultShardBits)
		ks := newKeyStream(1)
		for range n {
			k := ks.next()
			benchSet.Add(salt, &k)
		}
	}
	probe := make([]suppression.StorageKey, 1<<16)
	ks := newKeyStream(9)
	for i := range probe {
		probe[i] = ks.next()
	}
	b.ResetTimer()
	hits := 0
	for i := 0; i < b.N; i++ {
		if benchSet.Has(salt, &probe[i&(len(probe)-1)]) {
			hits++
		}
	}
	if hits > b.N/1000+1 {
		b.Fatal(hits)
	}
}
