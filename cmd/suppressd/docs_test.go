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

	"github.com/suppressd/suppressd/internal/doccheck"
)

// The documentation's promises about the binary, checked against the
// binary: the configuration the README documents against what `suppressd
// serve -h` lists (itself made from the struct the configuration is read
// into), and the commands the docs show against the commands it has. The
// chart's agreement with the configuration is checked in helm/.

// helpVar is one variable as `suppressd serve -h` lists it.
type helpVar struct{ name, typ, desc, def string }

var (
	helpName    = regexp.MustCompile(`^  (SUPPRESSD_[A-Z0-9_]+) ([a-z]+)(, secret)?$`)
	helpDefault = regexp.MustCompile(`^(.*) \(default (.+)\)$`)
)

// serveHelp runs `suppressd serve -h` as a user would and reads the
// variables it lists.
func serveHelp(t *testing.T) []helpVar {
	t.Helper()
	var out, errb bytes.Buffer
	require.Equal(t, 0, run(context.Background(), []string{"serve", "-h"}, stdio{out: &out, err: &errb}))
	lines := strings.Split(errb.String(), "\n")
	var vars []helpVar
	for i, line := range lines {
		m := helpName.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		require.Less(t, i+1, len(lines), "%s has no description line", m[1])
		v := helpVar{name: m[1], typ: m[2], desc: strings.TrimPrefix(lines[i+1], "    \t")}
		if d := helpDefault.FindStringSubmatch(v.desc); d != nil {
			v.desc, v.def = d[1], d[2]
		}
		vars = append(vars, v)
	}
	require.Greater(t, len(vars), 40, "serve -h lists no variables:\n%s", errb.String())
	return vars
}

// TestREADMEDocumentsTheConfiguration holds the README's configuration
// tables (and docs/webhooks.md's) and `serve -h` together: every variable the binary reads is in a
// table, with the default the binary uses; the README documents no
// variable the binary does not read; and every variable has a meaning in
// the help.
func TestREADMEDocumentsTheConfiguration(t *testing.T) {
	help := serveHelp(t)
	documented := map[string]doccheck.Documented{}
	// The webhooks' variables are documented with the providers they
	// configure.
	for _, f := range []string{"../../README.md", "../../docs/webhooks.md"} {
		md, err := os.ReadFile(f)
		require.NoError(t, err)
		for _, d := range doccheck.ConfigTables(string(md)) {
			documented[d.Var] = d
		}
	}
	require.Greater(t, len(documented), 40, "the README's configuration tables were not found")
	read := map[string]bool{}
	for _, v := range help {
		read[v.name] = true
		t.Run(v.name, func(t *testing.T) {
			require.NotEmpty(t, v.desc, "serve -h says nothing of %s: give its field a desc tag", v.name)
			d, ok := documented[v.name]
			require.True(t, ok, "the binary reads %s, which no configuration table of the README names", v.name)
			if d.Default == "" {
				return // named in another row's meaning; that row has the default
			}
			if v.def == "" {
				require.False(t, strings.HasPrefix(d.Default, "`"), "the README gives %s the default %s; the binary has none", v.name, d.Default)
			} else {
				require.Equal(t, "`"+v.def+"`", d.Default, "the README's default for %s is not the binary's", v.name)
			}
		})
	}
	for name := range documented {
		require.True(t, read[name], "the README documents %s, which the binary does not read", name)
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
