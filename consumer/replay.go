package consumer

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/suppressd/suppressd/internal/kafkaconn"
	"github.com/suppressd/suppressd/ledger"
	"github.com/suppressd/suppressd/suppression"
)

// ErrLedgerIncomplete is returned by a replay of a ledger without a genesis
// record: it may lack history (an intake topic ingested before the ledger
// existed, not yet backfilled), and a store built from it would answer
// "allowed" for people who opted out.
var ErrLedgerIncomplete = errors.New("the ledger has no genesis record: it may be missing history; run `suppressd ledger backfill`")

// LedgerSource replays the ledger from its first offset: the log of record
// of a rebuild.
type LedgerSource struct {
	Kafka kafkaconn.Config
	Topic string
	// BatchSize is how many writes are applied together. Default 50,000
	// (about 7 MB): the Redis store makes a script call per slot group and
	// batch, sorted by bucket, so the bigger the batch, the more keys a
	// call carries and the more of them land in a bucket already in the
	// server's cache (Redis spent 2.2 µs a key at 87,000 writes a batch,
	// 3.2 at 3,500).
	BatchSize int
	// Readers is how many partitions are read and decoded at once. Default
	// 2.
	Readers int
	// Appliers is how many batches are applied at once. Default 2: while
	// the store works on one batch, the next is encoded and on its way.
	Appliers int
	// AllowIncomplete replays a ledger without a genesis record.
	AllowIncomplete bool
}

// replayBatch is a batch of writes and how many records it covers.
type replayBatch struct {
	writes []suppression.Write
	events int
}

// Replay implements rebuild.Source: every partition up to the end offset
// noted when it starts, several partitions and batches at once (apply is
// called concurrently: the merge rule makes the order of the writes
// irrelevant). A record this build cannot read is counted invalid (it was
// dead-lettered by the apply stage too).
func (s LedgerSource) Replay(ctx context.Context, total func(int64), apply func([]suppression.Write, int) error) (read, invalid int64, err error) {
	if s.BatchSize <= 0 {
		s.BatchSize = 50_000
	}
	if s.Readers <= 0 {
		s.Readers = 2
	}
	if s.Appliers <= 0 {
		s.Appliers = 2
	}
	ranges, err := s.Kafka.Ranges(ctx, []string{s.Topic})
	if err != nil {
		return 0, 0, err
	}
	var n int64
	for _, r := range ranges {
		n += r.End - r.Start
	}
	total(n)

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		readN, invalidN atomic.Int64
		genesis         atomic.Bool
		readers         sync.WaitGroup
		appliers        sync.WaitGroup
		todo            = make(chan kafkaconn.Range, len(ranges))
		// At most Readers batches filling, one waiting and Appliers being
		// applied: about 7 MB each at the default BatchSize.
		batches = make(chan replayBatch, 1)
		// Applied batches' slices are filled again: a rebuild's garbage
		// is then its records, not its batches.
		free = make(chan []suppression.Write, s.Readers+s.Appliers+1)
	)
	newWrites := func() []suppression.Write {
		select {
		case w := <-free:
			return w[:0]
		default:
			return make([]suppression.Write, 0, s.BatchSize+64)
		}
	}
	for _, r := range ranges {
		todo <- r
	}
	close(todo)
	for range min(s.Readers, max(1, len(ranges))) {
		readers.Go(func() {
			var b replayBatch
			send := func() error {
				if b.events == 0 {
					return nil
				}
				select {
				case batches <- b:
				case <-ctx.Done():
					return context.Cause(ctx)
				}
				b = replayBatch{writes: newWrites()}
				return nil
			}
			b.writes = newWrites()
			for r := range todo {
				err := s.Kafka.ReadRange(ctx, r, func(msg kafka.Message) error {
					readN.Add(1)
					b.events++
					rec, err := ledger.Decode(msg.Value)
					switch {
					case errors.Is(err, ledger.ErrGenesis):
						genesis.Store(true)
					case err != nil:
						invalidN.Add(1)
					default:
						b.writes = rec.AppendWrites(b.writes)
					}
					if len(b.writes) >= s.BatchSize {
						return send()
					}
					return nil
				})
				if err != nil {
					cancel(err)
					return
				}
			}
			if err := send(); err != nil {
				cancel(err)
			}
		})
	}
	go func() { readers.Wait(); close(batches) }()
	for range s.Appliers {
		appliers.Go(func() {
			for b := range batches {
				if ctx.Err() != nil {
					continue // drain, so the readers finish
				}
				if err := apply(b.writes, b.events); err != nil {
					cancel(err)
				}
				clear(b.writes) // drop the strings they hold
				select {
				case free <- b.writes:
				default:
				}
			}
		})
	}
	appliers.Wait()
	read, invalid = readN.Load(), invalidN.Load()
	if err := context.Cause(ctx); err != nil {
		return read, invalid, err
	}
	if !genesis.Load() && !s.AllowIncomplete {
		return read, invalid, ErrLedgerIncomplete
	}
	return read, invalid, nil
}

