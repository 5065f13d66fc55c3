package main

import (
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/suppressd/suppressd/api"
	"github.com/suppressd/suppressd/internal/envconf"
	"github.com/suppressd/suppressd/internal/kafkaconn"
	"github.com/suppressd/suppressd/internal/redisconn"
	"github.com/suppressd/suppressd/schemas"
	"github.com/suppressd/suppressd/store/redisstore"
	"github.com/suppressd/suppressd/suppression"
	"github.com/suppressd/suppressd/unsubscribe"
	"github.com/suppressd/suppressd/webhook"
)

// envPrefix starts every configuration variable.
const envPrefix = "SUPPRESSD"

// Config is the whole configuration of the binary, read from the
// environment by internal/envconf. Each field's desc tag is what
// `suppressd serve -h` says of it; the README's configuration tables must
// list every variable with the same default (cmd/suppressd/docs_test.go).
type Config struct {
	Roles     []string `envconfig:"ROLE" default:"consumer" desc:"roles to run, comma-separated: api, consumer (= ingest and apply), ingest, apply; serve --role overrides it"`
	LogLevel  string   `envconfig:"LOG_LEVEL" default:"info" desc:"debug, info, warn or error"`
	LogFormat string   `envconfig:"LOG_FORMAT" default:"json" desc:"json or text, to stderr"`
	// OpsAddr serves the roles that have no HTTP listener of their own.
	OpsAddr string `envconfig:"OPS_ADDR" default:":9090" desc:"/metrics, /healthz, /readyz when the api role is off"`

	// Every replica and every rebuild must use the same pepper.
	Pepper      string `envconfig:"PEPPER" secret:"true" desc:"HMAC key of the storage keys, base64 of at least 16 random bytes, the same on every replica; without one keys are plain SHA-256"`
	PepperFile  string `envconfig:"PEPPER_FILE" desc:"or a file of the pepper's raw bytes (not base64)"`
	PhoneRegion string `envconfig:"PHONE_REGION" desc:"ISO 3166-1 region of phone numbers written without a country code (US); without one they are rejected"`
	AutoRebuild bool   `envconfig:"AUTO_REBUILD" default:"true" desc:"the consumer role rebuilds a store that holds no suppression list from Kafka by itself; false: it waits for suppressd rebuild"`

	// rolesFlag: Roles came from serve --role, which errors then name.
	rolesFlag bool

	API      APIConfig        `envconfig:"API"`
	Index    IndexConfig      `envconfig:"INDEX"`
	Link     LinkConfig       `envconfig:"LINK"`
	Kafka    kafkaconn.Config `envconfig:"KAFKA"`
	Redis    redisconn.Config `envconfig:"REDIS"`
	Store    StoreConfig      `envconfig:"STORE"`
	Topics   TopicsConfig     `envconfig:"TOPIC"`
	Consumer ConsumerConfig   `envconfig:"CONSUMER"`
	// Hooks are the mail providers' webhooks the api role serves under
	// /hooks/ (docs/webhooks.md documents them).
	Hooks webhook.Config `envconfig:"HOOKS"`
}

// APIConfig configures the api role.
type APIConfig struct {
	Addr string `envconfig:"ADDR" default:":8080" desc:"the api role's listener; it serves /metrics, /healthz and /readyz too"`
	// Only the SHA-256 of each secret is configured, so the keys are not
	// secret, but a secret pasted by mistake must not be repeated.
	Keys         string        `envconfig:"KEYS" secret:"true" desc:"API keys, name:scope+scope:sha256hex, comma-separated (suppressd apikey makes one); scopes check, filter, publish, admin; required by the api role"`
	KeysFile     string        `envconfig:"KEYS_FILE" desc:"or a file of API keys, one per line; blank lines and # comments are skipped"`
	StoreTimeout time.Duration `envconfig:"STORE_TIMEOUT" default:"500ms" desc:"how long a check waits for Redis before answering 503, failing closed"`
	MaxBatch     int           `envconfig:"MAX_BATCH" default:"10000" desc:"most contacts in one batch check"`
	MaxKeys      int           `envconfig:"MAX_KEYS" default:"50000" desc:"most match keys one request may expand into (up to 4 per identifier): what Redis reads within the store timeout; more is a 413"`
	MaxConns     int           `envconfig:"MAX_CONNS" default:"1024" desc:"most connections open at once on the listener, 0 for no cap; one more is closed at once"`
	BodyTimeout  time.Duration `envconfig:"BODY_TIMEOUT" default:"15s" desc:"how long a JSON body or a form may take to arrive whole (408 beyond); streamed bodies get it as grace before MIN_BODY_RATE applies"`
	MinBodyRate  int64         `envconfig:"MIN_BODY_RATE" default:"16384" desc:"the slowest a streamed body (filter, import) may arrive, in bytes per second"`
}

