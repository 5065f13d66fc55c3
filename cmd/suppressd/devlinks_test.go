package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/internal/testenv"
	"github.com/suppressd/suppressd/suppression"
	"github.com/suppressd/suppressd/unsubscribe"
)

// startDev runs `suppressd dev` through run() until the test ends, and
// returns what it printed once it is ready.
func startDev(t *testing.T, args ...string) (stdout string, stop func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	var out, errb testenv.Buffer
	go func() { done <- run(ctx, append([]string{"dev"}, args...), stdio{out: &out, err: &errb}) }()
	code := -1
	stop = func() int {
		cancel()
		if code < 0 {
			select {
			case code = <-done:
			case <-time.After(30 * time.Second):
				t.Error("dev did not stop")
			}
		}
		return code
	}
	t.Cleanup(func() { stop() })
	require.Eventually(t, func() bool { return strings.Contains(out.String(), "An unsubscribe link") }, 30*time.Second, 20*time.Millisecond, errb.String())
	return out.String(), stop
}

var exported = regexp.MustCompile(`(SUPPRESSD_[A-Z_]+)='([^']*)'`)

// devExports reads the variables of the `export` line dev prints.
func devExports(t *testing.T, banner string) map[string]string {
	t.Helper()
	env := map[string]string{}
	for l := range strings.Lines(banner) {
		if rest, ok := strings.CutPrefix(l, "  export "); ok {
			for _, m := range exported.FindAllStringSubmatch(rest, -1) {
				env[m[1]] = m[2]
			}
		}
	}
	require.NotEmpty(t, env, "no export line in:\n%s", banner)
	return env
}

func oneClick(t *testing.T, link string) int {
	t.Helper()
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Post(link, "application/x-www-form-urlencoded", strings.NewReader("List-Unsubscribe=One-Click"))
	require.NoError(t, err)
	resp.Body.Close()
	return resp.StatusCode
}

