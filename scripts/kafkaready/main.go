// Command kafkaready waits until a Kafka broker can really serve the tests:
// an open port is not enough (a KRaft broker accepts connections before it
// has registered with its controller), so it polls until
//
//   - a metadata request lists the broker,
//   - the controller creates a topic and every partition gets a leader, and
//   - a group coordinator answers (this also creates __consumer_offsets, so
//     the first consumer-group test does not pay for it).
//
// It is run by scripts/test.sh with the same kafka-go the project uses, so a
// broker that kafka-go cannot talk to fails here, with the broker log printed
// by the script, rather than as a confusing test failure.
//
// Usage: go run ./scripts/kafkaready -brokers 127.0.0.1:9092 -timeout 90s
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
)

const readyTopic = "_suppressd_ready"

func main() {
	brokers := flag.String("brokers", "127.0.0.1:9092", "comma-separated bootstrap addresses")
	timeout := flag.Duration("timeout", 90*time.Second, "give up after this long")
	clusterID := flag.String("cluster-id", "", "if set, fail unless the broker belongs to this cluster (guards against a port race with another broker)")
	flag.Parse()

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()

	addr := strings.Split(*brokers, ",")[0]
	start := time.Now()
	var lastErr error
	for {
		attemptCtx, attemptCancel := context.WithTimeout(ctx, 5*time.Second)
		err := check(attemptCtx, addr, *clusterID)
		attemptCancel()
		if err == nil {
			fmt.Printf("kafkaready: broker %s ready after %s\n", addr, time.Since(start).Round(time.Millisecond))
			return
		}
		if lastErr == nil || err.Error() != lastErr.Error() {
			fmt.Fprintf(os.Stderr, "kafkaready: not ready yet: %v\n", err)
		}
		lastErr = err
		select {
		case <-ctx.Done():
			fmt.Fprintf(os.Stderr, "kafkaready: broker %s not ready after %s; last error: %v\n", addr, *timeout, lastErr)
			os.Exit(1)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func check(ctx context.Context, addr, clusterID string) error {
	conn, err := kafka.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer conn.Close()
	if deadline, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(deadline)
	}

	brokers, err := conn.Brokers()
	if err != nil {
		return fmt.Errorf("metadata: %w", err)
	}
	if len(brokers) == 0 {
		return errors.New("metadata: no brokers registered yet")
	}

	controller, err := conn.Controller()
	if err != nil {
		return fmt.Errorf("controller: %w", err)
	}
	cconn, err := kafka.DialContext(ctx, "tcp", net.JoinHostPort(controller.Host, strconv.Itoa(controller.Port)))
	if err != nil {
		return fmt.Errorf("dial controller: %w", err)
	}
	defer cconn.Close()
	if deadline, ok := ctx.Deadline(); ok {
		_ = cconn.SetDeadline(deadline)
	}
	err = cconn.CreateTopics(kafka.TopicConfig{Topic: readyTopic, NumPartitions: 1, ReplicationFactor: 1})
	if err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
		return fmt.Errorf("create topic: %w", err)
	}

	parts, err := conn.ReadPartitions(readyTopic)
	if err != nil {
		return fmt.Errorf("topic metadata: %w", err)
	}
	for _, p := range parts {
		if p.Leader.Host == "" {
			return fmt.Errorf("partition %d of %s has no leader yet", p.ID, readyTopic)
		}
	}

	client := &kafka.Client{Addr: kafka.TCP(addr), Timeout: 5 * time.Second}
	if clusterID != "" {
		md, err := client.Metadata(ctx, &kafka.MetadataRequest{})
		if err != nil {
			return fmt.Errorf("metadata: %w", err)
		}
		if md.ClusterID != clusterID {
			// Not retryable, but the script's loop stops at its own deadline
			// or when its broker exits (it cannot bind the taken port).
			return fmt.Errorf("broker at %s belongs to cluster %q, not %q: another broker holds the port", addr, md.ClusterID, clusterID)
		}
	}
	resp, err := client.FindCoordinator(ctx, &kafka.FindCoordinatorRequest{
		Key:     "suppressd-ready",
		KeyType: kafka.CoordinatorKeyTypeConsumer,
	})
	if err != nil {
		return fmt.Errorf("find coordinator: %w", err)
	}
	if resp.Error != nil {
		return fmt.Errorf("find coordinator: %w", resp.Error)
	}
	return nil
}
