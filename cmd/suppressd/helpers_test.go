package main

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/suppression"
)

// testKeyer keys the writes tests make directly into a store.
var testKeyer = suppression.NewKeyer([]byte("cmd-test-pepper"))

// runCommand runs a command through run(), as main does, and returns nil
// for exit 0, else an error naming the code and what the command said.
func runCommand(ctx context.Context, out, errb *bytes.Buffer, args ...string) error {
	if code := run(ctx, args, stdio{out: out, err: errb}); code != 0 {
		return fmt.Errorf("suppressd %v: exit %d: %s", args, code, errb.String())
	}
	return nil
}

// buildStore builds the first generation of the configured store, empty,
// as the consumer role does for a new deployment.
func buildStore(t *testing.T, d *storeDeps) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := d.rebuilds.Begin(ctx, "g1", "test", time.Minute)
	require.NoError(t, err)
	require.NoError(t, d.rebuilds.Finish(ctx, "g1", "test"))
}
