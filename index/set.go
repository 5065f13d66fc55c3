package index

import (
	"encoding/binary"
	"hash/fnv"
	"slices"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/suppressd/suppressd/suppression"
)

// Set is a set of storage keys in a compact form: the key's leading shard
// bits pick one of 2^bits shards, and a 32-bit fingerprint (the key's bytes
// 3 to 6, mixed with the namespace) is kept, sorted, in that shard. With the
// default 16 shard bits a key costs about 4.3 bytes at ten million keys
// (BenchmarkSetMemory), and an absent key matches one that is present with a
// chance of keys/2^48 (a few in a hundred million at ten million keys): the
// Redis read that confirms every match pays for that.
//
// Keys are only ever added: a record, once in a generation, stays (a lift is
// a tombstone), and a new generation gets a new Set.
//
// Safe for concurrent use: lookups take a shard's stripe read lock, adds its
// write lock.
type Set = fpSet[uint32]

// fingerprint is what a shard keeps of a key. Only uint32 is used; uint16
// (a filter, two bytes a key, a false match per 2^32/keys lookups) is
// measured beside it by BenchmarkSetMemory.
type fingerprint interface{ ~uint16 | ~uint32 }

type fpSet[F fingerprint] struct {
	bits   uint
	shift  uint // of the 32 fingerprint bits, how many are dropped
	shards [][]F
	locks  []sync.RWMutex
	mask   uint32
	n      atomic.Int64
	bytes  atomic.Int64 // the shards' backing arrays
}

// maxStripes bounds the locks of a set: enough that lookups from every core
// rarely meet an add on one.
const maxStripes = 1024

// NewSet returns an empty set of 2^bits shards. bits must not exceed what the
// store keeps whole of a key's leading bits (redisstore's bucket bits), nor
// 24; DefaultShardBits suits ten to a few hundred million keys.
func NewSet(bits int) *Set { return newFPSet[uint32](bits) }

// DefaultShardBits is the shard bits of the index: 65,536 shards, 1.5 MiB of
// slice headers whatever the number of keys.
const DefaultShardBits = 16

func newFPSet[F fingerprint](bits int) *fpSet[F] {
	bits = min(max(bits, 0), 24)
	stripes := min(1<<bits, maxStripes)
	var zero F
	return &fpSet[F]{
		bits:   uint(bits),
		shift:  32 - 8*uint(unsafe.Sizeof(zero)),
		shards: make([][]F, 1<<bits),
		locks:  make([]sync.RWMutex, stripes),
		mask:   uint32(stripes - 1),
	}
}

// Salt is a namespace's part in the fingerprints: the same storage key in two
// namespaces is two keys.
type Salt uint32

// SaltOf returns the salt of namespace ns.
func SaltOf(ns string) Salt {
	h := fnv.New32a()
	_, _ = h.Write([]byte(ns))
	return Salt(h.Sum32())
}

func (s *fpSet[F]) locate(salt Salt, k *suppression.StorageKey) (uint32, F) {
	top := uint32(k[0])<<16 | uint32(k[1])<<8 | uint32(k[2])
	fp := (binary.BigEndian.Uint32(k[3:7]) ^ uint32(salt)) >> s.shift
	return top >> (24 - s.bits), F(fp)
}

// Has reports whether the key was added (or, rarely, another whose
// fingerprint is the same).
func (s *fpSet[F]) Has(salt Salt, k *suppression.StorageKey) bool {
	sh, fp := s.locate(salt, k)
	l := &s.locks[sh&s.mask]
	l.RLock()
	ok := s.search(s.shards[sh], fp)
	l.RUnlock()
	return ok
}

// search looks for fp in the sorted shard xs. The fingerprints of random
// keys are spread evenly, so fp's place is guessed from its value: it is
// within a few places of the guess (the deviation of a shard of n random
// keys is about sqrt(n)/2: six at ten million keys, one or two cache
// lines, where a binary search touches eight). The scan goes from the
// guess for at most maxScan places, then the rest is searched by halves,
// so a shard whose fingerprints are not spread evenly costs a binary
// search, never a scan of the shard.
func (s *fpSet[F]) search(xs []F, fp F) bool {
	n := len(xs)
	if n == 0 {
		return false
	}
	// fp < 2^w, w the fingerprint's width (32 - shift), so i < n.
	i := int(uint64(fp) * uint64(n) >> (32 - s.shift))
	if xs[i] < fp {
		end := min(n, i+1+maxScan)
		for i++; i < end && xs[i] < fp; i++ {
		}
		if i == end && end < n {
			_, ok := slices.BinarySearch(xs[end:], fp)
			return ok
		}
		return i < n && xs[i] == fp
	}
	// xs[i] >= fp: fp is at i or before it.
	start := max(0, i-maxScan)
	for ; i > start && xs[i] > fp; i-- {
	}
	if xs[i] > fp { // i == start, every place scanned above fp
		_, ok := slices.BinarySearch(xs[:start], fp)
		return ok
	}
	return xs[i] == fp
}

// maxScan is how far search scans from its guess before it halves.
const maxScan = 16

// Add adds a key and reports whether it was new.
func (s *fpSet[F]) Add(salt Salt, k *suppression.StorageKey) bool {
	sh, fp := s.locate(salt, k)
	l := &s.locks[sh&s.mask]
	l.Lock()
	xs := s.shards[sh]
	i, found := slices.BinarySearch(xs, fp)
	if found {
		l.Unlock()
		return false
	}
	if len(xs) == cap(xs) {
		// Shards grow by an eighth: keys are spread evenly, so every shard
		// is near the same size and a doubling would leave a third of the
		// memory unused on average.
		grown := make([]F, len(xs), len(xs)+max(4, len(xs)/8))
		copy(grown, xs)
		s.bytes.Add(int64(cap(grown)-cap(xs)) * int64(unsafe.Sizeof(fp)))
		xs = grown
	}
	xs = xs[:len(xs)+1]
	copy(xs[i+1:], xs[i:])
	xs[i] = fp
	s.shards[sh] = xs
	l.Unlock()
	s.n.Add(1)
	return true
}

// Len is how many keys were added (fingerprints, strictly: two keys of one
// shard with the same fingerprint count once).
func (s *fpSet[F]) Len() int64 { return s.n.Load() }

// Bytes is the memory the set holds: its fingerprints' arrays, their slice
// headers and the locks.
func (s *fpSet[F]) Bytes() int64 {
	return s.bytes.Load() + int64(len(s.shards))*int64(unsafe.Sizeof([]F(nil))) +
		int64(len(s.locks))*int64(unsafe.Sizeof(sync.RWMutex{}))
}
