package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/suppressd/suppressd/schemas"
	"github.com/suppressd/suppressd/suppression"
	"github.com/suppressd/suppressd/unsubscribe"
)

// devAPIKey is the API key of `suppressd dev`, printed at start. Only the
// dev command accepts it unless an operator configures it, which nobody
// should.
const devAPIKey = "sdk_dev_only_not_secret"

// runDev runs the whole service in one process with nothing installed: an
// embedded Kafka-protocol broker (kfake) and an embedded Redis-protocol
// store (miniredis), with the same consumer, store and API code as
// production.
func runDev(ctx context.Context, args []string, io stdio) error {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	fs.SetOutput(io.err)
	readsConfig(fs)
	apiAddr := fs.String("api-addr", "127.0.0.1:8080", "where the API listens")
	kafkaAddr := fs.String("kafka-addr", "127.0.0.1:9092", "where the embedded broker listens (host must be 127.0.0.1; port 0 picks one)")
	seed := fs.Bool("seed", false, "publish a few demo events at start")
	region := fs.String("phone-region", "US", "default phone region")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	host, portStr, err := net.SplitHostPort(*kafkaAddr)
	port, perr := strconv.Atoi(portStr)
	if err != nil || perr != nil || host != "127.0.0.1" {
		return usageError{fmt.Errorf("--kafka-addr %q: want 127.0.0.1:<port>", *kafkaAddr)}
	}

	cfg, err := readConfig()
	if err != nil {
		return configError{err}
	}
	topics := append(cfg.Topics.All(), cfg.Topics.Ledger, cfg.Topics.DeadLetter)
	broker, err := kfake.NewCluster(kfake.Ports(port), kfake.SeedTopics(3, topics...), kfake.AllowAutoTopicCreation())
	if err != nil {
		return fmt.Errorf("embedded broker on %s: %w", *kafkaAddr, err)
	}
	defer broker.Close()
	store := miniredis.NewMiniRedis()
	if err := store.StartAddr("127.0.0.1:0"); err != nil {
		return fmt.Errorf("embedded store: %w", err)
	}
	defer store.Close()

	keyHash := sha256.Sum256([]byte(devAPIKey))
	cfg.Roles = []string{"api", "consumer"}
	cfg.Kafka.Brokers = broker.ListenAddrs()
	cfg.Redis.Addrs = []string{store.Addr()}
	cfg.Redis.Cluster, cfg.Redis.MasterName = false, ""
	cfg.API.Addr = *apiAddr
	cfg.API.Keys, cfg.API.KeysFile = "dev:check+filter+publish+admin:"+hex.EncodeToString(keyHash[:]), ""
	cfg.PhoneRegion = *region
	linkSecret := make([]byte, 32)
	if _, err := rand.Read(linkSecret); err != nil {
		return err
	}
	cfg.Link.Keys, cfg.Link.KeysFile, cfg.Link.SigningKey = "dev:"+base64.StdEncoding.EncodeToString(linkSecret), "", ""
	cfg.Link.BaseURL = "http://" + *apiAddr
	cfg.Consumer.SessionTimeout = 6 * time.Second
	if os.Getenv(envPrefix+"_API_STORE_TIMEOUT") == "" {
		// The embedded store runs the scripts in an interpreter, on the
		// same cores as everything else: a playground, not a benchmark.
		cfg.API.StoreTimeout = 5 * time.Second
	}
	if cfg.LogFormat == "json" && os.Getenv(envPrefix+"_LOG_FORMAT") == "" {
		cfg.LogFormat = "text"
	}
	s, err := cfg.settle()
	if err != nil {
		return configError{err}
	}
	log := s.logger(io.err)
	return serve(ctx, s, log, func(addr string) {
		fmt.Fprintf(io.out, `suppressd dev: everything in one process, nothing installed, nothing kept.
  API     http://%s   (API key: %s)
  Kafka   %s   (embedded broker; topics %s, %s, %s; dead letters %s)
  Redis   %s   (embedded store)
Try:
  curl -s -H 'Authorization: Bearer %s' http://%s/v1/check \
    -d '{"identifiers":[{"type":"email","value":"alice@example.org"}],"channel":"email","purpose":"marketing","topic":"newsletter"}'
`, addr, devAPIKey, cfg.Kafka.Brokers[0], cfg.Topics.Unsubscribes, cfg.Topics.Consent, cfg.Topics.Erasure, cfg.Topics.DeadLetter,
			store.Addr(), devAPIKey, addr)
		if kr := s.keyring; kr != nil {
			now := time.Now()
			token, err := kr.Mint(unsubscribe.Claims{
				Identifier: suppression.Identifier{Type: suppression.IDEmail, Value: "carol@example.org"},
				Scopes:     []suppression.Scope{"topic:newsletter"},
			}, now)
			if err == nil {
				fmt.Fprintf(io.out, "An unsubscribe link for carol@example.org (newsletter): %s/u/%s\n", cfg.Link.BaseURL, token)
			}
		}
		if *seed {
			if err := seedEvents(ctx, cfg.Kafka.Brokers, cfg.Topics); err != nil {
				log.Error("seeding demo events", "err", err)
				return
			}
			fmt.Fprintln(io.out, "seeded: alice@example.org unsubscribed from topic:newsletter, bob@example.org asked for erasure, +1 800 555 0100 sent a GPC signal")
		}
	})
}

// seedEvents publishes a few demo events.
func seedEvents(ctx context.Context, brokers []string, t TopicsConfig) error {
	at := time.Now().Add(-time.Minute)
	evs := []struct {
		topic string
		e     suppression.Event
	}{
		{t.Unsubscribes, suppression.Event{Type: suppression.EventUnsubscribe, Scopes: []suppression.Scope{"topic:newsletter"},
			Identifiers: []suppression.Identifier{{Type: suppression.IDEmail, Value: "alice@example.org"}}}},
		{t.Erasure, suppression.Event{Type: suppression.EventErasureRequested, Origin: suppression.OriginCustomer,
			Identifiers: []suppression.Identifier{{Type: suppression.IDEmail, Value: "bob@example.org"}}}},
		{t.Consent, suppression.Event{Type: suppression.EventGPC,
			Identifiers: []suppression.Identifier{{Type: suppression.IDPhone, Value: "+1 800 555 0100"}}}},
	}
	w := &kafka.Writer{Addr: kafka.TCP(brokers...), RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond, Balancer: &kafka.Hash{},
		Transport: &kafka.Transport{MetadataTTL: time.Second}}
	defer w.Close()
	for i, ev := range evs {
		e := ev.e
		e.ID, e.Source, e.OccurredAt = "seed-"+strconv.Itoa(i), "/suppressd-dev-seed", at
		if e.Origin == "" {
			e.Origin = suppression.OriginRecipient
		}
		if err := e.Normalize(time.Time{}); err != nil {
			return err
		}
		raw, err := schemas.Encode(e)
		if err != nil {
			return err
		}
		if err := w.WriteMessages(ctx, kafka.Message{Topic: ev.topic, Key: []byte(e.ID), Value: raw}); err != nil {
			return err
		}
	}
	return nil
}
