package testsentinel_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/internal/redisconn"
	"github.com/suppressd/suppressd/internal/testsentinel"
)

// TestFailover writes through suppressd's own Sentinel client
// (redisconn.Config with MasterName), crashes the replica and brings it
// back, then crashes the master: the Sentinels promote the replica, the
// same client reaches it, and everything the replica had acknowledged is
// there.
func TestFailover(t *testing.T) {
	t.Parallel()
	started := time.Now()
	tp := testsentinel.Start(t)
	t.Logf("topology ready in %s", time.Since(started).Round(time.Millisecond))

	rdb, err := redisconn.Config{
		Addrs: tp.Sentinels, MasterName: tp.MasterName,
		DialTimeout: 500 * time.Millisecond, ReadTimeout: 500 * time.Millisecond, WriteTimeout: 500 * time.Millisecond,
	}.Client()
	require.NoError(t, err)
	t.Cleanup(func() { _ = rdb.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	// servedBy is the pid of the server the client's commands reach.
	servedBy := func() (int, error) {
		info, err := rdb.InfoMap(ctx, "server").Result()
		if err != nil {
			return 0, err
		}
		return strconv.Atoi(info["Server"]["process_id"])
	}
	pid, err := servedBy()
	require.NoError(t, err)
	require.Equal(t, tp.Master.PID(), pid, "the Sentinels lead the client to the master")

	const key = "sd:{failover}:h"
	write := func(from, to int) {
		t.Helper()
		// One pipeline, so one connection: WAIT counts the replicas that
		// have this connection's writes, which a failover must not lose.
		var acked *redis.Cmd
		_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i := from; i < to; i++ {
				p.HSet(ctx, key, strconv.Itoa(i), i)
			}
			acked = p.Do(ctx, "WAIT", 1, 5000)
			return nil
		})
		require.NoError(t, err)
		n, err := acked.Int()
		require.NoError(t, err)
		require.Equal(t, 1, n, "the replica acknowledges the writes")
	}
	write(0, 50)

	// A replica that crashes and comes back catches up with what it missed.
	tp.Replica.Kill()
	for i := 50; i < 60; i++ {
		require.NoError(t, rdb.HSet(ctx, key, strconv.Itoa(i), i).Err())
	}
	tp.Replica.Start()
	tp.WaitReplicating(tp.Replica, tp.Master)
	write(60, 100)
	n, err := tp.Replica.Client().HLen(ctx, key).Result()
	require.NoError(t, err)
	require.EqualValues(t, 100, n, "the restarted replica holds every write")

	// The master crashes; the Sentinels promote the replica.
	oldMaster := tp.Master.PID()
	killed := time.Now()
	tp.Master.Kill()
	promoted := tp.WaitFailover(tp.Master)
	require.Same(t, tp.Replica, promoted)
	t.Logf("failover in %s", time.Since(killed).Round(time.Millisecond))

	// The same client finds the new master on its own: a write succeeds
	// (a replica would answer READONLY) and lands on the promoted server.
	var last error
	deadline := time.Now().Add(30 * time.Second)
	for {
		last = rdb.HSet(ctx, key, "after", "failover").Err()
		if last == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	require.NoError(t, last, "no write through the Sentinel client after the failover")
	t.Logf("client writing again %s after the kill", time.Since(killed).Round(time.Millisecond))
	pid, err = servedBy()
	require.NoError(t, err)
	require.Equal(t, tp.Replica.PID(), pid, "the client reaches the promoted replica, not pid %d", oldMaster)
	role, err := rdb.Do(ctx, "ROLE").Slice()
	require.NoError(t, err)
	require.Equal(t, "master", role[0])

	all, err := rdb.HGetAll(ctx, key).Result()
	require.NoError(t, err)
	require.Len(t, all, 101)
	for i := range 100 {
		require.Equal(t, strconv.Itoa(i), all[strconv.Itoa(i)], "field %d", i)
	}
	require.Equal(t, "failover", all["after"])

	// The old master comes back (from its AOF, still calling itself a
	// master); the Sentinels keep the promoted one. (They make the old one a
	// replica after 8 s: WaitReplicating, for tests that need it.)
	tp.Master.Start()
	addr, err := tp.MasterAddr(ctx)
	require.NoError(t, err)
	require.Equal(t, tp.Replica.Addr(), addr)
	n, err = tp.Master.Client().HLen(ctx, key).Result()
	require.NoError(t, err)
	require.EqualValues(t, 100, n, "the old master restarts with what it had")
}
