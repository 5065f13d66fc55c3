package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"

	"github.com/suppressd/suppressd/consumer"
	"github.com/suppressd/suppressd/schemas"
	"github.com/suppressd/suppressd/suppression/redisstore"
)

// runRebuild replays every consumed topic from its first offset into a fresh
// layout generation, then switches readers to it: the recovery for a lost or
// corrupted Redis, and the way to change the key layout.
//
//  1. announce generation gN+1 as "building": running consumers dual-write
//  2. wait until every replica has seen that (RefreshGrace)
//  3. note each partition's end offset, replay [first, end) into gN+1
//  4. make gN+1 active; with --drop-old, delete gN
func runRebuild(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("rebuild", flag.ContinueOnError)
	fs.SetOutput(stderr)
	gen := fs.String("generation", "", "generation to build (default: the active one's successor, g1 -> g2)")
	dropOld := fs.Bool("drop-old", false, "delete the previous generation's keys once the new one is active")
	grace := fs.Duration("grace", redisstore.RefreshGrace(redisstore.DefaultRefresh), "wait after announcing the rebuild, so every writer dual-writes")
	progressEvery := fs.Duration("progress", 5*time.Second, "how often to report progress")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	cfg, d, err := openDeps()
	if err != nil {
		return err
	}
	defer d.close()
	old, err := d.store.Active(ctx)
	if err != nil {
		return err
	}
	if *gen == "" {
		*gen = nextGeneration(old)
	}
	target, err := d.store.BeginRebuild(ctx, *gen)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "rebuilding generation %s (active: %s); writers dual-write from now on\n", *gen, old)
	ok := false
	defer func() {
		if !ok {
			if err := d.store.AbortRebuild(context.WithoutCancel(ctx)); err != nil {
				fmt.Fprintf(stderr, "abort rebuild: %v\n", err)
			}
			fmt.Fprintf(stdout, "rebuild of %s aborted; %s stays active\n", *gen, old)
		}
	}()
	select {
	case <-time.After(*grace):
	case <-ctx.Done():
		return ctx.Err()
	}

	ends, err := endOffsets(ctx, cfg)
	if err != nil {
		return err
	}
	var total int64
	for _, e := range ends {
		total += e.end - e.start
	}
	fmt.Fprintf(stdout, "replaying %d events from %d partitions of %s\n", total, len(ends), strings.Join(cfg.Topics.All(), ", "))
	v, err := schemas.New()
	if err != nil {
		return err
	}
	dialer, err := cfg.Kafka.Dialer()
	if err != nil {
		return err
	}
	st := &rebuildStats{total: total, start: time.Now()}
	stopProgress := reportProgress(stdout, st, *progressEvery)
	for _, e := range ends {
		if e.end <= e.start {
			continue
		}
		if err := replay(ctx, cfg, dialer, v, d, target, e, st); err != nil {
			stopProgress()
			return fmt.Errorf("replay %s[%d]: %w", e.topic, e.partition, err)
		}
	}
	stopProgress()
	if err := d.store.FinishRebuild(ctx, *gen); err != nil {
		return fmt.Errorf("switch to %s: %w", *gen, err)
	}
	ok = true
	fmt.Fprintln(stdout, st.line())
	fmt.Fprintf(stdout, "generation %s is active: %d events applied, %d invalid skipped, in %s\n",
		*gen, st.applied.Load(), st.invalid.Load(), time.Since(st.start).Round(time.Millisecond))
	if *dropOld {
		n, err := dropGeneration(ctx, d.rdb, cfg.Store.Prefix, old)
		if err != nil {
			return fmt.Errorf("drop generation %s: %w", old, err)
		}
		fmt.Fprintf(stdout, "dropped generation %s: %d keys\n", old, n)
	}
	return nil
}

// reportProgress prints a progress line every period until the returned
// function is called; that function returns once the reporter is gone.
func reportProgress(w io.Writer, st *rebuildStats, every time.Duration) func() {
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				fmt.Fprintln(w, st.line())
			case <-stop:
				return
			}
		}
	}()
	return func() { close(stop); <-done }
}

func nextGeneration(g string) string {
	n, err := strconv.Atoi(strings.TrimPrefix(g, "g"))
	if err != nil {
		return g + "-2"
	}
	return "g" + strconv.Itoa(n+1)
}

type partitionRange struct {
	topic      string
	partition  int
	start, end int64
}

// rebuildStats is read by the progress reporter while replay counts.
type rebuildStats struct {
	total                  int64
	read, applied, invalid atomic.Int64
	start                  time.Time
}

