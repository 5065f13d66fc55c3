package importer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/suppressd/suppressd/suppression"
)

// Publisher publishes one event and returns once Kafka acknowledged it.
// An error that wraps suppression.ErrInvalidEvent or ErrInvalidIdentifier
// is the event's fault (the row is rejected); any other is the broker's
// and is retried.
type Publisher interface {
	Publish(ctx context.Context, e suppression.Event) error
}

// RunOptions configure an import.
type RunOptions struct {
	Parse  Options      // the format, and how rows are read
	Events EventOptions // what every event covers, and the keyer of its id
	// Concurrency is how many events are in flight at once. Default 8.
	Concurrency int
	// Attempts is how often a broker failure is tried before the import
	// stops. Default 5, with backoff from 200ms to 5s.
	Attempts int
	// DryRun reads and checks every row and publishes nothing.
	DryRun bool
	// Reject is told of every rejected row, one call at a time.
	Reject func(Rejection)
	// Stats, when set, is kept current while the import runs (for a
	// progress line).
	Stats *Stats
}

// Stats count an import as it runs; safe to read concurrently.
type Stats struct {
	Rows, Published, Rejected atomic.Int64
}

// Result is what an import did.
type Result struct {
	Rows, Published, Rejected int64
}

// ErrPublish wraps the broker failure that stopped an import.
var ErrPublish = errors.New("publishing failed")

// Run is the import pipeline, the one both `suppressd import` and
// POST /v1/import use:
//
//	export ─▶ Parse (one row at a time) ─┬─▶ workers ─▶ Publisher ─▶ Kafka
//	                                     └─▶ Reject(line, reason)
//
// Every good row becomes a suppress event (Event) whose id is keyed with
// the pepper and derived from the row, so importing the same file again
// publishes the same events; a row the event rules refuse is rejected like
// an unparseable one. The first broker failure that survives the retries
// stops the import with an error wrapping ErrPublish; a file that cannot
// be read stops it with the parse error. Rows published before a failure
// stay published: importing again is safe.
func Run(ctx context.Context, r io.Reader, pub Publisher, o RunOptions) (Result, error) {
	if o.Concurrency <= 0 {
		o.Concurrency = 8
	}
	if o.Attempts <= 0 {
		o.Attempts = 5
	}
	st := o.Stats
	if st == nil {
		st = &Stats{}
	}
	var rejectMu sync.Mutex
	reject := func(rej Rejection) {
		st.Rejected.Add(1)
		if o.Reject != nil {
			rejectMu.Lock()
			o.Reject(rej)
			rejectMu.Unlock()
		}
	}

	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type job struct {
		line int
		ev   suppression.Event
	}
	jobs := make(chan job, 2*o.Concurrency)
	var (
		wg       sync.WaitGroup
		fatalMu  sync.Mutex
		fatalErr error
	)
	for range o.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				if pctx.Err() != nil {
					continue // drain
				}
				err := publishRetry(pctx, pub, j.ev, o.Attempts)
				switch {
				case err == nil:
					st.Published.Add(1)
				case errors.Is(err, suppression.ErrInvalidEvent), errors.Is(err, suppression.ErrInvalidIdentifier):
					// The parser checked the row; this is a rule of the
					// event itself. The error names fields, never values.
					reject(Rejection{Line: j.line, Reason: err.Error()})
				default:
					fatalMu.Lock()
					if fatalErr == nil {
						fatalErr = err
					}
					fatalMu.Unlock()
					cancel()
				}
			}
		}()
	}
	parseErr := Parse(r, o.Parse,
		func(row Row) error {
			st.Rows.Add(1)
			if o.DryRun {
				st.Published.Add(1)
				return nil
			}
			select {
			case jobs <- job{line: row.Line, ev: Event(o.Parse.Format, row, o.Events)}:
				return nil
			case <-pctx.Done():
				return pctx.Err()
			}
		},
		func(rej Rejection) error {
			st.Rows.Add(1)
			reject(rej)
			return nil
		})
	close(jobs)
	wg.Wait()
	res := Result{Rows: st.Rows.Load(), Published: st.Published.Load(), Rejected: st.Rejected.Load()}
	if fatalErr != nil {
		return res, fmt.Errorf("%w after %d events: %w", ErrPublish, res.Published, fatalErr)
	}
	if parseErr != nil {
		// The parse stopped because the import was canceled, or on an
		// error of its own (a read that failed, which may also have
		// canceled the context: the read's error says why).
		if ctx.Err() != nil && (errors.Is(parseErr, context.Canceled) || errors.Is(parseErr, context.DeadlineExceeded)) {
			return res, ctx.Err()
		}
		return res, parseErr
	}
	return res, nil
}

// publishRetry publishes one event, retrying broker failures with backoff;
// an invalid event is not retried.
func publishRetry(ctx context.Context, pub Publisher, e suppression.Event, attempts int) error {
	backoff := 200 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := pub.Publish(ctx, e)
		if err == nil || errors.Is(err, suppression.ErrInvalidEvent) || errors.Is(err, suppression.ErrInvalidIdentifier) || attempt >= attempts {
			return err
		}
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return err
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}
