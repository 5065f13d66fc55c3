package attack

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/internal/openapitest"
	"github.com/suppressd/suppressd/internal/testenv"
)

// devAPIKey is the key `suppressd dev` accepts, with every scope.
const devAPIKey = "sdk_dev_only_not_secret"

// schemathesisSeed makes the run the same in CI and on a laptop; a finding
// names its seed, and `st run --seed` replays it. Change it to explore.
const schemathesisSeed = "20261130"

// TestSchemathesis runs schemathesis (testenv.Schemathesis: the `st` of the
// test command's virtualenv) against `suppressd dev`, over every operation
// of schemas/openapi.yaml with every check, negative data included, and
// fails on any finding. testdata/schemathesis.toml sets the number of
// examples (a run takes seconds) and says what it leaves out and why:
// only what a JSON Schema cannot say. testdata/st_hooks.py generates the
// values of `format: phone` and recent event times.
//
// It shares this package's binary; dev is enough here (nothing is measured)
// and needs nothing but the binary.
func TestSchemathesis(t *testing.T) {
	st := testenv.Schemathesis(t)
	bin := binary(t)
	_, file, _, _ := runtime.Caller(0)
	here := filepath.Dir(file)
	spec := filepath.Join(here, "..", "..", "schemas", "openapi.yaml")

	// The configuration and hooks are read from the working directory,
	// where hypothesis also keeps its files: a directory of the test's own.
	work := t.TempDir()
	for _, f := range []string{"schemathesis.toml", "st_hooks.py"} {
		b, err := os.ReadFile(filepath.Join(here, "testdata", f))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(work, f), b, 0o644))
	}

	dev := exec.Command(bin, "dev", "--api-addr", "127.0.0.1:0", "--kafka-addr", "127.0.0.1:0")
	dev.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	logs := &testenv.Buffer{}
	dev.Stderr = logs
	out, err := dev.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, dev.Start())
	t.Cleanup(func() {
		_ = dev.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = dev.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = dev.Process.Kill()
			<-done
		}
	})
	urls := make(chan string, 1)
	go func() {
		api := regexp.MustCompile(`API\s+(http://127\.0\.0\.1:\d+)`)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if m := api.FindStringSubmatch(sc.Text()); m != nil {
				urls <- m[1]
			}
		}
	}()
	var url string
	select {
	case url = <-urls:
	case <-time.After(30 * time.Second):
		t.Fatalf("suppressd dev did not start; it said:\n%s", logs.String())
	}
	require.Eventually(t, func() bool {
		resp, err := http.Get(url + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 20*time.Second, 50*time.Millisecond)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	began := time.Now()
	// One worker: with two, hypothesis parses lambdas' source in two
	// threads at once, which CPython 3.11 can fail with "AST constructor
	// recursion depth mismatch" (a Runtime Error in the report, about one
	// run in twelve here, nothing to do with the API). 21 s instead of 13.
	cmd := exec.CommandContext(ctx, st, "--config-file", "schemathesis.toml", "run", spec,
		"--url", url, "--header", "Authorization: Bearer "+devAPIKey,
		"--checks", "all", "--workers", "1", "--seed", schemathesisSeed, "--no-color")
	cmd.Dir = work
	cmd.Env = append(os.Environ(), "NO_COLOR=1")
	report, err := cmd.CombinedOutput()
	t.Logf("schemathesis ran in %s", time.Since(began).Round(time.Millisecond))
	summary := string(report)
	if i := strings.Index(summary, "SUMMARY"); i >= 0 {
		summary = summary[i:]
	}
	if err != nil {
		t.Fatalf("schemathesis found something (%v):\n%s\nsuppressd said:\n%s", err, report, tail(logs.String(), 30))
	}
	n := len(openapitest.New(t).Operations())
	require.Contains(t, string(report), fmt.Sprintf("%d selected / %d total", n, n), "every operation of the description was tested")
	require.Regexp(t, `\d+ generated, \d+ passed`, summary)
	t.Logf("%s", summary)
}
