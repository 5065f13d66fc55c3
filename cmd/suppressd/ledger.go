package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/suppressd/suppressd/consumer"
)

// runLedger is `suppressd ledger <subcommand>`; the one subcommand is
// backfill.
func runLedger(ctx context.Context, args []string, io stdio) error {
	fs := flag.NewFlagSet("ledger", flag.ContinueOnError)
	fs.SetOutput(io.err)
	fs.Usage = func() {
		fmt.Fprint(io.err, `Usage of ledger:
  suppressd ledger backfill
	copy into the ledger every intake event consumed before the ledger
	existed (from each intake partition's first offset up to the ingest
	group's committed offset), then write its genesis record, so the store
	can be rebuilt from it and the intake topics' retention shortened
`)
	}
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	switch fs.Arg(0) {
	case "backfill":
		return runBackfill(ctx, fs.Args()[1:], io)
	case "":
		return usageError{errors.New("name a subcommand: backfill")}
	}
	return usageError{fmt.Errorf("unknown subcommand %q (want backfill)", fs.Arg(0))}
}

// runBackfill copies the events the ingest group consumed before the
// ledger existed into it. The ingest stage (same group) has written
// everything after that point, so no event is written twice; even if one
// were, applying it twice changes nothing.
func runBackfill(ctx context.Context, args []string, io stdio) error {
	fs := flag.NewFlagSet("ledger backfill", flag.ContinueOnError)
	fs.SetOutput(io.err)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	s, err := load("")
	if err != nil {
		return err
	}
	transport, err := s.Kafka.Transport()
	if err != nil {
		return err
	}
	if err := checkTopics(s, transport, append(s.Topics.All(), s.Topics.Ledger)); err != nil {
		return err
	}
	w := &kafka.Writer{
		Addr: kafka.TCP(s.Kafka.Brokers...), Topic: s.Topics.Ledger, Transport: transport,
		RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond, Balancer: &kafka.Hash{},
		BatchSize: 10000, BatchBytes: 16 << 20, MaxAttempts: 5,
	}
	defer w.Close()
	start := time.Now()
	res, err := consumer.Backfill{
		Kafka: s.Kafka, Topics: s.Topics.All(), Group: s.Consumer.Group,
		Ingest: &consumer.Ingest{Validator: s.validator, Normalizer: s.normalizer, Keyer: s.keyer, Ledger: w, AdminTopic: s.Topics.Admin},
	}.Run(ctx)
	if err != nil {
		return fmt.Errorf("backfill: %w (%d records written before the error; running it again is safe)", err, res.Written)
	}
	fmt.Fprintf(io.out, "ledger backfilled: %d intake events read, %d records written, %d invalid skipped, in %s; the genesis record is written\n",
		res.Read, res.Written, res.Invalid, time.Since(start).Round(time.Millisecond))
	return nil
}