// IndexConfig configures the api role's read index (package index).
type IndexConfig struct {
	Enabled bool          `envconfig:"ENABLED" default:"true" desc:"the api role keeps an in-memory index of the keys the store has records for, from a snapshot and the ledger, and answers every other key without asking Redis; false: every read asks Redis"`
	MaxLag  time.Duration `envconfig:"MAX_LAG" default:"250ms" desc:"the index answers only while it holds every key that reached the store this long ago; past it (loading, the ledger feed lagging or broken, Redis not answering) every read asks Redis"`
}

// minIndexLag is the shortest bound the index keeps: it checks the ledger
// and the generation pointer five times per bound.
const minIndexLag = 10 * time.Millisecond

// keys returns the configured API keys.
func (a APIConfig) keys() ([]api.Key, error) {
	var entries []entry
	switch {
	case a.KeysFile != "" && a.Keys != "":
		return nil, &envconf.Problem{Var: "SUPPRESSD_API_KEYS and SUPPRESSD_API_KEYS_FILE", What: "both set", Want: "one of them", Hidden: true}
	case a.KeysFile != "":
		var err error
		if entries, err = fileEntries(a.KeysFile); err != nil {
			return nil, &envconf.Problem{Var: "SUPPRESSD_API_KEYS_FILE", What: err.Error(), Want: "a readable file of keys, one per line", Hidden: true}
		}
	default:
		entries = listEntries(a.Keys)
	}
	keys, err := api.ParseKeyEntries(keyEntries(entries))
	if err != nil {
		return nil, &envconf.Problem{Var: entriesVar("SUPPRESSD_API_KEYS", a.KeysFile), What: err.Error(), Hidden: true}
	}
	return keys, nil
}

// entry is one entry of a list of keys, and where it was found: "entry 2"
// of a variable, "line 7" of a file.
type entry struct{ text, where string }

// listEntries splits a comma-separated variable.
func listEntries(spec string) []entry {
	var out []entry
	for i, text := range strings.Split(spec, ",") {
		out = append(out, entry{strings.TrimSpace(text), fmt.Sprintf("entry %d", i+1)})
	}
	return out
}

// fileEntries reads a file of entries, one per line, as mounted from a
// secret: blank lines are skipped, and so are comments, from a # at the
// start of a line or after a space to the end of it.
func fileEntries(path string) ([]entry, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []entry
	for i, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		for i := 1; i < len(line); i++ {
			if line[i] == '#' && (line[i-1] == ' ' || line[i-1] == '\t') {
				line = line[:i]
				break
			}
		}
		out = append(out, entry{strings.TrimSpace(line), fmt.Sprintf("line %d", i+1)})
	}
	return out, nil
}

func keyEntries(es []entry) []api.KeyEntry {
	out := make([]api.KeyEntry, len(es))
	for i, e := range es {
		out[i] = api.KeyEntry{Text: e.text, Where: e.where}
	}
	return out
}

// entriesVar names the variable the entries came from.
func entriesVar(name, file string) string {
	if file != "" {
		return name + "_FILE"
	}
	return name
}

