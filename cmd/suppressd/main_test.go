package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/api"
)

func TestRun(t *testing.T) {
	tests := []struct {
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{args: []string{"version"}, code: 0, stdout: "suppressd dev, go"},
		{args: nil, code: 2, stderr: "usage: suppressd <command>"},
		{args: []string{"help"}, code: 0, stderr: "version"},
		{args: []string{"frobnicate"}, code: 2, stderr: `unknown command "frobnicate"`},
		{args: []string{"version", "--bogus"}, code: 2, stderr: "flag provided but not defined: -bogus"},
		{args: []string{"apikey", "--name", "sender", "--scopes", "check,filter"}, code: 0, stdout: "SUPPRESSD_API_KEYS entry: sender:check+filter:"},
		{args: []string{"apikey", "--name", "mailer", "--scopes", "check,links"}, code: 0, stdout: "SUPPRESSD_API_KEYS entry: mailer:check+links:"},
		{args: []string{"apikey", "--name", "x", "--scopes", "root"}, code: 2, stderr: `suppressd apikey: --scopes: unknown scope "root"`},
		{args: []string{"apikey"}, code: 2, stderr: "--name is required"},
		{args: []string{"apikey", "--name", "ops # team"}, code: 2, stderr: "--name is required, without ':', ',', '#' or spaces"},
		{args: []string{"serve", "-h"}, code: 0, stderr: "-role"},
		{args: []string{"serve", "-h"}, code: 0, stderr: "  SUPPRESSD_API_STORE_TIMEOUT duration\n    \thow long a check waits for Redis before answering 503, failing closed (default 500ms)\n"},
		{args: []string{"serve", "-h"}, code: 0, stderr: "  SUPPRESSD_PEPPER string, secret\n"},
		{args: []string{"export", "-h"}, code: 0, stderr: "suppressd serve -h lists them"},
		{args: []string{"serve", "--role", "api,cache"}, code: 2, stderr: `suppressd serve: --role: unknown role "cache" (got "api,cache", want api, consumer, ingest, apply, several comma-separated)`},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(context.Background(), tc.args, stdio{out: &out, err: &errb})
			require.Equal(t, tc.code, code, "stderr %s", errb.String())
			require.Contains(t, out.String(), tc.stdout)
			require.Contains(t, errb.String(), tc.stderr)
		})
	}
}

// TestEveryCommandHasHelp runs `suppressd <command> -h` for every
// registered command through run(): exit 0 and its usage on stderr.
func TestEveryCommandHasHelp(t *testing.T) {
	for name := range commands() {
		t.Run(name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(context.Background(), []string{name, "-h"}, stdio{out: &out, err: &errb})
			require.Equal(t, 0, code, errb.String())
			require.Contains(t, errb.String(), "Usage of "+name)
		})
	}
}

// TestEveryCommandRejectsStrayArguments: a word after the flags (a value
// whose flag was forgotten, `check alice@example.org`) is refused with
// exit 2 before the command does anything, instead of being ignored.
func TestEveryCommandRejectsStrayArguments(t *testing.T) {
	// Moving into filter.go and link.go on their own branches; they call
	// parseFlags there.
	elsewhere := map[string]bool{"filter": true, "link": true}
	for name := range commands() {
		t.Run(name, func(t *testing.T) {
			if name == "publish" {
				t.Skip("publish takes event files as arguments; see TestPublishFlagsBeforeFiles")
			}
			if name == "ledger" {
				t.Skip("ledger takes a subcommand; see TestLedgerSubcommands")
			}
			if elsewhere[name] {
				t.Skipf("%s's flags are parsed on another branch", name)
			}
			var out, errb bytes.Buffer
			code := run(context.Background(), []string{name, "alice@example.org", "--json"}, stdio{out: &out, err: &errb})
			require.Equal(t, 2, code, errb.String())
			require.Equal(t, "suppressd "+name+": unexpected arguments: alice@example.org --json\n", errb.String())
			require.Empty(t, out.String())
		})
	}
}

// TestPublishFlagsBeforeFiles: publish reads its arguments as event files,
// so a flag after one would be opened as a file; it is refused instead.
func TestPublishFlagsBeforeFiles(t *testing.T) {
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"publish", "event.json", "--key", "k"}, stdio{out: &out, err: &errb})
	require.Equal(t, 2, code)
	require.Equal(t, "suppressd publish: flags go before the files: --key comes after event.json\n", errb.String())
}

// TestAPIKeyJSON: `apikey --json` is one object whose entry configures the
// secret it prints, for scripts that provision keys.
func TestAPIKeyJSON(t *testing.T) {
	var out, errb bytes.Buffer
	require.Equal(t, 0, run(context.Background(), []string{"apikey", "--name", "mailer", "--scopes", "check,filter", "--json"}, stdio{out: &out, err: &errb}), errb.String())
	var got struct {
		Name   string   `json:"name"`
		Scopes []string `json:"scopes"`
		Secret string   `json:"secret"`
		Entry  string   `json:"entry"`
	}
	dec := json.NewDecoder(&out)
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(&got))
	require.False(t, dec.More(), "one object")
	require.Equal(t, "mailer", got.Name)
	require.Equal(t, []string{"check", "filter"}, got.Scopes)
	sum := sha256.Sum256([]byte(got.Secret))
	require.Equal(t, "mailer:check+filter:"+hex.EncodeToString(sum[:]), got.Entry, "the entry is the secret's hash")
	keys, err := api.ParseKeys(got.Entry)
	require.NoError(t, err)
	require.Equal(t, []api.Scope{api.ScopeCheck, api.ScopeFilter}, keys[0].Scopes)
}

// TestLedgerSubcommands: ledger needs its subcommand, and says which.
func TestLedgerSubcommands(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"ledger"}, "suppressd ledger: name a subcommand: backfill\n"},
		{[]string{"ledger", "compact"}, "suppressd ledger: unknown subcommand \"compact\" (want backfill)\n"},
		{[]string{"ledger", "backfill", "now"}, "suppressd ledger: unexpected arguments: now\n"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out, errb bytes.Buffer
			require.Equal(t, 2, run(context.Background(), tc.args, stdio{out: &out, err: &errb}))
			require.Equal(t, tc.want, errb.String())
		})
	}
}
