package redisconn

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// The refusals of a real TLS + ACL server are in internal/smoke; here, that
// the explanation touches nothing else.
func TestClientExplainsOnlyRefusals(t *testing.T) {
	mr := miniredis.RunT(t)
	mr.RequireUserAuth("suppressd", "right")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client := func(password string) redis.UniversalClient {
		rdb, err := Config{Addrs: []string{mr.Addr()}, Username: "suppressd", Password: password,
			DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second}.Client()
		require.NoError(t, err)
		t.Cleanup(func() { _ = rdb.Close() })
		return rdb
	}

	err := client("wrong").Ping(ctx).Err()
	require.ErrorContains(t, err, "SUPPRESSD_REDIS_USERNAME/SUPPRESSD_REDIS_PASSWORD: authentication failed: WRONGPASS")
	require.ErrorIs(t, err, ErrRefused, "a wrong password is a refusal: serve does not start on it")

	rdb := client("right")
	require.NoError(t, rdb.Ping(ctx).Err())
	mr.Close()
	err = rdb.Ping(ctx).Err()
	require.Error(t, err)
	require.NotErrorIs(t, err, ErrRefused, "Redis out of reach is waited for, not a refusal")
	require.NoError(t, mr.Restart())
	_, err = rdb.Get(ctx, "absent").Result()
	require.Equal(t, redis.Nil, err, "redis.Nil is returned as itself, for == comparisons")
	_, err = rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Get(ctx, "absent")
		return nil
	})
	require.Equal(t, redis.Nil, err)
	err = rdb.EvalSha(ctx, strings.Repeat("0", 40), nil).Err()
	require.True(t, strings.HasPrefix(err.Error(), "NOSCRIPT"), "the store's NOSCRIPT test needs the prefix: %v", err)
}
