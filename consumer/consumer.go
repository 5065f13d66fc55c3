// Package consumer folds suppression events from Kafka into the store.
//
//	Kafka topics ──FetchMessage──▶ batch ──Decode──▶ valid: writes ──Apply──▶ Redis
//	                                    └──────────▶ invalid: dead-letter topic
//	                      CommitMessages ◀── only after both succeeded
//
// Delivery is at least once and the store's apply is idempotent, which makes
// it effectively once. Offsets are committed only after the dead letters are
// acknowledged by Kafka and the store accepted the batch; a store outage is
// retried with capped exponential backoff and jitter, never skipped.
package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/suppressd/suppressd/schemas"
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

// Options tune a Consumer. The zero value is usable.
type Options struct {
	// BatchSize is the most messages applied together. Default 2000.
	BatchSize int
	// BatchWait is how long a batch waits to fill once its first message is
	// in. Default 20ms: opt-outs are visible within it under light load.
	BatchWait time.Duration
	// BackoffMin and BackoffMax bound the retry delay of a failed store
	// write, dead-letter write or commit; the delay doubles from min to max,
	// with full jitter. Defaults 100ms and 10s.
	BackoffMin, BackoffMax time.Duration
	// CommitAttempts is how often a failed commit is retried before the
	// consumer moves on (the events are applied; a rebalance re-delivers
	// them and they change nothing). Default 5.
	CommitAttempts int
	// ShutdownGrace is how long, after the context is cancelled, the batch
	// in hand may take to be applied and committed. Default 15s.
	ShutdownGrace time.Duration
	// Normalizer normalises identifiers (default phone region).
	Normalizer suppression.Normalizer
	// Keyer turns match keys into storage keys (the pepper).
	Keyer suppression.Keyer
	// Now is the clock, for tests. Default time.Now.
	Now func() time.Time
}

