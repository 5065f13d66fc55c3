// Package consumer runs suppressd's two Kafka stages:
//
//	intake topics ─▶ ingest ─┬─▶ ledger topic ─▶ apply ─▶ store (Redis)
//	(raw CloudEvents)        └─▶ dead-letter topic (invalid events)
//
// Ingest validates each intake event, expands its identifiers into storage
// keys and writes one ledger record (package ledger: no raw identifier) with
// acks from all in-sync replicas. Apply folds ledger records into the store
// with the merge rule. Each stage is a Consumer: a consumer group reader,
// batches, a Handler that makes the batch's effect, dead letters, retries
// and commits; and a Lag, which measures the stage's group from Kafka.
//
// Delivery is at least once and every effect is idempotent (a duplicate
// ledger record, or a record applied twice, changes nothing), which makes
// each stage effectively once. Offsets are committed only after the dead
// letters are acknowledged and the effect is made (and, for a store that
// confirms durability, confirmed); a failure is retried with capped
// exponential backoff and jitter, never skipped.
package consumer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/suppressd/suppressd/suppression"
)

// Reader is the part of *kafka.Reader the consumer uses.
type Reader interface {
	FetchMessage(ctx context.Context) (kafka.Message, error)
	CommitMessages(ctx context.Context, msgs ...kafka.Message) error
}

// MessageWriter is the part of *kafka.Writer the consumer uses for dead
// letters.
type MessageWriter interface {
	WriteMessages(ctx context.Context, msgs ...kafka.Message) error
}

// Handler is a stage: what a fetched batch becomes, and how its effect is
// made.
type Handler interface {
	// Prepare decodes a batch, without I/O. A message it cannot handle is
	// put in Batch.Dead with the reason; the rest becomes the batch's work.
	Prepare(b *Batch, now time.Time)
	// Do makes the batch's effect. It must be idempotent: it is retried
	// until it succeeds, and a crash redelivers the batch. An error
	// wrapping suppression.ErrNotDurable means the effect is made but not
	// yet confirmed: the consumer goes on with the next batches and commits
	// this one once a later Do of it succeeds.
	Do(ctx context.Context, b *Batch) (changed int, err error)
}

// Batch is a fetched batch of messages and what a Handler made of it.
type Batch struct {
	Msgs []kafka.Message
	// Dead are the messages that go to the dead-letter topic, with why.
	Dead []DeadLetter
	// Events describes each event the batch carries, for metrics.
	Events []EventInfo
	// Work is the handler's own.
	Work any

	confirmed bool
}

// DeadLetter is a message the handler refused, and why (a text that names
// fields, never values).
type DeadLetter struct {
	Msg kafka.Message
	Err error
}

// EventInfo describes an event of a batch for metrics.
type EventInfo struct {
	Type       suppression.EventType
	OccurredAt time.Time
	Reference  time.Time // when it reached its intake topic, as ingest judged it (see Reference)
	Clamped    bool      // its time was after its reference time
}

// Options tune a Consumer. The zero value is usable.
type Options struct {
	// Stage names the stage in logs and metrics (ingest, apply).
	Stage string
	// BatchSize is the most messages handled together. Default 2000.
	BatchSize int
	// BatchWait is how long a batch waits to fill once its first message is
	// in. Default 5ms: each stage adds up to it to an opt-out's way into
	// the store, and a longer wait bought no throughput (BenchmarkEndToEnd
	// measured the same rates at 5ms and 20ms).
	BatchWait time.Duration
	// BackoffMin and BackoffMax bound the retry delay of a failed effect,
	// dead-letter write or commit; the delay doubles from min to max, with
	// full jitter. Defaults 100ms and 10s.
	BackoffMin, BackoffMax time.Duration
	// CommitAttempts is how often a failed commit is retried before the
	// consumer moves on (the effect is made; a rebalance re-delivers the
	// batch and it changes nothing). Default 5.
	CommitAttempts int
	// MaxUnconfirmed is how many batches may be applied but not yet
	// confirmed durable before the consumer stops taking new ones and
	// retries the oldest. Default 64.
	MaxUnconfirmed int
	// ShutdownGrace is how long, after the context is cancelled, the batch
	// in hand may take to be handled and committed. Default 15s.
	ShutdownGrace time.Duration
	// Now is the clock, for tests. Default time.Now.
	Now func() time.Time
}

