package webhook

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/suppression"
)

// slowPublisher widens the window between a delivery's check of the log
// and its record, where a concurrent retry could slip through.
type slowPublisher struct {
	fakePublisher
	delay time.Duration
}

func (p *slowPublisher) Publish(ctx context.Context, e suppression.Event) error {
	time.Sleep(p.delay)
	return p.fakePublisher.Publish(ctx, e)
}

// Deliveries of the same batch overlapping in time (a provider retrying
// after a timeout) publish each event once.
func TestConcurrentDeliveries(t *testing.T) {
	side := newSendGridSide(t)
	pub := &slowPublisher{fakePublisher: fakePublisher{failFrom: -1}, delay: 20 * time.Millisecond}
	e := side.env(t, func(o *Options) { o.Publisher = pub })
	body := fixture(t, "sendgrid/batch.json")
	var wg sync.WaitGroup
	statuses := make([]int, 6)
	for i := range statuses {
		h := side.headers(side.key, testNow, body) // each signed anew, as a retry is
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses[i] = e.post("/hooks/sendgrid", body, h).status
		}()
	}
	wg.Wait()
	for _, s := range statuses {
		require.Equal(t, http.StatusOK, s)
	}
	require.Len(t, pub.Events(), 5, "each opt-out published once")
}
