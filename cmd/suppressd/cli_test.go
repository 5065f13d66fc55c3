package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/suppressd/suppressd/internal/testenv"
)

// TestCLICheckAndFilter runs `suppressd dev --seed` in process and drives
// it with `suppressd check` and `suppressd filter` as a user would.
func TestCLICheckAndFilter(t *testing.T) {
	apiAddr, kafkaAddr := freePort(t), freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	devDone := make(chan int, 1)
	var devOut, devErr testenv.Buffer
	go func() {
		devDone <- run(ctx, []string{"dev", "--seed", "--api-addr", apiAddr, "--kafka-addr", kafkaAddr}, stdio{out: &devOut, err: &devErr})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-devDone:
			require.Equal(t, 0, code, devErr.String())
		case <-time.After(30 * time.Second):
			t.Error("dev did not stop")
		}
	})
	t.Setenv("SUPPRESSD_URL", "http://"+apiAddr)
	t.Setenv("SUPPRESSD_API_KEY", devAPIKey)
	cli := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := run(context.Background(), args, stdio{out: &out, err: &errb})
		return code, out.String(), errb.String()
	}
	require.Eventually(t, func() bool {
		code, out, _ := cli("check", "--email", "alice@example.org", "--topic", "newsletter")
		return code == 3 && strings.HasPrefix(out, "suppressed: reason=unsubscribe scope=topic:newsletter")
	}, 30*time.Second, 100*time.Millisecond, "the seeded unsubscribe shows through `suppressd check`\n%s", devErr.String())

	code, out, _ := cli("check", "--email", "alice@example.org", "--topic", "offers")
	require.Equal(t, 0, code)
	require.Equal(t, "allowed\n", out)
	// The GPC signal went to another topic than alice's unsubscribe: it
	// may be applied a moment later.
	require.Eventually(t, func() bool {
		code, out, _ := cli("check", "--phone", "(800) 555-0100", "--channel", "ads", "--purpose", "advertising")
		return code == 3 && strings.Contains(out, "reason=gpc")
	}, 30*time.Second, 100*time.Millisecond, "the seeded GPC signal shows through `suppressd check`")
	code, _, errOut := cli("check")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "name the contact")
	code, _, errOut = cli("check", "--email", "alice@example.org", "--key", "wrong")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "unauthorized")

	// A gzip audience with Google-hashed addresses; alice's must go.
	dir := t.TempDir()
	in, outPath := filepath.Join(dir, "audience.csv.gz"), filepath.Join(dir, "allowed.csv")
	f, err := os.Create(in)
	require.NoError(t, err)
	gz := gzip.NewWriter(f)
	var want []string
	for i := 0; i < 5000; i++ {
		h := sha256.Sum256([]byte(fmt.Sprintf("user%d@example.org", i)))
		line := hex.EncodeToString(h[:])
		want = append(want, line)
		fmt.Fprintln(gz, line)
		if i == 2500 {
			a := sha256.Sum256([]byte("alice@example.org"))
			fmt.Fprintln(gz, hex.EncodeToString(a[:]))
		}
	}
	require.NoError(t, gz.Close())
	require.NoError(t, f.Close())
	code, _, errOut = cli("filter", "--in", in, "--out", outPath, "--platform", "google", "--channel", "email", "--purpose", "marketing", "--topic", "newsletter")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, errOut, "filtered 5001 lines")
	require.Contains(t, errOut, "5000 allowed, 1 suppressed, 0 malformed")
	got, err := os.ReadFile(outPath)
	require.NoError(t, err)
	require.Equal(t, strings.Join(want, "\n")+"\n", string(got), "allowed lines in order, no summary line in the file")

	// suppressd publish: an event file, published once, then recognised.
	ev := filepath.Join(dir, "event.json")
	require.NoError(t, os.WriteFile(ev, []byte(`{"specversion":"1.0","id":"cli-1","source":"/crm","type":"io.suppressd.unsubscribe.v1",`+
		`"time":"`+time.Now().UTC().Format(time.RFC3339)+`","data":{"identifiers":[{"type":"email","value":"dave@example.org"}],"scopes":["email"],"origin":"customer"}}`), 0o600))
	code, out, errOut = cli("publish", ev)
	require.Equal(t, 0, code, errOut)
	require.Equal(t, "cli-1 published\n", out)
	code, out, _ = cli("publish", ev)
	require.Equal(t, 0, code)
	require.Equal(t, "cli-1 already published\n", out)
	require.Eventually(t, func() bool {
		code, _, _ := cli("check", "--email", "dave@example.org")
		return code == 3
	}, 30*time.Second, 100*time.Millisecond, "the published event is consumed")
	bad := filepath.Join(dir, "bad.json")
	require.NoError(t, os.WriteFile(bad, []byte(`{"specversion":"1.0","id":"cli-2","source":"/crm","type":"io.suppressd.unsubscribe.v1","time":"2026-01-01T00:00:00Z","data":{"identifiers":[],"origin":"customer"}}`), 0o600))
	code, _, errOut = cli("publish", bad)
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "/data/identifiers")

	resp, err := http.Get("http://" + apiAddr + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
}