func (o *Options) setDefaults() {
	if o.Stage == "" {
		o.Stage = "consumer"
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 2000
	}
	if o.BatchWait <= 0 {
		o.BatchWait = 5 * time.Millisecond
	}
	if o.BackoffMin <= 0 {
		o.BackoffMin = 100 * time.Millisecond
	}
	if o.BackoffMax <= 0 {
		o.BackoffMax = max(10*time.Second, o.BackoffMin)
	}
	o.BackoffMax = max(o.BackoffMax, o.BackoffMin)
	if o.CommitAttempts <= 0 {
		o.CommitAttempts = 5
	}
	if o.MaxUnconfirmed <= 0 {
		o.MaxUnconfirmed = 64
	}
	if o.ShutdownGrace <= 0 {
		o.ShutdownGrace = 15 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Consumer reads batches, has its Handler make their effect and commits.
type Consumer struct {
	reader  Reader
	dlq     MessageWriter
	handler Handler
	opts    Options
	log     *slog.Logger
	m       *metrics
}

// New returns a Consumer. dlq writes to the dead-letter topic (its Topic
// set); the reader should be a group reader with CommitInterval 0.
func New(r Reader, dlq MessageWriter, h Handler, opts Options, log *slog.Logger, reg prometheus.Registerer) *Consumer {
	opts.setDefaults()
	return &Consumer{
		reader: r, dlq: dlq, handler: h, opts: opts,
		log: log.With("component", "consumer", "stage", opts.Stage), m: newMetrics(reg, opts.Stage),
	}
}

// Run consumes until ctx is cancelled, then finishes the batches in hand
// (within ShutdownGrace) and returns nil. It returns an error only when the
// reader fails for good (it was closed under the consumer): a fetch error
// is kafka-go telling that a broker or the group coordinator is out of
// reach, while the reader reconnects and rejoins by itself, so the
// consumer goes on fetching (a broker restart must not stop the stage).
//
// Fetching overlaps handling: while one batch's effect is made, the next is
// fetched and decoded. Batches are handled and committed in order.
func (c *Consumer) Run(ctx context.Context) error {
	c.log.Info("consuming", "batch_size", c.opts.BatchSize, "batch_wait", c.opts.BatchWait)
	// Batches in hand are finished after shutdown starts, for ShutdownGrace.
	pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(c.opts.ShutdownGrace, cancel) })
	defer stop()

	fctx, stopFetching := context.WithCancel(ctx)
	defer stopFetching()
	batches := make(chan *Batch, 1)
	var fetchErr error
	go func() {
		defer close(batches)
		failed := 0 // fetch errors in a row
		for {
			msgs, err := c.fetch(fctx)
			if len(msgs) > 0 {
				b := &Batch{Msgs: msgs}
				c.m.batchSize.Observe(float64(len(msgs)))
				c.handler.Prepare(b, c.opts.Now())
				for _, e := range b.Events {
					if e.Clamped {
						// A producer's clock ahead, or a lift trying to
						// outvote later opt-outs: kept, dated at the
						// reference time.
						c.m.clamped.WithLabelValues(e.Type.Action().String()).Inc()
					}
				}
				batches <- b
			}
			if fctx.Err() != nil {
				return
			}
			if err == nil {
				if failed > 0 {
					c.log.Info("fetching again", "errors", failed)
				}
				failed = 0
				continue
			}
			if errors.Is(err, io.EOF) {
				fetchErr = err
				return
			}
			// kafka-go backs off by itself (partition readers, group
			// joins); the short pause only keeps a reader that fails
			// at once from spinning.
			c.m.retries.WithLabelValues("fetch").Inc()
			if failed == 0 {
				c.log.Warn("cannot fetch from Kafka; the reader reconnects and rejoins its group by itself", "err", err)
			}
			failed++
			if !c.pause(fctx, failed-1, min(time.Second, c.opts.BackoffMax)) {
				return
			}
		}
	}()
	// unconfirmed are batches whose effect is made but not yet confirmed
	// durable, in fetch order; a batch is committed only when it and every
	// batch before it are confirmed.
	var unconfirmed []*Batch
	for b := range batches {
		err := c.process(pctx, b)
		if err == nil {
			unconfirmed = append(unconfirmed, b)
			err = c.confirm(pctx, &unconfirmed)
		}
		if err != nil {
			stopFetching()
			for range batches { // let the fetcher finish
			}
			if ctx.Err() != nil {
				c.log.Warn("shutdown before a batch was confirmed; it will be redelivered", "batches", len(unconfirmed)+1, "err", err)
				return nil
			}
			return err
		}
	}
	// The channel is closed: the fetcher has returned and fetchErr is set.
	if fetchErr != nil {
		return fmt.Errorf("fetch: %w", fetchErr)
	}
	if len(unconfirmed) > 0 {
		c.log.Warn("stopped with batches applied but not confirmed durable; they will be redelivered", "batches", len(unconfirmed))
	}
	c.log.Info("stopped")
	return nil
}

