// Package teststore gives tests a Redis store whose first generation is
// built, as `suppressd serve --role consumer` leaves a new deployment after
// replaying an empty log.
package teststore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/store/redisstore"
)

// Prefix returns a key prefix no other test uses.
func Prefix() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "t" + hex.EncodeToString(b[:])
}

// Build builds an empty generation g1 of the store laid out by opts and
// returns the store, ready.
func Build(t testing.TB, rdb redis.UniversalClient, opts redisstore.Options) *redisstore.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := redisstore.NewRebuilds(rdb, opts)
	require.NoError(t, err)
	_, err = r.Begin(ctx, "g1", "test", time.Minute)
	require.NoError(t, err)
	require.NoError(t, r.Finish(ctx, "g1", "test"))
	s, err := redisstore.New(rdb, opts)
	require.NoError(t, err)
	// Tests with tight client timeouts on a busy machine may need a retry.
	require.Eventually(t, func() bool { return s.Ready(ctx) == nil }, 10*time.Second, 20*time.Millisecond, "the built store is ready")
	return s
}
