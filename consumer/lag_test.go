package consumer

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/internal/kafkaconn"
	"github.com/suppressd/suppressd/internal/testenv"
	"github.com/suppressd/suppressd/internal/testkafka"
	"github.com/suppressd/suppressd/suppression"
)

// testStage makes every batch's effect at once or, stuck, never: a member
// whose store hangs. It fetches and holds its batch, and commits nothing.
type testStage struct{ stuck bool }

func (s *testStage) Prepare(b *Batch, now time.Time) {
	for range b.Msgs {
		b.Events = append(b.Events, EventInfo{Type: suppression.EventUnsubscribe, OccurredAt: now})
	}
}

func (s *testStage) Do(ctx context.Context, _ *Batch) (int, error) {
	if s.stuck {
		<-ctx.Done()
		return 0, ctx.Err()
	}
	return 0, nil
}

// lagMember is one replica of a stage: a consumer in the group and the
// stage's lag on a registry of its own, as a process would have them.
type lagMember struct {
	name  string
	reg   *prometheus.Registry
	stops []func()
}

func joinLag(t *testing.T, brokers []string, group, topic, name string, stuck bool) *lagMember {
	t.Helper()
	m := &lagMember{name: name, reg: prometheus.NewRegistry()}
	log := slog.New(slog.DiscardHandler)
	reader := kafka.NewReader(kafka.ReaderConfig{
		Brokers: brokers, GroupID: group, GroupTopics: []string{topic},
		Dialer:      &kafka.Dialer{ClientID: name, Timeout: 10 * time.Second},
		StartOffset: kafka.FirstOffset, MaxWait: 100 * time.Millisecond, CommitInterval: 0,
		SessionTimeout: 6 * time.Second, ErrorLogger: testkafka.Logger(t),
	})
	c := New(reader, testkafka.Writer(brokers, topic+"-dlq"), &testStage{stuck: stuck},
		Options{Stage: "apply", BatchSize: 10, ShutdownGrace: 100 * time.Millisecond}, log, m.reg)
	admin, err := kafkaconn.Config{Brokers: brokers}.Admin()
	require.NoError(t, err)
	lag := NewLag(admin, LagOptions{Stage: "apply", Group: group, Topics: []string{topic}, Every: 100 * time.Millisecond}, log, m.reg)

	cctx, stopConsumer := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(cctx); _ = reader.Close() }()
	lctx, stopLag := context.WithCancel(context.Background())
	lagDone := make(chan struct{})
	go func() { lag.Run(lctx); admin.Close(); close(lagDone) }()
	m.stops = []func(){func() {
		stopConsumer()
		require.NoError(t, <-done)
		stopLag()
		<-lagDone
	}}
	t.Cleanup(m.leave)
	return m
}

// leave stops the member: it leaves the group, and its process (with its
// metrics) is gone.
func (m *lagMember) leave() {
	for _, s := range m.stops {
		s()
	}
	m.stops = nil
}

// lag is the member's suppressd_consumer_lag, by partition, as /metrics
// would show it.
func (m *lagMember) lag(t *testing.T) map[int]float64 {
	t.Helper()
	mfs, err := m.reg.Gather()
	require.NoError(t, err)
	out := map[int]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "suppressd_consumer_lag" {
			continue
		}
		for _, s := range mf.GetMetric() {
			var p int
			for _, l := range s.GetLabel() {
				switch l.GetName() {
				case "partition":
					p, err = strconv.Atoi(l.GetValue())
					require.NoError(t, err)
				case "stage":
					require.Equal(t, "apply", l.GetValue())
				}
			}
			out[p] = s.GetGauge().GetValue()
		}
	}
	return out
}

// owners asks the broker which member (by client id) owns which partition.
func owners(t *testing.T, brokers []string, group string) map[int]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Transport: &kafka.Transport{}}
	resp, err := client.DescribeGroups(ctx, &kafka.DescribeGroupsRequest{GroupIDs: []string{group}})
	require.NoError(t, err)
	out := map[int]string{}
	for _, g := range resp.Groups {
		if g.Error != nil || g.GroupState != "Stable" {
			return nil
		}
		for _, m := range g.Members {
			for _, tp := range m.MemberAssignments.Topics {
				for _, p := range tp.Partitions {
					out[p] = m.ClientID
				}
			}
		}
	}
	return out
}

