// Package redisstore keeps the suppression list in Redis (a single node,
// Sentinel or Redis Cluster, through go-redis's UniversalClient).
//
// # Layout
//
// A storage key (suppression.Keyer: 32 bytes, an HMAC when a pepper is set)
// is split in two. Its first BucketBits bits name a bucket, a Redis hash
// "<prefix>:<generation>:{<namespace>:<group hex>}<bucket hex>", where the
// group is the first GroupBits bits and, in braces, the cluster hash tag;
// bytes 3 to 18 are the
// field inside it; the value is the key's record (codec.go): every register
// of every scope. Many small hashes stay in Redis's compact listpack encoding
// (set hash-max-listpack-entries above the expected entries per bucket),
// which is what keeps an identifier near 70 bytes instead of the ~170 of a
// hash per key. One script call writes the buckets of one group, one slot:
// nothing spans two cluster slots. The generation ("g1", "g2", ...) lets a rebuild fill a fresh
// layout while readers use the old one, then switch.
//
// # Contract
//
// Apply runs the domain's merge rule inside one Lua script per bucket, so a
// record is read, merged and written atomically: any number of writers (API
// replicas, consumers during a rebalance) may apply concurrently and the
// result is the same as any serial order, which by the merge rule is the same
// as every other order. Apply is idempotent: re-applying a batch after a
// failure, or replaying a topic, changes nothing. A batch is not atomic as a
// whole: after an error some buckets may be written and others not, and the
// caller retries the whole batch. Get reads without locking; it sees each
// record either before or after any one Apply. A Store is safe for
// concurrent use.
package redisstore

import (
	"context"
	_ "embed"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/suppressd/suppressd/suppression"
)

//go:embed apply.lua
var applyLua string

// Layout names: bump LayoutVersion whenever the bucketing, the field or the
// record format changes; the normalisation version is part of it because it
// decides what the keys hash.
const LayoutVersion = 1

// Options configure a Store. The zero value plus a client is usable.
type Options struct {
	// Prefix starts every key. Default "sd".
	Prefix string
	// Generation is the layout generation to read and write, e.g. "g1".
	// Default "g1". A rebuild writes a new generation and switches to it.
	Generation string
	// BucketBits is how many leading bits of a storage key pick its bucket,
	// 0 to 24. Default 16 (65,536 buckets per namespace: about 15 keys per
	// bucket at a million identifiers, 1,500 at a hundred million). Part of
	// the layout: changing it needs a rebuild.
	BucketBits int
	// GroupBits is how many leading bits pick a bucket's slot group: the
	// buckets of one group share a cluster slot (a hash tag), so one script
	// call can write all of a batch's keys in that group. 1 to BucketBits;
	// default 8 (256 groups per namespace, spread over the cluster's
	// masters). Part of the layout.
	GroupBits int
	// Keyer turns match keys into storage keys; its pepper must be the same
	// on every replica. Default: no pepper.
	Keyer suppression.Keyer
}

