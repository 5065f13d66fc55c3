package smoke

import (
	"context"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/internal/testenv"
	"github.com/suppressd/suppressd/internal/testkafka"
)

// TestSmokeLogAppendTime pins two facts the reference time rests on
// (README, "Safety"). The test command's broker makes topics with
// message.timestamp.type=LogAppendTime, as docs/operations.md tells
// operators to. And kafka-go does not show the broker's time even then: it
// reports each record's time from the batch's first timestamp, which the
// producer set, and drops the batch's max timestamp, where the broker
// writes its own. So suppressd bounds an event's time by its own clock
// when it reads it. Should a kafka-go upgrade start to show the broker's
// time, this fails, and the consumer can take the broker's clock instead.
func TestSmokeLogAppendTime(t *testing.T) {
	t.Parallel()
	brokers := testenv.KafkaBrokers(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	topic := testkafka.Unique("appendtime")
	testkafka.CreateTopic(ctx, t, brokers[0], topic, 1)

	transport := &kafka.Transport{}
	defer transport.CloseIdleConnections()
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Transport: transport}
	resp, err := client.DescribeConfigs(ctx, &kafka.DescribeConfigsRequest{Resources: []kafka.DescribeConfigRequestResource{{
		ResourceType: kafka.ResourceTypeTopic, ResourceName: topic, ConfigNames: []string{"message.timestamp.type"},
	}}})
	require.NoError(t, err)
	require.Len(t, resp.Resources, 1)
	require.NoError(t, resp.Resources[0].Error)
	require.Len(t, resp.Resources[0].ConfigEntries, 1)
	require.Equal(t, "LogAppendTime", resp.Resources[0].ConfigEntries[0].ConfigValue, "the test command's topics take the broker's time")

	ahead := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	w := &kafka.Writer{Addr: kafka.TCP(brokers...), Transport: transport, Topic: topic, RequiredAcks: kafka.RequireAll,
		BatchTimeout: 10 * time.Millisecond, ErrorLogger: testkafka.Logger(t)}
	defer w.Close()
	require.NoError(t, w.WriteMessages(ctx, kafka.Message{Value: []byte("dated ahead"), Time: ahead}))

	r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: topic, Partition: 0, MaxWait: 100 * time.Millisecond, Dialer: &kafka.Dialer{Timeout: 10 * time.Second}})
	defer r.Close()
	msg, err := r.ReadMessage(ctx)
	require.NoError(t, err)
	require.Equal(t, "dated ahead", string(msg.Value))
	require.True(t, msg.Time.Equal(ahead), "kafka-go shows the producer's time (%s), not the broker's: got %s", ahead, msg.Time)
}