func (s *rebuildStats) line() string {
	read := s.read.Load()
	rate := float64(read) / max(time.Since(s.start).Seconds(), 1e-9)
	pct := 100.0
	if s.total > 0 {
		pct = 100 * float64(read) / float64(s.total)
	}
	return fmt.Sprintf("progress: %d/%d events (%.1f%%), %d applied, %d invalid, %.0f events/s",
		read, s.total, pct, s.applied.Load(), s.invalid.Load(), rate)
}

// endOffsets lists every partition of the consumed topics with its first
// and end offset now.
func endOffsets(ctx context.Context, cfg Config) ([]partitionRange, error) {
	transport, err := cfg.Kafka.Transport()
	if err != nil {
		return nil, err
	}
	client := &kafka.Client{Addr: kafka.TCP(cfg.Kafka.Brokers...), Transport: transport, Timeout: 30 * time.Second}
	meta, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: cfg.Topics.All()})
	if err != nil {
		return nil, fmt.Errorf("topic metadata: %w", err)
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
	resp, err := client.ListOffsets(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("list offsets: %w", err)
	}
	var out []partitionRange
	for topic, parts := range resp.Topics {
		for _, p := range parts {
			if p.Error != nil {
				return nil, fmt.Errorf("offsets of %s[%d]: %w", topic, p.Partition, p.Error)
			}
			out = append(out, partitionRange{topic: topic, partition: p.Partition, start: p.FirstOffset, end: p.LastOffset})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].topic < out[j].topic || out[i].topic == out[j].topic && out[i].partition < out[j].partition
	})
	return out, nil
}

// readPartition calls fn for every message of a partition in [start, end).
func readPartition(ctx context.Context, cfg Config, dialer *kafka.Dialer, pr partitionRange, fn func(kafka.Message) error) error {
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers: cfg.Kafka.Brokers, Topic: pr.topic, Partition: pr.partition, Dialer: dialer,
		MinBytes: 1, MaxBytes: 10 << 20, MaxWait: 250 * time.Millisecond,
	})
	defer r.Close()
	if err := r.SetOffset(pr.start); err != nil {
		return err
	}
	for next := pr.start; next < pr.end; {
		msg, err := r.FetchMessage(ctx)
		if err != nil {
			return err
		}
		next = msg.Offset + 1
		if err := fn(msg); err != nil {
			return err
		}
	}
	return nil
}

// replay applies one partition's events in [start, end) to the new
// generation, in batches.
func replay(ctx context.Context, cfg Config, dialer *kafka.Dialer, v *schemas.Validator, d *deps, target *redisstore.Store, pr partitionRange, st *rebuildStats) error {
	var writes []redisstore.Write
	flush := func() error {
		if len(writes) == 0 {
			return nil
		}
		_, err := target.Apply(ctx, writes)
		writes = writes[:0]
		return err
	}
	err := readPartition(ctx, cfg, dialer, pr, func(msg kafka.Message) error {
		st.read.Add(1)
		dec, err := v.Decode(msg.Value, msg.Time, d.normalizer)
		if err != nil {
			st.invalid.Add(1) // it went to the dead-letter topic when first consumed
			return nil
		}
		writes = consumer.AppendWrites(writes, dec)
		st.applied.Add(1)
		if len(writes) >= cfg.Consumer.BatchSize {
			return flush()
		}
		return nil
	})
	if err != nil {
		return err
	}
	return flush()
}

// dropGeneration deletes a generation's keys, on every master.
func dropGeneration(ctx context.Context, rdb redis.UniversalClient, prefix, gen string) (int64, error) {
	var n atomic.Int64 // masters are scanned in parallel
	drop := func(ctx context.Context, c *redis.Client) error {
		iter := c.Scan(ctx, 0, prefix+":"+gen+":*", 1000).Iterator()
		var batch []string
		for iter.Next(ctx) {
			batch = append(batch, iter.Val())
			if len(batch) == 500 {
				if err := unlinkEach(ctx, c, batch); err != nil {
					return err
				}
				n.Add(int64(len(batch)))
				batch = batch[:0]
			}
		}
		if err := iter.Err(); err != nil {
			return err
		}
		n.Add(int64(len(batch)))
		return unlinkEach(ctx, c, batch)
	}
	switch c := rdb.(type) {
	case *redis.ClusterClient:
		err := c.ForEachMaster(ctx, drop)
		return n.Load(), err
	case *redis.Client:
		err := drop(ctx, c)
		return n.Load(), err
	}
	return 0, errors.New("dropping needs a single-node or cluster client")
}

// unlinkEach unlinks keys one command each (pipelined): they span slots.
func unlinkEach(ctx context.Context, c *redis.Client, keys []string) error {
	if len(keys) == 0 {
		return nil
	}
	_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range keys {
			p.Unlink(ctx, k)
		}
		return nil
	})
	return err
}
