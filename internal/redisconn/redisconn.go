// Package redisconn builds the go-redis client, a single node, Sentinel or
// Redis Cluster, from one configuration.
package redisconn

import (
	"crypto/tls"
	"fmt"
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
	if c.Cluster {
		return redis.NewClusterClient(&redis.ClusterOptions{
			Addrs: c.Addrs, Username: c.Username, Password: c.Password, TLSConfig: t,
			DialTimeout: c.DialTimeout, ReadTimeout: c.ReadTimeout, WriteTimeout: c.WriteTimeout, PoolSize: c.PoolSize,
		}), nil
	}
	return redis.NewUniversalClient(&redis.UniversalOptions{
		Addrs: c.Addrs, MasterName: c.MasterName, Username: c.Username, Password: c.Password,
		SentinelPassword: c.SentinelPassword, DB: c.DB, TLSConfig: t,
		DialTimeout: c.DialTimeout, ReadTimeout: c.ReadTimeout, WriteTimeout: c.WriteTimeout, PoolSize: c.PoolSize,
	}), nil
}
