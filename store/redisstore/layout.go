// Package redisstore keeps the suppression list in Redis (a single node,
// Sentinel or Redis Cluster, through go-redis's UniversalClient). It
// implements suppression.Store; the contract (what each method promises
// under concurrency, outages and layout mismatch) is written there.
//
// # Layout
//
// A storage key (32 bytes, an HMAC under the pepper) is split in two. Its
// first BucketBits bits name a bucket, a Redis hash
//
//	<prefix>:<generation>:{<group hex>}<namespace>:<bucket hex>
//
// where the group is the first GroupBits bits and, in braces, the cluster
// hash tag; bytes 3 to 18 are the field inside it; the value is the key's
// record (codec.go): every register of every scope. Many small hashes stay
// in Redis's compact listpack encoding (set hash-max-listpack-entries above
// the expected entries per bucket), which is what keeps an identifier near
// 70 bytes instead of the ~170 of a hash per key.
//
// Each slot group of a generation also has a marker, the string key
//
//	<prefix>:<generation>:{<group hex>}
//
// in the same cluster slot as the group's buckets. Markers are written when
// a generation is built (rebuilds.go), never by a read or an apply. Every
// read (a MULTI of the marker's EXISTS and the buckets' HMGETs) and every
// write (apply.lua) checks a group's marker in the same atomic step, so a
// server that lost its data (restarted empty, FLUSHALL, failed
// over to an empty replica, one emptied master of a cluster) answers "not
// built" instead of "no record": an emptied store is not an empty
// suppression list.
//
// The generation ("g1", "g2", ...) lets a rebuild fill a fresh layout
// while readers use the old one, then switch. The hash
// "<prefix>:generations" says which generation is active, which is being
// built, and the layout fingerprint each was written with (store.go).
package redisstore

import (
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/suppressd/suppressd/suppression"
)

// LayoutVersion names the bucketing and the key names: bump it whenever
// either changes. Version 2 moved the namespace out of the hash tag, so a
// group's marker shares its buckets' slot. The record format is versioned
// by each record's first byte instead (codec.go): a build reads every
// format it knows, so a new one needs no new layout.
const LayoutVersion = 2

// Options configure a Store. The zero value plus a client is usable.
type Options struct {
	// Prefix starts every key. Default "sd".
	Prefix string
	// BucketBits is how many leading bits of a storage key pick its bucket,
	// 1 to 24. Default 16 (65,536 buckets per namespace: about 15 keys per
	// bucket at a million identifiers, 1,500 at a hundred million). Part of
	// the layout: changing it needs a rebuild.
	BucketBits int
	// GroupBits is how many leading bits pick a bucket's slot group: the
	// buckets of one group share a cluster slot (a hash tag) and a marker,
	// so one script call can check the marker and write all of a batch's
	// keys in that group. 1 to BucketBits; default 8 (256 groups, spread
	// over the cluster's masters). Part of the layout.
	GroupBits int
	// Keying is the fingerprint of the keyer whose storage keys this store
	// is given (suppression.Keyer.Fingerprint): replicas with another
	// pepper file everyone elsewhere, so it is part of the layout.
	Keying string
	// Refresh is how often the generation pointer is re-read. Default 1s.
	Refresh time.Duration
	// Durability is when an Apply counts as done (see Durability).
	// Default: accepted.
	Durability Durability
}

// DefaultRefresh is how often the generation pointer is re-read.
const DefaultRefresh = time.Second

func (o *Options) setDefaults() error {
	if o.Prefix == "" {
		o.Prefix = "sd"
	}
	if o.BucketBits == 0 {
		o.BucketBits = 16
	}
	if o.BucketBits < 1 || o.BucketBits > 24 {
		return fmt.Errorf("bucket bits %d: want 1 to 24", o.BucketBits)
	}
	if o.GroupBits == 0 {
		o.GroupBits = min(8, o.BucketBits)
	}
	if o.GroupBits < 1 || o.GroupBits > o.BucketBits {
		return fmt.Errorf("group bits %d: want 1 to the bucket bits (%d)", o.GroupBits, o.BucketBits)
	}
	if strings.ContainsAny(o.Prefix, ":{} ") {
		return fmt.Errorf("prefix %q: may not contain ':', '{', '}' or spaces", o.Prefix)
	}
	if o.Refresh <= 0 {
		o.Refresh = DefaultRefresh
	}
	return nil
}

