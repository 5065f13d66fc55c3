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

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/internal/testenv"
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

func newStore(t *testing.T, rdb redis.UniversalClient, bits int) *Store {
	t.Helper()
	s, err := New(rdb, Options{Prefix: uniquePrefix(), BucketBits: bits, Keyer: suppression.NewKeyer([]byte("test-pepper"))})
	require.NoError(t, err)
	return s
}

func key(i int) suppression.MatchKey {
	return suppression.MatchKey{Kind: suppression.KindEmail, Hash: sha256.Sum256([]byte{byte(i), byte(i >> 8)})}
}

var (
	testReasons = []suppression.Reason{suppression.ReasonUnsubscribe, suppression.ReasonErasure, suppression.ReasonHardBounce, suppression.ReasonComplaint, suppression.ReasonGPC}
	testScopes  = []suppression.Scope{"*", "email", "topic:news"}
	testOrigins = []suppression.Origin{suppression.OriginRecipient, suppression.OriginSystem, suppression.OriginAdmin, suppression.OriginCustomer}
)

// randomWrites makes writes to a few keys and scopes with colliding times,
// where merge rules break.
func randomWrites(rng *mrand.Rand, n, keys int) []Write {
	ws := make([]Write, n)
	for i := range ws {
		c := suppression.Change{
			Action: suppression.ActionSuppress,
			Reason: testReasons[rng.IntN(len(testReasons))],
			Stamp:  suppression.Stamp{At: 1_700_000_000_000 + int64(rng.IntN(5)), Tag: rng.Uint64()},
			Origin: testOrigins[rng.IntN(len(testOrigins))],
			Source: []string{"/unsubscribe-link", "/mail-pipeline", "urn:dsr"}[rng.IntN(3)],
		}
		if rng.IntN(3) == 0 {
			c.Action = suppression.ActionLift
			if rng.IntN(2) == 0 {
				c.Reason = ""
			}
		}
		ws[i] = Write{Namespace: "default", Key: key(rng.IntN(keys)), Scope: testScopes[rng.IntN(len(testScopes))], Change: c}
	}
	return ws
}

// expected folds writes through the domain's merge rule in Go.
func expected(ws []Write) map[suppression.MatchKey]Record {
	out := map[suppression.MatchKey]Record{}
	for _, w := range ws {
		rec := out[w.Key]
		if rec == nil {
			rec = Record{}
			out[w.Key] = rec
		}
		rec[w.Scope], _ = rec[w.Scope].Apply(w.Change)
	}
	return out
}

func keysOf(ws []Write) []suppression.MatchKey {
	seen := map[suppression.MatchKey]bool{}
	var ks []suppression.MatchKey
	for _, w := range ws {
		if !seen[w.Key] {
			seen[w.Key] = true
			ks = append(ks, w.Key)
		}
	}
	return ks
}

func requireState(t *testing.T, s *Store, ws []Write, msg string) {
	t.Helper()
	want := expected(ws)
	ks := keysOf(ws)
	got, err := s.Get(context.Background(), "default", ks)
	require.NoError(t, err)
	for i, k := range ks {
		require.Equal(t, want[k], got[i], "%s: key %s", msg, k)
	}
}

// TestLuaMatchesDomain applies random event sets through the Lua script, in
// random batches and orders, and requires exactly the states the domain's
// merge rule computes in Go.
func TestLuaMatchesDomain(t *testing.T) {
	for name, rdb := range servers(t) {
		t.Run(name, func(t *testing.T) {
			rng := mrand.New(mrand.NewPCG(7, 8))
			for round := 0; round < 40; round++ {
				s := newStore(t, rdb, 4) // few buckets: many keys share one
				ws := randomWrites(rng, 5+rng.IntN(40), 6)
				shuffled := append([]Write(nil), ws...)
				rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
				for len(shuffled) > 0 {
					n := 1 + rng.IntN(len(shuffled))
					_, err := s.Apply(context.Background(), shuffled[:n])
					require.NoError(t, err)
					shuffled = shuffled[n:]
				}
				requireState(t, s, ws, "round")

				// Replaying everything changes nothing.
				changed, err := s.Apply(context.Background(), ws)
				require.NoError(t, err)
				require.Zero(t, changed, "a replay changed records")
				requireState(t, s, ws, "after replay")
			}
		})
	}
}

func TestConcurrentWriters(t *testing.T) {
	for name, rdb := range servers(t) {
		t.Run(name, func(t *testing.T) {
			rng := mrand.New(mrand.NewPCG(9, 10))
			s := newStore(t, rdb, 2)
			ws := randomWrites(rng, 400, 8)
			var wg sync.WaitGroup
			for w := 0; w < 6; w++ {
				mine := append([]Write(nil), ws...)
				r := mrand.New(mrand.NewPCG(uint64(w), 1))
				r.Shuffle(len(mine), func(i, j int) { mine[i], mine[j] = mine[j], mine[i] })
				wg.Add(1)
				go func() {
					defer wg.Done()
					for len(mine) > 0 {
						n := min(len(mine), 1+r.IntN(20))
						_, err := s.Apply(context.Background(), mine[:n])
						if err != nil {
							t.Error(err)
							return
						}
						mine = mine[n:]
					}
				}()
			}
			wg.Wait()
			requireState(t, s, ws, "concurrent writers")
		})
	}
}

func TestScriptCacheLoss(t *testing.T) {
	for name, rdb := range servers(t) {
		t.Run(name, func(t *testing.T) {
			s := newStore(t, rdb, 16)
			ctx := context.Background()
			ws := randomWrites(mrand.New(mrand.NewPCG(1, 1)), 50, 20)
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
			requireState(t, s, ws, "after script flush")
		})
	}
}

// TestNothingRawInRedis writes events for real identifiers and scans every
// key and value the store wrote for the raw values and their plain hashes.
func TestNothingRawInRedis(t *testing.T) {
	n := suppression.Normalizer{DefaultRegion: "US"}
	ids := []suppression.Identifier{{Type: suppression.IDEmail, Value: "raw.person+tag@gmail.com"}, {Type: suppression.IDPhone, Value: "(800) 555-0100"}}
	keys, err := n.ExpandAll(ids)
	require.NoError(t, err)
	forbidden := []string{"raw.person", "rawperson", "8005550100", "gmail"}
	for _, k := range keys {
		forbidden = append(forbidden, hex.EncodeToString(k.Hash[:]), string(k.Hash[:8]))
	}
	for name, rdb := range servers(t) {
		t.Run(name, func(t *testing.T) {
			s := newStore(t, rdb, 16)
			ctx := context.Background()
			var ws []Write
			for _, k := range keys {
				ws = append(ws, Write{Namespace: "default", Key: k, Scope: "*", Change: suppression.Change{
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
		s, err := New(nil, Options{BucketBits: bits})
		require.NoError(t, err)
		buckets := map[string]bool{}
		for i := 0; i < 5000; i++ {
			loc := s.locate("acme", key(i))
			require.True(t, strings.HasPrefix(loc.bucket, "sd:g1:{acme:"))
			require.True(t, strings.HasPrefix(loc.bucket, loc.group))
			require.Len(t, loc.field, 16)
			buckets[loc.bucket] = true
		}
		require.LessOrEqual(t, len(buckets), 1<<bits)
		require.Greater(t, len(buckets), min(1<<bits, 5000)/2, "keys spread over the buckets")
	}
	_, err := New(nil, Options{BucketBits: 25})
	require.ErrorContains(t, err, "bucket bits 25")
	_, err = New(nil, Options{Prefix: "a:b"})
	require.Error(t, err)
}
