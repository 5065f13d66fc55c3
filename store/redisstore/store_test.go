package redisstore

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	mrand "math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/internal/testenv"
	"github.com/suppressd/suppressd/store/storetest"
	"github.com/suppressd/suppressd/suppression"
)

// servers returns a client for each real Redis topology the test command
// started, checked to answer.
func servers(t *testing.T) map[string]redis.UniversalClient {
	t.Helper()
	out := testenv.RedisClients(t)
	for name, c := range out {
		require.NoError(t, c.Ping(context.Background()).Err(), name)
	}
	return out
}

func uniquePrefix() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "t" + hex.EncodeToString(b[:])
}

// newStore returns a store under a fresh prefix whose first generation is
// built (empty), as a rebuild of an empty log leaves it.
func newStore(t testing.TB, rdb redis.UniversalClient, bits int) *Store {
	t.Helper()
	return buildStore(t, rdb, Options{Prefix: uniquePrefix(), BucketBits: bits, Keying: "test"})
}

func buildStore(t testing.TB, rdb redis.UniversalClient, opts Options) *Store {
	t.Helper()
	ctx := context.Background()
	r, err := NewRebuilds(rdb, opts)
	require.NoError(t, err)
	_, err = r.Begin(ctx, "g1", "test", time.Minute)
	require.NoError(t, err)
	require.NoError(t, r.Finish(ctx, "g1", "test"))
	s, err := New(rdb, opts)
	require.NoError(t, err)
	require.NoError(t, s.Ready(ctx))
	return s
}

func key(i int) suppression.StorageKey {
	return sha256.Sum256([]byte{byte(i), byte(i >> 8)})
}

// TestContract runs the store contract (store/storetest) on every real
// topology: the Lua merge rule must give exactly the domain's states. Then
// again through the confirmed write path (WAIT on each master's own
// connection), which routes the scripts itself on a cluster.
func TestContract(t *testing.T) {
	for name, rdb := range servers(t) {
		t.Run(name, func(t *testing.T) {
			storetest.Run(t, func(t *testing.T) suppression.Store { return newStore(t, rdb, 4) }) // few buckets: many keys share one
		})
		t.Run(name+"/confirmed writes", func(t *testing.T) {
			storetest.Run(t, func(t *testing.T) suppression.Store {
				return buildStore(t, rdb, Options{Prefix: uniquePrefix(), BucketBits: 4, Durability: Durability{wait: true}})
			})
		})
	}
}

func TestScriptCacheLoss(t *testing.T) {
	for name, rdb := range servers(t) {
		t.Run(name, func(t *testing.T) {
			s := newStore(t, rdb, 16)
			ctx := context.Background()
			ws := storetest.RandomWrites(mrand.New(mrand.NewPCG(1, 1)), "default", 50, 20)
			_, err := s.Apply(ctx, ws[:25])
			require.NoError(t, err)
			// A failover or restart empties the script cache.
			if c, ok := rdb.(*redis.ClusterClient); ok {
				require.NoError(t, c.ForEachShard(ctx, func(ctx context.Context, n *redis.Client) error { return n.ScriptFlush(ctx).Err() }))
			} else {
				require.NoError(t, rdb.ScriptFlush(ctx).Err())
			}
			_, err = s.Apply(ctx, ws[25:])
			require.NoError(t, err)
			storetest.RequireState(t, s, ws, "after script flush")
		})
	}
}

// TestNothingRawInRedis writes events for real identifiers and scans every
// key and value the store wrote for the raw values and their plain hashes.
func TestNothingRawInRedis(t *testing.T) {
	n := suppression.Normalizer{DefaultRegion: "US"}
	ids := []suppression.Identifier{{Type: suppression.IDEmail, Value: "raw.person+tag@gmail.com"}, {Type: suppression.IDPhone, Value: "(800) 555-0100"}}
	mkeys, err := n.Expand(ids...)
	require.NoError(t, err)
	keyer := suppression.NewKeyer([]byte("test-pepper"))
	keys := keyer.StorageKeys(nil, mkeys)
	forbidden := []string{"raw.person", "rawperson", "8005550100", "gmail"}
	for _, k := range mkeys {
		forbidden = append(forbidden, hex.EncodeToString(k.Hash[:]), string(k.Hash[:8]))
	}
	for name, rdb := range servers(t) {
		t.Run(name, func(t *testing.T) {
			s := newStore(t, rdb, 16)
			ctx := context.Background()
			var ws []suppression.Write
			for _, k := range keys {
				ws = append(ws, suppression.Write{Namespace: "default", Key: k, Scope: "*", Change: suppression.Change{
					Action: suppression.ActionSuppress, Reason: suppression.ReasonUnsubscribe,
					Stamp: suppression.NewStamp(time.Now(), "/unsubscribe-link", "e1"), Origin: suppression.OriginRecipient, Source: "/unsubscribe-link",
				}})
			}
			_, err := s.Apply(ctx, ws)
			require.NoError(t, err)
			var mu sync.Mutex // ForEachMaster scans the masters in parallel
			scanned := 0
			scan := func(ctx context.Context, c *redis.Client) error {
				iter := c.Scan(ctx, 0, s.opts.Prefix+":*", 100).Iterator()
				for iter.Next(ctx) {
					k := iter.Val()
					if c.Type(ctx, k).Val() != "hash" || k == s.key {
						continue // a group marker, the generation pointer
					}
					vals, err := c.HGetAll(ctx, k).Result()
					if err != nil {
						return err
					}
					dump := k
					for f, v := range vals {
						dump += f + v
					}
					mu.Lock()
					scanned += len(vals)
					mu.Unlock()
					for _, bad := range forbidden {
						if strings.Contains(dump, bad) {
							t.Errorf("Redis holds %q", bad)
						}
					}
				}
				return iter.Err()
			}
			if c, ok := rdb.(*redis.ClusterClient); ok {
				require.NoError(t, c.ForEachMaster(ctx, scan))
			} else {
				require.NoError(t, scan(ctx, rdb.(*redis.Client)))
			}
			require.Equal(t, len(keys), scanned, "every match key has one field")
		})
	}
}

