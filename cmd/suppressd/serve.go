package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	oklogrun "github.com/oklog/run"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"

	"github.com/suppressd/suppressd/api"
	"github.com/suppressd/suppressd/consumer"
	"github.com/suppressd/suppressd/internal/ops"
	"github.com/suppressd/suppressd/publish"
	"github.com/suppressd/suppressd/rebuild"
	"github.com/suppressd/suppressd/store/redisstore"
	"github.com/suppressd/suppressd/suppression"
	"github.com/suppressd/suppressd/unsubscribe"
)

// runServe runs the configured roles until SIGINT/SIGTERM.
func runServe(ctx context.Context, args []string, io stdio) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.err)
	roles := fs.String("role", "", "roles to run, comma-separated: "+strings.Join(knownRoles, ", ")+" (default: $SUPPRESSD_ROLE)")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	s, err := load(*roles)
	if err != nil {
		return err
	}
	return serve(ctx, s, s.logger(io.err), nil)
}

// serve runs the roles of s until ctx ends. ready, if not nil, is called
// with the HTTP listener's address once everything is started and, with
// the consumer role, the store is built (a new deployment's first build
// takes a moment).
//
//	                 ┌───────────────── consumer role ─────────────────┐
//	Kafka topics ──▶ │ kafka.Reader ─▶ consumer ─▶ redisstore.Store    │ ─▶ Redis
//	                 │                    └─▶ dead-letter topic        │     ▲
//	                 │ store watch: not built? rebuild from Kafka ─────│─────┤
//	                 └─────────────────────────────────────────────────┘     │
//	senders ──HTTP──▶  api role: check, batch, filter, lookup  ◀── Get ──────┘
//	                   links (minted, nothing stored); /u/ pages ──▶ Kafka
//	listener: the API (api role) or the ops endpoints alone; both serve
//	/metrics /healthz /readyz
func serve(ctx context.Context, s *settings, log *slog.Logger, ready func(addr string)) error {
	d, err := openStore(s)
	if err != nil {
		return err
	}
	defer d.close()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	var g oklogrun.Group
	{
		sctx, cancel := context.WithCancel(ctx)
		g.Add(func() error {
			<-sctx.Done()
			if ctx.Err() != nil {
				log.Info("signal received, shutting down")
			}
			return nil
		}, func(error) { cancel() })
	}
	if contains(s.Roles, "consumer") {
		if err := addConsumer(&g, s, d, log, reg); err != nil {
			return err
		}
	}
	handler, addr := ops.Handler(d.store.Ready, reg, 0), s.OpsAddr
	if contains(s.Roles, "api") {
		pub, closePub, err := newPublisher(s)
		if err != nil {
			return err
		}
		defer closePub()
		srv := api.New(d.store, api.Options{
			Keys: s.apiKeys, Normalizer: s.normalizer, Keyer: s.keyer, StoreTimeout: s.API.StoreTimeout,
			MaxBatch: s.API.MaxBatch, MaxKeys: s.API.MaxKeys, Gatherer: reg,
			Publisher: pub, Validator: s.validator, PublishLog: d.publishLog,
			Links: s.minter,
		}, log, reg)
		handler, addr = srv.Handler(), s.API.Addr
		if s.keyring != nil {
			// The unsubscribe pages are public (token-protected); the
			// rest is the API.
			mux := http.NewServeMux()
			mux.Handle("/u/", unsubscribe.NewHandler(unsubscribe.Options{
				Keyring: s.keyring, Publisher: pub, HonorDNT: s.Link.HonorDNT, Logger: log.With("component", "unsubscribe"),
			}))
			mux.Handle("/", handler)
			handler = mux
		}
		log.Info("api role", "addr", addr, "keys", len(s.apiKeys), "unsubscribe_links", s.keyring != nil, "mints_links", s.minter != nil)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	// No write timeout: a filter stream of millions of lines takes minutes.
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 2 * time.Minute}
	log.Info("listening", "addr", ln.Addr().String())
	g.Add(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}, func(error) {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	})
	if ready != nil {
		rctx, stopWaiting := context.WithCancel(ctx)
		defer stopWaiting()
		go func() {
			for contains(s.Roles, "consumer") && d.store.Ready(rctx) != nil {
				select {
				case <-rctx.Done():
					return
				case <-time.After(20 * time.Millisecond):
				}
			}
			ready(ln.Addr().String())
		}()
	}
	err = g.Run()
	log.Info("stopped", "err", err)
	return err
}

