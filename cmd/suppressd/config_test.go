package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// serveWith runs `suppressd serve` through run() with the environment
// given (on top of the test's) and returns its exit code and stderr lines.
// Every case here fails at the configuration, before anything starts.
func serveWith(t *testing.T, env map[string]string, args ...string) (int, []string) {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	var out, errb bytes.Buffer
	code := run(context.Background(), append([]string{"serve"}, args...), stdio{out: &out, err: &errb})
	require.Empty(t, out.String())
	return code, strings.Split(strings.TrimSuffix(errb.String(), "\n"), "\n")
}

// TestConfigErrorsAllAtOnce: a deployment with several bad variables is
// told of every one in a single start, one line each, naming the variable,
// what is wrong, the value found and the value wanted; secrets are named,
// never shown; it exits 2, since restarting cannot help.
func TestConfigErrorsAllAtOnce(t *testing.T) {
	const (
		pepper   = "hunter2-is-not-base64!"
		apiKey   = "sdk_pasted_the_secret_not_its_hash"
		linkKey  = "c2hvcnQtbGluay1rZXk=" // base64 of 14 bytes, under 32
		password = "kafka-pa55word"
	)
	code, lines := serveWith(t, map[string]string{
		"SUPPRESSD_ROLE":                 "api,consumer",
		"SUPPRESSD_API_STORE_TIMEOUT":    "fast",
		"SUPPRESSD_KAFKA_TLS":            "yes",
		"SUPPRESSD_LOG_FORMAT":           "xml",
		"SUPPRESSD_PEPPER":               pepper,
		"SUPPRESSD_API_KEYS":             "mailer:check:" + apiKey,
		"SUPPRESSD_LINK_KEYS":            "k1:" + linkKey,
		"SUPPRESSD_KAFKA_SASL_MECHANISM": "gssapi",
		"SUPPRESSD_KAFKA_SASL_PASSWORD":  password,
		"SUPPRESSD_CONSUMER_BATCH_SIZE":  "0",
	})
	require.Equal(t, 2, code)
	require.Equal(t, []string{
		`suppressd serve: SUPPRESSD_API_STORE_TIMEOUT: not a duration (got "fast", want a duration such as 500ms, 10s or 1h30m)`,
		`suppressd serve: SUPPRESSD_KAFKA_TLS: not a boolean (got "yes", want true or false)`,
		`suppressd serve: SUPPRESSD_LOG_FORMAT: unknown format (got "xml", want json or text)`,
		`suppressd serve: SUPPRESSD_PEPPER: not base64 (want at least 16 random bytes, base64-encoded)`,
		`suppressd serve: SUPPRESSD_API_KEYS: entry 1: the hash must be 64 hex digits (the SHA-256 of the secret, as suppressd apikey prints it)`,
		`suppressd serve: SUPPRESSD_LINK_KEYS: unsubscribe keyring: key "k1": secret is 14 bytes, want at least 32`,
		`suppressd serve: SUPPRESSD_KAFKA_SASL_MECHANISM: unknown mechanism (got "gssapi", want plain, scram-sha-256 or scram-sha-512)`,
		`suppressd serve: SUPPRESSD_CONSUMER_BATCH_SIZE: out of range (got "0", want 1 to 100000)`,
	}, lines)
	all := strings.Join(lines, "\n")
	for _, secret := range []string{pepper, "hunter2", apiKey, linkKey, password} {
		require.NotContains(t, all, secret)
	}
	require.NotContains(t, all, "envconfig")
}

// TestConfigReadsOnlyItsOwnVariables: envconfig, which read the
// configuration before, fell back to the bare name (DB, PASSWORD, TLS,
// ADDR...) when the SUPPRESSD_ one was unset, so any variable of the
// environment could configure the service. Here DB=3 would have chosen a
// database Redis Cluster does not have.
func TestConfigReadsOnlyItsOwnVariables(t *testing.T) {
	code, lines := serveWith(t, map[string]string{
		"SUPPRESSD_REDIS_CLUSTER": "true",
		"DB":                      "3",
		"LOG_FORMAT":              "xml",
		"SUPPRESSD_LOG_LEVEL":     "loud", // something to stop the start
	})
	require.Equal(t, 2, code)
	require.Equal(t, []string{`suppressd serve: SUPPRESSD_LOG_LEVEL: unknown level (got "loud", want debug, info, warn or error)`}, lines)
}

