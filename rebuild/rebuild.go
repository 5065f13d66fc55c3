// Package rebuild replays the log of record into a fresh store generation
// and switches readers to it: the recovery for a lost or corrupted store, a
// new deployment's first build, and the way to change the key layout.
//
//  1. announce generation gN+1 as being built (a lease in the store):
//     running writers dual-write to it from their next pointer refresh
//  2. wait Grace, so every writer is dual-writing
//  3. replay the log, up to its end when the replay starts, into gN+1
//  4. make gN+1 active; optionally drop gN
//
// Nothing is lost at the seams: what writers applied before they noticed the
// rebuild is in the log before its end and replayed; what they apply after
// goes to both generations. The merge rule makes the overlap harmless.
package rebuild

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/suppressd/suppressd/suppression"
)

// Generations is the store's rebuild state machine.
type Generations interface {
	// Active names the generation readers use ("" when none).
	Active(ctx context.Context) (string, error)
	// Next names the generation after the active one.
	Next(ctx context.Context) (string, error)
	// Begin announces gen as being built by owner, holding it for lease.
	Begin(ctx context.Context, gen, owner string, lease time.Duration) (Target, error)
	// Renew extends owner's lease.
	Renew(ctx context.Context, gen, owner string, lease time.Duration) error
	// Finish makes gen the active generation.
	Finish(ctx context.Context, gen, owner string) error
	// Abort forgets owner's rebuild of gen.
	Abort(ctx context.Context, gen, owner string) error
	// Drop deletes every key of gen and returns how many.
	Drop(ctx context.Context, gen string) (int64, error)
}

// Target is the generation being built.
type Target interface {
	Apply(ctx context.Context, writes []suppression.Write) (int, error)
}

// Source is the log of record, replayed.
type Source interface {
	// Replay calls apply with batches of writes for every event in the log
	// from its start up to its end when Replay begins (events: how many
	// events the batch covers, valid or not), and returns how many events
	// it read and how many it skipped as invalid (they went to the
	// dead-letter topic when first consumed). total is told how many events
	// the replay covers once it knows. apply may be called from several
	// goroutines at once: the merge rule makes the order of writes
	// irrelevant, and a replay that does not wait for one batch before
	// reading the next is what keeps the store busy.
	Replay(ctx context.Context, total func(int64), apply func(writes []suppression.Write, events int) error) (read, invalid int64, err error)
}

// Options configure a rebuild.
type Options struct {
	// Generation to build. Default: the one after the active generation.
	Generation string
	// Owner names this process in the lease. Required.
	Owner string
	// Lease is how long the rebuild holds the store without renewing; it
	// renews every third of it. Default 30s.
	Lease time.Duration
	// Grace is the wait after announcing, so every writer dual-writes.
	// Zero skips it: right when nothing readable is active (a first build,
	// or a store that lost its data, which no writer can write to).
	Grace time.Duration
	// DropOld deletes the previous generation once the new one is active,
	// after Grace (readers re-read the pointer within it).
	DropOld bool
	// Begun, if set, is told the generation being built and the one
	// active before ("" for a first build) once the rebuild is announced.
	Begun func(gen, previous string)
	// Progress, if set, is called every ProgressEvery with the counts so far.
	Progress      func(Progress)
	ProgressEvery time.Duration
}

// Progress is a rebuild's state, for a progress line.
type Progress struct {
	Generation      string
	Previous        string // the generation active before ("" for a first build)
	Total           int64  // events the replay covers (0 until known)
	Read            int64  // events read so far, valid or not
	Invalid         int64  // events skipped as invalid (known at the end)
	Elapsed         time.Duration
	Done            bool  // the new generation is active
	PreviousDropped bool  // and the previous one was dropped
	Dropped         int64 // keys of the previous generation deleted
}

// Rate is events read per second so far.
func (p Progress) Rate() float64 { return float64(p.Read) / max(p.Elapsed.Seconds(), 1e-9) }

// Run rebuilds and returns the final progress. On any error before the
// switch the rebuild is aborted and the previous generation stays active.
// Begin's error (another rebuild holds the lease) is returned as it is.
func Run(ctx context.Context, gens Generations, src Source, o Options) (Progress, error) {
	if o.Owner == "" {
		return Progress{}, errors.New("rebuild: an owner is required")
	}
	if o.Lease <= 0 {
		o.Lease = 30 * time.Second
	}
	if o.ProgressEvery <= 0 {
		o.ProgressEvery = 5 * time.Second
	}
	prev, err := gens.Active(ctx)
	if err != nil {
		return Progress{}, err
	}
	gen := o.Generation
	if gen == "" {
		if gen, err = gens.Next(ctx); err != nil {
			return Progress{}, err
		}
	}
	target, err := gens.Begin(ctx, gen, o.Owner, o.Lease)
	if err != nil {
		return Progress{}, err
	}
	if o.Begun != nil {
		o.Begun(gen, prev)
	}
	start := time.Now()
	var total, read, invalid atomic.Int64
	snapshot := func() Progress {
		return Progress{Generation: gen, Previous: prev, Total: total.Load(), Read: read.Load(), Invalid: invalid.Load(),
			Elapsed: time.Since(start)}
	}
	finished := false
	defer func() {
		if !finished {
			_ = gens.Abort(context.WithoutCancel(ctx), gen, o.Owner)
		}
	}()

	// The lease is renewed, and progress reported, until the switch.
	rctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		renew := time.NewTicker(o.Lease / 3)
		defer renew.Stop()
		report := time.NewTicker(o.ProgressEvery)
		defer report.Stop()
		for {
			select {
			case <-rctx.Done():
				return
			case <-renew.C:
				if err := gens.Renew(rctx, gen, o.Owner, o.Lease); err != nil && rctx.Err() == nil {
					cancel(fmt.Errorf("renew the rebuild lease: %w", err))
					return
				}
			case <-report.C:
				if o.Progress != nil {
					o.Progress(snapshot())
				}
			}
		}
	}()
	stop := func() { cancel(nil); <-stopped }
	fail := func(err error) (Progress, error) {
		stop()
		if cause := context.Cause(rctx); cause != nil && !errors.Is(cause, context.Canceled) {
			err = cause
		}
		return snapshot(), err
	}

	if o.Grace > 0 {
		select {
		case <-time.After(o.Grace):
		case <-rctx.Done():
			return fail(rctx.Err())
		}
	}
	r, inv, err := src.Replay(rctx, func(n int64) { total.Store(n) }, func(writes []suppression.Write, events int) error {
		if _, err := target.Apply(rctx, writes); err != nil {
			return err
		}
		read.Add(int64(events))
		return nil
	})
	read.Store(r)
	invalid.Store(inv)
	if err != nil {
		return fail(fmt.Errorf("replay into %s: %w", gen, err))
	}
	stop()
	if err := gens.Finish(ctx, gen, o.Owner); err != nil {
		return snapshot(), fmt.Errorf("switch to %s: %w", gen, err)
	}
	finished = true
	p := snapshot()
	p.Done = true
	if o.DropOld && prev != "" && prev != gen {
		select {
		case <-time.After(o.Grace):
		case <-ctx.Done():
			return p, ctx.Err()
		}
		n, err := gens.Drop(ctx, prev)
		if err != nil {
			return p, fmt.Errorf("drop generation %s: %w", prev, err)
		}
		p.Dropped, p.PreviousDropped = n, true
	}
	return p, nil
}
