package redisstore

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/suppression"
)

func suppressWrite(k suppression.StorageKey) suppression.Write {
	return suppression.Write{Namespace: "default", Key: k, Scope: "*", Change: suppression.Change{Action: suppression.ActionSuppress,
		Reason: suppression.ReasonUnsubscribe, Stamp: suppression.Stamp{At: 1, Tag: 1}, Origin: suppression.OriginRecipient, Source: "s"}}
}

// TestLayoutMismatchFailsClosed: a replica configured with other bucket
// bits, or another pepper, than the generation was written with would read
// nothing and answer "allowed"; it refuses instead, reads, writes and
// readiness alike.
func TestLayoutMismatchFailsClosed(t *testing.T) {
	for name, rdb := range servers(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			prefix := uniquePrefix()
			first := buildStore(t, rdb, Options{Prefix: prefix, BucketBits: 16, Keying: "pepper-one"})
			_, err := first.Apply(ctx, []suppression.Write{suppressWrite(key(1))})
			require.NoError(t, err)
			same, err := New(rdb, Options{Prefix: prefix, BucketBits: 16, Keying: "pepper-one"})
			require.NoError(t, err)
			recs, err := same.Get(ctx, "default", []suppression.StorageKey{key(1)})
			require.NoError(t, err, "the same layout reads")
			require.NotNil(t, recs[0])
			require.NoError(t, same.Ready(ctx))

			for _, opts := range []Options{{Prefix: prefix, BucketBits: 12, Keying: "pepper-one"}, {Prefix: prefix, BucketBits: 16, Keying: "pepper-two"}} {
				other, err := New(rdb, opts)
				require.NoError(t, err)
				_, err = other.Get(ctx, "default", []suppression.StorageKey{key(1)})
				require.ErrorIs(t, err, suppression.ErrLayoutMismatch)
				_, err = other.Apply(ctx, []suppression.Write{suppressWrite(key(1))})
				require.ErrorIs(t, err, suppression.ErrLayoutMismatch)
				err = other.Ready(ctx)
				require.ErrorIs(t, err, suppression.ErrLayoutMismatch)
				require.ErrorContains(t, err, "generation g1 uses v2.n")
			}
		})
	}
}

// keysUnder counts the keys under a prefix on every master.
func keysUnder(t *testing.T, rdb redis.UniversalClient, prefix string) int {
	t.Helper()
	var n atomic.Int64 // the masters are scanned in parallel
	require.NoError(t, forEachMaster(context.Background(), rdb, func(ctx context.Context, c *redis.Client) error {
		keys, err := c.Keys(ctx, prefix+":*").Result()
		n.Add(int64(len(keys)))
		return err
	}))
	return int(n.Load())
}

// TestNotBuiltIsNotEmpty: a store that was never built, or whose server
// lost its data, answers ErrNotBuilt to reads, writes and readiness, and
// creates nothing while doing so; it never passes for an empty list.
func TestNotBuiltIsNotEmpty(t *testing.T) {
	for name, rdb := range servers(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			opts := Options{Prefix: uniquePrefix(), BucketBits: 8, GroupBits: 4, Keying: "k", Refresh: time.Millisecond}

			t.Run("never built", func(t *testing.T) {
				s, err := New(rdb, opts)
				require.NoError(t, err)
				_, err = s.Get(ctx, "default", []suppression.StorageKey{key(1)})
				require.ErrorIs(t, err, suppression.ErrNotBuilt)
				_, err = s.Apply(ctx, []suppression.Write{suppressWrite(key(1))})
				require.ErrorIs(t, err, suppression.ErrNotBuilt)
				require.ErrorIs(t, s.Ready(ctx), suppression.ErrNotBuilt)
				require.Zero(t, keysUnder(t, rdb, opts.Prefix), "reads, writes and readiness created store state")
			})

			s := buildStore(t, rdb, opts)
			var writes []suppression.Write
			var keys []suppression.StorageKey
			for i := range 64 {
				writes = append(writes, suppressWrite(key(i)))
				keys = append(keys, key(i))
			}
			_, err := s.Apply(ctx, writes)
			require.NoError(t, err)

			// One server loses its data: the standalone one, or one master
			// of the cluster (the others keep theirs).
			lose := func() {
				if c, ok := rdb.(*redis.ClusterClient); ok {
					var (
						mu     sync.Mutex // the masters are visited in parallel
						victim *redis.Client
					)
					require.NoError(t, c.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
						mu.Lock()
						defer mu.Unlock()
						if victim == nil || m.Options().Addr < victim.Options().Addr {
							victim = m
						}
						return nil
					}))
					// Only this test's keys: other tests share the servers.
					ks, err := victim.Keys(ctx, opts.Prefix+":g1:*").Result()
					require.NoError(t, err)
					require.NotEmpty(t, ks, "the victim master holds part of the generation")
					for _, k := range ks {
						require.NoError(t, victim.Unlink(ctx, k).Err())
					}
					return
				}
				ks, err := rdb.Keys(ctx, opts.Prefix+":*").Result()
				require.NoError(t, err)
				require.NoError(t, rdb.Unlink(ctx, ks...).Err())
			}
			lose()
			_, err = s.Get(ctx, "default", keys)
			require.ErrorIs(t, err, suppression.ErrNotBuilt, "a read across the lost data says not built, never allowed")
			require.ErrorIs(t, s.Ready(ctx), suppression.ErrNotBuilt)
			_, err = s.Apply(ctx, writes)
			require.ErrorIs(t, err, suppression.ErrNotBuilt, "a write into lost data is refused")
		})
	}
}

