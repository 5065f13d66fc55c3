// Package tlsconf builds client TLS configurations from the files an
// operator names, with errors that name the variable at fault.
package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"os"

	"github.com/suppressd/suppressd/internal/envconf"
)

// Files names what a TLS client configuration is made of; every field is
// optional. Var is the variable prefix errors name (SUPPRESSD_KAFKA_TLS).
type Files struct {
	Var                string
	CAFile             string
	CertFile, KeyFile  string
	ServerName         string
	InsecureSkipVerify bool
}

// Config returns the TLS configuration: TLS 1.2 or later, the system roots
// unless a CA file is named, a client certificate when both files are.
func (f Files) Config() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: f.ServerName, InsecureSkipVerify: f.InsecureSkipVerify} //nolint:gosec // opt-in, documented
	if f.CAFile != "" {
		pem, err := os.ReadFile(f.CAFile)
		if err != nil {
			return nil, &envconf.Problem{Var: f.Var + "_CA_FILE", What: err.Error(), Want: "a readable PEM file", Hidden: true}
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, &envconf.Problem{Var: f.Var + "_CA_FILE", What: "no PEM certificate in it", Got: f.CAFile, Want: "a PEM file of CA certificates"}
		}
		cfg.RootCAs = pool
	}
	if f.CertFile != "" || f.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
		if err != nil {
			return nil, &envconf.Problem{Var: f.Var + "_CERT_FILE/_KEY_FILE", What: err.Error(), Want: "a PEM certificate and its key", Hidden: true}
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}
