// Package kafkaconn builds kafka-go dialers and transports, with SASL and
// TLS, from one configuration shared by every part that talks to Kafka.
package kafkaconn

import (
	"crypto/tls"
	"errors"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"

	"github.com/suppressd/suppressd/internal/envconf"
	"github.com/suppressd/suppressd/internal/tlsconf"
)

// Config is how to reach Kafka. Field tags are internal/envconf's; the
// binary prefixes them with SUPPRESSD_KAFKA_.
type Config struct {
	Brokers       []string `envconfig:"BROKERS" default:"127.0.0.1:9092" desc:"bootstrap brokers, comma-separated"`
	SASLMechanism string   `envconfig:"SASL_MECHANISM" desc:"plain, scram-sha-256 or scram-sha-512; empty: no SASL"`
	SASLUsername  string   `envconfig:"SASL_USERNAME" desc:"SASL user name"`
	SASLPassword  string   `envconfig:"SASL_PASSWORD" secret:"true" desc:"SASL password"`
	// The CA, certificate and key files are optional: the system roots,
	// no client certificate.
	TLS                   bool          `envconfig:"TLS" default:"false" desc:"TLS to the brokers"`
	TLSCAFile             string        `envconfig:"TLS_CA_FILE" desc:"PEM file of the CAs to trust instead of the system's"`
	TLSCertFile           string        `envconfig:"TLS_CERT_FILE" desc:"client certificate (PEM), with _TLS_KEY_FILE"`
	TLSKeyFile            string        `envconfig:"TLS_KEY_FILE" desc:"client certificate's key (PEM)"`
	TLSServerName         string        `envconfig:"TLS_SERVER_NAME" desc:"name to verify the brokers' certificates against, when not their address"`
	TLSInsecureSkipVerify bool          `envconfig:"TLS_INSECURE_SKIP_VERIFY" default:"false" desc:"do not verify the brokers' certificates (tests only)"`
	DialTimeout           time.Duration `envconfig:"DIAL_TIMEOUT" default:"10s" desc:"per connection attempt"`
}

// Validate checks the configuration without touching the network. It
// reports every problem found, joined.
func (c Config) Validate() error {
	var problems []error
	if len(c.Brokers) == 0 {
		problems = append(problems, &envconf.Problem{Var: "SUPPRESSD_KAFKA_BROKERS", What: "no broker", Got: "", Want: "host:port, comma-separated"})
	}
	if _, err := c.mechanism(); err != nil {
		problems = append(problems, err)
	}
	if _, err := c.tlsConfig(); err != nil {
		problems = append(problems, err)
	}
	return errors.Join(problems...)
}

func (c Config) mechanism() (sasl.Mechanism, error) {
	m := strings.ToLower(c.SASLMechanism)
	if m == "" {
		return nil, nil
	}
	if m != "plain" && m != "scram-sha-256" && m != "scram-sha-512" {
		return nil, &envconf.Problem{Var: "SUPPRESSD_KAFKA_SASL_MECHANISM", What: "unknown mechanism", Got: c.SASLMechanism, Want: "plain, scram-sha-256 or scram-sha-512"}
	}
	if c.SASLUsername == "" {
		return nil, &envconf.Problem{Var: "SUPPRESSD_KAFKA_SASL_USERNAME", What: "empty, and SASL " + m + " needs one", Hidden: true, Want: "the user name"}
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
			return nil, &envconf.Problem{Var: "SUPPRESSD_KAFKA_SASL_MECHANISM", What: err.Error(), Hidden: true}
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