// LinkConfig configures unsubscribe links (served by the api role under /u/).
type LinkConfig struct {
	Keys           string        `envconfig:"KEYS" secret:"true" desc:"unsubscribe-link keys, id:base64-secret, comma-separated, secrets of 32 bytes or more; without keys no link is served"`
	KeysFile       string        `envconfig:"KEYS_FILE" desc:"or a file of link keys, one per line; blank lines and # comments are skipped"`
	SigningKey     string        `envconfig:"SIGNING_KEY" desc:"the key id new links are minted with, the others only verify (rotation); default the last key"`
	BaseURL        string        `envconfig:"BASE_URL" desc:"the public https URL of the api role the links point at; without it nothing mints links (POST /v1/links answers 404)"`
	Mailto         string        `envconfig:"MAILTO" desc:"the mailto: alternative in List-Unsubscribe; its subject carries the token (docs/api.md says how to read its mailbox)"`
	HonorDNT       bool          `envconfig:"HONOR_DNT" default:"false" desc:"record DNT: 1 on the pages as a gpc opt-out, like Sec-GPC: 1"`
	TTL            time.Duration `envconfig:"TTL" default:"2160h" desc:"how long a link works; at least 720h (30 days, CAN-SPAM)"`
	Rate           int           `envconfig:"RATE" default:"10" desc:"page requests per minute of one link, per replica; 0 for no limit"`
	ClientRate     int           `envconfig:"CLIENT_RATE" default:"60" desc:"page requests per minute of one client address, per replica; 0 for no limit"`
	ClientIPHeader string        `envconfig:"CLIENT_IP_HEADER" desc:"the header a trusted proxy sets to the client's address (its last entry is used), e.g. X-Forwarded-For; empty: the connection's address"`
	BrandsFile     string        `envconfig:"BRANDS_FILE" desc:"a JSON file of the pages' brands: each namespace's sender name, logo, privacy link, support address and colour (docs/pages.md); without one the pages are neutral"`
}

// keyring returns the link keyring, or nil when no keys are configured.
func (l LinkConfig) keyring() (*unsubscribe.Keyring, error) {
	var entries []entry
	switch {
	case l.KeysFile != "" && l.Keys != "":
		return nil, &envconf.Problem{Var: "SUPPRESSD_LINK_KEYS and SUPPRESSD_LINK_KEYS_FILE", What: "both set", Want: "one of them", Hidden: true}
	case l.KeysFile != "":
		var err error
		if entries, err = fileEntries(l.KeysFile); err != nil {
			return nil, &envconf.Problem{Var: "SUPPRESSD_LINK_KEYS_FILE", What: err.Error(), Want: "a readable file of keys, one per line", Hidden: true}
		}
	default:
		entries = listEntries(l.Keys)
	}
	name := entriesVar("SUPPRESSD_LINK_KEYS", l.KeysFile)
	var keys []unsubscribe.Key
	for _, e := range entries {
		if e.text == "" {
			continue
		}
		id, secret, ok := strings.Cut(e.text, ":")
		b, err := base64.StdEncoding.DecodeString(secret)
		if !ok || err != nil {
			return nil, &envconf.Problem{Var: name, What: e.where + ": not id:base64-secret", Hidden: true}
		}
		keys = append(keys, unsubscribe.Key{ID: id, Secret: b})
	}
	if len(keys) == 0 {
		return nil, nil
	}
	signing := l.SigningKey
	if signing == "" {
		signing = keys[len(keys)-1].ID
	}
	kr, err := unsubscribe.NewKeyring(signing, keys)
	if err != nil {
		return nil, &envconf.Problem{Var: name, What: err.Error(), Hidden: true}
	}
	return kr, nil
}

