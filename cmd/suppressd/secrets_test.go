package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// secretEnv is every variable that holds a secret, each set to a value that
// is easy to spot in an output: the operator's shell has them exported
// when they type `suppressd <command> -h`.
func secretEnv(t *testing.T) map[string]string {
	t.Helper()
	secrets := map[string]string{
		"SUPPRESSD_API_KEY":                 "sdk_HELPLEAK_api_key_0123456789",
		"SUPPRESSD_PEPPER":                  base64.StdEncoding.EncodeToString([]byte("HELPLEAK-pepper-0123456789")),
		"SUPPRESSD_LINK_KEYS":               "k1:" + base64.StdEncoding.EncodeToString([]byte("HELPLEAK-link-secret-0123456789-0123456789")),
		"SUPPRESSD_REDIS_PASSWORD":          "HELPLEAK-redis-password",
		"SUPPRESSD_REDIS_SENTINEL_PASSWORD": "HELPLEAK-sentinel-password",
		"SUPPRESSD_KAFKA_SASL_PASSWORD":     "HELPLEAK-kafka-password",
	}
	for k, v := range secrets {
		t.Setenv(k, v)
	}
	return secrets
}

// requireNoSecret fails when any secret, or its base64 body, is in out.
func requireNoSecret(t *testing.T, secrets map[string]string, out string) {
	t.Helper()
	for name, v := range secrets {
		require.NotContains(t, out, v, "the value of %s was printed", name)
		_, body, _ := strings.Cut(v, ":")
		if len(body) > 8 {
			require.NotContains(t, out, body, "the value of %s was printed", name)
		}
	}
	require.NotContains(t, out, "HELPLEAK", "a secret was printed")
}

// TestHelpPrintsNoSecret runs every command's -h (and --help) with every
// secret variable set: a flag whose default is read from the environment
// prints that default in its usage, and a key typed into a terminal that
// is being shared, or pasted into an issue, is a leaked key.
func TestHelpPrintsNoSecret(t *testing.T) {
	secrets := secretEnv(t)
	for name := range commands() {
		for _, flagArg := range []string{"-h", "--help"} {
			t.Run(name+" "+flagArg, func(t *testing.T) {
				var out, errb bytes.Buffer
				code := run(context.Background(), []string{name, flagArg}, stdio{in: strings.NewReader(""), out: &out, err: &errb})
				require.Equal(t, 0, code, "stderr: %s", errb.String())
				requireNoSecret(t, secrets, out.String()+errb.String())
			})
		}
	}
	t.Run("usage", func(t *testing.T) {
		var out, errb bytes.Buffer
		require.Equal(t, 2, run(context.Background(), []string{"nosuchcommand"}, stdio{out: &out, err: &errb}))
		requireNoSecret(t, secrets, out.String()+errb.String())
	})
}

// TestErrorsPrintNoSecret runs the API-calling commands against a server
// that refuses the key, and the commands that read the configuration with
// it broken, each with every secret set: no error repeats one.
func TestErrorsPrintNoSecret(t *testing.T) {
	secrets := secretEnv(t)
	refuse := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"error":{"code":"unauthorized","message":"a valid API key is required"}}`))
	}))
	defer refuse.Close()
	event := filepath.Join(t.TempDir(), "event.json")
	require.NoError(t, os.WriteFile(event, []byte(`{"specversion":"1.0"}`), 0o600))
	export := filepath.Join(t.TempDir(), "list.csv")
	require.NoError(t, os.WriteFile(export, []byte("email\na@example.org\n"), 0o600))

	cases := []struct {
		name string
		env  map[string]string
		args []string
	}{
		{"check refused", nil, []string{"check", "--url", refuse.URL, "--email", "a@example.org"}},
		{"filter refused", nil, []string{"filter", "--url", refuse.URL, "--in", export}},
		{"publish refused", nil, []string{"publish", "--url", refuse.URL, event}},
		{"check unreachable", nil, []string{"check", "--url", "http://127.0.0.1:1", "--email", "a@example.org"}},
		{"link, bad pepper", map[string]string{"SUPPRESSD_PEPPER": "HELPLEAK not base64 pepper"}, []string{"link", "--email", "a@example.org"}},
		{"link, bad link key", map[string]string{"SUPPRESSD_LINK_KEYS": "k1:HELPLEAK-not-base64"}, []string{"link", "--email", "a@example.org"}},
		{"link, short link key", map[string]string{"SUPPRESSD_LINK_KEYS": "k1:" + base64.StdEncoding.EncodeToString([]byte("HELPLEAK"))}, []string{"link", "--email", "a@example.org"}},
		{"serve, bad role", map[string]string{"SUPPRESSD_ROLE": "nope"}, []string{"serve"}},
		{"serve, bad sasl", map[string]string{"SUPPRESSD_KAFKA_SASL_MECHANISM": "gssapi"}, []string{"serve", "--role", "consumer"}},
		{"serve, bad api keys", map[string]string{"SUPPRESSD_API_KEYS": "x:check:HELPLEAK"}, []string{"serve", "--role", "api"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			all := map[string]string{}
			for k, v := range secrets {
				all[k] = v
			}
			for k, v := range tc.env {
				t.Setenv(k, v)
				if strings.Contains(v, "HELPLEAK") { // a bad role is not a secret
					all[k] = v
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var out, errb bytes.Buffer
			code := run(ctx, tc.args, stdio{in: strings.NewReader(""), out: &out, err: &errb})
			require.NotEqual(t, 0, code, "the command should have failed: %s", errb.String())
			requireNoSecret(t, all, out.String()+errb.String())
		})
	}
}
