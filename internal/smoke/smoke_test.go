// Package smoke checks that the servers started by scripts/test.sh are real and
// usable by the client libraries the project depends on: a Kafka consumer-group
// round trip with kafka-go, and an atomic Lua compare-and-set with go-redis on
// standalone Redis and on a 3-master Redis Cluster; secure_test.go does the
// same through Kafka's SASL_SSL listener and the TLS + ACL redis-server.
//
// If these fail, every other integration test would fail for the same reason;
// they are the first place to look.
package smoke

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/internal/testenv"
	"github.com/suppressd/suppressd/internal/testkafka"
)

func TestSmokeKafkaConsumerGroup(t *testing.T) {
	t.Parallel()
	brokers := testenv.KafkaBrokers(t)
	// One deadline for the whole round trip: a broken broker fails the test
	// well under a minute instead of hanging until go test's own timeout.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	const n = 20
	topic := testkafka.Unique("smoke")
	group := topic + "-group"
	testkafka.CreateTopic(ctx, t, brokers[0], topic, 3)

	// A Transport of our own: kafka.DefaultTransport, shared by every Writer
	// and Client in the process, caches metadata (MetadataTTL, 6s), so a
	// topic created after its last refresh is "Unknown Topic Or Partition"
	// to it for up to 6 seconds. Seen with go test -count=10 on this test.
	transport := &kafka.Transport{}
	defer transport.CloseIdleConnections()

	w := &kafka.Writer{
		Addr:         kafka.TCP(brokers...),
		Transport:    transport,
		Topic:        topic,
		Balancer:     &kafka.Hash{}, // keyed: spreads the 20 keys over the 3 partitions
		RequiredAcks: kafka.RequireAll,
		BatchTimeout: 10 * time.Millisecond,
		ErrorLogger:  testkafka.Logger(t),
	}
	defer w.Close()
	want := make(map[string]string, n)
	msgs := make([]kafka.Message, 0, n)
	for i := range n {
		k, v := fmt.Sprintf("key-%02d", i), fmt.Sprintf("value-%02d", i)
		want[k] = v
		msgs = append(msgs, kafka.Message{Key: []byte(k), Value: []byte(v)})
	}
	require.NoError(t, w.WriteMessages(ctx, msgs...))

	readerConfig := kafka.ReaderConfig{
		Brokers:           brokers,
		GroupID:           group,
		Topic:             topic,
		StartOffset:       kafka.FirstOffset, // only used while the group has no committed offset
		MaxWait:           200 * time.Millisecond,
		HeartbeatInterval: time.Second,
		SessionTimeout:    10 * time.Second,
		RebalanceTimeout:  5 * time.Second,
		JoinGroupBackoff:  500 * time.Millisecond,
		ErrorLogger:       testkafka.Logger(t),
	}

	// First member: read everything, committing each message explicitly.
	r := kafka.NewReader(readerConfig)
	got := make(map[string]string, n)
	partitions := map[int]bool{}
	for len(got) < n {
		m, err := r.FetchMessage(ctx)
		require.NoError(t, err, "fetch after %d of %d messages", len(got), n)
		got[string(m.Key)] = string(m.Value)
		partitions[m.Partition] = true
		require.NoError(t, r.CommitMessages(ctx, m))
	}
	require.NoError(t, r.Close())
	require.Equal(t, want, got)
	require.Len(t, partitions, 3, "20 hashed keys should land on all 3 partitions")

	// The group's committed offsets, as the broker stores them, equal the end
	// of every partition.
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Transport: transport, Timeout: 10 * time.Second}
	ends, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{
		topic: {kafka.LastOffsetOf(0), kafka.LastOffsetOf(1), kafka.LastOffsetOf(2)},
	}})
	require.NoError(t, err)
	committed, err := client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: {0, 1, 2}}})
	require.NoError(t, err)
	require.NoError(t, committed.Error)
	endOf := map[int]int64{}
	var total int64
	for _, p := range ends.Topics[topic] {
		require.NoError(t, p.Error)
		endOf[p.Partition] = p.LastOffset
		total += p.LastOffset
	}
	require.EqualValues(t, n, total, "end offsets: %v", endOf)
	require.Len(t, committed.Topics[topic], 3)
	for _, p := range committed.Topics[topic] {
		require.NoError(t, p.Error)
		require.Equal(t, endOf[p.Partition], p.CommittedOffset, "partition %d", p.Partition)
	}

	// Second member of the same group: it must resume from the committed
	// offsets, so the first message it sees is one produced after the commits,
	// not a replay of the 20.
	r2 := kafka.NewReader(readerConfig)
	defer r2.Close()
	require.NoError(t, w.WriteMessages(ctx, kafka.Message{Key: []byte("late"), Value: []byte("after-commit")}))
	m, err := r2.FetchMessage(ctx)
	require.NoError(t, err)
	require.Equal(t, "late", string(m.Key), "second reader replayed %s=%s: committed offsets were not used", m.Key, m.Value)
	require.NoError(t, r2.CommitMessages(ctx, m))
}

// casScript atomically sets field ARGV[1] of hash KEYS[1] to ARGV[3] if its
// current value is ARGV[2] ("" meaning absent), and counts successful swaps
// in KEYS[2]. It returns {1, new value} on success, {0, current value} when
// the expectation was stale. Both keys carry the same {hash tag}, so they live
// in one cluster slot, as a multi-key script requires.
var casScript = redis.NewScript(`
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if not cur then cur = '' end
if cur ~= ARGV[2] then
	return {0, cur}
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('INCR', KEYS[2])
return {1, ARGV[3]}
`)

