package overlap

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestEveryOverlapsUpToMax: calls that never return take max slots and no
// more; the ticks in between are skipped, and Every waits for the calls
// before it returns.
func TestEveryOverlapsUpToMax(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	release := make(chan struct{})
	var running, started, finished atomic.Int32
	done := make(chan struct{})
	go func() {
		defer close(done)
		Every(ctx, time.Millisecond, 3, func(time.Time) {
			started.Add(1)
			running.Add(1)
			<-release
			running.Add(-1)
			finished.Add(1)
		})
	}()
	require.Eventually(t, func() bool { return running.Load() == 3 }, 5*time.Second, time.Millisecond)
	time.Sleep(20 * time.Millisecond) // twenty ticks, all skipped
	require.EqualValues(t, 3, started.Load(), "no fourth call while three run")
	cancel()
	select {
	case <-done:
		t.Fatal("Every returned while its calls ran")
	case <-time.After(20 * time.Millisecond):
	}
	close(release)
	<-done
	require.EqualValues(t, 3, finished.Load())
}

// TestEveryPassesWhenTheCallStarted: sent is taken before fn runs.
func TestEveryPassesWhenTheCallStarted(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan time.Time, 1)
	go Every(ctx, time.Millisecond, 1, func(sent time.Time) {
		select {
		case got <- sent:
		default:
		}
	})
	sent := <-got
	require.False(t, sent.After(time.Now()))
	require.WithinDuration(t, time.Now(), sent, time.Second)
}

func TestHealthReportsEachTransitionOnce(t *testing.T) {
	var h Health
	boom := errors.New("boom")
	for _, step := range []struct {
		err                       error
		wantFailed, wantRecovered bool
	}{
		{nil, false, false}, {boom, true, false}, {boom, false, false}, {nil, false, true}, {nil, false, false}, {boom, true, false},
	} {
		failed, recovered := h.Report(step.err)
		require.Equal(t, step.wantFailed, failed, "%v", step.err)
		require.Equal(t, step.wantRecovered, recovered, "%v", step.err)
	}
}