// TestDevLinks: after pasting the environment `suppressd dev` prints (or
// sourcing its --env-file), `suppressd link` in another shell and POST
// /v1/links mint links the dev server accepts, and following one
// unsubscribes; a link minted with other keys is refused.
func TestDevLinks(t *testing.T) {
	apiAddr, kafkaAddr := freePort(t), freePort(t)
	envFile := filepath.Join(t.TempDir(), "dev.env")
	banner, stop := startDev(t, "--api-addr", apiAddr, "--kafka-addr", kafkaAddr, "--env-file", envFile)
	env := devExports(t, banner)
	require.Equal(t, "http://"+apiAddr, env["SUPPRESSD_LINK_BASE_URL"])
	require.Equal(t, "http://"+apiAddr, env["SUPPRESSD_URL"])
	require.Equal(t, devAPIKey, env["SUPPRESSD_API_KEY"])
	require.Regexp(t, `^dev[0-9a-f]{6}:[A-Za-z0-9+/]{43}=$`, env["SUPPRESSD_LINK_KEYS"])
	file, err := os.ReadFile(envFile)
	require.NoError(t, err)
	for k, v := range env {
		require.Contains(t, string(file), "\n"+k+"="+v+"\n", "the env file says the same")
		t.Setenv(k, v)
	}
	st, err := os.Stat(envFile)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm(), "it holds the link keys")

	suppressed := func(addr string) bool {
		var out, errb bytes.Buffer
		return run(context.Background(), []string{"check", "--email", addr, "--topic", "news"}, stdio{out: &out, err: &errb}) == 3
	}

	// suppressd link, in "another shell".
	var out, errb bytes.Buffer
	require.Equal(t, 0, run(context.Background(), []string{"link", "--email", "dev.link@example.org", "--scope", "topic:news"}, stdio{out: &out, err: &errb}), errb.String())
	link := regexp.MustCompile(`<(http://[^>]+)>`).FindStringSubmatch(out.String())[1]
	require.True(t, strings.HasPrefix(link, "http://"+apiAddr+"/u/"), link)
	resp, err := http.Get(link)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, "the dev server's page accepts the link")
	require.False(t, suppressed("dev.link@example.org"))
	require.Equal(t, http.StatusOK, oneClick(t, link))
	require.Eventually(t, func() bool { return suppressed("dev.link@example.org") }, 30*time.Second, 50*time.Millisecond)

	// POST /v1/links with the dev key.
	req, _ := http.NewRequest(http.MethodPost, "http://"+apiAddr+"/v1/links", strings.NewReader(
		`{"scopes":["topic:news"],"recipients":[{"ref":"a","identifier":{"type":"email","value":"dev.api@example.org"}}]}`))
	req.Header.Set("Authorization", "Bearer "+devAPIKey)
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	var minted struct {
		Results []struct{ URL string }
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&minted))
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Len(t, minted.Results, 1)
	require.Equal(t, http.StatusOK, oneClick(t, minted.Results[0].URL))
	require.Eventually(t, func() bool { return suppressed("dev.api@example.org") }, 30*time.Second, 50*time.Millisecond)

	// Keys of another run: the page refuses, nothing is published.
	secret := sha256.Sum256([]byte("not this run's"))
	other, err := unsubscribe.NewKeyring("dev000000", []unsubscribe.Key{{ID: "dev000000", Secret: secret[:]}})
	require.NoError(t, err)
	m, err := unsubscribe.NewMinter(unsubscribe.MinterOptions{Keyring: other, BaseURL: "http://" + apiAddr})
	require.NoError(t, err)
	stale, err := m.Links(unsubscribe.Claims{}, unsubscribe.Claims{Identifier: suppression.Identifier{Type: suppression.IDEmail, Value: "dev.stale@example.org"}}, time.Now())
	require.NoError(t, err)
	require.Equal(t, http.StatusBadRequest, oneClick(t, stale.URL))

	require.Equal(t, 0, stop())
	_, err = os.Stat(envFile)
	require.True(t, os.IsNotExist(err), "the env file goes with the run: its keys are dead")
}

// TestDevListensOnLoopbackOnly: the dev API's key is public, so dev
// refuses to listen beyond this machine unless told to, naming the flag.
func TestDevListensOnLoopbackOnly(t *testing.T) {
	port := strings.TrimPrefix(freePort(t), "127.0.0.1:")
	for _, addr := range []string{"0.0.0.0:" + port, ":" + port, "[::]:" + port, "192.0.2.10:" + port} {
		t.Run(addr, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(context.Background(), []string{"dev", "--api-addr", addr, "--kafka-addr", freePort(t)}, stdio{out: &out, err: &errb})
			require.Equal(t, 2, code)
			require.Contains(t, errb.String(), "is not a loopback address")
			require.Contains(t, errb.String(), "--insecure-listen")
			require.Empty(t, out.String(), "nothing started")
		})
	}
	dir := t.TempDir()
	precious := filepath.Join(dir, "precious")
	require.NoError(t, os.WriteFile(precious, []byte("KEEP=me\n"), 0o600))
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"dev", "--api-addr", freePort(t), "--kafka-addr", freePort(t), "--env-file", precious}, stdio{out: &out, err: &errb})
	require.Equal(t, 2, code)
	require.Contains(t, errb.String(), "was not written by suppressd dev")
	b, _ := os.ReadFile(precious)
	require.Equal(t, "KEEP=me\n", string(b), "another file is never overwritten")

	banner, _ := startDev(t, "--api-addr", "0.0.0.0:"+port, "--kafka-addr", freePort(t), "--insecure-listen")
	require.Contains(t, banner, "WARNING: --insecure-listen")
	env := devExports(t, banner)
	require.Equal(t, "http://127.0.0.1:"+port, env["SUPPRESSD_LINK_BASE_URL"], "links still point where http is allowed")
	resp, err := http.Get("http://127.0.0.1:" + port + "/healthz")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
}
