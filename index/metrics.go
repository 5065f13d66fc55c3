package index

import (
	"math"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	keys        *prometheus.CounterVec
	memory      prometheus.Counter // keys.WithLabelValues(answerMemory), resolved once
	store       prometheus.Counter
	fallbacks   *prometheus.CounterVec
	loads       *prometheus.CounterVec
	loadSeconds prometheus.Gauge
	visibility  prometheus.Histogram
}

// How a key of a read was answered.
const (
	answerMemory   = "memory"   // absent from a fresh set: no record, without a round trip
	answerStore    = "store"    // in the set: read from the store
	answerFallback = "fallback" // no fresh set: read from the store
)

func newMetrics(reg prometheus.Registerer, x *Index) *metrics {
	m := &metrics{
		keys: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "suppressd_index_keys_read_total",
			Help: "Keys read through the index, by how they were answered: memory (not in a fresh index: no record, no round trip), store (in the index: read from Redis), fallback (no fresh index: read from Redis).",
		}, []string{"answer"}),
		fallbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "suppressd_index_fallback_reads_total",
			Help: "Reads that went to Redis for every key because the index was not fresh, by reason: loading (no complete index), feed (the ledger feed is behind the bound), generation (the generation pointer was not confirmed within the bound).",
		}, []string{"reason"}),
		loads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "suppressd_index_loads_total",
			Help: "Loads of the index from the store, by outcome: done, failed (retried), switched (the active generation changed while it was loaded or loading).",
		}, []string{"outcome"}),
		loadSeconds: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "suppressd_index_load_seconds",
			Help: "How long the last complete load of the index took (the replica's warm-up).",
		}),
		visibility: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "suppressd_index_visibility_seconds",
			Help: "From a ledger record's time (when ingest received its event: before its store write) to its keys being in this replica's index: a bound on how far the index trails the store.",
			// From 1 ms to the bound and well past it.
			Buckets: []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60},
		}),
	}
	serving := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "suppressd_index_serving",
		Help: "1 while the index is fresh within SUPPRESSD_INDEX_MAX_LAG and answers keys without a record in memory; 0 while every read goes to Redis.",
	}, func() float64 {
		if v, _ := x.serving(time.Now()); v != nil {
			return 1
		}
		return 0
	})
	staleness := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "suppressd_index_staleness_seconds",
		Help: "How old the index's older watermark is (ledger feed, generation check): the index answers only while it is within SUPPRESSD_INDEX_MAX_LAG. NaN while none is loaded.",
	}, func() float64 {
		v := x.cur.Load()
		if v == nil {
			return math.NaN()
		}
		return float64(x.mono(time.Now())-min(v.feedAt.Load(), v.genAt.Load())) / 1e9
	})
	size := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "suppressd_index_keys",
		Help: "Keys in the loaded index (0 while none is).",
	}, func() float64 {
		if v := x.cur.Load(); v != nil {
			return float64(v.set.Len())
		}
		return 0
	})
	bytes := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "suppressd_index_bytes",
		Help: "Memory the loaded index holds, in bytes.",
	}, func() float64 {
		if v := x.cur.Load(); v != nil {
			return float64(v.set.Bytes())
		}
		return 0
	})
	m.memory = m.keys.WithLabelValues(answerMemory)
	m.store = m.keys.WithLabelValues(answerStore)
	m.keys.WithLabelValues(answerFallback)
	for _, r := range []string{reasonLoading, reasonFeed, reasonGeneration} {
		m.fallbacks.WithLabelValues(r)
	}
	for _, o := range []string{"done", "failed", "switched"} {
		m.loads.WithLabelValues(o)
	}
	reg.MustRegister(m.keys, m.fallbacks, m.loads, m.loadSeconds, m.visibility, serving, staleness, size, bytes)
	return m
}