// exerciseCAS runs casScript's cases against the keys of one hash tag.
func exerciseCAS(ctx context.Context, t *testing.T, rdb redis.UniversalClient, tag string) {
	t.Helper()
	keys := []string{tag + ":h", tag + ":swaps"}
	t.Cleanup(func() {
		for _, k := range keys {
			rdb.Del(context.Background(), k)
		}
	})
	cas := func(expect, next string) []any {
		t.Helper()
		res, err := casScript.Run(ctx, rdb, keys, "state", expect, next).Slice()
		require.NoError(t, err)
		return res
	}

	require.Equal(t, []any{int64(1), "open"}, cas("", "open"), "absent field: set")
	require.Equal(t, []any{int64(0), "open"}, cas("closed", "shut"), "stale expectation: refused")
	require.Equal(t, []any{int64(1), "closed"}, cas("open", "closed"), "current expectation: swapped")

	// Atomicity: of 8 clients racing on the same expectation, exactly one wins.
	var wg sync.WaitGroup
	wins := make(chan string, 8)
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Go(func() {
			owner := "owner-" + strconv.Itoa(i)
			res, err := casScript.Run(ctx, rdb, keys, "state", "closed", owner).Slice()
			if err != nil {
				errs <- err
				return
			}
			if res[0] == int64(1) {
				wins <- owner
			}
		})
	}
	wg.Wait()
	close(wins)
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	var winners []string
	for w := range wins {
		winners = append(winners, w)
	}
	require.Len(t, winners, 1)

	state, err := rdb.HGet(ctx, keys[0], "state").Result()
	require.NoError(t, err)
	require.Equal(t, winners[0], state)
	swaps, err := rdb.Get(ctx, keys[1]).Int()
	require.NoError(t, err)
	require.Equal(t, 3, swaps)
}

func TestSmokeRedisStandaloneCAS(t *testing.T) {
	t.Parallel()
	addr := testenv.RedisAddr(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{addr}})
	// A cleanup, not a defer: the key clean-ups registered later must run
	// while the client is still open.
	t.Cleanup(func() { _ = rdb.Close() })
	_, single := rdb.(*redis.Client)
	require.True(t, single, "one address should give a plain client, got %T", rdb)
	require.NoError(t, rdb.Ping(ctx).Err())

	exerciseCAS(ctx, t, rdb, "{"+testkafka.Unique("smoke")+"}")
}

func TestSmokeRedisClusterCAS(t *testing.T) {
	t.Parallel()
	addrs := testenv.RedisClusterAddrs(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: addrs})
	t.Cleanup(func() { _ = rdb.Close() }) // a cleanup: see the standalone test
	cluster, ok := rdb.(*redis.ClusterClient)
	require.True(t, ok, "several addresses should give a cluster client, got %T", rdb)

	// The slot map: all 16384 slots served by exactly 3 masters.
	slots, err := cluster.ClusterSlots(ctx).Result()
	require.NoError(t, err)
	masterOf := make([]string, 16384)
	masters := map[string]bool{}
	covered := 0
	for _, s := range slots {
		require.NotEmpty(t, s.Nodes)
		for slot := s.Start; slot <= s.End; slot++ {
			masterOf[slot] = s.Nodes[0].Addr
		}
		covered += s.End - s.Start + 1
		masters[s.Nodes[0].Addr] = true
	}
	require.Equal(t, 16384, covered)
	require.Len(t, masters, 3, "masters: %v", masters)

	// Run the CAS script once on every master: pick one hash tag per master.
	prefix := testkafka.Unique("smoke")
	tagOn := map[string]string{}
	for i := 0; len(tagOn) < len(masters); i++ {
		require.Less(t, i, 1000, "no hash tag found for every master")
		tag := fmt.Sprintf("{%s:%d}", prefix, i)
		slot, err := cluster.ClusterKeySlot(ctx, tag).Result()
		require.NoError(t, err)
		if m := masterOf[slot]; tagOn[m] == "" {
			tagOn[m] = tag
		}
	}
	for master, tag := range tagOn {
		t.Run("master="+master, func(t *testing.T) { exerciseCAS(ctx, t, rdb, tag) })
	}

	// Plain keys spread by slot; each master must physically hold some of them
	// (SCAN on each master node, not through the routing client).
	const nkeys = 30
	for i := range nkeys {
		k := fmt.Sprintf("%s:%d", prefix, i)
		require.NoError(t, rdb.Set(ctx, k, i, time.Minute).Err())
		t.Cleanup(func() { rdb.Del(context.Background(), k) })
	}
	var mu sync.Mutex
	perMaster := map[string]int{}
	err = cluster.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
		keys, err := scanAll(ctx, node, prefix+":*")
		if err != nil {
			return err
		}
		mu.Lock()
		perMaster[node.Options().Addr] = len(keys)
		mu.Unlock()
		return nil
	})
	require.NoError(t, err)
	require.Len(t, perMaster, 3, "per master: %v", perMaster)
	total := 0
	for addr, count := range perMaster {
		require.Positive(t, count, "master %s holds none of the keys (per master: %v)", addr, perMaster)
		total += count
	}
	require.Equal(t, nkeys, total, "per master: %v", perMaster)
}

func scanAll(ctx context.Context, node *redis.Client, match string) ([]string, error) {
	var (
		all    []string
		cursor uint64
	)
	for {
		keys, next, err := node.Scan(ctx, cursor, match, 100).Result()
		if err != nil {
			return nil, err
		}
		all = append(all, keys...)
		if next == 0 {
			return all, nil
		}
		cursor = next
	}
}
