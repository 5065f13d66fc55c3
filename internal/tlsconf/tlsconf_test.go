package tlsconf

import (
	"crypto/tls"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestConfig(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) }))
	defer srv.Close()
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	require.NoError(t, os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600))

	cfg, err := Files{Var: "X_TLS", CAFile: ca}.Config()
	require.NoError(t, err)
	require.Equal(t, uint16(tls.VersionTLS12), cfg.MinVersion)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
	resp, err := c.Get(srv.URL)
	require.NoError(t, err, "the named CA verifies the server")
	resp.Body.Close()

	plain, err := Files{Var: "X_TLS"}.Config()
	require.NoError(t, err)
	_, err = (&http.Client{Transport: &http.Transport{TLSClientConfig: plain}}).Get(srv.URL)
	require.Error(t, err, "without the CA the self-signed server is refused")

	_, err = Files{Var: "X_TLS", CAFile: filepath.Join(dir, "missing.pem")}.Config()
	require.ErrorContains(t, err, "X_TLS_CA_FILE")
	notPEM := filepath.Join(dir, "not.pem")
	require.NoError(t, os.WriteFile(notPEM, []byte("hello"), 0o600))
	_, err = Files{Var: "X_TLS", CAFile: notPEM}.Config()
	require.ErrorContains(t, err, "X_TLS_CA_FILE: no PEM certificate")
	_, err = Files{Var: "X_TLS", CertFile: notPEM, KeyFile: notPEM}.Config()
	require.ErrorContains(t, err, "X_TLS_CERT_FILE/_KEY_FILE")
}
