package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/suppressd/suppressd/internal/kafkaconn"
	"github.com/suppressd/suppressd/internal/overlap"
	"github.com/suppressd/suppressd/ledger"
	"github.com/suppressd/suppressd/suppression"
)

// LedgerFeed follows the ledger for an API replica's read index (it is the
// index's Feed): every partition read by a reader of its own, without a
// consumer group, from the apply stage's committed offsets (every record
// before them is in the store) on. Every Probe it asks the partitions' end
// offsets; once every partition is read past the ends asked at time t, the
// index holds every key the store was given before t (the apply stage reads
// only what is below the end), which Follow reports as fresh(t).
type LedgerFeed struct {
	Kafka kafkaconn.Config
	Topic string
	// Group is the apply stage's consumer group. Its committed offsets
	// say how far the store holds the ledger; naming another group's
	// could start the feed past records the store gets later.
	Group string
	// Probe is how often the end offsets are asked. Default 50ms.
	Probe time.Duration
	// Dial, if set, opens every connection of the readers and the probes
	// (tests put faults on them with it).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Log receives the feed's warnings. Default: discarded.
	Log *slog.Logger
}

// followed is one partition being read.
type followed struct {
	partition int
	next      atomic.Int64 // every record before it was passed to add
}

// probe is the end offsets asked at one time.
type probe struct {
	sent time.Time
	ends map[int]int64
}

// Follow implements the index's Feed; see LedgerFeed.
func (f LedgerFeed) Follow(ctx context.Context, started func(), add func(string, []suppression.StorageKey, time.Time), fresh func(time.Time)) error {
	if f.Probe <= 0 {
		f.Probe = 50 * time.Millisecond
	}
	log := f.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ranges, err := f.Kafka.Ranges(ctx, []string{f.Topic})
	if err != nil {
		return fmt.Errorf("ledger partitions: %w", err)
	}
	committed, err := f.Kafka.Committed(ctx, f.Group, ranges)
	if err != nil {
		return err
	}
	parts := make([]*followed, len(ranges))
	for i, r := range ranges {
		parts[i] = &followed{partition: r.Partition}
		// A group that never committed has applied nothing: the whole
		// partition. One that committed before the first offset still
		// kept has the deleted records in the store.
		parts[i].next.Store(max(committed[i], r.Start))
	}
	started()

	dialer, err := f.Kafka.Dialer()
	if err != nil {
		return err
	}
	transport, err := f.Kafka.Transport()
	if err != nil {
		return err
	}
	if f.Dial != nil {
		dialer.DialFunc = f.Dial
		transport.Dial = f.Dial
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	progress := make(chan struct{}, 1)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel(nil)
	for _, p := range parts {
		wg.Go(func() {
			if err := f.read(ctx, dialer, p, add, progress, log); err != nil {
				cancel(err)
			}
		})
	}
	probes := make(chan probe, 1)
	wg.Go(func() { f.probe(ctx, transport, len(parts), probes, cancel, log) })

	// The watermark: the newest probe every partition has been read past.
	var pending []probe
	for {
		select {
		case <-ctx.Done():
			if cause := context.Cause(ctx); !errors.Is(cause, context.Canceled) {
				return cause
			}
			return nil
		case p := <-probes:
			if len(pending) == maxPendingProbes {
				// Far behind: the oldest would only ever report a time
				// older than any bound.
				pending = append(pending[:0], pending[1:]...)
			}
			// Probes overlap, so answers may come out of order: keep
			// them by the time they were sent.
			i := len(pending)
			for i > 0 && pending[i-1].sent.After(p.sent) {
				i--
			}
			pending = slices.Insert(pending, i, p)
		case <-progress:
		}
		caught := -1
		for i := len(pending) - 1; i >= 0; i-- {
			if readPast(parts, pending[i].ends) {
				caught = i
				break
			}
		}
		if caught >= 0 {
			fresh(pending[caught].sent)
			pending = append(pending[:0], pending[caught+1:]...)
		}
	}
}

func readPast(parts []*followed, ends map[int]int64) bool {
	for _, p := range parts {
		if p.next.Load() < ends[p.partition] {
			return false
		}
	}
	return true
}

// read follows one partition until ctx ends; only a record it must not
// skip stops it with an error.
func (f LedgerFeed) read(ctx context.Context, dialer *kafka.Dialer, p *followed, add func(string, []suppression.StorageKey, time.Time), progress chan<- struct{}, log *slog.Logger) error {
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers: f.Kafka.Brokers, Topic: f.Topic, Partition: p.partition, Dialer: dialer,
		MinBytes: 1, MaxBytes: 10 << 20, MaxWait: 500 * time.Millisecond,
		ErrorLogger: kafka.LoggerFunc(func(format string, args ...any) {
			log.Debug("ledger feed reader", "partition", p.partition, "err", fmt.Sprintf(format, args...))
		}),
	})
	defer r.Close()
	if err := r.SetOffset(p.next.Load()); err != nil {
		return err
	}
	for {
		msg, err := r.FetchMessage(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			// The reader reconnects by itself; meanwhile the watermark
			// stands still and reads go to the store past the bound.
			log.Warn("ledger feed: read failed; retrying", "partition", p.partition, "err", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		if len(msg.Value) > 0 && msg.Value[0] > ledger.Version {
			// The apply stage may be able to read it and write its keys:
			// the index cannot follow the store any more.
			return fmt.Errorf("ledger record %s[%d]@%d is of version %d, this build reads %d: upgrade the api role",
				msg.Topic, msg.Partition, msg.Offset, msg.Value[0], ledger.Version)
		}
		rec, err := ledger.Decode(msg.Value)
		switch {
		case errors.Is(err, ledger.ErrGenesis):
		case err != nil:
			// The apply stage dead-letters it: it writes nothing.
			log.Warn("ledger feed: skipping a record the apply stage cannot read either", "partition", msg.Partition, "offset", msg.Offset, "err", err)
		default:
			add(rec.Namespace, rec.Keys, msg.Time)
		}
		p.next.Store(msg.Offset + 1)
		select {
		case progress <- struct{}{}:
		default:
		}
	}
}

// probe asks the end offsets every Probe (and whether the partitions are
// still the ones followed) and hands each answer to the watermark. Probes
// overlap (up to four): one slow answer does not hold back the
// next. An unanswered probe hands nothing: the watermark stands still.
func (f LedgerFeed) probe(ctx context.Context, transport *kafka.Transport, partitions int, out chan<- probe, cancel context.CancelCauseFunc, log *slog.Logger) {
	client := &kafka.Client{Addr: kafka.TCP(f.Kafka.Brokers...), Transport: transport}
	var health overlap.Health
	overlap.Every(ctx, f.Probe, 4, func(sent time.Time) {
		p, err := f.ends(ctx, client, partitions)
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, errPartitionsChanged) {
			cancel(err)
			return
		}
		switch failed, recovered := health.Report(err); {
		case failed:
			log.Warn("ledger feed: the end offsets are not answered; the index falls back to the store past its bound", "err", err)
		case recovered:
			log.Info("ledger feed: the end offsets are answered again")
		}
		if err != nil {
			return
		}
		p.sent = sent
		select {
		case out <- p:
		case <-ctx.Done():
		}
	})
}

