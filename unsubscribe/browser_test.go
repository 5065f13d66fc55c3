package unsubscribe

import (
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/suppression"
)

const chromiumPath = "/usr/bin/chromium" // Debian's package; scripts/test.sh installs it

// TestBrowserUnsubscribe walks the human flow in a real headless Chromium,
// with JavaScript off: opening the link shows the masked address and
// unsubscribes no one; the button does, once.
func TestBrowserUnsubscribe(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("SUPPRESSD_TEST_REQUIRE") == "1" {
			t.Fatalf("%s not found (apt-get install chromium): %v", chromiumPath, err)
		}
		t.Skipf("%s not found (apt-get install chromium); SUPPRESSD_TEST_REQUIRE=1 makes this a failure", chromiumPath)
	}
	start := time.Now()
	e := newEnv(t, nil) // httptest listens on 127.0.0.1

	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	var chromeOut lockedBuffer
	allocCtx, allocCancel := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox, // root in CI containers
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true), // small /dev/shm in containers
		chromedp.UserDataDir(t.TempDir()),
		chromedp.CombinedOutput(&chromeOut),
	)
	defer allocCancel() // waits for the browser to exit, before TempDir is removed
	bctx, bcancel := chromedp.NewContext(allocCtx)
	defer bcancel()

	// The browser's console: a CSP violation (an external resource, an
	// inline script) would show up here.
	var mu sync.Mutex
	var console []string
	require.NoError(t, chromedp.Listen(bctx, func(ev any) {
		if ev, ok := ev.(*cdplog.EventEntryAdded); ok {
			mu.Lock()
			console = append(console, string(ev.Entry.Level)+": "+ev.Entry.Text)
			mu.Unlock()
		}
	}))
	defer func() {
		if t.Failed() {
			t.Logf("chromium output:\n%s", chromeOut.String())
		}
	}()

	// The flow must work with JavaScript off.
	_, err := chromedp.Call(bctx, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true})
	require.NoError(t, err)
	button := chromedp.CSS(`main form button[type="submit"]`)
	require.NoError(t, chromedp.Do(bctx,
		chromedp.Navigate(e.srv.URL+"/u/"+e.token),
		chromedp.WaitVisible(button),
	))
	require.Equal(t, "Unsubscribe", run(bctx, t, chromedp.Title()))
	require.Equal(t, "en", run(bctx, t, chromedp.AttributeValue(chromedp.CSS("html"), "lang")).Value)
	require.Equal(t, "Unsubscribe", run(bctx, t, chromedp.Text(button)))
	page := run(bctx, t, chromedp.Text(chromedp.CSS("main")))
	require.Contains(t, page, "A***e@Example.org")
	require.Contains(t, page, "the “newsletter” list")
	require.NotContains(t, strings.ToLower(page), strings.ToLower(testAddress))
	require.Empty(t, e.pub.Events(), "opening the link unsubscribes no one")

	require.NoError(t, chromedp.Do(bctx,
		chromedp.Click(button),
		chromedp.WaitVisible(chromedp.ID("done")),
	))
	require.Equal(t, "You are unsubscribed", run(bctx, t, chromedp.Title()))
	page = run(bctx, t, chromedp.Text(chromedp.CSS("main")))
	require.Contains(t, page, "You are unsubscribed")
	require.Contains(t, page, "We have unsubscribed A***e@Example.org from the “newsletter” list")
	require.Equal(t, e.srv.URL+"/u/"+e.token, run(bctx, t, chromedp.Location()), "no redirect")

	evs := e.pub.Events()
	require.Len(t, evs, 1, "the button publishes exactly one event")
	require.Equal(t, suppression.EventUnsubscribe, evs[0].Type)
	require.Equal(t, []suppression.Scope{"topic:newsletter"}, evs[0].Scopes)
	require.Equal(t, e.claims.Identifier, evs[0].Identifiers[0])

	mu.Lock()
	for _, line := range console {
		require.NotContains(t, line, "Content Security Policy", "console: %s", line)
	}
	mu.Unlock()
	t.Logf("browser flow took %s (chromium start included)", time.Since(start).Round(time.Millisecond))
}

func run[T any](ctx context.Context, t *testing.T, a chromedp.Action[T]) T {
	t.Helper()
	v, err := chromedp.Run(ctx, a)
	require.NoError(t, err)
	return v
}
