// Package kafkaconn builds kafka-go dialers and transports, with SASL and
// TLS, from one configuration shared by every part that talks to Kafka.
package kafkaconn

import (
	"crypto/tls"
	"fmt"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"
	"github.com/suppressd/suppressd/internal/tlsconf"
)

// Config is how to reach Kafka. Field tags are envconfig's; the binary
// prefixes them with SUPPRESSD_KAFKA_.
type Config struct {
	// Brokers are the bootstrap addresses.
	Brokers []string `envconfig:"BROKERS" default:"127.0.0.1:9092"`
	// SASLMechanism is "" (none), "plain", "scram-sha-256" or "scram-sha-512".
	SASLMechanism string `envconfig:"SASL_MECHANISM"`
	SASLUsername  string `envconfig:"SASL_USERNAME"`
	SASLPassword  string `envconfig:"SASL_PASSWORD"`
	// TLS turns on TLS to the brokers; the CA, certificate and key files are
	// optional (system roots, no client certificate).
	TLS                   bool   `envconfig:"TLS"`
	TLSCAFile             string `envconfig:"TLS_CA_FILE"`
	TLSCertFile           string `envconfig:"TLS_CERT_FILE"`
	TLSKeyFile            string `envconfig:"TLS_KEY_FILE"`
	TLSServerName         string `envconfig:"TLS_SERVER_NAME"`
	TLSInsecureSkipVerify bool   `envconfig:"TLS_INSECURE_SKIP_VERIFY"`
	// DialTimeout bounds each connection attempt.
	DialTimeout time.Duration `envconfig:"DIAL_TIMEOUT" default:"10s"`
}

// Validate checks the configuration without touching the network.
func (c Config) Validate() error {
	if len(c.Brokers) == 0 {
		return fmt.Errorf("SUPPRESSD_KAFKA_BROKERS: at least one broker is required")
	}
	if _, err := c.mechanism(); err != nil {
		return err
	}
	if _, err := c.tlsConfig(); err != nil {
		return err
	}
	return nil
}

func (c Config) mechanism() (sasl.Mechanism, error) {
	m := strings.ToLower(c.SASLMechanism)
	if m == "" {
		return nil, nil
	}
	if m != "plain" && m != "scram-sha-256" && m != "scram-sha-512" {
		return nil, fmt.Errorf("SUPPRESSD_KAFKA_SASL_MECHANISM: %q is not one of plain, scram-sha-256, scram-sha-512", c.SASLMechanism)
	}
	if c.SASLUsername == "" {
		return nil, fmt.Errorf("SUPPRESSD_KAFKA_SASL_USERNAME: required with SASL mechanism %s", m)
	}
	switch m {
	case "plain":
		return plain.Mechanism{Username: c.SASLUsername, Password: c.SASLPassword}, nil
	case "scram-sha-256", "scram-sha-512":
		algo := scram.SHA256
		if m == "scram-sha-512" {
			algo = scram.SHA512
		}
		mech, err := scram.Mechanism(algo, c.SASLUsername, c.SASLPassword)
		if err != nil {
			return nil, fmt.Errorf("SUPPRESSD_KAFKA_SASL_MECHANISM: %w", err)
		}
		return mech, nil
	}
	return nil, nil
}

func (c Config) tlsConfig() (*tls.Config, error) {
	if !c.TLS {
		return nil, nil
	}
	return tlsconf.Files{Var: "SUPPRESSD_KAFKA_TLS", CAFile: c.TLSCAFile, CertFile: c.TLSCertFile, KeyFile: c.TLSKeyFile,
		ServerName: c.TLSServerName, InsecureSkipVerify: c.TLSInsecureSkipVerify}.Config()
}

// Dialer returns a dialer for readers and admin connections.
func (c Config) Dialer() (*kafka.Dialer, error) {
	mech, err := c.mechanism()
	if err != nil {
		return nil, err
	}
	t, err := c.tlsConfig()
	if err != nil {
		return nil, err
	}
	return &kafka.Dialer{Timeout: c.DialTimeout, DualStack: true, SASLMechanism: mech, TLS: t}, nil
}

// Transport returns a transport for writers. Each call returns a new one, so
// writers do not share kafka-go's default transport and its metadata cache.
func (c Config) Transport() (*kafka.Transport, error) {
	mech, err := c.mechanism()
	if err != nil {
		return nil, err
	}
	t, err := c.tlsConfig()
	if err != nil {
		return nil, err
	}
	return &kafka.Transport{DialTimeout: c.DialTimeout, SASL: mech, TLS: t, MetadataTTL: 5 * time.Second}, nil
}
