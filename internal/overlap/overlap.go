// Package overlap runs a periodic question whose answers may be slow
// without letting one slow answer hold back the next: the freshness probes
// of the read index (the ledger's end offsets, the store's generation
// pointer) each bound how old what they vouch for may be.
package overlap

import (
	"context"
	"sync"
	"time"
)

// Every calls fn every interval until ctx ends, each call in a goroutine of
// its own, with no more than most of them running at once: a tick that
// finds that many running is skipped. sent is when the call was started,
// the time its answer speaks for. Every returns once ctx has ended and
// every call has returned.
func Every(ctx context.Context, interval time.Duration, most int, fn func(sent time.Time)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	slots := make(chan struct{}, most)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		select {
		case slots <- struct{}{}:
		default:
			continue // most calls running: skip this tick
		}
		wg.Go(func() {
			defer func() { <-slots }()
			fn(time.Now())
		})
	}
}

// Health remembers whether the last answer of overlapping calls failed, so
// that a failure and the recovery from it are each reported once. Safe for
// concurrent use.
type Health struct {
	mu      sync.Mutex
	failing bool
}

// Report records an answer's error (nil: it answered) and says whether it
// began a failure or ended one.
func (h *Health) Report(err error) (failed, recovered bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	failed, recovered = err != nil && !h.failing, err == nil && h.failing
	h.failing = err != nil
	return failed, recovered
}
