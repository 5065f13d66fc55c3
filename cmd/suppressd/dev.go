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
	"strings"
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
// production. It makes link keys of its own at start and prints them (or
// writes them to --env-file), so `suppressd link` in another shell mints
// links it accepts.
func runDev(ctx context.Context, args []string, std stdio) error {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	fs.SetOutput(std.err)
	readsConfig(fs)
	apiAddr := fs.String("api-addr", "127.0.0.1:8080", "where the API listens (a loopback address unless --insecure-listen; port 0 picks one)")
	kafkaAddr := fs.String("kafka-addr", "127.0.0.1:9092", "where the embedded broker listens (host must be 127.0.0.1; port 0 picks one)")
	seed := fs.Bool("seed", false, "publish a few demo events at start")
	region := fs.String("phone-region", "US", "default phone region")
	envFile := fs.String("env-file", "", "also write the environment for the other commands (SUPPRESSD_LINK_KEYS, SUPPRESSD_LINK_BASE_URL, SUPPRESSD_URL, SUPPRESSD_API_KEY) to this file, removed when dev stops")
	insecure := fs.Bool("insecure-listen", false, "let --api-addr be a non-loopback address, although the dev API key is public")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	host, portStr, err := net.SplitHostPort(*kafkaAddr)
	port, perr := strconv.Atoi(portStr)
	if err != nil || perr != nil || host != "127.0.0.1" {
		return usageError{fmt.Errorf("--kafka-addr %q: want 127.0.0.1:<port>", *kafkaAddr)}
	}
	apiHost, apiPort, err := net.SplitHostPort(*apiAddr)
	if err != nil {
		return usageError{fmt.Errorf("--api-addr %q: want host:port", *apiAddr)}
	}
	if !isLoopbackHost(apiHost) && !*insecure {
		return usageError{fmt.Errorf("--api-addr %q is not a loopback address: the dev API key (%s) is printed everywhere, so anyone who reaches it could read and change the suppression list; "+
			"listen on 127.0.0.1:%s, or pass --insecure-listen if you mean it", *apiAddr, devAPIKey, apiPort)}
	}
	if apiPort == "0" {
		// The links and the printed environment name the port: pick a
		// free one now rather than let the listener choose it later.
		ln, err := net.Listen("tcp", *apiAddr)
		if err != nil {
			return fmt.Errorf("--api-addr %q: %w", *apiAddr, err)
		}
		_, apiPort, _ = net.SplitHostPort(ln.Addr().String())
		_ = ln.Close()
		*apiAddr = net.JoinHostPort(apiHost, apiPort)
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
	cfg.API.Keys, cfg.API.KeysFile = "dev:check+filter+publish+admin+links:"+hex.EncodeToString(keyHash[:]), ""
	cfg.PhoneRegion = *region
	// Link keys of this run only: its links die with it. A key id of its
	// own too, so a link from an earlier run is reported as signed by an
	// unknown key rather than as forged.
	var linkSecret [32]byte
	var kid [3]byte
	rand.Read(linkSecret[:])
	rand.Read(kid[:])
	cfg.Link.Keys, cfg.Link.KeysFile, cfg.Link.SigningKey = "dev"+hex.EncodeToString(kid[:])+":"+base64.StdEncoding.EncodeToString(linkSecret[:]), "", ""
	if cfg.Link.BaseURL == "" {
		// http is accepted on loopback only; a dev API listening beyond
		// it still answers there.
		linkHost := "127.0.0.1"
		if isLoopbackHost(apiHost) && apiHost != "" {
			linkHost = apiHost
		}
		cfg.Link.BaseURL = "http://" + net.JoinHostPort(linkHost, apiPort)
	}
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
	env := devEnv(cfg, apiHost, apiPort)
	if *envFile != "" {
		if err := writeEnvFile(*envFile, env); err != nil {
			return err
		}
		defer os.Remove(*envFile)
	}
	log := s.logger(std.err)
	return serve(ctx, s, log, func(addr string) {
		fmt.Fprintf(std.out, `suppressd dev: everything in one process, nothing installed, nothing kept.
  API     http://%s   (API key: %s)
  Kafka   %s   (embedded broker; topics %s, %s, %s; ledger %s; dead letters %s)
  Redis   %s   (embedded store)
  Links   %s/u/...   (keys made for this run)
Try:
  curl -s -H 'Authorization: Bearer %s' http://%s/v1/check \
    -d '{"identifiers":[{"type":"email","value":"alice@example.org"}],"channel":"email","purpose":"marketing","topic":"newsletter"}'
The other commands (suppressd check, link, publish...) in another shell, after:
  export %s
`, addr, devAPIKey, cfg.Kafka.Brokers[0], cfg.Topics.Unsubscribes, cfg.Topics.Consent, cfg.Topics.Erasure, cfg.Topics.Ledger, cfg.Topics.DeadLetter,
			store.Addr(), cfg.Link.BaseURL, devAPIKey, addr, shellExports(env))
		if *envFile != "" {
			fmt.Fprintf(std.out, "  (or: set -a; . %s; set +a)\n", *envFile)
		}
		for _, p := range s.hooks.Served() {
			fmt.Fprintf(std.out, "Webhook of %s: http://%s/hooks/%s (docs/webhooks.md)\n", p, addr, p)
		}
		if !isLoopbackHost(apiHost) {
			fmt.Fprintf(std.out, "WARNING: --insecure-listen: the API on %s takes the public dev key from anyone who reaches it\n", *apiAddr)
		}
		if s.minter != nil {
			l, err := s.minter.Links(unsubscribe.Claims{}, unsubscribe.Claims{
				Identifier: suppression.Identifier{Type: suppression.IDEmail, Value: "carol@example.org"},
				Scopes:     []suppression.Scope{"topic:newsletter"},
			}, time.Now())
			if err == nil {
				fmt.Fprintf(std.out, "An unsubscribe link for carol@example.org (newsletter): %s\n", l.URL)
			}
		}
		if *seed {
			if err := seedEvents(ctx, cfg.Kafka.Brokers, cfg.Topics); err != nil {
				log.Error("seeding demo events", "err", err)
				return
			}
			fmt.Fprintln(std.out, "seeded: alice@example.org unsubscribed from topic:newsletter, bob@example.org asked for erasure, +1 800 555 0100 sent a GPC signal")
		}
	})
}

// isLoopbackHost reports whether a listener's host reaches this machine
// only. The empty host is every interface.
func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// envVar is one variable of the environment dev prints.
type envVar struct{ name, value string }

// devEnv is what the other commands need to talk to this dev server and
// mint links it accepts.
func devEnv(cfg Config, apiHost, apiPort string) []envVar {
	urlHost := "127.0.0.1"
	if isLoopbackHost(apiHost) {
		urlHost = apiHost
	}
	env := []envVar{
		{envPrefix + "_LINK_KEYS", cfg.Link.Keys},
		{envPrefix + "_LINK_BASE_URL", cfg.Link.BaseURL},
	}
	if cfg.Link.Mailto != "" {
		env = append(env, envVar{envPrefix + "_LINK_MAILTO", cfg.Link.Mailto})
	}
	return append(env,
		envVar{envPrefix + "_PHONE_REGION", cfg.PhoneRegion},
		envVar{envPrefix + "_URL", "http://" + net.JoinHostPort(urlHost, apiPort)},
		envVar{envPrefix + "_API_KEY", devAPIKey})
}

// shellExports is env as the arguments of one export command; the values
// hold nothing a single-quoted shell word cannot.
func shellExports(env []envVar) string {
	parts := make([]string, len(env))
	for i, v := range env {
		parts[i] = v.name + "='" + v.value + "'"
	}
	return strings.Join(parts, " ")
}

// envFileHeader starts every file dev writes, so it never overwrites
// another.
const envFileHeader = "# written by suppressd dev for this run; removed when it stops\n"

func writeEnvFile(name string, env []envVar) error {
	if old, err := os.ReadFile(name); err == nil && !strings.HasPrefix(string(old), envFileHeader) {
		return usageError{fmt.Errorf("--env-file %s: the file exists and was not written by suppressd dev; name another", name)}
	}
	var b strings.Builder
	b.WriteString(envFileHeader)
	for _, v := range env {
		b.WriteString(v.name + "=" + v.value + "\n")
	}
	// 0600: it holds the link keys.
	if err := os.WriteFile(name, []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("--env-file: %w", err)
	}
	return nil
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
