package main

import (
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/suppressd/suppressd/api"
	"github.com/suppressd/suppressd/internal/kafkaconn"
	"github.com/suppressd/suppressd/internal/redisconn"
	"github.com/suppressd/suppressd/schemas"
	"github.com/suppressd/suppressd/store/redisstore"
	"github.com/suppressd/suppressd/suppression"
	"github.com/suppressd/suppressd/unsubscribe"
)

// envPrefix starts every configuration variable.
const envPrefix = "SUPPRESSD"

// Config is the whole configuration of the binary, read from the
// environment. Every variable is documented in the README with its default.
type Config struct {
	// Roles to run in `serve`, comma-separated. The --role flag wins.
	Roles []string `envconfig:"ROLE" default:"consumer"`
	// LogLevel is debug, info, warn or error; LogFormat json or text.
	LogLevel  string `envconfig:"LOG_LEVEL" default:"info"`
	LogFormat string `envconfig:"LOG_FORMAT" default:"json"`
	// OpsAddr serves /metrics, /healthz and /readyz for the roles that have
	// no HTTP listener of their own (the consumer).
	OpsAddr string `envconfig:"OPS_ADDR" default:":9090"`

	// Pepper keys the storage-key HMAC: base64 in SUPPRESSD_PEPPER or the
	// raw bytes of SUPPRESSD_PEPPER_FILE. Empty means plain SHA-256 keys.
	// Every replica and every rebuild must use the same pepper.
	Pepper     string `envconfig:"PEPPER"`
	PepperFile string `envconfig:"PEPPER_FILE"`
	// PhoneRegion reads phone numbers written without a country code
	// (ISO 3166-1 alpha-2, e.g. US). Empty rejects them.
	PhoneRegion string `envconfig:"PHONE_REGION"`
	// AutoRebuild lets the consumer role rebuild a store that holds no
	// suppression list (a new deployment, or Redis lost its data) from
	// Kafka by itself. Off, an operator runs `suppressd rebuild`.
	AutoRebuild bool `envconfig:"AUTO_REBUILD" default:"true"`

	API      APIConfig        `envconfig:"API"`
	Link     LinkConfig       `envconfig:"LINK"`
	Kafka    kafkaconn.Config `envconfig:"KAFKA"`
	Redis    redisconn.Config `envconfig:"REDIS"`
	Store    StoreConfig      `envconfig:"STORE"`
	Topics   TopicsConfig     `envconfig:"TOPIC"`
	Consumer ConsumerConfig   `envconfig:"CONSUMER"`
}

// APIConfig configures the api role.
type APIConfig struct {
	// Addr is where the API listens; it also serves /metrics, /healthz and
	// /readyz (SUPPRESSD_OPS_ADDR is then unused).
	Addr string `envconfig:"ADDR" default:":8080"`
	// Keys are the accepted API keys, "name:scope+scope:sha256hex",
	// comma-separated; `suppressd apikey` makes one. KeysFile reads the same
	// from a file (one entry per line), for a mounted secret.
	Keys     string `envconfig:"KEYS"`
	KeysFile string `envconfig:"KEYS_FILE"`
	// StoreTimeout is how long a check waits for Redis before answering 503.
	StoreTimeout time.Duration `envconfig:"STORE_TIMEOUT" default:"500ms"`
	// MaxBatch is the most contacts in one batch check.
	MaxBatch int `envconfig:"MAX_BATCH" default:"10000"`
	// MaxKeys is the most match keys one request may expand into: what
	// Redis reads within StoreTimeout (about 250,000 keys/s pipelined).
	MaxKeys int `envconfig:"MAX_KEYS" default:"50000"`
}

