package redisstore

import (
	"context"
	"encoding/hex"
	"errors"
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
	Record Record
}

// Key names the record as "<bucket hex>:<field hex>": the same text
// KeyOf gives for a match key filed there.
func (k ExportedKey) Key() string { return k.Bucket + ":" + hex.EncodeToString(k.Field[:]) }

// KeyOf returns the exported key of a match key, so a holder of an
// identifier can find its records in an export (and nobody else can).
func (g *Generations) KeyOf(k suppression.MatchKey) string {
	sk := g.opts.Keyer.StorageKey(k)
	top := uint32(sk[0])<<16 | uint32(sk[1])<<8 | uint32(sk[2])
	return hexDigits(top>>(24-g.opts.BucketBits), g.opts.BucketBits) + ":" + hex.EncodeToString(sk[3:19])
}

// Export calls fn for every record of namespace ns ("" for every namespace)
// in the active generation. It scans the buckets with SCAN (on every
// master of a cluster) and reads them one at a time with HGETALL, so its
// memory does not grow with the store. fn is never called concurrently;
// its error stops the export. A record written while the export runs may
// or may not be in it.
func (g *Generations) Export(ctx context.Context, ns string, fn func(ExportedKey) error) error {
	active, _, err := g.current(ctx)
	if err != nil {
		return err
	}
	if ns != "" {
		if err := suppression.CheckName(ns); err != nil {
			return fmt.Errorf("namespace: %w", err)
		}
	}
	prefix := g.opts.Prefix + ":" + active.opts.Generation + ":{"
	pattern := prefix + ns + ":*"
	if ns == "" {
		pattern = prefix + "*"
	}
	digits := (g.opts.BucketBits + 3) / 4
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
	switch c := g.rdb.(type) {
	case *redis.ClusterClient:
		return c.ForEachMaster(ctx, scan)
	case *redis.Client:
		return scan(ctx, c)
	}
	return errors.New("export needs a single-node, Sentinel or cluster client")
}

// parseBucketKey splits "<namespace>:<group>}<bucket>" (the part of a
// bucket's key after "{").
func parseBucketKey(s string, digits int) (ns, bucket string, ok bool) {
	tag, bucket, found := strings.Cut(s, "}")
	if !found || len(bucket) != digits {
		return "", "", false
	}
	i := strings.LastIndexByte(tag, ':')
	if i <= 0 {
		return "", "", false
	}
	if _, err := hex.DecodeString(padEven(bucket)); err != nil {
		return "", "", false
	}
	return tag[:i], bucket, true
}

func padEven(s string) string {
	if len(s)%2 == 1 {
		return "0" + s
	}
	return s
}
