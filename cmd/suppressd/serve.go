package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	oklogrun "github.com/oklog/run"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"

	"github.com/suppressd/suppressd/api"
	"github.com/suppressd/suppressd/consumer"
	"github.com/suppressd/suppressd/publish"
	"github.com/suppressd/suppressd/schemas"
	"github.com/suppressd/suppressd/suppression"
	"github.com/suppressd/suppressd/suppression/redisstore"
	"github.com/suppressd/suppressd/unsubscribe"
)

// runServe runs the configured roles until SIGINT/SIGTERM.
func runServe(ctx context.Context, args []string, _, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	roles := fs.String("role", "", "roles to run, comma-separated: "+strings.Join(knownRoles, ", ")+" (default: $SUPPRESSD_ROLE)")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if *roles != "" {
		os.Setenv(envPrefix+"_ROLE", *roles)
	}
	cfg, err := loadConfig()
	if err != nil {
		return err
	}
	return serve(ctx, cfg, cfg.logger(os.Stderr), nil)
}

// serve runs the roles of cfg until ctx ends. ready, if not nil, is called
// with the HTTP listener's address once everything is started.
//
//	                 ┌───────────── consumer role ─────────────┐
//	Kafka topics ──▶ │ kafka.Reader ─▶ consumer ─▶ Generations │ ─▶ Redis
//	                 │                    └─▶ dead-letter topic│      │
//	                 └─────────────────────────────────────────┘      │
//	senders ──HTTP──▶  api role: check, batch, filter, lookup  ◀── Get ┘
//	listener: the API (api role) or the ops endpoints alone; both serve
//	/metrics /healthz /readyz
func serve(ctx context.Context, cfg Config, log *slog.Logger, ready func(addr string)) error {
	d, err := newDeps(cfg)
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
	if contains(cfg.Roles, "consumer") {
		if err := addConsumer(&g, cfg, d, log, reg); err != nil {
			return err
		}
	}
	handler, addr := opsHandler(reg, d.store), cfg.OpsAddr
	if contains(cfg.Roles, "api") {
		keys, err := cfg.API.keys()
		if err != nil {
			return err
		}
		v, err := schemas.New()
		if err != nil {
			return err
		}
		pub, closePub, err := newPublisher(cfg, d.normalizer)
		if err != nil {
			return err
		}
		defer closePub()
		srv := api.New(d.store, api.Options{
			Keys: keys, Normalizer: d.normalizer, StoreTimeout: cfg.API.StoreTimeout,
			MaxBatch: cfg.API.MaxBatch, Gatherer: reg,
			Publisher: pub, Validator: v, PublishLog: d.store,
		}, log, reg)
		handler, addr = srv.Handler(), cfg.API.Addr
		kr, err := cfg.Link.keyring()
		if err != nil {
			return err
		}
		if kr != nil {
			// The unsubscribe pages are public (token-protected); the
			// rest is the API.
			mux := http.NewServeMux()
			mux.Handle("/u/", unsubscribe.NewHandler(unsubscribe.Options{
				Keyring: kr, Publisher: pub, HonorDNT: cfg.Link.HonorDNT, Logger: log.With("component", "unsubscribe"),
			}))
			mux.Handle("/", handler)
			handler = mux
		}
		log.Info("api role", "addr", addr, "keys", len(keys), "unsubscribe_links", kr != nil)
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
		ready(ln.Addr().String())
	}
	err = g.Run()
	log.Info("stopped", "err", err)
	return err
}