func addConsumer(g *oklogrun.Group, s *settings, d *storeDeps, log *slog.Logger, reg prometheus.Registerer) error {
	dialer, err := s.Kafka.Dialer()
	if err != nil {
		return err
	}
	transport, err := s.Kafka.Transport()
	if err != nil {
		return err
	}
	if err := checkTopics(s, transport); err != nil {
		return err
	}
	reader := kafka.NewReader(kafka.ReaderConfig{
		Brokers: s.Kafka.Brokers, GroupID: s.Consumer.Group, GroupTopics: s.Topics.All(),
		Dialer: dialer, StartOffset: kafka.FirstOffset, CommitInterval: 0,
		MinBytes: 1, MaxBytes: 10 << 20, MaxWait: 250 * time.Millisecond,
		SessionTimeout: s.Consumer.SessionTimeout,
		QueueCapacity:  max(100, s.Consumer.BatchSize),
		ErrorLogger:    kafka.LoggerFunc(func(f string, a ...any) { log.Warn("kafka reader", "err", fmt.Sprintf(f, a...)) }),
	})
	dlq := &kafka.Writer{
		Addr: kafka.TCP(s.Kafka.Brokers...), Topic: s.Topics.DeadLetter, Transport: transport,
		RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond, Balancer: &kafka.Hash{},
	}
	c := consumer.New(reader, dlq, d.store, s.validator, consumer.Options{
		BatchSize: s.Consumer.BatchSize, BatchWait: s.Consumer.BatchWait,
		BackoffMin: s.Consumer.BackoffMin, BackoffMax: s.Consumer.BackoffMax,
		ShutdownGrace: s.Consumer.ShutdownGrace, Normalizer: s.normalizer, Keyer: s.keyer,
	}, log, reg)
	cctx, cancel := context.WithCancel(context.Background())
	g.Add(func() error {
		err := c.Run(cctx)
		// Close leaves the group, so the partitions move at once instead
		// of after the session timeout.
		return errors.Join(err, reader.Close(), dlq.Close())
	}, func(error) { cancel() })

	w := newStoreWatch(s, d, log, reg)
	wctx, stopWatch := context.WithCancel(context.Background())
	g.Add(func() error { w.run(wctx); return nil }, func(error) { stopWatch() })
	log.Info("consumer role", "topics", s.Topics.All(), "group", s.Consumer.Group, "dead_letter", s.Topics.DeadLetter, "auto_rebuild", s.AutoRebuild)
	return nil
}

// storeWatch keeps the store built: it checks readiness every period and,
// when the store holds no suppression list (a new deployment; Redis lost
// its data), rebuilds it from Kafka, unless SUPPRESSD_AUTO_REBUILD is off.
// Meanwhile the consumer's writes fail with ErrNotBuilt and are retried, and
// the API answers 503: nothing is read from, or written into, a store that
// lost its data. With several consumers, one rebuilds (it holds the lease)
// and the others wait.
type storeWatch struct {
	s       *settings
	d       *storeDeps
	log     *slog.Logger
	every   time.Duration
	owner   string
	ready   prometheus.Gauge
	reasons *prometheus.GaugeVec
	runs    *prometheus.CounterVec
}

func newStoreWatch(s *settings, d *storeDeps, log *slog.Logger, reg prometheus.Registerer) *storeWatch {
	host, _ := os.Hostname()
	w := &storeWatch{
		s: s, d: d, log: log.With("component", "store-watch"), every: 2 * time.Second,
		owner: fmt.Sprintf("%s/%d", host, os.Getpid()),
		ready: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "suppressd_store_ready",
			Help: "1 when the store holds a built suppression list laid out as this replica expects, else 0.",
		}),
		reasons: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "suppressd_store_not_ready",
			Help: "1 for the reason the store is not ready (unavailable, not_built, layout_mismatch, other), else 0.",
		}, []string{"reason"}),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "suppressd_store_rebuilds_total",
			Help: "Rebuilds of the store from Kafka started by this consumer, by outcome (done, failed, busy).",
		}, []string{"outcome"}),
	}
	reg.MustRegister(w.ready, w.reasons, w.runs)
	return w
}