// StoreConfig is the Redis key layout and when a write counts as done.
type StoreConfig struct {
	Prefix            string        `envconfig:"PREFIX" default:"sd" desc:"first part of every key"`
	BucketBits        int           `envconfig:"BUCKET_BITS" default:"16" desc:"key layout: 2^n buckets per namespace; changing it needs suppressd rebuild"`
	GroupBits         int           `envconfig:"GROUP_BITS" default:"8" desc:"key layout: 2^n slot groups, at most the bucket bits; changing it needs suppressd rebuild"`
	Durability        string        `envconfig:"DURABILITY" default:"accepted" desc:"when the consumer may commit what it applied: accepted, replicas:N (WAIT), fsync or fsync+replicas:N (WAITAOF, Redis 7.2+)"`
	DurabilityTimeout time.Duration `envconfig:"DURABILITY_TIMEOUT" default:"5s" desc:"how long a batch waits for that confirmation before it is retried, uncommitted"`
}

// TopicsConfig names the Kafka topics.
type TopicsConfig struct {
	Unsubscribes string   `envconfig:"UNSUBSCRIBES" default:"suppressd.unsubscribes" desc:"intake topic: unsubscribes, resubscribes, complaints, bounces, suppress events"`
	Consent      string   `envconfig:"CONSENT" default:"suppressd.consent" desc:"intake topic: consent withdrawn and granted, GPC signals"`
	Erasure      string   `envconfig:"ERASURE" default:"suppressd.erasure" desc:"intake topic: erasure requests"`
	Admin        string   `envconfig:"ADMIN" default:"suppressd.admin" desc:"intake topic of admin unsuppress events, the only topic they are accepted from (guard it with Kafka ACLs)"`
	Extra        []string `envconfig:"EXTRA" desc:"more intake topics, comma-separated"`
	Ledger       string   `envconfig:"LEDGER" default:"suppressd.ledger" desc:"the ledger: one record per valid intake event, storage keys only, kept for ever; the store is applied and rebuilt from it"`
	DeadLetter   string   `envconfig:"DEAD_LETTER" default:"suppressd.dead-letter" desc:"where invalid events go"`
}