// keys returns the configured API keys.
func (a APIConfig) keys() ([]api.Key, error) {
	spec := a.Keys
	if a.KeysFile != "" {
		if a.Keys != "" {
			return nil, fmt.Errorf("SUPPRESSD_API_KEYS and SUPPRESSD_API_KEYS_FILE: set one, not both")
		}
		b, err := os.ReadFile(a.KeysFile)
		if err != nil {
			return nil, fmt.Errorf("SUPPRESSD_API_KEYS_FILE: %w", err)
		}
		spec = strings.ReplaceAll(string(b), "\n", ",")
	}
	keys, err := api.ParseKeys(spec)
	if err != nil {
		return nil, fmt.Errorf("SUPPRESSD_API_KEYS: %w", err)
	}
	return keys, nil
}

// LinkConfig configures unsubscribe links (served by the api role under /u/).
type LinkConfig struct {
	// Keys are "id:base64-secret" pairs, comma-separated (the file: one per
	// line); secrets of at least 32 bytes. Without keys no link is served.
	Keys     string `envconfig:"KEYS"`
	KeysFile string `envconfig:"KEYS_FILE"`
	// SigningKey is the id of the key new links are minted with; the others
	// only verify (rotation). Default: the last key listed.
	SigningKey string `envconfig:"SIGNING_KEY"`
	// BaseURL is the public https URL the links point at (the api role's);
	// without it nothing mints links (POST /v1/links answers 404).
	BaseURL string `envconfig:"BASE_URL"`
	// Mailto is an optional address for the mailto: alternative, whose
	// subject carries the token (docs/api.md says how to read its mailbox).
	Mailto string `envconfig:"MAILTO"`
	// HonorDNT records DNT: 1 on the pages as a gpc opt-out, like Sec-GPC.
	HonorDNT bool `envconfig:"HONOR_DNT"`
	// TTL is how long a link works; at least 720h (30 days, CAN-SPAM).
	TTL time.Duration `envconfig:"TTL" default:"2160h"`
}

