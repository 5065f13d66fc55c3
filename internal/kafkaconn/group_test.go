package kafkaconn

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/internal/testenv"
	"github.com/suppressd/suppressd/internal/testkafka"
)

// TestGroupReaderSeesKafkaGosLeaves holds GroupReader to the one line of
// kafka-go's log it relies on: every leave kafka-go starts is kept to be
// sent again, and nothing else is.
func TestGroupReaderSeesKafkaGosLeaves(t *testing.T) {
	tests := []struct {
		name   string
		format string
		args   []any
		want   []string
	}{
		{"a leave of this group", leavingFormat, []any{"g", "m-1"}, []string{"m-1"}},
		{"another group's leave", leavingFormat, []any{"other", "m-1"}, nil},
		{"no member id", leavingFormat, []any{"g", ""}, nil},
		{"a join", "Joined group %s as member %s in generation %d", []any{"g", "m-1", 3}, nil},
		{"other args", leavingFormat, []any{"g"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := &GroupReader{group: "g", log: slog.New(slog.DiscardHandler), wake: make(chan struct{}, 1)}
			r.kafkaLog(tc.format, tc.args...)
			var got []string
			for _, p := range r.pending {
				got = append(got, p.member)
			}
			require.Equal(t, tc.want, got)
		})
	}
}

// TestGroupReaderFollowsKafkaGosLeave joins a group on the test command's
// broker and closes the reader: kafka-go leaves the group, and GroupReader
// sees the leave in kafka-go's log (if an upgrade of kafka-go changes that
// line, this fails, and broker restarts go back to waiting out the session
// timeout) and confirms it with the broker, which has nothing more to
// remove: the group is empty.
func TestGroupReaderFollowsKafkaGosLeave(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	topic, group := testkafka.Unique("group-reader"), testkafka.Unique("group-reader")
	testkafka.CreateTopic(ctx, t, brokers[0], topic, 1)
	w := testkafka.Writer(brokers, topic)
	defer w.Close()
	require.NoError(t, w.WriteMessages(ctx, kafka.Message{Value: []byte("x")}))

	logs := &testenv.Buffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	r, err := Config{Brokers: brokers, DialTimeout: 5 * time.Second}.GroupReader(kafka.ReaderConfig{
		Brokers: brokers, GroupID: group, GroupTopics: []string{topic}, StartOffset: kafka.FirstOffset,
		MaxWait: 100 * time.Millisecond, ErrorLogger: testkafka.Logger(t),
	}, log)
	require.NoError(t, err)
	_, err = r.FetchMessage(ctx)
	require.NoError(t, err, "the reader never joined its group")
	require.NoError(t, r.Close())

	require.Contains(t, logs.String(), "kafka-go leaves the group", "GroupReader did not see kafka-go's leave: has kafka-go's log line %q changed?", leavingFormat)
	require.NotContains(t, logs.String(), "level=WARN")
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second}
	resp, err := client.DescribeGroups(ctx, &kafka.DescribeGroupsRequest{GroupIDs: []string{group}})
	require.NoError(t, err)
	require.Len(t, resp.Groups, 1)
	require.Equal(t, "Empty", resp.Groups[0].GroupState, "members left: %v", resp.Groups[0].Members)
}
