// Package testkafka has helpers for tests that run against the real Kafka
// broker the test command starts.
package testkafka

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"
)

// Unique returns a name no earlier run has used, so tests never see data a
// previous run (or a parallel test) left behind.
func Unique(prefix string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%s-%d-%s", prefix, time.Now().UnixNano(), hex.EncodeToString(b))
}

// Logger routes kafka-go's error log to the test log, and drops lines
// that arrive after the test ended (t.Logf would panic then).
func Logger(t testing.TB) kafka.LoggerFunc {
	var (
		mu   sync.Mutex
		done bool
	)
	t.Cleanup(func() { mu.Lock(); done = true; mu.Unlock() })
	return func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		if !done {
			t.Logf("kafka-go: "+format, args...)
		}
	}
}

// CreateTopic creates topic on the controller and waits until every
// partition has a leader, so the first write does not race the election.
func CreateTopic(ctx context.Context, t testing.TB, broker, topic string, partitions int) {
	t.Helper()
	CreateTopicVia(ctx, t, kafka.DefaultDialer, broker, topic, partitions)
}

// CreateTopicVia is CreateTopic through dialer: for a listener that needs
// SASL or TLS (kafkaconn.Config.Dialer).
func CreateTopicVia(ctx context.Context, t testing.TB, dialer *kafka.Dialer, broker, topic string, partitions int) {
	t.Helper()
	conn, err := dialer.DialContext(ctx, "tcp", broker)
	require.NoError(t, err)
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	require.NoError(t, conn.SetDeadline(deadline))

	controller, err := conn.Controller()
	require.NoError(t, err)
	cconn, err := dialer.DialContext(ctx, "tcp", net.JoinHostPort(controller.Host, strconv.Itoa(controller.Port)))
	require.NoError(t, err)
	defer cconn.Close()
	require.NoError(t, cconn.SetDeadline(deadline))
	require.NoError(t, cconn.CreateTopics(kafka.TopicConfig{
		Topic: topic, NumPartitions: partitions, ReplicationFactor: 1,
	}))

	for {
		parts, err := conn.ReadPartitions(topic)
		ready := err == nil && len(parts) == partitions
		for _, p := range parts {
			ready = ready && p.Leader.Host != ""
		}
		if ready {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("topic %s: partitions not led in time (last: %d partitions, err %v)", topic, len(parts), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Writer returns a synchronous writer (acks from all replicas) on a
// transport of its own: kafka-go's shared default transport caches topic
// metadata for seconds, so a writer to a topic created moments ago would see
// "Unknown Topic Or Partition".
func Writer(brokers []string, topic string) *kafka.Writer {
	return &kafka.Writer{
		Addr: kafka.TCP(brokers...), Topic: topic, Balancer: &kafka.Hash{},
		RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond,
		Transport: &kafka.Transport{MetadataTTL: time.Second},
	}
}

// ReadAll reads topic from the start until n messages arrived or the
// deadline passed, without a consumer group.
func ReadAll(ctx context.Context, t testing.TB, brokers []string, topic string, partitions, n int) []kafka.Message {
	t.Helper()
	var out []kafka.Message
	for p := 0; p < partitions && len(out) < n; p++ {
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: topic, Partition: p, MaxWait: 100 * time.Millisecond})
		for len(out) < n {
			pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			m, err := r.ReadMessage(pctx)
			cancel()
			if err != nil {
				break
			}
			out = append(out, m)
		}
		_ = r.Close()
	}
	return out
}