func (w *storeWatch) run(ctx context.Context) {
	for {
		w.check(ctx)
		select {
		case <-ctx.Done():
			return
		case <-time.After(w.every):
		}
	}
}

func (w *storeWatch) check(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	err := w.d.store.Ready(cctx)
	cancel()
	reason := ""
	if err != nil {
		reason = suppression.StoreErrorReason(err)
	}
	for _, r := range []string{"unavailable", "not_built", "layout_mismatch", "other"} {
		w.reasons.WithLabelValues(r).Set(b2f(r == reason))
	}
	w.ready.Set(b2f(err == nil))
	if !errors.Is(err, suppression.ErrNotBuilt) {
		if err != nil && ctx.Err() == nil {
			w.log.Warn("store not ready", "reason", reason, "err", err)
		}
		return
	}
	if !w.s.AutoRebuild {
		w.log.Error("the store holds no suppression list; run `suppressd rebuild` (SUPPRESSD_AUTO_REBUILD is off)", "err", err)
		return
	}
	w.log.Warn("the store holds no suppression list; rebuilding it from Kafka", "err", err)
	p, err := runRebuildWith(ctx, w.s, w.d, rebuild.Options{Owner: w.owner, Grace: -1}, nil)
	switch {
	case errors.Is(err, redisstore.ErrRebuildBusy):
		w.runs.WithLabelValues("busy").Inc()
		w.log.Info("another consumer is rebuilding the store; waiting", "err", err)
	case err != nil:
		w.runs.WithLabelValues("failed").Inc()
		if ctx.Err() == nil {
			w.log.Error("rebuild failed; retrying", "err", err)
		}
	default:
		w.runs.WithLabelValues("done").Inc()
		w.log.Info("store rebuilt from Kafka", "generation", p.Generation, "events", p.Read, "invalid", p.Invalid, "took", p.Elapsed)
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// newPublisher returns the Kafka publisher of the configured topics and
// the function that closes its writer.
func newPublisher(s *settings) (*publish.Publisher, func(), error) {
	transport, err := s.Kafka.Transport()
	if err != nil {
		return nil, nil, err
	}
	w := publish.NewWriter(s.Kafka.Brokers, transport)
	topics := publish.Topics{Unsubscribes: s.Topics.Unsubscribes, Consent: s.Topics.Consent, Erasure: s.Topics.Erasure}
	return publish.New(w, topics, s.normalizer, 0), func() { _ = w.Close() }, nil
}

// checkTopics fails start-up when a topic the consumer needs is missing: a
// consumer group over a missing topic never gets its partitions, and would
// wait in silence.
func checkTopics(s *settings, transport *kafka.Transport) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := &kafka.Client{Addr: kafka.TCP(s.Kafka.Brokers...), Transport: transport}
	topics := append(s.Topics.All(), s.Topics.DeadLetter)
	meta, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: topics})
	if err != nil {
		return fmt.Errorf("kafka at %s: %w", strings.Join(s.Kafka.Brokers, ","), err)
	}
	var missing []string
	for _, t := range meta.Topics {
		if errors.Is(t.Error, kafka.UnknownTopicOrPartition) {
			missing = append(missing, t.Name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("kafka topics %s do not exist: create them (see docs/operations.md) or set SUPPRESSD_TOPIC_*", strings.Join(missing, ", "))
	}
	return nil
}

// storeDeps are the store's parts every role and command shares.
type storeDeps struct {
	rdb        redis.UniversalClient
	store      *redisstore.Store
	rebuilds   *redisstore.Rebuilds
	publishLog *redisstore.PublishLog
	close      func()
}

func openStore(s *settings) (*storeDeps, error) {
	rdb, err := s.Redis.Client()
	if err != nil {
		return nil, err
	}
	store, err := redisstore.New(rdb, s.storeOpts)
	if err != nil {
		_ = rdb.Close()
		return nil, err
	}
	rebuilds, err := redisstore.NewRebuilds(rdb, s.storeOpts)
	if err != nil {
		_ = rdb.Close()
		return nil, err
	}
	return &storeDeps{rdb: rdb, store: store, rebuilds: rebuilds, publishLog: redisstore.NewPublishLog(rdb, s.storeOpts.Prefix),
		close: func() { _ = rdb.Close() }}, nil
}