// TestRebuildLease: one rebuild at a time; a rebuilder that stopped
// renewing is taken over; only the owner finishes, and finishing makes the
// generation active.
func TestRebuildLease(t *testing.T) {
	for name, rdb := range servers(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			opts := Options{Prefix: uniquePrefix(), BucketBits: 8, GroupBits: 2, Keying: "k", Refresh: time.Millisecond}
			r, err := NewRebuilds(rdb, opts)
			require.NoError(t, err)
			next, err := r.Next(ctx)
			require.NoError(t, err)
			require.Equal(t, "g1", next)

			_, err = r.Begin(ctx, "g1", "a", 300*time.Millisecond)
			require.NoError(t, err)
			_, err = r.Begin(ctx, "g1", "b", time.Minute)
			require.ErrorIs(t, err, ErrRebuildBusy)
			require.NoError(t, r.Renew(ctx, "g1", "a", 300*time.Millisecond))
			time.Sleep(400 * time.Millisecond) // a stops renewing
			target, err := r.Begin(ctx, "g1", "b", time.Minute)
			require.NoError(t, err, "an expired lease is taken over")
			require.Error(t, r.Renew(ctx, "g1", "a", time.Minute), "a lost it")
			require.Error(t, r.Finish(ctx, "g1", "a"))

			_, err = target.Apply(ctx, []suppression.Write{suppressWrite(key(7))})
			require.NoError(t, err)
			s, err := New(rdb, opts)
			require.NoError(t, err)
			require.ErrorIs(t, s.Ready(ctx), suppression.ErrNotBuilt, "not active before Finish")
			require.NoError(t, r.Finish(ctx, "g1", "b"))
			time.Sleep(2 * opts.Refresh) // the store re-reads the pointer
			require.NoError(t, s.Ready(ctx))
			recs, err := s.Get(ctx, "default", []suppression.StorageKey{key(7)})
			require.NoError(t, err)
			require.NotNil(t, recs[0])
			st, err := r.State(ctx)
			require.NoError(t, err)
			require.Equal(t, State{Active: "g1"}, st)

			_, err = r.Begin(ctx, "g1", "c", time.Minute)
			require.ErrorContains(t, err, "is the active one")
			_, err = r.Drop(ctx, "g1")
			require.ErrorContains(t, err, "in use")
			next, err = r.Next(ctx)
			require.NoError(t, err)
			require.Equal(t, "g2", next)
		})
	}
}

func TestParseDurability(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Durability
		err  string
	}{
		{"", Durability{}, ""},
		{"accepted", Durability{}, ""},
		{"replicas:2", Durability{Replicas: 2}, ""},
		{"fsync", Durability{Fsync: true}, ""},
		{"fsync+replicas:1", Durability{Fsync: true, Replicas: 1}, ""},
		{"replicas:0", Durability{}, "N at least 1"},
		{"replicas", Durability{}, "want accepted"},
		{"always", Durability{}, "want accepted"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			d, err := ParseDurability(tc.in)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, d)
			if tc.in != "" {
				require.Equal(t, tc.in, d.String())
			}
		})
	}
}

// TestDurabilityOnRealServers: replicas:N on a server without replicas is
// never confirmed (the writes are made, Apply fails so nothing is
// committed), on a single server and on the cluster (WAIT per master);
// fsync is refused by name on a server older than 7.2, accepted on a newer
// one.
func TestDurabilityOnRealServers(t *testing.T) {
	ctx := context.Background()
	for name, rdb := range servers(t) {
		t.Run(name, func(t *testing.T) {
			opts := Options{Prefix: uniquePrefix(), BucketBits: 8, GroupBits: 2, Durability: Durability{Replicas: 1, Timeout: 200 * time.Millisecond}}
			s := buildStore(t, rdb, opts)
			_, err := s.Apply(ctx, []suppression.Write{suppressWrite(key(1))})
			require.ErrorIs(t, err, suppression.ErrNotDurable, "no replica can acknowledge")
			require.ErrorContains(t, err, "0 of 1 replicas acknowledged")
			recs, err := s.Get(ctx, "default", []suppression.StorageKey{key(1)})
			require.NoError(t, err)
			require.NotNil(t, recs[0], "the write was made; only its confirmation is missing")

			fs, err := New(rdb, Options{Prefix: opts.Prefix, Durability: Durability{Fsync: true}})
			require.NoError(t, err)
			info, err := rdb.Info(ctx, "server").Result()
			require.NoError(t, err)
			if v := infoField(info, "redis_version"); !atLeast(v, 7, 2) {
				err := fs.CheckDurability(ctx)
				require.ErrorContains(t, err, "needs WAITAOF, which Redis 7.2 introduced")
				require.ErrorContains(t, err, "runs Redis "+v)
			} else {
				require.NoError(t, fs.CheckDurability(ctx))
			}
		})
	}
}