// TestLagIsTheGroups runs two replicas of a stage against the real broker
// and checks what each one's suppressd_consumer_lag says while the group
// changes:
//
//   - before anything is consumed, every message waits;
//   - a member stuck on its store fetches its partition's messages but
//     commits nothing: its partition's lag grows, and both replicas say so
//     (measured at fetch, as before, it read 0 and never moved);
//   - when it leaves, the other member takes its partition over, and the
//     series follows: it drops to 0 once the new owner has caught up. No
//     replica keeps a value for a partition it lost.
func TestLagIsTheGroups(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	topic := testkafka.Unique("lag")
	group := topic + "-group"
	testkafka.CreateTopic(ctx, t, brokers[0], topic, 2)
	testkafka.CreateTopic(ctx, t, brokers[0], topic+"-dlq", 1)
	w := &kafka.Writer{
		Addr: kafka.TCP(brokers...), Topic: topic, RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond,
		Transport: &kafka.Transport{MetadataTTL: time.Second},
		// The key names the partition.
		Balancer: kafka.BalancerFunc(func(m kafka.Message, _ ...int) int { p, _ := strconv.Atoi(string(m.Key)); return p }),
	}
	defer w.Close()
	// A write that timed out on a busy broker is retried, and may then be
	// on the topic twice: what is expected is read from the partitions'
	// end offsets, not counted here.
	produce := func(perPartition int) {
		t.Helper()
		var msgs []kafka.Message
		for p := range 2 {
			for i := range perPartition {
				msgs = append(msgs, kafka.Message{Key: []byte(strconv.Itoa(p)), Value: []byte(fmt.Sprint(i))})
			}
		}
		for {
			err := w.WriteMessages(ctx, msgs...)
			if err == nil {
				return
			}
			require.NoError(t, ctx.Err(), "last write: %v", err)
			t.Logf("write failed, retrying: %v", err)
			time.Sleep(time.Second)
		}
	}
	ends := func() map[int]float64 {
		t.Helper()
		ranges, err := kafkaconn.Config{Brokers: brokers}.Ranges(ctx, []string{topic})
		require.NoError(t, err)
		out := map[int]float64{}
		for _, r := range ranges {
			out[r.Partition] = float64(r.End)
		}
		return out
	}
	wait := func(what string, m *lagMember, want map[int]float64) {
		t.Helper()
		eventually(t, what, func() bool { return fmt.Sprint(m.lag(t)) == fmt.Sprint(want) })
	}

	produce(10)
	// A member stuck from the start: it gets both partitions and commits
	// nothing.
	stuck := joinLag(t, brokers, group, topic, "stuck", true)
	wait("every message waits for a group that has committed nothing", stuck, ends())

	// A healthy member joins; the group splits the partitions.
	healthy := joinLag(t, brokers, group, topic, "healthy", false)
	var own map[int]string
	eventually(t, "a partition each", func() bool {
		own = owners(t, brokers, group)
		return len(own) == 2 && own[0] != own[1]
	})
	mine := 0
	if own[1] == "healthy" {
		mine = 1
	}
	theirs := 1 - mine
	produce(5)
	// Both replicas see the whole group: the healthy member's partition is
	// caught up, the stuck member's has grown by what arrived (15, unless
	// a write was retried).
	want := map[int]float64{mine: 0, theirs: ends()[theirs]}
	require.GreaterOrEqual(t, want[theirs], 15.0)
	wait("the healthy replica reports the stuck member's partition", healthy, want)
	wait("the stuck replica reports the same", stuck, want)

	// The stuck member leaves: its partition moves, and is caught up.
	stuck.leave()
	eventually(t, "the healthy member owns both", func() bool {
		own = owners(t, brokers, group)
		return len(own) == 2 && own[0] == "healthy" && own[1] == "healthy"
	})
	produce(1)
	wait("the partition taken over is caught up", healthy, map[int]float64{0: 0, 1: 0})
}

// BenchmarkLagMeasure is the cost of one measurement of a stage's lag
// against the real broker: metadata, list offsets and the group's
// commits, for a 6-partition topic, over one kept transport.
func BenchmarkLagMeasure(b *testing.B) {
	brokers := testenv.KafkaBrokers(b)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	topic := testkafka.Unique("lagbench")
	testkafka.CreateTopic(ctx, b, brokers[0], topic, 6)
	admin, err := kafkaconn.Config{Brokers: brokers}.Admin()
	require.NoError(b, err)
	defer admin.Close()
	lag := NewLag(admin, LagOptions{Stage: "apply", Group: topic + "-group", Topics: []string{topic}}, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	// A topic this new may still be "not leader" to the offsets request
	// until the transport's metadata catches up (as after a failover: the
	// measurement fails, is counted, and the next one succeeds).
	for lag.Measure(ctx) != nil {
		require.NoError(b, ctx.Err())
		time.Sleep(100 * time.Millisecond)
	}
	b.ResetTimer()
	for b.Loop() {
		require.NoError(b, lag.Measure(ctx))
	}
}