func addConsumer(g *oklogrun.Group, cfg Config, d *deps, log *slog.Logger, reg prometheus.Registerer) error {
	v, err := schemas.New()
	if err != nil {
		return err
	}
	dialer, err := cfg.Kafka.Dialer()
	if err != nil {
		return err
	}
	transport, err := cfg.Kafka.Transport()
	if err != nil {
		return err
	}
	if err := checkTopics(cfg, transport); err != nil {
		return err
	}
	reader := kafka.NewReader(kafka.ReaderConfig{
		Brokers: cfg.Kafka.Brokers, GroupID: cfg.Consumer.Group, GroupTopics: cfg.Topics.All(),
		Dialer: dialer, StartOffset: kafka.FirstOffset, CommitInterval: 0,
		MinBytes: 1, MaxBytes: 10 << 20, MaxWait: 250 * time.Millisecond,
		SessionTimeout: cfg.Consumer.SessionTimeout,
		QueueCapacity:  max(100, cfg.Consumer.BatchSize),
		ErrorLogger:    kafka.LoggerFunc(func(f string, a ...any) { log.Warn("kafka reader", "err", fmt.Sprintf(f, a...)) }),
	})
	dlq := &kafka.Writer{
		Addr: kafka.TCP(cfg.Kafka.Brokers...), Topic: cfg.Topics.DeadLetter, Transport: transport,
		RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond, Balancer: &kafka.Hash{},
	}
	c := consumer.New(reader, dlq, d.store, v, consumer.Options{
		BatchSize: cfg.Consumer.BatchSize, BatchWait: cfg.Consumer.BatchWait,
		BackoffMin: cfg.Consumer.BackoffMin, BackoffMax: cfg.Consumer.BackoffMax,
		ShutdownGrace: cfg.Consumer.ShutdownGrace, Normalizer: d.normalizer,
	}, log, reg)
	cctx, cancel := context.WithCancel(context.Background())
	g.Add(func() error {
		err := c.Run(cctx)
		// Close leaves the group, so the partitions move at once instead
		// of after the session timeout.
		return errors.Join(err, reader.Close(), dlq.Close())
	}, func(error) { cancel() })
	log.Info("consumer role", "topics", cfg.Topics.All(), "group", cfg.Consumer.Group, "dead_letter", cfg.Topics.DeadLetter)
	return nil
}

// newPublisher returns the Kafka publisher of the configured topics and
// the function that closes its writer.
func newPublisher(cfg Config, n suppression.Normalizer) (*publish.Publisher, func(), error) {
	transport, err := cfg.Kafka.Transport()
	if err != nil {
		return nil, nil, err
	}
	w := publish.NewWriter(cfg.Kafka.Brokers, transport)
	topics := publish.Topics{Unsubscribes: cfg.Topics.Unsubscribes, Consent: cfg.Topics.Consent, Erasure: cfg.Topics.Erasure}
	return publish.New(w, topics, n, 0), func() { _ = w.Close() }, nil
}

// checkTopics fails start-up when a topic the consumer needs is missing: a
// consumer group over a missing topic never gets its partitions, and would
// wait in silence.
func checkTopics(cfg Config, transport *kafka.Transport) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := &kafka.Client{Addr: kafka.TCP(cfg.Kafka.Brokers...), Transport: transport}
	topics := append(cfg.Topics.All(), cfg.Topics.DeadLetter)
	meta, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: topics})
	if err != nil {
		return fmt.Errorf("kafka at %s: %w", strings.Join(cfg.Kafka.Brokers, ","), err)
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

// deps are the parts every role shares.
type deps struct {
	normalizer suppression.Normalizer
	rdb        redis.UniversalClient
	store      *redisstore.Generations
	close      func()
}

// openDeps reads and validates the configuration and opens the shared
// parts: the start of every command that talks to the store.
func openDeps() (Config, *deps, error) {
	cfg, err := loadConfig()
	if err != nil {
		return cfg, nil, err
	}
	d, err := newDeps(cfg)
	return cfg, d, err
}

func newDeps(cfg Config) (*deps, error) {
	pepper, err := cfg.pepper()
	if err != nil {
		return nil, err
	}
	n, err := suppression.NewNormalizer(cfg.PhoneRegion)
	if err != nil {
		return nil, err
	}
	rdb, err := cfg.Redis.Client()
	if err != nil {
		return nil, err
	}
	store, err := redisstore.NewGenerations(rdb, cfg.storeOptions(suppression.NewKeyer(pepper), ""), 0)
	if err != nil {
		_ = rdb.Close()
		return nil, err
	}
	return &deps{normalizer: n, rdb: rdb, store: store, close: func() { _ = rdb.Close() }}, nil
}

// pinger is what readiness asks.
type pinger interface {
	Ping(ctx context.Context) error
}

// opsHandler serves /metrics, /healthz (the process answers) and /readyz
// (Redis answers).
func opsHandler(reg *prometheus.Registry, store pinger) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"status":"ok"}`)
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), time.Second)
		defer cancel()
		w.Header().Set("Content-Type", "application/json")
		if err := store.Ping(ctx); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, `{"status":"unavailable","reason":"store"}`)
			return
		}
		_, _ = io.WriteString(w, `{"status":"ready"}`)
	})
	return mux
}