// maxPendingProbes bounds the probes kept while the readers catch up.
const maxPendingProbes = 32

var errPartitionsChanged = errors.New("the ledger's partitions changed")

func (f LedgerFeed) ends(ctx context.Context, client *kafka.Client, partitions int) (probe, error) {
	ctx, cancel := context.WithTimeout(ctx, max(time.Second, 5*f.Probe))
	defer cancel()
	meta, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{f.Topic}})
	if err != nil {
		return probe{}, err
	}
	if len(meta.Topics) != 1 || meta.Topics[0].Error != nil {
		return probe{}, fmt.Errorf("metadata of %s: %v", f.Topic, meta.Topics)
	}
	if n := len(meta.Topics[0].Partitions); n != partitions {
		// A record in a partition the feed does not read may be in the
		// store: start again with every partition.
		return probe{}, fmt.Errorf("%w: %s has %d partitions, the feed follows %d", errPartitionsChanged, f.Topic, n, partitions)
	}
	req := &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{}}
	for _, p := range meta.Topics[0].Partitions {
		req.Topics[f.Topic] = append(req.Topics[f.Topic], kafka.LastOffsetOf(p.ID))
	}
	resp, err := client.ListOffsets(ctx, req)
	if err != nil {
		return probe{}, err
	}
	p := probe{ends: make(map[int]int64, partitions)}
	for _, po := range resp.Topics[f.Topic] {
		if po.Error != nil {
			return probe{}, fmt.Errorf("end offset of %s[%d]: %w", f.Topic, po.Partition, po.Error)
		}
		p.ends[po.Partition] = po.LastOffset
	}
	if len(p.ends) != partitions {
		return probe{}, fmt.Errorf("end offsets of %d of %d partitions", len(p.ends), partitions)
	}
	return p, nil
}
