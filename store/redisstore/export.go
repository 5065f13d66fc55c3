package redisstore

import (
	"context"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"

	"github.com/suppressd/suppressd/suppression"
)

// ExportedKey is one record of the store as an export sees it: where it is
// filed and every register of every scope. There is no identifier in it:
// the store holds none.
type ExportedKey struct {
	Namespace string
	// Bucket is the bucket's number in hex (BucketBits of the storage
	// key's leading bits) and Field the storage key's bytes 3 to 18: all
	// of the storage key the store keeps.
	Bucket string
	Field  [16]byte
	Record suppression.Record
}

// Key names the record as "<bucket hex>:<field hex>": the same text
// Options.KeyText gives for a storage key filed there, so a holder of an
// identifier can find its records in an export (and nobody else can).
func (k ExportedKey) Key() string { return k.Bucket + ":" + hex.EncodeToString(k.Field[:]) }

// Export calls fn for every record of namespace ns ("" for every namespace)
// in the active generation, which must be ready. It scans the buckets with SCAN (on every
// master of a cluster) and reads them one at a time with HGETALL, so its
// memory does not grow with the store. fn is never called concurrently;
// its error stops the export. A record written while the export runs may
// or may not be in it.
func (s *Store) Export(ctx context.Context, ns string, fn func(ExportedKey) error) error {
	if err := s.Ready(ctx); err != nil {
		return err
	}
	p, err := s.current(ctx)
	if err != nil {
		return err
	}
	if ns != "" {
		if err := suppression.CheckName(ns); err != nil {
			return fmt.Errorf("namespace: %w", err)
		}
	}
	prefix := s.opts.Prefix + ":" + p.active.gen + ":{"
	pattern := prefix + "*}" + ns + ":*"
	if ns == "" {
		pattern = prefix + "*"
	}
	digits := (s.opts.BucketBits + 3) / 4
	var mu sync.Mutex // masters are scanned in parallel; fn is called by one at a time
	scan := func(ctx context.Context, c *redis.Client) error {
		iter := c.Scan(ctx, 0, pattern, 500).Iterator()
		for iter.Next(ctx) {
			name := iter.Val()
			keyNS, bucket, ok := parseBucketKey(name[len(prefix):], digits)
			if !ok {
				continue // not a bucket of this layout
			}
			fields, err := c.HGetAll(ctx, name).Result()
			if err != nil {
				return fmt.Errorf("read bucket %s: %w", name, err)
			}
			for f, v := range fields {
				if len(f) != 16 {
					continue
				}
				rec, err := decodeRecord([]byte(v))
				if err != nil {
					return fmt.Errorf("bucket %s: %w", name, err)
				}
				k := ExportedKey{Namespace: keyNS, Bucket: bucket, Record: rec}
				copy(k.Field[:], f)
				mu.Lock()
				err = fn(k)
				mu.Unlock()
				if err != nil {
					return err
				}
			}
		}
		return iter.Err()
	}
	return forEachMaster(ctx, s.rdb, scan)
}

// parseBucketKey splits "<group>}<namespace>:<bucket>" (the part of a
// bucket's key after "{"); a group's marker ("<group>}") is not a bucket.
func parseBucketKey(s string, digits int) (ns, bucket string, ok bool) {
	_, rest, found := strings.Cut(s, "}")
	i := strings.LastIndexByte(rest, ':')
	if !found || i <= 0 || len(rest)-i-1 != digits {
		return "", "", false
	}
	ns, bucket = rest[:i], rest[i+1:]
	if _, err := hex.DecodeString(padEven(bucket)); err != nil {
		return "", "", false
	}
	return ns, bucket, true
}

func padEven(s string) string {
	if len(s)%2 == 1 {
		return "0" + s
	}
	return s
}