// All returns every intake topic.
func (t TopicsConfig) All() []string {
	out := []string{}
	for _, s := range append([]string{t.Unsubscribes, t.Consent, t.Erasure, t.Admin}, t.Extra...) {
		if s != "" && !contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// ConsumerConfig tunes the consumer role.
type ConsumerConfig struct {
	Group      string        `envconfig:"GROUP" default:"suppressd" desc:"consumer group of the ingest stage (intake topics to the ledger)"`
	ApplyGroup string        `envconfig:"APPLY_GROUP" desc:"consumer group of the apply stage (the ledger to the store); default the ingest group's name with -apply"`
	BatchSize  int           `envconfig:"BATCH_SIZE" default:"2000" desc:"most messages per batch, 1 to 100000"`
	BatchWait  time.Duration `envconfig:"BATCH_WAIT" default:"5ms" desc:"how long a batch waits to fill after its first message"`
	BackoffMin time.Duration `envconfig:"BACKOFF_MIN" default:"100ms" desc:"first retry delay after a store, dead-letter or commit failure (doubling, full jitter)"`
	BackoffMax time.Duration `envconfig:"BACKOFF_MAX" default:"10s" desc:"longest retry delay"`
	// The broker bounds SessionTimeout (group.min.session.timeout.ms, 6s
	// by default).
	ShutdownGrace  time.Duration `envconfig:"SHUTDOWN_GRACE" default:"15s" desc:"how long shutdown may take to finish the batches in hand"`
	SessionTimeout time.Duration `envconfig:"SESSION_TIMEOUT" default:"30s" desc:"how long the group waits for a silent member (a crashed consumer) before moving its partitions"`
}

func contains(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}

// settings is the configuration parsed and validated once: what every
// command and role receives.
type settings struct {
	Config
	pepper     []byte
	keyer      suppression.Keyer
	normalizer suppression.Normalizer
	apiKeys    []api.Key            // the api role's
	keyring    *unsubscribe.Keyring // nil: no unsubscribe links
	minter     *unsubscribe.Minter  // nil: no keyring or no base URL, nothing to mint links with
	hooks      webhook.Options      // the api role's webhooks, without what configuration cannot say
	brands     unsubscribe.Brands   // the pages' brands; zero: neutral pages
	storeOpts  redisstore.Options
	validator  *schemas.Validator
}

// load reads the environment, lets roles (the --role flag) override
// SUPPRESSD_ROLE when not empty, and validates. A bad configuration is
// every problem found, joined, one per line (see envconf.Problem).
func load(roles string) (*settings, error) {
	c, readErr := readConfig()
	if roles != "" {
		c.Roles = strings.Split(roles, ",")
		c.rolesFlag = true
	}
	s, err := c.settle()
	if err = errors.Join(readErr, err); err != nil {
		return nil, configError{err}
	}
	return s, nil
}

// configError is a bad configuration: the operator's to fix, so the
// command exits 2, as for a bad flag.
type configError struct{ error }

func (e configError) Unwrap() error { return e.error }

// readConfig reads the configuration without validating it; a bad value
// leaves its variable at the default, so that the rest can still be
// validated and every problem reported at once.
func readConfig() (Config, error) {
	var c Config
	return c, envconf.Read(envPrefix, &c, os.LookupEnv)
}

var knownRoles = []string{"api", "consumer", "ingest", "apply"}

// has reports whether the configuration runs a role; consumer is ingest and
// apply together.
func (c Config) has(role string) bool {
	return contains(c.Roles, role) || (role == "ingest" || role == "apply") && contains(c.Roles, "consumer")
}

// applyGroup is the apply stage's consumer group.
func (c ConsumerConfig) applyGroup() string {
	if c.ApplyGroup != "" {
		return c.ApplyGroup
	}
	return c.Group + "-apply"
}

// settle validates the configuration and parses what needs parsing (keys,
// keyring, pepper, schemas), once. It reports every problem, not the
// first.
func (c Config) settle() (*settings, error) {
	s := &settings{Config: c}
	var problems []error
	bad := func(err error) {
		if err != nil {
			problems = append(problems, err)
		}
	}
	roleVar := "SUPPRESSD_ROLE"
	if c.rolesFlag {
		roleVar = "--role"
	}
	if len(c.Roles) == 0 {
		bad(&envconf.Problem{Var: roleVar, What: "no role", Got: strings.Join(c.Roles, ","), Want: strings.Join(knownRoles, ", ") + ", several comma-separated"})
	}
	for _, r := range c.Roles {
		if !contains(knownRoles, r) {
			bad(&envconf.Problem{Var: roleVar, What: fmt.Sprintf("unknown role %q", r), Got: strings.Join(c.Roles, ","), Want: strings.Join(knownRoles, ", ") + ", several comma-separated"})
		}
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		bad(&envconf.Problem{Var: "SUPPRESSD_LOG_LEVEL", What: "unknown level", Got: c.LogLevel, Want: "debug, info, warn or error"})
	}
	if c.LogFormat != "json" && c.LogFormat != "text" {
		bad(&envconf.Problem{Var: "SUPPRESSD_LOG_FORMAT", What: "unknown format", Got: c.LogFormat, Want: "json or text"})
	}
	var err error
	s.pepper, err = c.readPepper()
	bad(err)
	s.keyer = suppression.NewKeyer(s.pepper)
	if s.normalizer, err = suppression.NewNormalizer(c.PhoneRegion); err != nil {
		bad(&envconf.Problem{Var: "SUPPRESSD_PHONE_REGION", What: "not a region", Got: c.PhoneRegion, Want: "an ISO 3166-1 alpha-2 code such as US, or empty"})
	}
	if contains(c.Roles, "api") {
		s.apiKeys, err = c.API.keys()
		bad(err)
		if err == nil && len(s.apiKeys) == 0 {
			bad(&envconf.Problem{Var: "SUPPRESSD_API_KEYS", What: "no key, and the api role needs one", Want: "a key from suppressd apikey", Hidden: true})
		}
		if c.API.StoreTimeout <= 0 {
			bad(&envconf.Problem{Var: "SUPPRESSD_API_STORE_TIMEOUT", What: "not positive", Got: fmtDuration(c.API.StoreTimeout), Want: "more than 0, such as 500ms"})
		}
		if c.API.MaxBatch < 1 {
			bad(&envconf.Problem{Var: "SUPPRESSD_API_MAX_BATCH", What: "not positive", Got: strconv.Itoa(c.API.MaxBatch), Want: "at least 1"})
		}
		if c.API.MaxKeys < suppression.MaxIdentifiers*4 {
			bad(&envconf.Problem{Var: "SUPPRESSD_API_MAX_KEYS", What: "too small for one contact", Got: strconv.Itoa(c.API.MaxKeys), Want: fmt.Sprintf("at least %d (16 identifiers of 4 keys)", suppression.MaxIdentifiers*4)})
		}
		if c.API.MaxConns < 0 {
			bad(&envconf.Problem{Var: "SUPPRESSD_API_MAX_CONNS", What: "negative", Got: strconv.Itoa(c.API.MaxConns), Want: "0 (no cap) or more"})
		}
		if c.API.BodyTimeout <= 0 {
			bad(&envconf.Problem{Var: "SUPPRESSD_API_BODY_TIMEOUT", What: "not positive", Got: fmtDuration(c.API.BodyTimeout), Want: "more than 0, such as 15s"})
		}
		if c.API.MinBodyRate < 1 {
			bad(&envconf.Problem{Var: "SUPPRESSD_API_MIN_BODY_RATE", What: "not positive", Got: strconv.FormatInt(c.API.MinBodyRate, 10), Want: "bytes per second, such as 16384"})
		}
		if c.Index.Enabled && c.Index.MaxLag < minIndexLag {
			bad(&envconf.Problem{Var: "SUPPRESSD_INDEX_MAX_LAG", What: "too short", Got: fmtDuration(c.Index.MaxLag), Want: "at least " + fmtDuration(minIndexLag) + ", such as 250ms"})
		}
		if c.Link.Rate < 0 {
			bad(&envconf.Problem{Var: "SUPPRESSD_LINK_RATE", What: "negative", Got: strconv.Itoa(c.Link.Rate), Want: "0 (no limit) or more"})
		}
		if c.Link.ClientRate < 0 {
			bad(&envconf.Problem{Var: "SUPPRESSD_LINK_CLIENT_RATE", What: "negative", Got: strconv.Itoa(c.Link.ClientRate), Want: "0 (no limit) or more"})
		}
	}
	if contains(c.Roles, "api") {
		s.hooks, err = c.Hooks.Options()
		bad(err)
	}
	s.keyring, err = c.Link.keyring()
	bad(err)
	if c.Link.BrandsFile != "" && contains(c.Roles, "api") {
		if s.brands, err = unsubscribe.LoadBrands(c.Link.BrandsFile); err != nil {
			bad(&envconf.Problem{Var: "SUPPRESSD_LINK_BRANDS_FILE", What: err.Error(), Hidden: true})
		}
	}
	if c.Link.TTL < unsubscribe.MinTTL {
		bad(&envconf.Problem{Var: "SUPPRESSD_LINK_TTL", What: "too short: a link must keep working for 30 days", Got: fmtDuration(c.Link.TTL), Want: "at least 720h"})
	}
	if s.keyring != nil && c.Link.BaseURL != "" {
		// Checked here, not at the first link: POST /v1/links and
		// `suppressd link` mint with this one minter.
		s.minter, err = unsubscribe.NewMinter(unsubscribe.MinterOptions{Keyring: s.keyring, BaseURL: c.Link.BaseURL,
			Mailto: c.Link.Mailto, TTL: c.Link.TTL, Normalizer: s.normalizer})
		if err != nil {
			name, got := "SUPPRESSD_LINK_BASE_URL", c.Link.BaseURL
			if strings.HasPrefix(err.Error(), "unsubscribe mailto") {
				name, got = "SUPPRESSD_LINK_MAILTO", c.Link.Mailto
			}
			bad(&envconf.Problem{Var: name, What: err.Error(), Got: got})
		}
	}
	bad(c.Kafka.Validate())
	bad(c.Redis.Validate())
	s.storeOpts = redisstore.Options{Prefix: c.Store.Prefix, BucketBits: c.Store.BucketBits, GroupBits: c.Store.GroupBits, Keying: s.keyer.Fingerprint()}
	bad(c.Store.validate())
	if d, err := redisstore.ParseDurability(c.Store.Durability); err != nil {
		bad(&envconf.Problem{Var: "SUPPRESSD_STORE_DURABILITY", What: "unknown durability", Got: c.Store.Durability, Want: "accepted, replicas:N, fsync or fsync+replicas:N"})
	} else {
		s.storeOpts.Durability = d
	}
	if c.Store.DurabilityTimeout <= 0 {
		bad(&envconf.Problem{Var: "SUPPRESSD_STORE_DURABILITY_TIMEOUT", What: "not positive", Got: fmtDuration(c.Store.DurabilityTimeout), Want: "more than 0, such as 5s"})
	}
	s.storeOpts.Durability.Timeout = c.Store.DurabilityTimeout
	if contains(c.Roles, "api") && c.Index.Enabled && c.Index.MaxLag >= minIndexLag {
		// The store's reads follow a generation switch within the index's
		// bound too: a read the index sends to Redis must not find the
		// previous generation for a second.
		s.storeOpts.Refresh = min(redisstore.DefaultRefresh, c.Index.MaxLag/5)
	}
	if len(c.Topics.All()) == 0 {
		bad(&envconf.Problem{Var: "SUPPRESSD_TOPIC_UNSUBSCRIBES, _CONSENT, _ERASURE and _EXTRA", What: "no topic to consume", Hidden: true, Want: "at least one"})
	}
	if c.Topics.DeadLetter == "" || contains(c.Topics.All(), c.Topics.DeadLetter) {
		bad(&envconf.Problem{Var: "SUPPRESSD_TOPIC_DEAD_LETTER", What: "empty or a consumed topic", Got: c.Topics.DeadLetter, Want: "a topic of its own"})
	}
	if c.Topics.Ledger == "" || contains(c.Topics.All(), c.Topics.Ledger) || c.Topics.Ledger == c.Topics.DeadLetter {
		bad(&envconf.Problem{Var: "SUPPRESSD_TOPIC_LEDGER", What: "empty, an intake topic or the dead-letter topic", Got: c.Topics.Ledger, Want: "a topic of its own"})
	}
	if c.Consumer.BatchSize < 1 || c.Consumer.BatchSize > 100000 {
		bad(&envconf.Problem{Var: "SUPPRESSD_CONSUMER_BATCH_SIZE", What: "out of range", Got: strconv.Itoa(c.Consumer.BatchSize), Want: "1 to 100000"})
	}
	if c.Consumer.BackoffMin <= 0 {
		bad(&envconf.Problem{Var: "SUPPRESSD_CONSUMER_BACKOFF_MIN", What: "not positive", Got: fmtDuration(c.Consumer.BackoffMin), Want: "more than 0, such as 100ms"})
	} else if c.Consumer.BackoffMax < c.Consumer.BackoffMin {
		bad(&envconf.Problem{Var: "SUPPRESSD_CONSUMER_BACKOFF_MAX", What: "shorter than SUPPRESSD_CONSUMER_BACKOFF_MIN (" + fmtDuration(c.Consumer.BackoffMin) + ")", Got: fmtDuration(c.Consumer.BackoffMax), Want: "at least the minimum"})
	}
	if len(problems) > 0 {
		return nil, errors.Join(problems...)
	}
	if s.validator, err = schemas.New(); err != nil {
		return nil, err
	}
	return s, nil
}

// validate checks the key layout, naming the variable at fault.
func (c StoreConfig) validate() error {
	var problems []error
	if strings.ContainsAny(c.Prefix, ":{} ") {
		problems = append(problems, &envconf.Problem{Var: "SUPPRESSD_STORE_PREFIX", What: "has ':', '{', '}' or a space", Got: c.Prefix, Want: "a plain word such as sd"})
	}
	if c.BucketBits < 1 || c.BucketBits > 24 {
		problems = append(problems, &envconf.Problem{Var: "SUPPRESSD_STORE_BUCKET_BITS", What: "out of range", Got: strconv.Itoa(c.BucketBits), Want: "1 to 24"})
	} else if c.GroupBits < 1 || c.GroupBits > c.BucketBits {
		problems = append(problems, &envconf.Problem{Var: "SUPPRESSD_STORE_GROUP_BITS", What: "out of range", Got: strconv.Itoa(c.GroupBits), Want: fmt.Sprintf("1 to the bucket bits (%d)", c.BucketBits)})
	}
	if len(problems) > 0 {
		return errors.Join(problems...)
	}
	// What the store itself refuses, should it refuse more than the above.
	o := redisstore.Options{Prefix: c.Prefix, BucketBits: c.BucketBits, GroupBits: c.GroupBits}
	if err := o.Validate(); err != nil {
		return &envconf.Problem{Var: "SUPPRESSD_STORE_*", What: err.Error(), Hidden: true}
	}
	return nil
}

// fmtDuration writes d as an operator would: 24h, not 24h0m0s.
func fmtDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func (c Config) readPepper() ([]byte, error) {
	const want = "at least 16 random bytes"
	switch {
	case c.Pepper != "" && c.PepperFile != "":
		return nil, &envconf.Problem{Var: "SUPPRESSD_PEPPER and SUPPRESSD_PEPPER_FILE", What: "both set", Want: "one of them", Hidden: true}
	case c.Pepper != "":
		b, err := base64.StdEncoding.DecodeString(c.Pepper)
		if err != nil {
			return nil, &envconf.Problem{Var: "SUPPRESSD_PEPPER", What: "not base64", Want: want + ", base64-encoded", Hidden: true}
		}
		if len(b) < 16 {
			return nil, &envconf.Problem{Var: "SUPPRESSD_PEPPER", What: fmt.Sprintf("too short: %d bytes", len(b)), Want: want, Hidden: true}
		}
		return b, nil
	case c.PepperFile != "":
		b, err := os.ReadFile(c.PepperFile)
		if err != nil {
			return nil, &envconf.Problem{Var: "SUPPRESSD_PEPPER_FILE", What: err.Error(), Want: "a readable file of " + want, Hidden: true}
		}
		if len(b) < 16 {
			return nil, &envconf.Problem{Var: "SUPPRESSD_PEPPER_FILE", What: fmt.Sprintf("too short: %d bytes", len(b)), Want: want, Hidden: true}
		}
		return b, nil
	}
	return nil, nil
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	err := l.UnmarshalText([]byte(s))
	return l, err
}

// configUsage lists every variable the binary reads, with its type,
// meaning and default: the end of `suppressd serve -h`.
func configUsage(w io.Writer) {
	vars, err := envconf.Vars(envPrefix, &Config{})
	if err != nil {
		fmt.Fprintln(w, err)
		return
	}
	envconf.Usage(w, vars)
}

// readsConfig makes the help of a command that reads the configuration
// say so, and where the variables are listed.
func readsConfig(fs *flag.FlagSet) {
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage of %s:\n", fs.Name())
		fs.PrintDefaults()
		fmt.Fprintln(fs.Output(), "\nIt reads the service's configuration from the SUPPRESSD_* variables: suppressd serve -h lists them.")
	}
}

func (c Config) logger(w io.Writer) *slog.Logger {
	l, _ := parseLevel(c.LogLevel)
	opts := &slog.HandlerOptions{Level: l}
	if c.LogFormat == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}
