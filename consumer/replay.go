package consumer

import (
	"context"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/suppressd/suppressd/internal/kafkaconn"
	"github.com/suppressd/suppressd/schemas"
	"github.com/suppressd/suppressd/suppression"
)

// TopicSource replays the consumed topics from their first offset, decoded
// exactly as the consumer decodes them: the log of record of a rebuild.
type TopicSource struct {
	Kafka      kafkaconn.Config
	Topics     []string
	Validator  *schemas.Validator
	Normalizer suppression.Normalizer
	Keyer      suppression.Keyer
	// BatchSize is how many writes are applied together. Default 2000.
	BatchSize int
}

// Replay implements rebuild.Source: every partition in turn, up to the end
// offsets noted when it starts; invalid events are skipped and counted.
func (s TopicSource) Replay(ctx context.Context, total func(int64), apply func([]suppression.Write, int) error) (read, invalid int64, err error) {
	if s.BatchSize <= 0 {
		s.BatchSize = 2000
	}
	ranges, err := s.Kafka.Ranges(ctx, s.Topics)
	if err != nil {
		return 0, 0, err
	}
	var n int64
	for _, r := range ranges {
		n += r.End - r.Start
	}
	total(n)
	var (
		writes  []suppression.Write
		keys    []suppression.StorageKey
		pending int
	)
	flush := func() error {
		if pending == 0 {
			return nil
		}
		err := apply(writes, pending)
		writes, pending = writes[:0], 0
		return err
	}
	for _, r := range ranges {
		err := s.Kafka.ReadRange(ctx, r, func(msg kafka.Message) error {
			read++
			pending++
			d, err := s.Validator.Decode(msg.Value, Reference(msg.Time, time.Now()), s.Normalizer)
			if err != nil {
				invalid++ // it went to the dead-letter topic when first consumed
			} else {
				keys = s.Keyer.StorageKeys(keys[:0], d.Keys)
				writes = suppression.AppendWrites(writes, &d.Event, keys)
			}
			if len(writes) >= s.BatchSize {
				return flush()
			}
			return nil
		})
		if err != nil {
			return read, invalid, err
		}
	}
	return read, invalid, flush()
}
