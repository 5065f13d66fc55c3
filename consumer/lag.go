package consumer

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/suppressd/suppressd/internal/kafkaconn"
)

// Offsets is what Lag asks Kafka; *kafkaconn.Admin implements it.
type Offsets interface {
	// Ranges lists every partition of the topics with its first and end
	// offset.
	Ranges(ctx context.Context, topics []string) ([]kafkaconn.Range, error)
	// Committed returns the group's committed offset of each range's
	// partition, -1 where it has none.
	Committed(ctx context.Context, group string, ranges []kafkaconn.Range) ([]int64, error)
}

// LagOptions configure a Lag. Stage, Group and Topics are required.
type LagOptions struct {
	// Stage names the stage in logs and metrics (ingest, apply).
	Stage string
	// Group is the stage's consumer group, Topics the topics it reads.
	Group  string
	Topics []string
	// Every is how often the lag is measured. Default 10s: under a
	// Prometheus scrape interval, and three small requests to the brokers.
	Every time.Duration
	// Timeout bounds one measurement. Default Every, at most 10s.
	Timeout time.Duration
}

// Lag measures a stage's consumer lag from Kafka on a timer: for every
// partition of the stage's topics, the messages between the group's
// committed offset and the partition's end. It reports the whole group,
// not the partitions this replica happens to own:
//
//   - a partition's lag is right whichever member owns it, and after a
//     rebalance it is simply taken over, so no replica keeps a stale value
//     for a partition it lost;
//   - a member that is stuck (its store does not answer, it is wedged)
//     commits nothing, so its partitions' lag grows although it fetches
//     nothing, and any other replica reports it; so does a member that
//     died before the group noticed;
//   - any one replica's view is complete: queries take the max over
//     replicas.
//
// A partition that is no longer one of the stage's topics' is dropped. A
// measurement that fails keeps the last values (a broker that cannot be
// asked is no reason to report the group caught up) and is counted.
type Lag struct {
	src  Offsets
	opts LagOptions
	log  *slog.Logger

	lag       *prometheus.GaugeVec // by topic and partition
	committed *prometheus.GaugeVec // by topic and partition
	errors    prometheus.Counter

	mu   sync.Mutex
	seen map[[2]string]bool // the series set by the last measurement
}

// NewLag returns the lag of a stage; Run measures it.
func NewLag(src Offsets, opts LagOptions, log *slog.Logger, reg prometheus.Registerer) *Lag {
	if opts.Every <= 0 {
		opts.Every = 10 * time.Second
	}
	if opts.Timeout <= 0 {
		opts.Timeout = min(opts.Every, 10*time.Second)
	}
	cl := prometheus.Labels{"stage": opts.Stage}
	l := &Lag{
		src: src, opts: opts, log: log.With("component", "consumer-lag", "stage", opts.Stage, "group", opts.Group),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "suppressd_consumer_lag", ConstLabels: cl,
			Help: "Messages of the partition the stage's consumer group has not committed: the partition's end offset minus " +
				"suppressd_consumer_committed_offset. The whole group's, measured every few seconds by every replica running " +
				"the stage: take the max over replicas.",
		}, []string{"topic", "partition"}),
		committed: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "suppressd_consumer_committed_offset", ConstLabels: cl,
			Help: "The offset the stage's consumer group resumes the partition from: its committed offset, or the " +
				"partition's first offset when it has committed none or the retention deleted what its commit points at.",
		}, []string{"topic", "partition"}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "suppressd_consumer_lag_errors_total", ConstLabels: cl,
			Help: "Measurements of the stage's lag that failed (Kafka did not answer); the last values are kept.",
		}),
		seen: map[[2]string]bool{},
	}
	reg.MustRegister(l.lag, l.committed, l.errors)
	return l
}

// Run measures the lag now and every Every until ctx ends.
func (l *Lag) Run(ctx context.Context) {
	t := time.NewTicker(l.opts.Every)
	defer t.Stop()
	for {
		mctx, cancel := context.WithTimeout(ctx, l.opts.Timeout)
		err := l.Measure(mctx)
		cancel()
		if err != nil && ctx.Err() == nil {
			l.log.Warn("could not measure the consumer lag; keeping the last values", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Measure asks Kafka once and sets the metrics.
func (l *Lag) Measure(ctx context.Context) error {
	ranges, err := l.src.Ranges(ctx, l.opts.Topics)
	var committed []int64
	if err == nil {
		committed, err = l.src.Committed(ctx, l.opts.Group, ranges)
	}
	if err != nil {
		l.errors.Inc()
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	seen := make(map[[2]string]bool, len(ranges))
	for i, r := range ranges {
		// Where the group resumes: its commit, unless it has none (the
		// stages start from the first offset) or the retention deleted
		// what it points at (what is left starts at the first offset).
		pos := max(committed[i], r.Start)
		k := [2]string{r.Topic, strconv.Itoa(r.Partition)}
		seen[k] = true
		l.lag.WithLabelValues(k[0], k[1]).Set(float64(max(0, r.End-pos)))
		l.committed.WithLabelValues(k[0], k[1]).Set(float64(pos))
	}
	for k := range l.seen {
		if !seen[k] {
			l.lag.DeleteLabelValues(k[0], k[1])
			l.committed.DeleteLabelValues(k[0], k[1])
		}
	}
	l.seen = seen
	return nil
}
