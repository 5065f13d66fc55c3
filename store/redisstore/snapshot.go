package redisstore

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"

	"github.com/suppressd/suppressd/suppression"
)

// What an API replica's read index (package index) loads from the store: the
// active generation, named so that every build has a name of its own, and
// the keys of its records.

// ActiveGeneration names the active generation as the pointer says now,
// never from the Store's cached copy: "<generation>@<since>", where since is
// when it became active by the server's clock, so a generation emptied and
// rebuilt under the same name is told apart. It fails as Get does: no
// active generation is ErrNotBuilt, another layout ErrLayoutMismatch, no
// answer ErrUnavailable. One HGETALL of a small hash.
func (s *Store) ActiveGeneration(ctx context.Context) (string, error) {
	fields, err := s.rdb.HGetAll(ctx, s.key).Result()
	if err != nil {
		return "", fmt.Errorf("%w: read the generation pointer: %w", suppression.ErrUnavailable, err)
	}
	gen := fields["active"]
	if gen == "" {
		return "", errNoActive
	}
	if err := s.usable(fields, gen); err != nil {
		return "", err
	}
	return gen + "@" + fields["since:"+gen], nil
}

// SCAN's cost is the whole keyspace, whatever MATCH keeps (other
// generations, other prefixes, the publish log): scanCount keys a step keep
// the round trips few; a step's buckets are read bucketsPerTrip at a time, a
// few hundred kilobytes of fields a round trip at ten million keys.
const (
	scanCount      = 5000
	bucketsPerTrip = 256
)

// GenerationKeys calls fn with the storage key of every record of generation
// gen (as ActiveGeneration names it), one bucket at a time, by namespace.
// A storage key is passed as far as the store keeps it: its leading
// BucketBits bits and its bytes 3 to 18 are the key's, the rest zero. It
// scans each master (SCAN ... TYPE hash) and reads the buckets' fields
// (HKEYS, pipelined); a record written while it runs may or may not be
// passed, one present when it starts always is (a bucket is never deleted
// while its generation lives). fn is not called concurrently; its error
// stops the scan. The values are not read: a replica's index needs only
// which keys have a record.
func (s *Store) GenerationKeys(ctx context.Context, gen string, fn func(ns string, keys []suppression.StorageKey) error) error {
	name, _, _ := strings.Cut(gen, "@")
	if name == "" || strings.ContainsAny(name, ":{} ") {
		return fmt.Errorf("generation %q", gen)
	}
	prefix := s.opts.Prefix + ":" + name + ":{"
	digits := (s.opts.BucketBits + 3) / 4
	var mu sync.Mutex // masters are scanned in parallel; fn is called by one at a time
	var keys []suppression.StorageKey
	// pass hands the fields of some buckets to fn.
	pass := func(names []string, fields []*redis.StringSliceCmd) error {
		mu.Lock()
		defer mu.Unlock()
		for i, n := range names {
			ns, bucket, ok := parseBucketKey(n[len(prefix):], digits)
			if !ok {
				continue // not a bucket of this layout
			}
			b, err := strconv.ParseUint(bucket, 16, 32)
			if err != nil {
				continue
			}
			top := uint32(b) << (24 - s.opts.BucketBits)
			keys = keys[:0]
			for _, f := range fields[i].Val() {
				if len(f) != 16 {
					continue
				}
				var k suppression.StorageKey
				k[0], k[1], k[2] = byte(top>>16), byte(top>>8), byte(top)
				copy(k[3:19], f)
				keys = append(keys, k)
			}
			if err := fn(ns, keys); err != nil {
				return err
			}
		}
		return nil
	}
	scan := func(ctx context.Context, c *redis.Client) error {
		var cursor uint64
		for {
			all, next, err := c.ScanType(ctx, cursor, prefix+"*", scanCount, "hash").Result()
			if err != nil {
				return fmt.Errorf("%w: scan generation %s: %w", suppression.ErrUnavailable, name, err)
			}
			for len(all) > 0 {
				names := all[:min(len(all), bucketsPerTrip)]
				all = all[len(names):]
				fields := make([]*redis.StringSliceCmd, len(names))
				_, err = c.Pipelined(ctx, func(p redis.Pipeliner) error {
					for i, n := range names {
						fields[i] = p.HKeys(ctx, n)
					}
					return nil
				})
				if err != nil {
					return fmt.Errorf("%w: read the buckets of generation %s: %w", suppression.ErrUnavailable, name, err)
				}
				if err := pass(names, fields); err != nil {
					return err
				}
			}
			if cursor = next; cursor == 0 {
				return nil
			}
		}
	}
	return forEachMaster(ctx, s.rdb, scan)
}

// BucketOf names where a storage key's record lives in generation gen:
// its bucket hash and its field. For tests and debugging, which must
// reach past the store (a record lost as a failed-over replica loses it).
func (o Options) BucketOf(gen, ns string, sk suppression.StorageKey) (bucket, field string) {
	if err := o.setDefaults(); err != nil {
		return "", ""
	}
	loc := names{opts: o, gen: gen}.locate(ns, sk)
	return loc.bucket, loc.field
}