// keyring returns the link keyring, or nil when no keys are configured.
func (l LinkConfig) keyring() (*unsubscribe.Keyring, error) {
	spec := l.Keys
	if l.KeysFile != "" {
		if l.Keys != "" {
			return nil, fmt.Errorf("SUPPRESSD_LINK_KEYS and SUPPRESSD_LINK_KEYS_FILE: set one, not both")
		}
		b, err := os.ReadFile(l.KeysFile)
		if err != nil {
			return nil, fmt.Errorf("SUPPRESSD_LINK_KEYS_FILE: %w", err)
		}
		spec = strings.ReplaceAll(strings.TrimSpace(string(b)), "\n", ",")
	}
	var keys []unsubscribe.Key
	for _, entry := range strings.Split(spec, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		id, secret, ok := strings.Cut(entry, ":")
		b, err := base64.StdEncoding.DecodeString(secret)
		if !ok || err != nil {
			return nil, fmt.Errorf("SUPPRESSD_LINK_KEYS: each entry is id:base64-secret")
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
		return nil, fmt.Errorf("SUPPRESSD_LINK_KEYS: %w", err)
	}
	return kr, nil
}

// StoreConfig is the Redis key layout.
type StoreConfig struct {
	Prefix     string `envconfig:"PREFIX" default:"sd"`
	BucketBits int    `envconfig:"BUCKET_BITS" default:"16"`
	GroupBits  int    `envconfig:"GROUP_BITS" default:"8"`
}

// TopicsConfig names the Kafka topics.
type TopicsConfig struct {
	Unsubscribes string `envconfig:"UNSUBSCRIBES" default:"suppressd.unsubscribes"`
	Consent      string `envconfig:"CONSENT" default:"suppressd.consent"`
	Erasure      string `envconfig:"ERASURE" default:"suppressd.erasure"`
	// Extra topics to consume as well, comma-separated.
	Extra      []string `envconfig:"EXTRA"`
	DeadLetter string   `envconfig:"DEAD_LETTER" default:"suppressd.dead-letter"`
}

// All returns every topic consumed.
func (t TopicsConfig) All() []string {
	out := []string{}
	for _, s := range append([]string{t.Unsubscribes, t.Consent, t.Erasure}, t.Extra...) {
		if s != "" && !contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// ConsumerConfig tunes the consumer role.
type ConsumerConfig struct {
	Group         string        `envconfig:"GROUP" default:"suppressd"`
	BatchSize     int           `envconfig:"BATCH_SIZE" default:"2000"`
	BatchWait     time.Duration `envconfig:"BATCH_WAIT" default:"20ms"`
	BackoffMin    time.Duration `envconfig:"BACKOFF_MIN" default:"100ms"`
	BackoffMax    time.Duration `envconfig:"BACKOFF_MAX" default:"10s"`
	ShutdownGrace time.Duration `envconfig:"SHUTDOWN_GRACE" default:"15s"`
	// SessionTimeout is how long the group waits for a silent member (a
	// crashed consumer) before moving its partitions; the broker bounds it
	// (group.min.session.timeout.ms, 6s by default).
	SessionTimeout time.Duration `envconfig:"SESSION_TIMEOUT" default:"30s"`
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
	storeOpts  redisstore.Options
	validator  *schemas.Validator
}

// load reads the environment, lets roles (the --role flag) override
// SUPPRESSD_ROLE when not empty, and validates.
func load(roles string) (*settings, error) {
	c, err := readConfig()
	if err != nil {
		return nil, err
	}
	if roles != "" {
		c.Roles = strings.Split(roles, ",")
	}
	return c.settle()
}

// readConfig reads the configuration without validating it.
func readConfig() (Config, error) {
	var c Config
	if err := envconfig.Process(envPrefix, &c); err != nil {
		return c, fmt.Errorf("configuration: %w", err)
	}
	return c, nil
}

var knownRoles = []string{"api", "consumer"}

// settle validates the configuration and parses what needs parsing (keys,
// keyring, pepper, schemas), once.
func (c Config) settle() (*settings, error) {
	s := &settings{Config: c}
	if len(c.Roles) == 0 {
		return nil, fmt.Errorf("SUPPRESSD_ROLE: name at least one role (%s)", strings.Join(knownRoles, ", "))
	}
	for _, r := range c.Roles {
		if !contains(knownRoles, r) {
			return nil, fmt.Errorf("SUPPRESSD_ROLE: unknown role %q (want %s)", r, strings.Join(knownRoles, ", "))
		}
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		return nil, err
	}
	if c.LogFormat != "json" && c.LogFormat != "text" {
		return nil, fmt.Errorf("SUPPRESSD_LOG_FORMAT: %q is not json or text", c.LogFormat)
	}
	var err error
	if s.pepper, err = c.readPepper(); err != nil {
		return nil, err
	}
	s.keyer = suppression.NewKeyer(s.pepper)
	if s.normalizer, err = suppression.NewNormalizer(c.PhoneRegion); err != nil {
		return nil, fmt.Errorf("SUPPRESSD_PHONE_REGION: %w", err)
	}
	if contains(c.Roles, "api") {
		if s.apiKeys, err = c.API.keys(); err != nil {
			return nil, err
		}
		if len(s.apiKeys) == 0 {
			return nil, fmt.Errorf("SUPPRESSD_API_KEYS: the api role needs at least one key (suppressd apikey makes one)")
		}
		if c.API.StoreTimeout <= 0 || c.API.MaxBatch < 1 || c.API.MaxKeys < suppression.MaxIdentifiers*4 {
			return nil, fmt.Errorf("SUPPRESSD_API_STORE_TIMEOUT / SUPPRESSD_API_MAX_BATCH / SUPPRESSD_API_MAX_KEYS: must be positive (MAX_KEYS at least %d, one contact's worth)", suppression.MaxIdentifiers*4)
		}
	}
	if s.keyring, err = c.Link.keyring(); err != nil {
		return nil, err
	}
	if c.Link.TTL < unsubscribe.MinTTL {
		return nil, fmt.Errorf("SUPPRESSD_LINK_TTL: %s is under the 720h (30 days) a link must keep working", c.Link.TTL)
	}
	if s.keyring != nil && c.Link.BaseURL != "" {
		// Checked here, not at the first link: POST /v1/links and
		// `suppressd link` mint with this one minter.
		s.minter, err = unsubscribe.NewMinter(unsubscribe.MinterOptions{Keyring: s.keyring, BaseURL: c.Link.BaseURL,
			Mailto: c.Link.Mailto, TTL: c.Link.TTL, Normalizer: s.normalizer})
		if err != nil {
			name := "SUPPRESSD_LINK_BASE_URL"
			if strings.HasPrefix(err.Error(), "unsubscribe mailto") {
				name = "SUPPRESSD_LINK_MAILTO"
			}
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	if err := c.Kafka.Validate(); err != nil {
		return nil, err
	}
	if err := c.Redis.Validate(); err != nil {
		return nil, err
	}
	s.storeOpts = redisstore.Options{Prefix: c.Store.Prefix, BucketBits: c.Store.BucketBits, GroupBits: c.Store.GroupBits, Keying: s.keyer.Fingerprint()}
	if err := s.storeOpts.Validate(); err != nil {
		return nil, fmt.Errorf("SUPPRESSD_STORE_*: %w", err)
	}
	if len(c.Topics.All()) == 0 {
		return nil, fmt.Errorf("SUPPRESSD_TOPIC_*: no topic to consume")
	}
	if c.Topics.DeadLetter == "" || contains(c.Topics.All(), c.Topics.DeadLetter) {
		return nil, fmt.Errorf("SUPPRESSD_TOPIC_DEAD_LETTER: must be set and differ from the consumed topics")
	}
	if c.Consumer.BatchSize < 1 || c.Consumer.BatchSize > 100000 {
		return nil, fmt.Errorf("SUPPRESSD_CONSUMER_BATCH_SIZE: %d is not between 1 and 100000", c.Consumer.BatchSize)
	}
	if c.Consumer.BackoffMin <= 0 || c.Consumer.BackoffMax < c.Consumer.BackoffMin {
		return nil, fmt.Errorf("SUPPRESSD_CONSUMER_BACKOFF_MIN/MAX: want 0 < min <= max")
	}
	if s.validator, err = schemas.New(); err != nil {
		return nil, err
	}
	return s, nil
}

func (c Config) readPepper() ([]byte, error) {
	switch {
	case c.Pepper != "" && c.PepperFile != "":
		return nil, fmt.Errorf("SUPPRESSD_PEPPER and SUPPRESSD_PEPPER_FILE: set one, not both")
	case c.Pepper != "":
		b, err := base64.StdEncoding.DecodeString(c.Pepper)
		if err != nil {
			return nil, fmt.Errorf("SUPPRESSD_PEPPER: not base64")
		}
		if len(b) < 16 {
			return nil, fmt.Errorf("SUPPRESSD_PEPPER: %d bytes; use at least 16 random bytes", len(b))
		}
		return b, nil
	case c.PepperFile != "":
		b, err := os.ReadFile(c.PepperFile)
		if err != nil {
			return nil, fmt.Errorf("SUPPRESSD_PEPPER_FILE: %w", err)
		}
		if len(b) < 16 {
			return nil, fmt.Errorf("SUPPRESSD_PEPPER_FILE: %d bytes; use at least 16 random bytes", len(b))
		}
		return b, nil
	}
	return nil, nil
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return l, fmt.Errorf("SUPPRESSD_LOG_LEVEL: %q is not debug, info, warn or error", s)
	}
	return l, nil
}

func (c Config) logger(w io.Writer) *slog.Logger {
	l, _ := parseLevel(c.LogLevel)
	opts := &slog.HandlerOptions{Level: l}
	if c.LogFormat == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}
