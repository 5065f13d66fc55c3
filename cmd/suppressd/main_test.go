package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
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
		{args: []string{"apikey", "--name", "x", "--scopes", "root"}, code: 2, stderr: `unknown scope "root"`},
		{args: []string{"apikey"}, code: 2, stderr: "--name is required"},
		{args: []string{"serve", "-h"}, code: 0, stderr: "-role"},
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

// TestDocumentedCommandsExist reads the README and docs/ and fails when a
// `suppressd <command>` they show in code is not a command of the binary:
// a documented command that answers "unknown command" is a broken promise.
func TestDocumentedCommandsExist(t *testing.T) {
	files, err := filepath.Glob("../../docs/*.md")
	require.NoError(t, err)
	files = append(files, "../../README.md")
	cmds := commands()
	found := map[string]bool{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		for _, code := range codeIn(string(b)) {
			for _, m := range documentedCommand.FindAllStringSubmatch(code, -1) {
				name := m[1]
				found[name] = true
				_, ok := cmds[name]
				require.True(t, ok, "%s shows `suppressd %s`, which the binary does not have", filepath.Base(f), name)
			}
		}
	}
	// The reader finds what it should: the commands the README walks through.
	for _, name := range []string{"dev", "serve", "import", "export", "rebuild", "check", "filter"} {
		require.True(t, found[name], "no `suppressd %s` found in the docs: the reader is broken", name)
	}
}

// documentedCommand matches "suppressd <word>" as a shell would run it.
var documentedCommand = regexp.MustCompile(`(?:^|[\s/$(])suppressd ([a-z][a-z-]+)`)

// codeIn returns the fenced code blocks and inline code spans of markdown.
func codeIn(md string) []string {
	var out []string
	fences := regexp.MustCompile("(?s)```[a-z]*\n(.*?)```")
	for _, m := range fences.FindAllStringSubmatch(md, -1) {
		out = append(out, m[1])
	}
	rest := fences.ReplaceAllString(md, "")
	for _, m := range regexp.MustCompile("`([^`\n]+)`").FindAllStringSubmatch(rest, -1) {
		out = append(out, m[1])
	}
	return out
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