func (o *Options) setDefaults() {
	if o.BatchSize <= 0 {
		o.BatchSize = 2000
	}
	if o.BatchWait <= 0 {
		o.BatchWait = 20 * time.Millisecond
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
	if o.ShutdownGrace <= 0 {
		o.ShutdownGrace = 15 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Consumer reads events, applies them and commits.
type Consumer struct {
	reader    Reader
	dlq       MessageWriter
	store     suppression.Store
	validator *schemas.Validator
	opts      Options
	log       *slog.Logger
	m         *metrics
}

// New returns a Consumer. dlq writes to the dead-letter topic (its Topic
// set); the reader should be a group reader with CommitInterval 0.
func New(r Reader, dlq MessageWriter, store suppression.Store, v *schemas.Validator, opts Options, log *slog.Logger, reg prometheus.Registerer) *Consumer {
	opts.setDefaults()
	return &Consumer{
		reader: r, dlq: dlq, store: store, validator: v, opts: opts,
		log: log.With("component", "consumer"), m: newMetrics(reg),
	}
}

// Run consumes until ctx is cancelled, then finishes the batches in hand
// (within ShutdownGrace) and returns nil. It returns an error only when the
// reader fails for good.
//
// Two stages overlap: while one batch waits on Redis, the next is fetched
// and decoded. Batches are applied and committed in order, one at a time.
func (c *Consumer) Run(ctx context.Context) error {
	c.log.Info("consuming", "batch_size", c.opts.BatchSize, "batch_wait", c.opts.BatchWait)
	// Batches in hand are finished after shutdown starts, for ShutdownGrace.
	pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(c.opts.ShutdownGrace, cancel) })
	defer stop()

	fctx, stopFetching := context.WithCancel(ctx)
	defer stopFetching()
	batches := make(chan *batch, 1)
	var fetchErr error
	go func() {
		defer close(batches)
		for {
			msgs, err := c.fetch(fctx)
			if len(msgs) > 0 {
				batches <- c.prepare(msgs)
			}
			if fctx.Err() != nil {
				return
			}
			if err != nil {
				fetchErr = err
				return
			}
		}
	}()
	for b := range batches {
		if err := c.process(pctx, b); err != nil {
			stopFetching()
			for range batches { // let the fetcher finish
			}
			if ctx.Err() != nil {
				c.log.Warn("shutdown before a batch was applied; it will be redelivered", "messages", len(b.msgs), "err", err)
				return nil
			}
			return err
		}
	}
	// The channel is closed: the fetcher has returned and fetchErr is set.
	if fetchErr != nil {
		return fmt.Errorf("fetch: %w", fetchErr)
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
	batch := []kafka.Message{c.observe(msg)}
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
		batch = append(batch, c.observe(msg))
	}
	return batch, nil
}

func (c *Consumer) observe(msg kafka.Message) kafka.Message {
	c.m.lag.WithLabelValues(msg.Topic, strconv.Itoa(msg.Partition)).Set(float64(max(0, msg.HighWaterMark-msg.Offset-1)))
	return msg
}

// batch is a fetched batch, decoded.
type batch struct {
	msgs    []kafka.Message
	writes  []suppression.Write
	dead    []kafka.Message
	applied []suppression.Event
	keys    []suppression.StorageKey // scratch
}

// prepare decodes a batch: valid events become writes, invalid ones dead
// letters.
func (c *Consumer) prepare(msgs []kafka.Message) *batch {
	c.m.batchSize.Observe(float64(len(msgs)))
	b := &batch{msgs: msgs}
	now := c.opts.Now()
	for _, msg := range msgs {
		d, err := c.validator.Decode(msg.Value, Reference(msg.Time, now), c.opts.Normalizer)
		if err != nil {
			b.dead = append(b.dead, deadLetter(msg, err, c.opts.Now()))
			c.m.events.WithLabelValues("invalid", outcomeDeadLetter).Inc()
			c.m.deadLetters.WithLabelValues(msg.Topic).Inc()
			// The error names fields, never values: safe to log.
			c.log.Warn("dead-lettering event", "topic", msg.Topic, "partition", msg.Partition, "offset", msg.Offset, "err", err)
			continue
		}
		if d.Event.Clamped {
			// A producer's clock ahead, or a lift trying to outvote later
			// opt-outs: kept, dated at the reference time.
			c.m.clamped.WithLabelValues(d.Event.Type.Action().String()).Inc()
		}
		b.keys = c.opts.Keyer.StorageKeys(b.keys[:0], d.Keys)
		b.writes = suppression.AppendWrites(b.writes, &d.Event, b.keys)
		b.applied = append(b.applied, d.Event)
	}
	return b
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

// process writes a batch's dead letters, applies its writes and commits it.
func (c *Consumer) process(ctx context.Context, b *batch) error {
	dead, writes, applied := b.dead, b.writes, b.applied
	if len(dead) > 0 {
		if err := c.retry(ctx, "dead_letter", func() error { return c.dlq.WriteMessages(ctx, dead...) }); err != nil {
			return fmt.Errorf("write %d dead letters: %w", len(dead), err)
		}
	}
	if len(writes) > 0 {
		start := time.Now()
		var changed int
		err := c.retry(ctx, "store", func() error {
			n, err := c.store.Apply(ctx, writes)
			if err != nil {
				c.m.storeErrors.Inc()
				return err
			}
			changed = n
			return nil
		})
		if err != nil {
			return fmt.Errorf("apply %d events: %w", len(applied), err)
		}
		c.m.applyTime.Observe(time.Since(start).Seconds())
		c.m.changed.Add(float64(changed))
		now := c.opts.Now()
		for _, e := range applied {
			c.m.events.WithLabelValues(string(e.Type), outcomeApplied).Inc()
			c.m.freshness.Observe(max(0, now.Sub(e.OccurredAt).Seconds()))
		}
	}
	c.commit(ctx, b.msgs)
	return nil
}

// commit commits the batch, retrying a few times. A commit that keeps
// failing (the partitions moved in a rebalance) is given up: the events are
// in the store, and their re-delivery changes nothing.
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
	c.log.Warn("commit failed; the batch is applied and will be redelivered harmlessly", "messages", len(batch), "err", err)
}

// retry runs f until it succeeds or ctx ends, backing off between attempts.
func (c *Consumer) retry(ctx context.Context, stage string, f func() error) error {
	for attempt := 0; ; attempt++ {
		err := f()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return errors.Join(err, ctx.Err())
		}
		c.m.retries.WithLabelValues(stage).Inc()
		c.log.Warn("retrying", "stage", stage, "attempt", attempt+1, "err", err)
		if !c.sleep(ctx, attempt) {
			return errors.Join(err, ctx.Err())
		}
	}
}

// sleep waits a capped exponential backoff with full jitter; false if ctx
// ended first.
func (c *Consumer) sleep(ctx context.Context, attempt int) bool {
	d := c.opts.BackoffMin << min(attempt, 20)
	if d <= 0 || d > c.opts.BackoffMax {
		d = c.opts.BackoffMax
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
