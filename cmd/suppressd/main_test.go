package main

import (
	"bytes"
	"context"
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
		{args: []string{"apikey", "--name", "x", "--scopes", "root"}, code: 2, stderr: `unknown scope "root"`},
		{args: []string{"apikey"}, code: 2, stderr: "--name is required"},
		{args: []string{"serve", "-h"}, code: 0, stderr: "-role"},
	}
	for _, tc := range tests {
		var out, errb bytes.Buffer
		code := run(context.Background(), tc.args, &out, &errb)
		require.Equal(t, tc.code, code, "args %v: stderr %s", tc.args, errb.String())
		require.Contains(t, out.String(), tc.stdout)
		require.Contains(t, errb.String(), tc.stderr)
	}
}
