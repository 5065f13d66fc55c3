package kafkaconn

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
)

// Range is the offsets of one partition: [Start, End).
type Range struct {
	Topic      string
	Partition  int
	Start, End int64
}

// Admin asks the brokers about offsets over one transport, so that a
// caller asking on a timer (the consumer's lag) reuses its connections
// instead of opening new ones each time. It is safe for concurrent use;
// Close it when done.
type Admin struct {
	conf      Config // explains its errors
	transport *kafka.Transport
	client    *kafka.Client
}

// Admin returns an Admin of the configured brokers.
func (c Config) Admin() (*Admin, error) {
	transport, err := c.Transport()
	if err != nil {
		return nil, err
	}
	return &Admin{conf: c, transport: transport, client: &kafka.Client{Addr: kafka.TCP(c.Brokers...), Transport: transport, Timeout: 30 * time.Second}}, nil
}

// Close closes the Admin's idle connections.
func (a *Admin) Close() { a.transport.CloseIdleConnections() }

// Ranges lists every partition of topics with its first and end offset now.
func (c Config) Ranges(ctx context.Context, topics []string) ([]Range, error) {
	a, err := c.Admin()
	if err != nil {
		return nil, err
	}
	defer a.Close()
	return a.Ranges(ctx, topics)
}

// Ranges lists every partition of topics with its first and end offset now,
// sorted by topic and partition.
func (a *Admin) Ranges(ctx context.Context, topics []string) ([]Range, error) {
	meta, err := a.client.Metadata(ctx, &kafka.MetadataRequest{Topics: topics})
	if err != nil {
		return nil, a.conf.Explain(fmt.Errorf("metadata of %s: %w", strings.Join(topics, ", "), err))
	}
	req := &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{}}
	for _, t := range meta.Topics {
		if t.Error != nil {
			return nil, fmt.Errorf("topic %s: %w", t.Name, t.Error)
		}
		for _, p := range t.Partitions {
			req.Topics[t.Name] = append(req.Topics[t.Name], kafka.FirstOffsetOf(p.ID), kafka.LastOffsetOf(p.ID))
		}
	}
	resp, err := a.client.ListOffsets(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("list offsets: %w", err)
	}
	var out []Range
	for topic, parts := range resp.Topics {
		for _, p := range parts {
			if p.Error != nil {
				return nil, fmt.Errorf("offsets of %s[%d]: %w", topic, p.Partition, p.Error)
			}
			out = append(out, Range{Topic: topic, Partition: p.Partition, Start: p.FirstOffset, End: p.LastOffset})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].Topic < out[j].Topic || out[i].Topic == out[j].Topic && out[i].Partition < out[j].Partition
	})
	return out, nil
}

// ReadRange calls fn for every message of a partition in [Start, End), in
// order, without a consumer group.
func (c Config) ReadRange(ctx context.Context, r Range, fn func(kafka.Message) error) error {
	if r.End <= r.Start {
		return nil
	}
	dialer, err := c.Dialer()
	if err != nil {
		return err
	}
	reader := kafka.NewReader(kafka.ReaderConfig{
		Brokers: c.Brokers, Topic: r.Topic, Partition: r.Partition, Dialer: dialer,
		MinBytes: 1, MaxBytes: 10 << 20, MaxWait: 250 * time.Millisecond,
	})
	defer reader.Close()
	if err := reader.SetOffset(r.Start); err != nil {
		return err
	}
	for next := r.Start; next < r.End; {
		msg, err := reader.FetchMessage(ctx)
		if err != nil {
			return c.Explain(fmt.Errorf("read %s[%d]@%d: %w", r.Topic, r.Partition, next, err))
		}
		next = msg.Offset + 1
		if err := fn(msg); err != nil {
			return err
		}
	}
	return nil
}

// Committed returns, for each range, the offset a consumer group has
// committed on its partition, or -1 when it has committed none.
func (c Config) Committed(ctx context.Context, group string, ranges []Range) ([]int64, error) {
	a, err := c.Admin()
	if err != nil {
		return nil, err
	}
	defer a.Close()
	return a.Committed(ctx, group, ranges)
}

// Committed returns, for each range, the offset a consumer group has
// committed on its partition, or -1 when it has committed none.
func (a *Admin) Committed(ctx context.Context, group string, ranges []Range) ([]int64, error) {
	req := &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{}}
	for _, r := range ranges {
		req.Topics[r.Topic] = append(req.Topics[r.Topic], r.Partition)
	}
	resp, err := a.client.OffsetFetch(ctx, req)
	if err != nil {
		return nil, a.conf.Explain(fmt.Errorf("committed offsets of group %s: %w", group, err))
	}
	out := make([]int64, len(ranges))
	if errors.Is(resp.Error, kafka.GroupIdNotFound) {
		// Some brokers (franz-go's kfake) say so for a group that never
		// committed; Kafka answers -1 offsets.
		for i := range out {
			out[i] = -1
		}
		return out, nil
	}
	if resp.Error != nil {
		return nil, fmt.Errorf("committed offsets of group %s: %w", group, resp.Error)
	}
	for i, r := range ranges {
		out[i] = -1
		for _, p := range resp.Topics[r.Topic] {
			if p.Partition == r.Partition {
				if p.Error != nil {
					return nil, fmt.Errorf("committed offset of %s[%d]: %w", r.Topic, r.Partition, p.Error)
				}
				out[i] = p.CommittedOffset
			}
		}
	}
	return out, nil
}
