// Package redisconn builds the go-redis client, a single node, Sentinel or
// Redis Cluster, from one configuration.
package redisconn

import (
	"context"
	"crypto/tls"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/suppressd/suppressd/internal/envconf"
	"github.com/suppressd/suppressd/internal/tlsconf"
)

// Config is how to reach Redis. Field tags are internal/envconf's; the binary
// prefixes them with SUPPRESSD_REDIS_.
type Config struct {
	// With several addresses, Cluster or MasterName says what they are.
	Addrs            []string `envconfig:"ADDRS" default:"127.0.0.1:6379" desc:"one address, or cluster seeds, or the Sentinels, comma-separated"`
	Cluster          bool     `envconfig:"CLUSTER" default:"false" desc:"Redis Cluster client, even with one seed"`
	MasterName       string   `envconfig:"MASTER_NAME" desc:"Sentinel mode: the monitored master's name"`
	Username         string   `envconfig:"USERNAME" desc:"ACL user"`
	Password         string   `envconfig:"PASSWORD" secret:"true" desc:"the ACL user's password, or the password alone"`
	SentinelPassword string   `envconfig:"SENTINEL_PASSWORD" secret:"true" desc:"password of the Sentinels themselves"`
	DB               int      `envconfig:"DB" default:"0" desc:"database (not with Cluster)"`
	// The CA file is optional: the system roots.
	TLS                   bool   `envconfig:"TLS" default:"false" desc:"TLS to Redis"`
	TLSCAFile             string `envconfig:"TLS_CA_FILE" desc:"PEM file of the CAs to trust instead of the system's"`
	TLSServerName         string `envconfig:"TLS_SERVER_NAME" desc:"name to verify Redis's certificate against, when not its address"`
	TLSInsecureSkipVerify bool   `envconfig:"TLS_INSECURE_SKIP_VERIFY" default:"false" desc:"do not verify Redis's certificate (tests only)"`
	// Timeouts of a single command; the API's check deadline is separate.
	DialTimeout  time.Duration `envconfig:"DIAL_TIMEOUT" default:"2s" desc:"per connection attempt"`
	ReadTimeout  time.Duration `envconfig:"READ_TIMEOUT" default:"1s" desc:"per command read"`
	WriteTimeout time.Duration `envconfig:"WRITE_TIMEOUT" default:"1s" desc:"per command write"`
	PoolSize     int           `envconfig:"POOL_SIZE" default:"0" desc:"connections per node; 0 is go-redis's 10 per CPU"`
}

// Validate checks the configuration without touching the network. It
// reports every problem found, joined.
func (c Config) Validate() error {
	var problems []error
	if len(c.Addrs) == 0 {
		problems = append(problems, &envconf.Problem{Var: "SUPPRESSD_REDIS_ADDRS", What: "no address", Got: "", Want: "host:port, comma-separated"})
	}
	if c.Cluster && c.MasterName != "" {
		problems = append(problems, &envconf.Problem{Var: "SUPPRESSD_REDIS_CLUSTER and SUPPRESSD_REDIS_MASTER_NAME", What: "both set", Hidden: true, Want: "Cluster or Sentinel, not both"})
	}
	if c.Cluster && c.DB != 0 {
		problems = append(problems, &envconf.Problem{Var: "SUPPRESSD_REDIS_DB", What: "Redis Cluster has only database 0", Got: strconv.Itoa(c.DB), Want: "0"})
	}
	if _, err := c.tlsConfig(); err != nil {
		problems = append(problems, err)
	}
	return errors.Join(problems...)
}

func (c Config) tlsConfig() (*tls.Config, error) {
	if !c.TLS {
		return nil, nil
	}
	return tlsconf.Files{Var: "SUPPRESSD_REDIS_TLS", CAFile: c.TLSCAFile, ServerName: c.TLSServerName,
		InsecureSkipVerify: c.TLSInsecureSkipVerify}.Config()
}

// Client returns a client for the configured topology.
func (c Config) Client() (redis.UniversalClient, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	t, _ := c.tlsConfig()
	var rdb redis.UniversalClient
	if c.Cluster {
		rdb = redis.NewClusterClient(&redis.ClusterOptions{
			Addrs: c.Addrs, Username: c.Username, Password: c.Password, TLSConfig: t,
			DialTimeout: c.DialTimeout, ReadTimeout: c.ReadTimeout, WriteTimeout: c.WriteTimeout, PoolSize: c.PoolSize,
			ContextTimeoutEnabled: true,
		})
	} else {
		rdb = redis.NewUniversalClient(&redis.UniversalOptions{
			Addrs: c.Addrs, MasterName: c.MasterName, Username: c.Username, Password: c.Password,
			SentinelPassword: c.SentinelPassword, DB: c.DB, TLSConfig: t,
			DialTimeout: c.DialTimeout, ReadTimeout: c.ReadTimeout, WriteTimeout: c.WriteTimeout, PoolSize: c.PoolSize,
			// Without it go-redis ignores context deadlines and waits out
			// ReadTimeout: a check would answer 503 after 1s, not after
			// SUPPRESSD_API_STORE_TIMEOUT.
			ContextTimeoutEnabled: true,
		})
	}
	rdb.AddHook(explainHook{})
	return rdb, nil
}

// explainHook names the setting to fix in the errors of a refused
// connection: Redis says only "WRONGPASS invalid username-password pair",
// Go's TLS stack only "x509: certificate signed by unknown authority". Every
// other error, redis.Nil and NOSCRIPT among them, passes unchanged, and the
// original stays reachable with errors.Is/As.
type explainHook struct{}

func (explainHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (explainHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { return explain(next(ctx, cmd)) }
}

func (explainHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error { return explain(next(ctx, cmds)) }
}

func explain(err error) error {
	if err == nil || errors.Is(err, redis.Nil) {
		return err
	}
	var verify *tls.CertificateVerificationError
	msg := err.Error()
	switch {
	case errors.Is(err, ErrRefused), strings.HasPrefix(msg, "SUPPRESSD_REDIS_"): // explained already (a cluster's node)
		return err
	case strings.HasPrefix(msg, "WRONGPASS"), strings.HasPrefix(msg, "NOAUTH"):
		return &refusedError{what: "SUPPRESSD_REDIS_USERNAME/SUPPRESSD_REDIS_PASSWORD: authentication failed", err: err}
	case errors.As(err, &verify):
		return &refusedError{what: "SUPPRESSD_REDIS_TLS_CA_FILE/SUPPRESSD_REDIS_TLS_SERVER_NAME: the server's TLS certificate is not trusted", err: err}
	}
	return err
}

// ErrRefused is what errors.Is finds in an error of a connection Redis
// refused for its credentials, or that was refused for Redis's
// certificate: a setting is wrong, and waiting will not mend it, unlike
// Redis being out of reach.
var ErrRefused = errors.New("redis refused the credentials, or its certificate was refused")

// refusedError is a refusal explained: the settings to fix, then what
// Redis or the TLS stack said.
type refusedError struct {
	what string
	err  error
}

func (e *refusedError) Error() string        { return e.what + ": " + e.err.Error() }
func (e *refusedError) Unwrap() error        { return e.err }
func (e *refusedError) Is(target error) bool { return target == ErrRefused }
