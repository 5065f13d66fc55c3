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
	"github.com/suppressd/suppressd/index"
	"github.com/suppressd/suppressd/internal/httplimit"
	"github.com/suppressd/suppressd/internal/kafkaconn"
	"github.com/suppressd/suppressd/internal/ops"
	"github.com/suppressd/suppressd/internal/redisconn"
	"github.com/suppressd/suppressd/publish"
	"github.com/suppressd/suppressd/rebuild"
	"github.com/suppressd/suppressd/store/redisstore"
	"github.com/suppressd/suppressd/suppression"
	"github.com/suppressd/suppressd/unsubscribe"
	"github.com/suppressd/suppressd/webhook"
)

// runServe runs the configured roles until SIGINT/SIGTERM.
func runServe(ctx context.Context, args []string, io stdio) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.err)
	roles := fs.String("role", "", "roles to run, comma-separated: "+strings.Join(knownRoles, ", ")+" (default: $SUPPRESSD_ROLE)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage of serve:")
		fs.PrintDefaults()
		fmt.Fprintln(fs.Output(), "\nEnvironment: every variable, its type, meaning and default. All are checked\nbefore anything starts, and every bad one is reported.")
		configUsage(fs.Output())
	}
	if err := parseFlags(fs, args); err != nil {
		return err
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
//	                   │ read index: keys without a record answered in
//	                   │ memory; snapshot from Redis, the ledger tailed
//	                   links (minted, nothing stored); /u/ pages ──▶ Kafka
//	listener: the API (api role) or the ops endpoints alone; both serve
//	/metrics /healthz /readyz
func serve(ctx context.Context, s *settings, log *slog.Logger, ready func(addr string)) error {
	d, err := openStore(s)
	if err != nil {
		return err
	}
	defer d.close()
	// A wrong password or an untrusted certificate does not mend by
	// waiting: serve does not start on it. Redis out of reach is waited
	// for (checks answer 503 meanwhile).
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	err = d.rdb.Ping(pctx).Err()
	cancel()
	if errors.Is(err, redisconn.ErrRefused) {
		return fmt.Errorf("redis at %s: %w", strings.Join(s.Redis.Addrs, ","), err)
	}

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
	if s.has("ingest") {
		if err := addIngest(&g, s, log, reg); err != nil {
			return err
		}
	}
	if s.has("apply") {
		if err := addApply(&g, s, d, log, reg); err != nil {
			return err
		}
	}
	storeReady := d.store.Ready
	if !s.has("apply") && !contains(s.Roles, "api") {
		// The ingest stage alone does not touch the store.
		storeReady = func(context.Context) error { return nil }
	}
	handler, addr := ops.Handler(storeReady, reg, 0), s.OpsAddr
	if contains(s.Roles, "api") {
		pub, closePub, err := newPublisher(s, reg)
		if err != nil {
			return err
		}
		defer closePub()
		store, indexStatus := addIndex(&g, s, d, log, reg)
		srv := api.New(store, api.Options{
			Keys: s.apiKeys, Normalizer: s.normalizer, Keyer: s.keyer, StoreTimeout: s.API.StoreTimeout,
			MaxBatch: s.API.MaxBatch, MaxKeys: s.API.MaxKeys, Gatherer: reg, BodyTimeout: s.API.BodyTimeout, MinBodyRate: s.API.MinBodyRate,
			Publisher: pub, Validator: s.validator, PublishLog: d.publishLog,
			Links: s.minter, IndexStatus: indexStatus,
		}, log, reg)
		addr = s.API.Addr
		// The unsubscribe pages (token-protected) and the providers'
		// webhooks (signed) are public; the rest is the API. Their bodies
		// get the JSON bodies' deadline.
		mux := http.NewServeMux()
		if s.keyring != nil {
			mux.Handle("/u/", httplimit.BodyDeadline(unsubscribe.NewHandler(unsubscribe.Options{
				Keyring: s.keyring, Publisher: pub, HonorDNT: s.Link.HonorDNT, Logger: log,
				PublishLog: d.publishLog, TokenRate: offIfZero(s.Link.Rate), ClientRate: offIfZero(s.Link.ClientRate),
				ClientIPHeader: s.Link.ClientIPHeader, Brands: s.brands, Registerer: reg,
			}), s.API.BodyTimeout))
		}
		hooks := s.hooks
		hooks.Publisher, hooks.PublishLog, hooks.Logger, hooks.Registerer = pub, d.publishLog, log, reg
		mux.Handle("/hooks/", httplimit.BodyDeadline(webhook.NewHandler(hooks), s.API.BodyTimeout))
		mux.Handle("/", srv.Handler())
		handler = mux
		log.Info("api role", "addr", addr, "keys", len(s.apiKeys), "unsubscribe_links", s.keyring != nil, "mints_links", s.minter != nil)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	refused := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "suppressd_http_connections_refused_total",
		Help: "Connections closed on arrival because SUPPRESSD_API_MAX_CONNS were open.",
	})
	reg.MustRegister(refused)
	ln = httplimit.LimitListener(ln, s.API.MaxConns, refused.Inc)
	// No write timeout and no whole-request read timeout: a filter stream
	// of millions of lines takes minutes. Each body has its own deadline
	// (a total one, or a minimum rate: SUPPRESSD_API_BODY_TIMEOUT and
	// _MIN_BODY_RATE), and the headers the shorter of 5s and that.
	headerTimeout := 5 * time.Second
	if s.API.BodyTimeout > 0 {
		headerTimeout = min(headerTimeout, s.API.BodyTimeout)
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: headerTimeout, IdleTimeout: 2 * time.Minute}
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
			for s.has("apply") && d.store.Ready(rctx) != nil {
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

// addIndex runs the api role's read index, when enabled, and returns the
// store the API reads through and what /readyz says of the index.
func addIndex(g *oklogrun.Group, s *settings, d *storeDeps, log *slog.Logger, reg prometheus.Registerer) (suppression.Store, func() any) {
	if !s.Index.Enabled {
		return d.store, func() any { return index.Status{State: "off"} }
	}
	feed := consumer.LedgerFeed{Kafka: s.Kafka, Topic: s.Topics.Ledger, Group: s.Consumer.applyGroup(),
		Probe: s.Index.MaxLag / 5, Log: log.With("component", "index-feed")}
	idx := index.New(d.store, feed, index.Options{MaxLag: s.Index.MaxLag, ShardBits: min(index.DefaultShardBits, s.Store.BucketBits)}, log, reg)
	ctx, cancel := context.WithCancel(context.Background())
	g.Add(func() error { return idx.Run(ctx) }, func(error) { cancel() })
	log.Info("read index", "max_lag", s.Index.MaxLag, "ledger", s.Topics.Ledger, "apply_group", s.Consumer.applyGroup())
	return index.NewStore(d.store, idx), func() any { return idx.Status() }
}

// offIfZero maps a configured rate, where 0 means no limit, to the
// unsubscribe handler's, where 0 means the default and negative none.
func offIfZero(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

// stageReader is a consumer group reader of the stages. Its members leave
// the group even when the broker was out of reach at the time (see
// kafkaconn.GroupReader): after a broker restart the stage resumes in
// seconds instead of waiting out its old member's session timeout.
func stageReader(s *settings, dialer *kafka.Dialer, group string, topics []string, log *slog.Logger) (*kafkaconn.GroupReader, error) {
	return s.Kafka.GroupReader(kafka.ReaderConfig{
		Brokers: s.Kafka.Brokers, GroupID: group, GroupTopics: topics,
		Dialer: dialer, StartOffset: kafka.FirstOffset, CommitInterval: 0,
		MinBytes: 1, MaxBytes: 10 << 20, MaxWait: 250 * time.Millisecond,
		SessionTimeout: s.Consumer.SessionTimeout,
		// kafka-go waits this long between attempts to join while the
		// coordinator is out of reach (default 5s): the most a stage
		// adds to a broker's return.
		JoinGroupBackoff: 2 * time.Second,
		QueueCapacity:    max(100, s.Consumer.BatchSize),
		ErrorLogger:      kafka.LoggerFunc(func(f string, a ...any) { log.Warn("kafka reader", "group", group, "err", fmt.Sprintf(f, a...)) }),
	}, log)
}

func (s *settings) stageOptions(stage string) consumer.Options {
	return consumer.Options{
		Stage: stage, BatchSize: s.Consumer.BatchSize, BatchWait: s.Consumer.BatchWait,
		BackoffMin: s.Consumer.BackoffMin, BackoffMax: s.Consumer.BackoffMax, ShutdownGrace: s.Consumer.ShutdownGrace,
	}
}

// addStage runs a stage's consumer in the group until the group stops.
func addStage(g *oklogrun.Group, c *consumer.Consumer, closers ...interface{ Close() error }) {
	cctx, cancel := context.WithCancel(context.Background())
	g.Add(func() error {
		err := c.Run(cctx)
		// Closing the reader leaves the group, so the partitions move at
		// once instead of after the session timeout.
		for _, cl := range closers {
			err = errors.Join(err, cl.Close())
		}
		return err
	}, func(error) { cancel() })
}

// addIngest runs the ingest stage: intake topics to the ledger. A new
// deployment (its group never committed an intake offset) starts a
// complete ledger: it writes the genesis record first.
func addIngest(g *oklogrun.Group, s *settings, log *slog.Logger, reg prometheus.Registerer) error {
	dialer, err := s.Kafka.Dialer()
	if err != nil {
		return err
	}
	transport, err := s.Kafka.Transport()
	if err != nil {
		return err
	}
	if err := checkTopics(s, transport, append(s.Topics.All(), s.Topics.Ledger, s.Topics.DeadLetter)); err != nil {
		return err
	}
	ledgerW := &kafka.Writer{
		Addr: kafka.TCP(s.Kafka.Brokers...), Topic: s.Topics.Ledger, Transport: transport,
		RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond, Balancer: &kafka.Hash{},
		BatchSize: 10000, BatchBytes: 16 << 20, MaxAttempts: 3,
	}
	if err := startLedger(s, ledgerW, log); err != nil {
		_ = ledgerW.Close()
		return err
	}
	dlq := deadLetterWriter(s, transport)
	reader, err := stageReader(s, dialer, s.Consumer.Group, s.Topics.All(), log)
	if err != nil {
		return errors.Join(err, ledgerW.Close())
	}
	ing := &consumer.Ingest{Validator: s.validator, Normalizer: s.normalizer, Keyer: s.keyer, Ledger: ledgerW, AdminTopic: s.Topics.Admin}
	addStage(g, consumer.New(reader, dlq, ing, s.stageOptions("ingest"), log, reg), reader, dlq, ledgerW)
	if err := addLag(g, s, "ingest", s.Consumer.Group, s.Topics.All(), log, reg); err != nil {
		return err
	}
	addDeadLetterAge(g, s, log, reg)
	log.Info("ingest stage", "topics", s.Topics.All(), "group", s.Consumer.Group, "ledger", s.Topics.Ledger, "dead_letter", s.Topics.DeadLetter)
	return nil
}

// addDeadLetterAge publishes the age of the oldest dead letter each minute:
// dead letters hold raw events and their topic a finite retention, so an
// event waiting for repair must be repaired before Kafka deletes it.
func addDeadLetterAge(g *oklogrun.Group, s *settings, log *slog.Logger, reg prometheus.Registerer) {
	age := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "suppressd_dead_letter_oldest_seconds",
		Help: "Age of the oldest event on the dead-letter topic (0 when empty): repair it before the topic's retention deletes it.",
	})
	reg.MustRegister(age)
	ctx, cancel := context.WithCancel(context.Background())
	g.Add(func() error {
		for {
			cctx, done := context.WithTimeout(ctx, 30*time.Second)
			d, err := consumer.OldestAge(cctx, s.Kafka, s.Topics.DeadLetter, time.Now())
			done()
			if err == nil {
				age.Set(d.Seconds())
			} else if ctx.Err() == nil {
				log.Warn("could not read the dead-letter topic's oldest event", "err", err)
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(time.Minute):
			}
		}
	}, func(error) { cancel() })
}

// startLedger writes the genesis record when the ingest group has never
// committed an intake offset: a new deployment, whose ledger holds every
// event from the start. A group that has committed offsets consumed
// events before the ledger existed; `suppressd ledger backfill` copies
// them and writes the genesis record then.
func startLedger(s *settings, w *kafka.Writer, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ranges, err := s.Kafka.Ranges(ctx, s.Topics.All())
	if err != nil {
		return err
	}
	committed, err := s.Kafka.Committed(ctx, s.Consumer.Group, ranges)
	if err != nil {
		return err
	}
	for _, c := range committed {
		if c >= 0 {
			return nil
		}
	}
	if err := w.WriteMessages(ctx, consumer.GenesisMessage(time.Now())); err != nil {
		return fmt.Errorf("write the ledger's genesis record: %w", err)
	}
	log.Info("new deployment: the ledger starts complete (genesis record written)")
	return nil
}

func deadLetterWriter(s *settings, transport *kafka.Transport) *kafka.Writer {
	return &kafka.Writer{
		Addr: kafka.TCP(s.Kafka.Brokers...), Topic: s.Topics.DeadLetter, Transport: transport,
		RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond, Balancer: &kafka.Hash{},
	}
}

// addApply runs the apply stage (the ledger into the store) and the store
// watch that rebuilds an emptied store from the ledger.
func addApply(g *oklogrun.Group, s *settings, d *storeDeps, log *slog.Logger, reg prometheus.Registerer) error {
	dialer, err := s.Kafka.Dialer()
	if err != nil {
		return err
	}
	transport, err := s.Kafka.Transport()
	if err != nil {
		return err
	}
	if err := checkTopics(s, transport, []string{s.Topics.Ledger, s.Topics.DeadLetter}); err != nil {
		return err
	}
	dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	err = d.store.CheckDurability(dctx)
	cancel()
	if err != nil {
		return fmt.Errorf("SUPPRESSD_STORE_DURABILITY: %w", err)
	}
	dlq := deadLetterWriter(s, transport)
	reader, err := stageReader(s, dialer, s.Consumer.applyGroup(), []string{s.Topics.Ledger}, log)
	if err != nil {
		return err
	}
	addStage(g, consumer.New(reader, dlq, &consumer.Apply{Store: d.store}, s.stageOptions("apply"), log, reg), reader, dlq)
	if err := addLag(g, s, "apply", s.Consumer.applyGroup(), []string{s.Topics.Ledger}, log, reg); err != nil {
		return err
	}

	w := newStoreWatch(s, d, log, reg)
	wctx, stopWatch := context.WithCancel(context.Background())
	g.Add(func() error { w.run(wctx); return nil }, func(error) { stopWatch() })
	log.Info("apply stage", "ledger", s.Topics.Ledger, "group", s.Consumer.applyGroup(),
		"auto_rebuild", s.AutoRebuild, "durability", s.storeOpts.Durability.String())
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
	p, err := runRebuildWith(ctx, w.s, w.d, rebuild.Options{Owner: w.owner, Grace: -1}, false, nil)
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
// the function that closes its writer. Its metrics go to reg; nil for the
// operator commands, which serve none.
func newPublisher(s *settings, reg prometheus.Registerer) (*publish.Publisher, func(), error) {
	transport, err := s.Kafka.Transport()
	if err != nil {
		return nil, nil, err
	}
	w := publish.NewWriter(s.Kafka.Brokers, transport)
	topics := publish.Topics{Unsubscribes: s.Topics.Unsubscribes, Consent: s.Topics.Consent, Erasure: s.Topics.Erasure, Admin: s.Topics.Admin}
	return publish.New(w, topics, s.normalizer, 0, reg), func() { _ = w.Close() }, nil
}

// checkTopics fails start-up when a topic the consumer needs is missing: a
// consumer group over a missing topic never gets its partitions, and would
// wait in silence.
func checkTopics(s *settings, transport *kafka.Transport, topics []string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := &kafka.Client{Addr: kafka.TCP(s.Kafka.Brokers...), Transport: transport}
	meta, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: topics})
	if err != nil {
		return s.Kafka.Explain(fmt.Errorf("kafka at %s: %w", strings.Join(s.Kafka.Brokers, ","), err))
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