// fetch collects up to BatchSize messages: it blocks for the first, then
// waits at most BatchWait for the rest. Shutdown ends it with what it has.
func (c *Consumer) fetch(ctx context.Context) ([]kafka.Message, error) {
	msg, err := c.reader.FetchMessage(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil
		}
		return nil, err
	}
	batch := []kafka.Message{msg}
	wctx, cancel := context.WithTimeout(ctx, c.opts.BatchWait)
	defer cancel()
	for len(batch) < c.opts.BatchSize {
		msg, err := c.reader.FetchMessage(wctx)
		if err != nil {
			if wctx.Err() != nil {
				return batch, nil
			}
			return batch, err
		}
		batch = append(batch, msg)
	}
	return batch, nil
}

// Reference is the time an event read from Kafka is judged against (see
// suppression.Event.Normalize): the message's timestamp, but never after
// the moment suppressd read it. The producer sets the timestamp (kafka-go
// does not expose a LogAppendTime topic's broker time: it drops the record
// batch's max timestamp, where the broker writes it), so it alone would let
// a producer date a lift an hour ahead; the reader's clock bounds it.
func Reference(msgTime, read time.Time) time.Time {
	if msgTime.IsZero() || msgTime.After(read) {
		return read
	}
	return msgTime
}

// process writes a batch's dead letters and makes its effect. A batch whose
// effect is made but not confirmed durable is not an error: confirm deals
// with it.
func (c *Consumer) process(ctx context.Context, b *Batch) error {
	if len(b.Dead) > 0 {
		dead := make([]kafka.Message, len(b.Dead))
		now := c.opts.Now()
		for i, d := range b.Dead {
			dead[i] = deadLetter(d.Msg, d.Err, now)
			c.m.events.WithLabelValues("invalid", outcomeDeadLetter).Inc()
			c.m.deadLetters.WithLabelValues(d.Msg.Topic).Inc()
			// The error names fields, never values: safe to log.
			c.log.Warn("dead-lettering event", "topic", d.Msg.Topic, "partition", d.Msg.Partition, "offset", d.Msg.Offset, "err", d.Err)
		}
		if err := c.retry(ctx, "dead_letter", func() error { return c.dlq.WriteMessages(ctx, dead...) }); err != nil {
			return fmt.Errorf("write %d dead letters: %w", len(dead), err)
		}
	}
	if len(b.Events) == 0 {
		b.confirmed = true
		return nil
	}
	start := time.Now()
	err := c.retry(ctx, "effect", func() error {
		err := c.do(ctx, b)
		if errors.Is(err, suppression.ErrNotDurable) {
			return nil // made; confirmed later
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("%s %d events: %w", c.opts.Stage, len(b.Events), err)
	}
	c.m.applyTime.Observe(time.Since(start).Seconds())
	now := c.opts.Now()
	for _, e := range b.Events {
		c.m.events.WithLabelValues(string(e.Type), outcomeApplied).Inc()
		c.m.freshness.Observe(max(0, now.Sub(e.OccurredAt).Seconds()))
		if !e.Reference.IsZero() {
			c.m.delay.Observe(max(0, now.Sub(e.Reference).Seconds()))
		}
	}
	return nil
}

// do runs the handler once and records whether the batch is confirmed.
func (c *Consumer) do(ctx context.Context, b *Batch) error {
	n, err := c.handler.Do(ctx, b)
	switch {
	case err == nil:
		if !b.confirmed {
			c.m.changed.Add(float64(n))
		}
		b.confirmed = true
	case errors.Is(err, suppression.ErrNotDurable):
		c.m.unconfirmed.Inc()
	default:
		c.m.effectErrors.Inc()
	}
	return err
}

// confirm commits the confirmed batches at the head of unconfirmed, in
// order. The head, if unconfirmed, is tried once more; when too many
// batches wait, the head is retried until it is confirmed (back pressure:
// the consumer stops taking new batches rather than pile up uncommitted
// ones).
func (c *Consumer) confirm(ctx context.Context, unconfirmed *[]*Batch) error {
	q := *unconfirmed
	for len(q) > 0 {
		head := q[0]
		if !head.confirmed {
			var err error
			if len(q) > c.opts.MaxUnconfirmed {
				err = c.retry(ctx, "confirm", func() error { return c.do(ctx, head) })
			} else {
				err = c.do(ctx, head)
			}
			if err != nil && !errors.Is(err, suppression.ErrNotDurable) {
				return err
			}
			if !head.confirmed {
				c.log.Warn("waiting for the store to confirm a batch as durable", "unconfirmed_batches", len(q), "err", err)
				break
			}
		}
		c.commit(ctx, head.Msgs)
		q = q[1:]
	}
	*unconfirmed = q
	c.m.pending.Set(float64(len(q)))
	return nil
}

// commit commits the batch, retrying a few times. A commit that keeps
// failing (the partitions moved in a rebalance) is given up: the effect is
// made, and its re-delivery changes nothing.
func (c *Consumer) commit(ctx context.Context, batch []kafka.Message) {
	var err error
	for attempt := 0; attempt < c.opts.CommitAttempts; attempt++ {
		if err = c.reader.CommitMessages(ctx, batch...); err == nil {
			return
		}
		if ctx.Err() != nil {
			break
		}
		c.m.retries.WithLabelValues("commit").Inc()
		if !c.sleep(ctx, attempt) {
			break
		}
	}
	c.log.Warn("commit failed; the batch's effect is made and will be redelivered harmlessly", "messages", len(batch), "err", err)
}

// retry runs f until it succeeds or ctx ends, backing off between attempts.
func (c *Consumer) retry(ctx context.Context, what string, f func() error) error {
	for attempt := 0; ; attempt++ {
		err := f()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return errors.Join(err, ctx.Err())
		}
		c.m.retries.WithLabelValues(what).Inc()
		c.log.Warn("retrying", "what", what, "attempt", attempt+1, "err", err)
		if !c.sleep(ctx, attempt) {
			return errors.Join(err, ctx.Err())
		}
	}
}

// sleep waits a capped exponential backoff with full jitter; false if ctx
// ended first.
func (c *Consumer) sleep(ctx context.Context, attempt int) bool {
	return c.pause(ctx, attempt, c.opts.BackoffMax)
}

// pause is sleep capped at most instead of BackoffMax.
func (c *Consumer) pause(ctx context.Context, attempt int, most time.Duration) bool {
	d := c.opts.BackoffMin << min(attempt, 20)
	if d <= 0 || d > most {
		d = most
	}
	d = time.Duration(rand.Int64N(int64(d)) + 1)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// Dead-letter headers.
const (
	HeaderError     = "suppressd-error"
	HeaderTopic     = "suppressd-source-topic"
	HeaderPartition = "suppressd-source-partition"
	HeaderOffset    = "suppressd-source-offset"
	HeaderTime      = "suppressd-dead-lettered-at"
)

// maxErrorHeader bounds the error header; a very broken event has many
// violations.
const maxErrorHeader = 4096

func deadLetter(msg kafka.Message, err error, now time.Time) kafka.Message {
	text := err.Error()
	if len(text) > maxErrorHeader {
		text = text[:maxErrorHeader] + "…"
	}
	headers := make([]kafka.Header, 0, len(msg.Headers)+5)
	headers = append(headers, msg.Headers...)
	headers = append(headers,
		kafka.Header{Key: HeaderError, Value: []byte(text)},
		kafka.Header{Key: HeaderTopic, Value: []byte(msg.Topic)},
		kafka.Header{Key: HeaderPartition, Value: []byte(strconv.Itoa(msg.Partition))},
		kafka.Header{Key: HeaderOffset, Value: []byte(strconv.FormatInt(msg.Offset, 10))},
		kafka.Header{Key: HeaderTime, Value: []byte(now.UTC().Format(time.RFC3339Nano))},
	)
	return kafka.Message{Key: msg.Key, Value: msg.Value, Headers: headers}
}
