package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
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
	// The API refusing the request is not "suppressed": there is no
	// verdict, and the message is the API's, named once.
	code, out, errOut = cli("check", "--email", "alice@example.org", "--key", "wrong")
	require.Equal(t, 2, code)
	require.Empty(t, out)
	require.Equal(t, "suppressd check: HTTP 401 unauthorized: a valid API key is required: Authorization: Bearer <key>\n", errOut)
	code, out, errOut = cli("check", "--email", "alice.example.org")
	require.Equal(t, 2, code)
	require.Empty(t, out)
	require.Equal(t, "suppressd check: HTTP 400 invalid_request: identifiers[0].value: invalid email: no @\n", errOut)
	code, out, errOut = cli("check", "--email", "alice@example.org", "--url", "http://"+freePort(t))
	require.Equal(t, 1, code)
	require.Equal(t, "suppressed (the service did not answer; fail closed)\n", out)
	require.Regexp(t, `^suppressd check: after 3 attempts: unavailable: Post "http://127\.0\.0\.1:\d+/v1/check": .*connection refused\n$`, errOut)

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
	require.Equal(t, 2, code, "the API refused the event: fix it, do not retry")
	require.Contains(t, errOut, "/data/identifiers")
	require.Contains(t, errOut, "\nsuppressd publish: "+bad+": HTTP 400 invalid_request: ")
	require.Equal(t, 1, strings.Count(errOut, "suppressd publish:"), errOut)
	require.NotContains(t, errOut, "suppressd: ")

	resp, err := http.Get("http://" + apiAddr + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
}

// TestCheckExitCodes: what `suppressd check` prints and exits for each
// kind of answer, against a stand-in API: a verdict (0 allowed, 3
// suppressed), a refusal (2, the API's message, no verdict) or no answer
// (1, "suppressed" since it fails closed).
func TestCheckExitCodes(t *testing.T) {
	for _, tc := range []struct {
		name     string
		status   int
		body     string
		code     int
		stdout   string
		stderr   string
		attempts int
	}{
		{"allowed", 200, `{"allowed":true}`, 0, "allowed\n", "", 1},
		{"suppressed", 200, `{"allowed":false,"suppression":{"scope":"email","reason":"complaint","origin":"recipient","source":"/mail","since":"2026-01-02T03:04:05Z"}}`,
			3, "suppressed: reason=complaint scope=email origin=recipient source=/mail since=2026-01-02T03:04:05Z\n", "", 1},
		{"bad input", 400, `{"error":{"code":"invalid_request","message":"invalid email: no @","field":"identifiers[0].value"}}`,
			2, "", "suppressd check: HTTP 400 invalid_request: invalid email: no @\n", 1},
		{"bad key", 401, `{"error":{"code":"unauthorized","message":"a valid API key is required"}}`,
			2, "", "suppressd check: HTTP 401 unauthorized: a valid API key is required\n", 1},
		{"key without the scope", 403, `{"error":{"code":"forbidden","message":"this key lacks the check scope"}}`,
			2, "", "suppressd check: HTTP 403 forbidden: this key lacks the check scope\n", 1},
		{"store down", 503, `{"error":{"code":"unavailable","message":"the store did not answer in time"}}`,
			1, "suppressed (the service did not answer; fail closed)\n",
			"suppressd check: after 3 attempts: HTTP 503 unavailable: the store did not answer in time\n", 3},
		{"not the API", 502, `<html>bad gateway</html>`,
			1, "suppressed (the service did not answer; fail closed)\n", "suppressd check: HTTP 502: Bad Gateway\n", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				calls.Add(1)
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tc.status)
				_, _ = io.WriteString(w, tc.body)
			}))
			defer srv.Close()
			var out, errb bytes.Buffer
			code := run(context.Background(), []string{"check", "--url", srv.URL, "--key", "k", "--email", "alice@example.org"}, stdio{out: &out, err: &errb})
			require.Equal(t, tc.code, code, errb.String())
			require.Equal(t, tc.stdout, out.String())
			require.Equal(t, tc.stderr, errb.String())
			require.EqualValues(t, tc.attempts, calls.Load(), "only an outage is retried")
		})
	}
}
