package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/suppressd/suppressd/consumer"
	"github.com/suppressd/suppressd/rebuild"
	"github.com/suppressd/suppressd/store/redisstore"
)

// runRebuild replays the ledger from its first offset into a fresh layout
// generation, then switches readers to it: the recovery for a lost or
// corrupted Redis, and the way to change the key layout. See package
// rebuild for the steps and why nothing is lost at the seams.
func runRebuild(ctx context.Context, args []string, io stdio) error {
	fs := flag.NewFlagSet("rebuild", flag.ContinueOnError)
	fs.SetOutput(io.err)
	readsConfig(fs)
	gen := fs.String("generation", "", "generation to build (default: the active one's successor, g1 -> g2)")
	dropOld := fs.Bool("drop-old", false, "delete the previous generation's keys once the new one is active")
	grace := fs.Duration("grace", redisstore.Options{}.SwitchGrace(), "wait after announcing the rebuild, so every writer dual-writes")
	every := fs.Duration("progress", 5*time.Second, "how often to report progress")
	incomplete := fs.Bool("allow-incomplete-ledger", false, "build from a ledger without a genesis record (one not yet backfilled): DANGEROUS, it may lack opt-outs")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	s, err := load("")
	if err != nil {
		return err
	}
	d, err := openStore(s)
	if err != nil {
		return err
	}
	defer d.close()
	host, _ := os.Hostname()
	o := rebuild.Options{Generation: *gen, Owner: fmt.Sprintf("%s/%d/cli", host, os.Getpid()), Grace: *grace, DropOld: *dropOld, ProgressEvery: *every,
		Begun: func(gen, prev string) {
			fmt.Fprintf(io.out, "rebuilding generation %s (active: %s); writers dual-write from now on\n", gen, orNone(prev))
		}}
	p, err := runRebuildWith(ctx, s, d, o, *incomplete, func(p rebuild.Progress) { fmt.Fprintln(io.out, progressLine(p)) })
	if err != nil {
		if p.Generation != "" && !p.Done {
			fmt.Fprintf(io.out, "rebuild of %s aborted; %s stays active\n", p.Generation, orNone(p.Previous))
		}
		return err
	}
	fmt.Fprintln(io.out, progressLine(p))
	fmt.Fprintf(io.out, "generation %s is active: %d events applied, %d invalid skipped, in %s\n",
		p.Generation, p.Read-p.Invalid, p.Invalid, p.Elapsed.Round(time.Millisecond))
	if p.PreviousDropped {
		fmt.Fprintf(io.out, "dropped generation %s: %d keys\n", p.Previous, p.Dropped)
	}
	return nil
}

func orNone(gen string) string {
	if gen == "" {
		return "no generation"
	}
	return gen
}

func progressLine(p rebuild.Progress) string {
	pct := 100.0
	if p.Total > 0 {
		pct = 100 * float64(p.Read) / float64(p.Total)
	}
	return fmt.Sprintf("progress: %d/%d events (%.1f%%), %d invalid, %.0f events/s", p.Read, p.Total, pct, p.Invalid, p.Rate())
}

// runRebuildWith rebuilds the store from the ledger: the command
// and the consumer role's store watch both call it. A negative o.Grace
// means: none when no generation is active (nobody can be writing), else
// the store's switch grace.
func runRebuildWith(ctx context.Context, s *settings, d *storeDeps, o rebuild.Options, allowIncomplete bool, progress func(rebuild.Progress)) (rebuild.Progress, error) {
	gens := generations{d.rebuilds}
	if o.Grace < 0 {
		active, err := gens.Active(ctx)
		if err != nil {
			return rebuild.Progress{}, err
		}
		o.Grace = 0
		if active != "" {
			o.Grace = s.storeOpts.SwitchGrace()
		}
	}
	o.Progress = progress
	src := consumer.LedgerSource{Kafka: s.Kafka, Topic: s.Topics.Ledger, AllowIncomplete: allowIncomplete}
	p, err := rebuild.Run(ctx, gens, src, o)
	if p.Generation != "" && !p.Done && !errors.Is(err, redisstore.ErrRebuildBusy) {
		return p, fmt.Errorf("rebuild of %s: %w", p.Generation, err)
	}
	return p, err
}

// generations is the Redis store's rebuild state machine as package
// rebuild sees it.
type generations struct{ *redisstore.Rebuilds }

func (g generations) Begin(ctx context.Context, gen, owner string, lease time.Duration) (rebuild.Target, error) {
	t, err := g.Rebuilds.Begin(ctx, gen, owner, lease)
	if err != nil {
		return nil, err
	}
	return t, nil
}