// SwitchGrace is how long after a change of the generation pointer every
// Store laid out by o is sure to have re-read it: two refresh periods and a
// second for a call in flight.
func (o Options) SwitchGrace() time.Duration {
	if o.Refresh <= 0 {
		o.Refresh = DefaultRefresh
	}
	return 2*o.Refresh + time.Second
}

// Validate checks the options without touching Redis.
func (o Options) Validate() error { return o.setDefaults() }

// Layout is the fingerprint of everything that decides where a record
// lives: the layout and normalisation versions, the bucket and group bits
// and the keyer's fingerprint. Generations record it; a replica whose own
// differs refuses to read or write.
func (o Options) Layout() string {
	return fmt.Sprintf("v%d.n%d.b%d.g%d.k%s", LayoutVersion, suppression.NormalizationVersion,
		o.BucketBits, o.GroupBits, o.Keying)
}

// location is where a storage key's record lives.
type location struct {
	group  uint32 // slot group number
	bucket string // the bucket's key
	field  string
}

// names builds the keys of one generation.
type names struct {
	opts Options
	gen  string
}

// top returns the first 24 bits of a storage key.
func top(sk suppression.StorageKey) uint32 {
	return uint32(sk[0])<<16 | uint32(sk[1])<<8 | uint32(sk[2])
}

// fieldStart and fieldEnd delimit the part of a storage key that names
// its field in the bucket: the bytes after the 24 bits a bucket can use.
const (
	fieldStart, fieldEnd = 3, 19
	fieldLen             = fieldEnd - fieldStart
)

func (n names) locate(ns string, sk suppression.StorageKey) location {
	b := n.bucketOf(sk)
	g := n.groupOf(b)
	return location{group: g, bucket: n.bucket(ns, b), field: string(sk[fieldStart:fieldEnd])}
}

// bucketOf returns the number of a storage key's bucket.
func (n names) bucketOf(sk suppression.StorageKey) uint32 { return top(sk) >> (24 - n.opts.BucketBits) }

// groupOf returns the slot group of a bucket.
func (n names) groupOf(bucket uint32) uint32 { return bucket >> (n.opts.BucketBits - n.opts.GroupBits) }

// bucket returns the key of a bucket in namespace ns: its group's marker,
// the namespace, ':' and the bucket's number in hex.
func (n names) bucket(ns string, bucket uint32) string {
	g := n.groupOf(bucket)
	var b strings.Builder
	b.Grow(len(n.opts.Prefix) + len(n.gen) + len(ns) + 18)
	b.WriteString(n.opts.Prefix)
	b.WriteByte(':')
	b.WriteString(n.gen)
	b.WriteString(":{")
	appendHex(&b, g, n.opts.GroupBits)
	b.WriteByte('}')
	b.WriteString(ns)
	b.WriteByte(':')
	appendHex(&b, bucket, n.opts.BucketBits)
	return b.String()
}

// appendHex writes the low bits of v as hex digits, as hexDigits does.
func appendHex(b *strings.Builder, v uint32, bits int) {
	const digits = "0123456789abcdef"
	for shift := ((bits+3)/4 - 1) * 4; shift >= 0; shift -= 4 {
		b.WriteByte(digits[v>>shift&0xf])
	}
}

// marker is a group's marker key, also the prefix of its buckets' keys.
func (n names) marker(g uint32) string {
	return n.opts.Prefix + ":" + n.gen + ":{" + hexDigits(g, n.opts.GroupBits) + "}"
}

// groups is how many slot groups the layout has.
func (n names) groups() uint32 { return 1 << n.opts.GroupBits }

// pattern matches every key of the generation.
func (n names) pattern() string { return n.opts.Prefix + ":" + n.gen + ":*" }

func hexDigits(v uint32, bits int) string {
	var hb [6]byte
	hex.Encode(hb[:], []byte{byte(v >> 16), byte(v >> 8), byte(v)})
	return string(hb[6-(bits+3)/4:])
}

// KeyText names a storage key's record as an export shows it,
// "<bucket hex>:<field hex>": all of the storage key the store keeps.
func (o Options) KeyText(sk suppression.StorageKey) string {
	return hexDigits(top(sk)>>(24-o.BucketBits), o.BucketBits) + ":" + hex.EncodeToString(sk[fieldStart:fieldEnd])
}