func TestLocate(t *testing.T) {
	for _, bits := range []int{1, 4, 12, 16, 24} {
		opts := Options{BucketBits: bits}
		require.NoError(t, opts.setDefaults())
		n := names{opts: opts, gen: "g1"}
		buckets := map[string]bool{}
		for i := 0; i < 5000; i++ {
			loc := n.locate("acme", key(i))
			marker := n.marker(loc.group)
			require.True(t, strings.HasPrefix(marker, "sd:g1:{"), marker)
			require.Equal(t, marker+"acme:", loc.bucket[:len(marker)+5], "a bucket shares its group's hash tag")
			require.Equal(t, marker+"acme:"+hexDigits(top(key(i))>>(24-bits), bits), loc.bucket, "bucket names never change: stored data is found by them")
			require.Len(t, loc.field, 16)
			buckets[loc.bucket] = true
		}
		require.LessOrEqual(t, len(buckets), 1<<bits)
		require.Greater(t, len(buckets), min(1<<bits, 5000)/2, "keys spread over the buckets")
	}
	sk := suppression.StorageKey{0xab, 0xcd, 0xef, 1}
	for bits, want := range map[int]string{16: "sd:g1:{ab}acme:abcd", 12: "sd:g1:{ab}acme:abc", 24: "sd:g1:{ab}acme:abcdef", 5: "sd:g1:{15}acme:15"} {
		opts := Options{BucketBits: bits, GroupBits: min(8, bits)}
		require.NoError(t, opts.setDefaults())
		require.Equal(t, want, names{opts: opts, gen: "g1"}.locate("acme", sk).bucket, "bits %d", bits)
	}
	_, err := New(nil, Options{BucketBits: 25})
	require.ErrorContains(t, err, "bucket bits 25")
	_, err = New(nil, Options{Prefix: "a:b"})
	require.Error(t, err)
}

// TestFormat1RecordsMerge: a record written in format 1 (before sources
// had codes) is read as it was and, when a write merges into it, the
// script rewrites it in format 2 with every register kept, on every real
// topology and on miniredis.
func TestFormat1RecordsMerge(t *testing.T) {
	clients := servers(t)
	mr := miniredis.RunT(t)
	clients["miniredis"] = redis.NewClient(&redis.Options{Addr: mr.Addr()})
	at := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	long := strings.Repeat("s", 250)
	reg := func(a suppression.Action, r suppression.Reason, ms int, src string) suppression.Register {
		return suppression.Register{Action: a, Reason: r, Stamp: suppression.NewStamp(at.Add(time.Duration(ms)*time.Millisecond), src, "e"),
			Origin: suppression.OriginRecipient, Source: src}
	}
	old := suppression.Record{
		"*":     {reg(suppression.ActionSuppress, suppression.ReasonUnsubscribe, 0, "/unsubscribe-link")},
		"email": {reg(suppression.ActionSuppress, suppression.ReasonComplaint, 0, long)},
	}
	v1 := []byte{1}
	for _, s := range old.Scopes() {
		v1 = appendEntryV1(t, v1, s, old[s][0])
	}
	for name, rdb := range clients {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			s := newStore(t, rdb, 16)
			p, err := s.current(ctx)
			require.NoError(t, err)
			merged, untouched := key(1), key(2)
			for _, k := range []suppression.StorageKey{merged, untouched} {
				loc := p.active.locate("default", k)
				require.NoError(t, rdb.HSet(ctx, loc.bucket, loc.field, v1).Err())
			}
			recs, err := s.Get(ctx, "default", []suppression.StorageKey{merged, untouched})
			require.NoError(t, err)
			require.Equal(t, old, recs[0], "a format-1 record reads as it was written")
			require.Equal(t, old, recs[1])

			lift := reg(suppression.ActionLift, "", 5, "/mail-pipeline")
			bounce := reg(suppression.ActionSuppress, suppression.ReasonHardBounce, 7, "/hooks/sendgrid")
			n, err := s.Apply(ctx, []suppression.Write{
				{Namespace: "default", Key: merged, Scope: "*", Change: suppression.Change(lift)},
				{Namespace: "default", Key: merged, Scope: "email", Change: suppression.Change(bounce)},
			})
			require.NoError(t, err)
			require.Equal(t, 2, n)
			recs, err = s.Get(ctx, "default", []suppression.StorageKey{merged, untouched})
			require.NoError(t, err)
			cut := reg(suppression.ActionSuppress, suppression.ReasonComplaint, 0, long)
			cut.Source = long[:maxSourceLen]
			want := suppression.Record{"*": {lift}, "email": {cut, bounce}}
			want["email"].Sort()
			require.Equal(t, want, recs[0], "merged, the unsubscribe lifted, the long source cut as format 2 cuts it")
			require.Equal(t, old, recs[1], "an untouched format-1 record stays as it was")
			loc := p.active.locate("default", merged)
			raw, err := rdb.HGet(ctx, loc.bucket, loc.field).Bytes()
			require.NoError(t, err)
			require.Equal(t, byte(recordFormat), raw[0], "the script rewrote the record in format 2")
		})
	}
}