// TestAPIKeysFile: the keys file, mounted from a Secret, may carry
// comments and blank lines, and a bad entry is named by its line, never
// shown.
func TestAPIKeysFile(t *testing.T) {
	const hash = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	write := func(text string) string {
		path := filepath.Join(t.TempDir(), "api-keys")
		require.NoError(t, os.WriteFile(path, []byte(text), 0o600))
		return path
	}
	good := write("# senders\n\nmailer:check+filter:" + hash + "   # rotated 2026-11\n\t# ops\nops:check+publish+admin:" + hash + "\n")
	for name, tc := range map[string]struct {
		file string
		want []string
	}{
		// A bad log level stops the start, so that nothing listens: the
		// keys file is the only other thing under test, and it is read
		// without complaint.
		"comments and blank lines": {good, []string{
			`suppressd serve: SUPPRESSD_LOG_LEVEL: unknown level (got "loud", want debug, info, warn or error)`,
		}},
		"bad scope": {write("# keys\nmailer:check:" + hash + "\n\nops:root:sdk_secret_in_the_wrong_place\n"), []string{
			`suppressd serve: SUPPRESSD_LOG_LEVEL: unknown level (got "loud", want debug, info, warn or error)`,
			`suppressd serve: SUPPRESSD_API_KEYS_FILE: line 4: unknown scope (want check, filter, publish, admin or links, joined by +)`,
		}},
		"twice": {write("mailer:check:" + hash + "\n# again\nmailer:filter:" + hash + "\n"), []string{
			`suppressd serve: SUPPRESSD_LOG_LEVEL: unknown level (got "loud", want debug, info, warn or error)`,
			`suppressd serve: SUPPRESSD_API_KEYS_FILE: line 3: key mailer is configured twice (also line 1)`,
		}},
		"only comments": {write("# nobody yet\n"), []string{
			`suppressd serve: SUPPRESSD_LOG_LEVEL: unknown level (got "loud", want debug, info, warn or error)`,
			`suppressd serve: SUPPRESSD_API_KEYS: no key, and the api role needs one (want a key from suppressd apikey)`,
		}},
	} {
		t.Run(name, func(t *testing.T) {
			code, lines := serveWith(t, map[string]string{"SUPPRESSD_API_KEYS_FILE": tc.file, "SUPPRESSD_LOG_LEVEL": "loud"}, "--role", "api")
			require.Equal(t, 2, code)
			require.Equal(t, tc.want, lines)
			require.NotContains(t, strings.Join(lines, "\n"), "sdk_secret")
		})
	}
}

// TestIndexConfig: the read index's bound is checked with the rest, and
// an index that is off needs none.
func TestIndexConfig(t *testing.T) {
	code, lines := serveWith(t, map[string]string{
		"SUPPRESSD_ROLE":          "api",
		"SUPPRESSD_API_KEYS":      "mailer:check:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		"SUPPRESSD_INDEX_MAX_LAG": "5ms",
		"SUPPRESSD_LOG_LEVEL":     "loud",
	})
	require.Equal(t, 2, code)
	require.Equal(t, []string{
		`suppressd serve: SUPPRESSD_LOG_LEVEL: unknown level (got "loud", want debug, info, warn or error)`,
		`suppressd serve: SUPPRESSD_INDEX_MAX_LAG: too short (got "5ms", want at least 10ms, such as 250ms)`,
	}, lines)

	code, lines = serveWith(t, map[string]string{
		"SUPPRESSD_ROLE":          "api",
		"SUPPRESSD_API_KEYS":      "mailer:check:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		"SUPPRESSD_INDEX_ENABLED": "false",
		"SUPPRESSD_INDEX_MAX_LAG": "5ms",
		"SUPPRESSD_LOG_LEVEL":     "loud",
	})
	require.Equal(t, 2, code)
	require.Equal(t, []string{`suppressd serve: SUPPRESSD_LOG_LEVEL: unknown level (got "loud", want debug, info, warn or error)`}, lines)
}
