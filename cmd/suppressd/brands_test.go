package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/internal/testenv"
)

// TestBrandsFileThroughServe: SUPPRESSD_LINK_BRANDS_FILE gives the pages
// of serve's api role the brand of the link's namespace, and a brands file
// with mistakes stops serve at start, naming the variable and every
// mistake.
func TestBrandsFileThroughServe(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	servingEnv(ctx, t, testenv.RedisAddr(t))
	secret := bytes.Repeat([]byte{7}, 32)
	t.Setenv("SUPPRESSD_LINK_KEYS", "k1:"+base64.StdEncoding.EncodeToString(secret))
	t.Setenv("SUPPRESSD_LINK_BASE_URL", "http://127.0.0.1:1")
	dir := t.TempDir()
	brands := filepath.Join(dir, "brands.json")
	require.NoError(t, os.WriteFile(brands, []byte(`{
  "fallback": {"name": "Example Group"},
  "namespaces": {"acme": {"name": "ACME Outdoor", "accent_color": "#e4572e", "support_email": "support@acme.example"}}
}`), 0o600))
	t.Setenv("SUPPRESSD_LINK_BRANDS_FILE", brands)
	addr, _ := serveInProcess(t, "api")

	page := func(namespace string) string {
		var out, errb bytes.Buffer
		args := []string{"link", "--email", "branded@example.org"}
		if namespace != "" {
			args = append(args, "--namespace", namespace)
		}
		require.Equal(t, 0, run(ctx, args, stdio{out: &out, err: &errb}), errb.String())
		token := regexp.MustCompile(`/u/([A-Za-z0-9_.-]+)>`).FindStringSubmatch(out.String())[1]
		resp, err := http.Get("http://" + addr + "/u/" + token)
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return string(b)
	}
	acme := page("acme")
	require.Contains(t, acme, "ACME Outdoor")
	require.Contains(t, acme, "support@acme.example")
	require.Contains(t, page(""), "Example Group", "a namespace without a brand gets the fallback")

	require.NoError(t, os.WriteFile(brands, []byte(`{"namespaces": {"acme": {"name": "ACME", "logo_url": "http://cdn.example/logo.svg", "accent_color": "orange"}}}`), 0o600))
	_, err := load("api")
	require.Error(t, err)
	msg := err.Error()
	require.True(t, strings.HasPrefix(msg, "SUPPRESSD_LINK_BRANDS_FILE: "), msg)
	require.Contains(t, msg, `namespace "acme": logo_url: must be an https URL`)
	require.Contains(t, msg, `namespace "acme": accent_color`)
}