func (o *Options) setDefaults() error {
	if o.Prefix == "" {
		o.Prefix = "sd"
	}
	if o.Generation == "" {
		o.Generation = "g1"
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
	if strings.ContainsAny(o.Prefix+o.Generation, ":{} ") {
		return fmt.Errorf("prefix and generation may not contain ':', '{', '}' or spaces")
	}
	return nil
}

// Store is the Redis suppression store.
type Store struct {
	rdb   redis.UniversalClient
	opts  Options
	apply *redis.Script
}

// New returns a Store on an existing client. It does not contact Redis.
func New(rdb redis.UniversalClient, opts Options) (*Store, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	return &Store{rdb: rdb, opts: opts, apply: redis.NewScript(applyLua)}, nil
}

// Write is one change to one scope of one match key.
type Write struct {
	Namespace string
	Key       suppression.MatchKey
	Scope     suppression.Scope
	Change    suppression.Change
}

// location is where a match key's record lives: a field of a bucket, whose
// key names its slot group in a hash tag.
type location struct {
	group  string
	bucket string
	field  string
}

func (s *Store) locate(ns string, k suppression.MatchKey) location {
	sk := s.opts.Keyer.StorageKey(k)
	top := uint32(sk[0])<<16 | uint32(sk[1])<<8 | uint32(sk[2])
	b := top >> (24 - s.opts.BucketBits)
	g := top >> (24 - s.opts.GroupBits)
	group := s.opts.Prefix + ":" + s.opts.Generation + ":{" + ns + ":" + hexDigits(g, s.opts.GroupBits) + "}"
	return location{group: group, bucket: group + hexDigits(b, s.opts.BucketBits), field: string(sk[3:19])}
}

func hexDigits(v uint32, bits int) string {
	var hb [6]byte
	hex.Encode(hb[:], []byte{byte(v >> 16), byte(v >> 8), byte(v)})
	return string(hb[6-(bits+3)/4:])
}

// Apply folds writes into the store and returns how many changed a record
// (a duplicate or an event older than what is held changes nothing). See the
// package doc for what is atomic.
func (s *Store) Apply(ctx context.Context, writes []Write) (int, error) {
	if len(writes) == 0 {
		return 0, nil
	}
	// Fold the batch's changes per record in Go first: the script then gets
	// one reduced state per field, and a new field is a plain HSETNX. Buckets
	// of one slot group go to one script call.
	type fieldState struct {
		key   int // index into the group's keys
		field string
		rec   Record
	}
	type group struct {
		keys   []string
		keyIdx map[string]int
		fields []fieldState
		index  map[location]int
	}
	groups := map[string]*group{}
	order := []string{}
	for _, w := range writes {
		if err := suppression.CheckName(w.Namespace); err != nil {
			return 0, fmt.Errorf("namespace: %w", err)
		}
		loc := s.locate(w.Namespace, w.Key)
		g, ok := groups[loc.group]
		if !ok {
			g = &group{keyIdx: map[string]int{}, index: map[location]int{}}
			groups[loc.group] = g
			order = append(order, loc.group)
		}
		fi, ok := g.index[loc]
		if !ok {
			ki, ok := g.keyIdx[loc.bucket]
			if !ok {
				ki = len(g.keys)
				g.keyIdx[loc.bucket] = ki
				g.keys = append(g.keys, loc.bucket)
			}
			fi = len(g.fields)
			g.index[loc] = fi
			g.fields = append(g.fields, fieldState{key: ki + 1, field: loc.field, rec: Record{}})
		}
		rec := g.fields[fi].rec
		rec[w.Scope], _ = rec[w.Scope].Apply(w.Change)
	}
	args := make([][]any, len(order))
	for gi, name := range order {
		g := groups[name]
		a := make([]any, 0, 4*len(g.fields))
		for _, fs := range g.fields {
			var blob []byte
			n := 0
			for scope, st := range fs.rec {
				for _, r := range st {
					var err error
					if blob, err = appendEntry(blob, scope, r); err != nil {
						return 0, fmt.Errorf("encode change: %w", err)
					}
					n++
				}
			}
			a = append(a, fs.key, fs.field, blob, n)
		}
		args[gi] = a
	}
	run := func() (int, error) {
		cmds := make([]*redis.Cmd, 0, len(order))
		_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for gi, name := range order {
				cmds = append(cmds, s.apply.EvalSha(ctx, p, groups[name].keys, args[gi]...))
			}
			return nil
		})
		changed := 0
		for _, c := range cmds {
			n, cerr := c.Int()
			if cerr != nil {
				return 0, cerr
			}
			changed += n
		}
		return changed, err
	}
	changed, err := run()
	if err != nil && isNoScript(err) {
		// A restarted or failed-over Redis has lost the script cache. The
		// batch is idempotent, so load the script everywhere and run it all
		// again.
		if lerr := s.loadScript(ctx); lerr != nil {
			return 0, fmt.Errorf("load apply script: %w", lerr)
		}
		changed, err = run()
	}
	if err != nil {
		return 0, fmt.Errorf("apply %d writes: %w", len(writes), err)
	}
	return changed, nil
}

func isNoScript(err error) bool { return err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") }

func (s *Store) loadScript(ctx context.Context) error {
	if c, ok := s.rdb.(*redis.ClusterClient); ok {
		return c.ForEachShard(ctx, func(ctx context.Context, shard *redis.Client) error {
			return s.apply.Load(ctx, shard).Err()
		})
	}
	return s.apply.Load(ctx, s.rdb).Err()
}

// Get returns the record of each match key in a namespace, in the order of
// keys; a key the store has never seen gets a nil Record. Reads are
// pipelined, one HMGET per bucket.
func (s *Store) Get(ctx context.Context, ns string, keys []suppression.MatchKey) ([]Record, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	type slot struct {
		fields []string
		index  []int
	}
	buckets := map[string]*slot{}
	order := []string{}
	for i, k := range keys {
		loc := s.locate(ns, k)
		b, ok := buckets[loc.bucket]
		if !ok {
			b = &slot{}
			buckets[loc.bucket] = b
			order = append(order, loc.bucket)
		}
		b.fields = append(b.fields, loc.field)
		b.index = append(b.index, i)
	}
	cmds := make([]*redis.SliceCmd, len(order))
	var err error
	if len(order) == 1 {
		// One bucket (most single checks): a plain command, no pipeline.
		cmds[0] = s.rdb.HMGet(ctx, order[0], buckets[order[0]].fields...)
		err = cmds[0].Err()
	} else {
		_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, b := range order {
				cmds[i] = p.HMGet(ctx, b, buckets[b].fields...)
			}
			return nil
		})
	}
	if err != nil {
		return nil, fmt.Errorf("read %d keys: %w", len(keys), err)
	}
	out := make([]Record, len(keys))
	for i, b := range order {
		for j, v := range cmds[i].Val() {
			str, ok := v.(string)
			if !ok {
				continue
			}
			rec, err := decodeRecord([]byte(str))
			if err != nil {
				return nil, fmt.Errorf("bucket %s: %w", b, err)
			}
			out[buckets[b].index[j]] = rec
		}
	}
	return out, nil
}

// Ping reports whether Redis answers; readiness probes use it.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis ping: %w", err)
	}
	return nil
}