// ReadLedger calls fn with every record of the ledger, up to its end when it
// starts; a record it cannot read is passed with its error.
func ReadLedger(ctx context.Context, k kafkaconn.Config, topic string, fn func(kafka.Message, ledger.Record, error) error) error {
	ranges, err := k.Ranges(ctx, []string{topic})
	if err != nil {
		return err
	}
	for _, r := range ranges {
		if err := k.ReadRange(ctx, r, func(msg kafka.Message) error {
			rec, err := ledger.Decode(msg.Value)
			return fn(msg, rec, err)
		}); err != nil {
			return err
		}
	}
	return nil
}

// Backfill copies into the ledger every intake event that the ingest
// group's committed offsets say was consumed before the ledger existed:
// from each intake partition's first offset up to that group's committed
// offset (where the ingest stage took over). Events the group never
// committed are the ingest stage's, so nothing is written twice. Then it
// writes the genesis record: the ledger is complete.
type Backfill struct {
	Kafka  kafkaconn.Config
	Topics []string // the intake topics
	Group  string   // the ingest stage's consumer group
	Ingest *Ingest
	// BatchSize is how many records are written together. Default 2000.
	BatchSize int
	// Dead receives the events that are not valid (they went to the
	// dead-letter topic when first consumed).
	Dead func(kafka.Message, error)
}

// BackfillResult says what a backfill did.
type BackfillResult struct {
	Read, Written, Invalid int64
}

// Run backfills; see Backfill.
func (b Backfill) Run(ctx context.Context) (BackfillResult, error) {
	var res BackfillResult
	if b.BatchSize <= 0 {
		b.BatchSize = 2000
	}
	ranges, err := b.Kafka.Ranges(ctx, b.Topics)
	if err != nil {
		return res, err
	}
	committed, err := b.Kafka.Committed(ctx, b.Group, ranges)
	if err != nil {
		return res, err
	}
	var (
		msgs []kafka.Message
		keys []suppression.StorageKey
	)
	flush := func() error {
		if len(msgs) == 0 {
			return nil
		}
		if err := b.Ingest.Ledger.WriteMessages(ctx, msgs...); err != nil {
			return fmt.Errorf("write %d ledger records: %w", len(msgs), err)
		}
		res.Written += int64(len(msgs))
		msgs = msgs[:0]
		return nil
	}
	for i, r := range ranges {
		r.End = min(r.End, max(r.Start, committed[i]))
		err := b.Kafka.ReadRange(ctx, r, func(msg kafka.Message) error {
			res.Read++
			// The time it was first consumed is lost; its own timestamp
			// is the best bound left (Reference with a later reading time
			// takes it as it is, or clamps a future one to now).
			rec, err := b.Ingest.record(msg, time.Now(), &keys)
			if err != nil {
				res.Invalid++
				if b.Dead != nil {
					b.Dead(msg, err)
				}
				return nil
			}
			value, err := ledger.Encode(&rec)
			if err != nil {
				return err
			}
			msgs = append(msgs, kafka.Message{Key: rec.Keys[0][:], Value: value, Time: rec.Reference})
			if len(msgs) >= b.BatchSize {
				return flush()
			}
			return nil
		})
		if err != nil {
			return res, err
		}
	}
	if err := flush(); err != nil {
		return res, err
	}
	if err := b.Ingest.Ledger.WriteMessages(ctx, GenesisMessage(time.Now())); err != nil {
		return res, fmt.Errorf("write the genesis record: %w", err)
	}
	return res, nil
}

// GenesisMessage is the ledger message of the genesis record.
func GenesisMessage(at time.Time) kafka.Message {
	return kafka.Message{Key: []byte(ledger.GenesisKey), Value: ledger.EncodeGenesis(at), Time: at}
}

// OldestAge reports how old the oldest message still on a topic is (the
// dead-letter topic: an event waiting for repair that its retention will
// delete), or 0 when the topic is empty.
func OldestAge(ctx context.Context, k kafkaconn.Config, topic string, now time.Time) (time.Duration, error) {
	ranges, err := k.Ranges(ctx, []string{topic})
	if err != nil {
		return 0, err
	}
	var oldest time.Time
	for _, r := range ranges {
		if r.End <= r.Start {
			continue
		}
		r.End = r.Start + 1
		if err := k.ReadRange(ctx, r, func(msg kafka.Message) error {
			if oldest.IsZero() || msg.Time.Before(oldest) {
				oldest = msg.Time
			}
			return nil
		}); err != nil {
			return 0, err
		}
	}
	if oldest.IsZero() {
		return 0, nil
	}
	return max(0, now.Sub(oldest)), nil
}
