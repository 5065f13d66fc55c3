// Package redisconn builds the go-redis client, a single node, Sentinel or
// Redis Cluster, from one configuration.
package redisconn

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/suppressd/suppressd/internal/tlsconf"
)

// Config is how to reach Redis. Field tags are envconfig's; the binary
// prefixes them with SUPPRESSD_REDIS_.
type Config struct {
	// Addrs: one address for a single node; several seed addresses for a
	// cluster (with Cluster set) or the Sentinels (with MasterName set).
	Addrs []string `envconfig:"ADDRS" default:"127.0.0.1:6379"`
	// Cluster makes the client a Redis Cluster client even with one seed.
	Cluster bool `envconfig:"CLUSTER"`
	// MasterName selects Sentinel mode: the name of the monitored master.
	MasterName string `envconfig:"MASTER_NAME"`
	// Username and Password authenticate (ACL user, or password alone).
	Username string `envconfig:"USERNAME"`
	Password string `envconfig:"PASSWORD"`
	// SentinelPassword authenticates to the Sentinels themselves.
	SentinelPassword string `envconfig:"SENTINEL_PASSWORD"`
	DB               int    `envconfig:"DB" default:"0"`
	// TLS turns on TLS; the CA file is optional (system roots).
	TLS                   bool   `envconfig:"TLS"`
	TLSCAFile             string `envconfig:"TLS_CA_FILE"`
	TLSServerName         string `envconfig:"TLS_SERVER_NAME"`
	TLSInsecureSkipVerify bool   `envconfig:"TLS_INSECURE_SKIP_VERIFY"`
	// Timeouts of a single command; the API's check deadline is separate.
	DialTimeout  time.Duration `envconfig:"DIAL_TIMEOUT" default:"2s"`
	ReadTimeout  time.Duration `envconfig:"READ_TIMEOUT" default:"1s"`
	WriteTimeout time.Duration `envconfig:"WRITE_TIMEOUT" default:"1s"`
	PoolSize     int           `envconfig:"POOL_SIZE" default:"0"` // 0: go-redis's default, 10 per CPU
}

// Validate checks the configuration without touching the network.
func (c Config) Validate() error {
	if len(c.Addrs) == 0 {
		return fmt.Errorf("SUPPRESSD_REDIS_ADDRS: at least one address is required")
	}
	if c.Cluster && c.MasterName != "" {
		return fmt.Errorf("SUPPRESSD_REDIS_CLUSTER and SUPPRESSD_REDIS_MASTER_NAME: choose Cluster or Sentinel, not both")
	}
	if c.Cluster && c.DB != 0 {
		return fmt.Errorf("SUPPRESSD_REDIS_DB: Redis Cluster has only database 0")
	}
	_, err := c.tlsConfig()
	return err
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
	case strings.HasPrefix(msg, "SUPPRESSD_REDIS_"): // explained already (a cluster's node)
		return err
	case strings.HasPrefix(msg, "WRONGPASS"), strings.HasPrefix(msg, "NOAUTH"):
		return fmt.Errorf("SUPPRESSD_REDIS_USERNAME/SUPPRESSD_REDIS_PASSWORD: authentication failed: %w", err)
	case errors.As(err, &verify):
		return fmt.Errorf("SUPPRESSD_REDIS_TLS_CA_FILE/SUPPRESSD_REDIS_TLS_SERVER_NAME: the server's TLS certificate is not trusted: %w", err)
	}
	return err
}
