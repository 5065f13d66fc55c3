package unsubscribe

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/suppression"
)

const chromiumPath = "/usr/bin/chromium" // Debian's package; scripts/test.sh installs it

// TestBrowserUnsubscribe walks the human flow in a real headless Chromium,
// with JavaScript off: opening the link shows the masked address and
// unsubscribes no one; the button does, once.
func TestBrowserUnsubscribe(t *testing.T) {
	start := time.Now()
	e := newEnv(t, nil) // httptest listens on 127.0.0.1
	bctx, console := newBrowser(t)

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

	for _, line := range console() {
		require.NotContains(t, line, "Content Security Policy", "console: %s", line)
	}
	t.Logf("browser flow took %s (chromium start included)", time.Since(start).Round(time.Millisecond))
}

// newBrowser starts a headless Chromium for the test, with JavaScript off
// (the pages must work without it), and returns its context and what its
// console said so far: a CSP violation (an external resource, an inline
// script) shows up there.
func newBrowser(t *testing.T, opts ...chromedp.ExecAllocatorOption) (context.Context, func() []string) {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("SUPPRESSD_TEST_REQUIRE") == "1" {
			t.Fatalf("%s not found (apt-get install chromium): %v", chromiumPath, err)
		}
		t.Skipf("%s not found (apt-get install chromium); SUPPRESSD_TEST_REQUIRE=1 makes this a failure", chromiumPath)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	t.Cleanup(cancel)
	chromeOut := &lockedBuffer{}
	allocCtx, allocCancel := chromedp.NewExecAllocator(ctx, append([]chromedp.ExecAllocatorOption{
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
		chromedp.CombinedOutput(chromeOut),
	}, opts...)...)
	// Cleanups run last-in first-out: the browser exits (allocCancel waits
	// for it) before TempDir is removed.
	t.Cleanup(allocCancel)
	bctx, bcancel := chromedp.NewContext(allocCtx)
	t.Cleanup(bcancel)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("chromium output:\n%s", chromeOut.String())
		}
	})

	var mu sync.Mutex
	var console []string
	require.NoError(t, chromedp.Listen(bctx, func(ev any) {
		if ev, ok := ev.(*cdplog.EventEntryAdded); ok {
			mu.Lock()
			console = append(console, string(ev.Entry.Level)+": "+ev.Entry.Text)
			mu.Unlock()
		}
	}))
	_, err := chromedp.Call(bctx, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true})
	require.NoError(t, err)
	// A headless page has no window focus; :focus-visible needs it.
	_, err = chromedp.Call(bctx, emulation.SetFocusEmulationEnabled, emulation.SetFocusEmulationEnabledParams{Enabled: true})
	require.NoError(t, err)
	return bctx, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(console)
	}
}

func run[T any](ctx context.Context, t *testing.T, a chromedp.Action[T]) T {
	t.Helper()
	v, err := chromedp.Run(ctx, a)
	require.NoError(t, err)
	return v
}

// logoSVG is the test brand's logo: shapes only, so it looks the same
// whatever fonts the machine has.
const logoSVG = `<svg xmlns="http://www.w3.org/2000/svg" width="168" height="48" viewBox="0 0 168 48">` +
	`<polygon points="4,44 22,10 34,30 42,20 60,44" fill="#e4572e"/>` +
	`<rect x="70" y="14" width="90" height="8" rx="4" fill="#2b2d42"/>` +
	`<rect x="70" y="28" width="60" height="8" rx="4" fill="#8d99ae"/></svg>`

// TestBrowserPages looks at every page in a real Chromium, in English and
// German, as a branded namespace: one h1, labelled inputs in a fieldset with
// a legend, <html lang> matching the language, a visible focus ring on the
// button, and text that reads (WCAG AA 4.5:1) on the light and the dark
// page, computed from the styles the browser applied. The logo loads from
// its https origin without a CSP complaint. Each page is saved as a PNG in
// $SUPPRESSD_TEST_ARTIFACTS (or a temporary directory) for a human to look
// at.
func TestBrowserPages(t *testing.T) {
	var logoHits atomic.Int64
	logo := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		logoHits.Add(1)
		w.Header().Set("Content-Type", "image/svg+xml")
		io.WriteString(w, logoSVG)
	}))
	t.Cleanup(logo.Close)
	brand := Brand{
		Name:         "ACME Outdoor",
		LogoURL:      logo.URL + "/logo.svg", // https://127.0.0.1:port
		PrivacyURL:   "https://acme.example/privacy",
		SupportEmail: "support@acme.example",
		AccentColor:  "#e4572e", // white text on it reads at 3.6:1 only
	}
	e := newEnv(t, func(o *Options) { o.Brands = Brands{Namespaces: map[string]Brand{"acme": brand}} })
	dir := artifactDir(t)

	bctx, console := newBrowser(t, chromedp.IgnoreCertErrors) // the logo server's certificate is self-signed
	// The browser asks for German; ?lang=en is the page's own choice.
	v, err := chromedp.CallBrowser(bctx, browser.GetVersion, cdp.Empty{})
	require.NoError(t, err)
	_, err = chromedp.Call(bctx, emulation.SetUserAgentOverride, emulation.SetUserAgentOverrideParams{
		UserAgent: v.UserAgent, AcceptLanguage: "de-DE,de,en", // Chromium adds the q-values
	})
	require.NoError(t, err)
	require.NoError(t, chromedp.Do(bctx, chromedp.EmulateViewport(900, 700)))

	shot := func(name string) {
		t.Helper()
		png := run(bctx, t, chromedp.FullScreenshot(100)) // quality 100: PNG
		require.True(t, bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")), "a PNG")
		path := filepath.Join(dir, name+".png")
		require.NoError(t, os.WriteFile(path, png, 0o644))
		t.Logf("screenshot: %s", path)
	}

	for _, tc := range []struct{ lang, query string }{{"en", "?lang=en"}, {"de", ""}} {
		loc := catalogFor(tc.lang)
		base := e.srv.URL + "/u/" + e.token
		button := chromedp.CSS(`main form button[type="submit"]`)

		// The confirmation page.
		require.NoError(t, chromedp.Do(bctx, chromedp.Navigate(base+tc.query), chromedp.WaitVisible(button)))
		requirePageBasics(t, bctx, loc, loc.text("confirm.heading"), loc.text("confirm.title")+" – ACME Outdoor")
		require.Equal(t, loc.text("confirm.button"), run(bctx, t, chromedp.Text(button)))
		require.Equal(t, brand.LogoURL, run(bctx, t, chromedp.AttributeValue(chromedp.CSS("header img"), "src")).Value)
		require.Equal(t, "ACME Outdoor", run(bctx, t, chromedp.AttributeValue(chromedp.CSS("header img"), "alt")).Value)
		requireFocusVisible(t, bctx, button)
		requireReadable(t, bctx, "light")
		if tc.lang == "en" {
			_, err := chromedp.Call(bctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
				Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: "dark"}},
			})
			require.NoError(t, err)
			requireReadable(t, bctx, "dark")
			shot("unsubscribe-en-confirm-dark")
			_, err = chromedp.Call(bctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{})
			require.NoError(t, err)
		}
		shot("unsubscribe-" + tc.lang + "-confirm")

		// The preference page, through the page's own link: the chosen
		// language goes along.
		require.NoError(t, chromedp.Do(bctx,
			chromedp.Click(chromedp.CSS(`main a[href*="/preferences"]`)),
			chromedp.WaitVisible(chromedp.CSS("fieldset")),
		))
		require.Equal(t, base+"/preferences"+tc.query, run(bctx, t, chromedp.Location()))
		requirePageBasics(t, bctx, loc, loc.text("preferences.heading"), loc.text("preferences.title")+" – ACME Outdoor")
		requireLabelledInputs(t, bctx, loc)
		requireFocusVisible(t, bctx, button)
		requireReadable(t, bctx, "light")
		shot("unsubscribe-" + tc.lang + "-preferences")

		// Clicking the second option's label picks it: the labels are tied
		// to their inputs. The answer is the done page.
		require.NoError(t, chromedp.Do(bctx,
			chromedp.Click(chromedp.CSS(`label[for="scope-1"]`)),
			chromedp.Click(button),
			chromedp.WaitVisible(chromedp.ID("done")),
		))
		requirePageBasics(t, bctx, loc, loc.text("done.heading"), loc.text("done.title")+" – ACME Outdoor")
		main := run(bctx, t, chromedp.Text(chromedp.CSS("main")))
		require.Contains(t, main, loc.text("done.lead", "address", "A***e@Example.org", "from", loc.describe("*")))
		require.NotContains(t, strings.ToLower(main), strings.ToLower(testAddress))
		requireReadable(t, bctx, "light")
		shot("unsubscribe-" + tc.lang + "-done")

		// A link that does not verify.
		require.NoError(t, chromedp.Do(bctx, chromedp.Navigate(e.srv.URL+"/u/"+e.token[:20]+tc.query), chromedp.WaitVisible(chromedp.CSS("h1"))))
		requirePageBasics(t, bctx, loc, loc.text("invalid.heading"), loc.text("invalid.title"))
		requireReadable(t, bctx, "light")
		shot("unsubscribe-" + tc.lang + "-invalid")
	}

	evs := e.pub.Events()
	require.Len(t, evs, 2, "one unsubscribe per language's walk, nothing from the GETs")
	for _, ev := range evs {
		require.Equal(t, suppression.EventUnsubscribe, ev.Type)
		require.Equal(t, []suppression.Scope{"*"}, ev.Scopes, "the label's option was the one posted")
	}
	require.Positive(t, logoHits.Load(), "the logo was fetched")
	for _, line := range console() {
		require.NotContains(t, line, "Content Security Policy", "console: %s", line)
	}
}

// artifactDir is where screenshots go: $SUPPRESSD_TEST_ARTIFACTS, created if
// need be, else a temporary directory.
func artifactDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("SUPPRESSD_TEST_ARTIFACTS")
	if dir == "" {
		return t.TempDir()
	}
	require.NoError(t, os.MkdirAll(dir, 0o755))
	return dir
}

// requirePageBasics: <html lang> is the page's language, the title is
// right, and there is one h1, the first heading, inside main.
func requirePageBasics(t *testing.T, ctx context.Context, loc *catalog, h1, title string) {
	t.Helper()
	require.Equal(t, loc.code, run(ctx, t, chromedp.AttributeValue(chromedp.CSS("html"), "lang")).Value)
	require.Equal(t, title, run(ctx, t, chromedp.Title()))
	require.Len(t, run(ctx, t, chromedp.Nodes(chromedp.CSSAll("h1"), chromedp.AtLeast(0))), 1, "one h1")
	require.Len(t, run(ctx, t, chromedp.Nodes(chromedp.CSSAll("main h1:first-child"), chromedp.AtLeast(0))), 1, "the h1 opens main")
	require.Empty(t, run(ctx, t, chromedp.Nodes(chromedp.CSSAll("h2, h3, h4, h5, h6"), chromedp.AtLeast(0))), "no other level to skip to")
	require.Equal(t, h1, run(ctx, t, chromedp.Text(chromedp.CSS("h1"))))
}

// requireLabelledInputs: every visible input has exactly one label tied to
// it by id, and the radio group is a fieldset whose legend asks the
// question.
func requireLabelledInputs(t *testing.T, ctx context.Context, loc *catalog) {
	t.Helper()
	inputs := run(ctx, t, chromedp.Nodes(chromedp.CSSAll(`main input:not([type="hidden"])`)))
	radios := run(ctx, t, chromedp.Nodes(chromedp.CSSAll(`main fieldset input[type="radio"]`)))
	require.Len(t, inputs, 2)
	require.Len(t, radios, len(inputs), "every choice is in the fieldset")
	for _, in := range inputs {
		id := in.AttributeValue("id")
		require.NotEmpty(t, id)
		labels := run(ctx, t, chromedp.Nodes(chromedp.CSSAll(`label[for="`+id+`"]`)))
		require.Len(t, labels, 1, "input #%s", id)
		require.NotEmpty(t, run(ctx, t, chromedp.Text(chromedp.CSS(`label[for="`+id+`"]`))))
	}
	require.Equal(t, loc.text("preferences.legend"), run(ctx, t, chromedp.Text(chromedp.CSS("fieldset > legend"))))
}

// requireFocusVisible: tabbing to the button, as a keyboard user does,
// shows a focus ring that stands out from the page (WCAG 1.4.11: 3:1); there
// is none before.
func requireFocusVisible(t *testing.T, ctx context.Context, button chromedp.CSS) {
	t.Helper()
	require.Equal(t, "none", styleOf(t, ctx, button)["outline-style"])
	var st map[string]string
	for range 12 { // the language links and the radios come first
		require.NoError(t, chromedp.Do(ctx, chromedp.KeyEvent(kb.Tab)))
		if st = styleOf(t, ctx, button); st["outline-style"] != "none" {
			break
		}
	}
	require.Equal(t, "solid", st["outline-style"], "focus ring")
	require.Equal(t, "3px", st["outline-width"])
	bg := styleOf(t, ctx, chromedp.CSS("body"))["background-color"]
	require.GreaterOrEqual(t, contrast(cssColor(t, st["outline-color"]), cssColor(t, bg)), 3.0,
		"outline %s on %s", st["outline-color"], bg)
	require.NoError(t, chromedp.Do(ctx, chromedp.Blur(button)))
}

// requireReadable computes, from the styles Chromium applied, the contrast
// of the button's text on the button, and of the body text and every link
// on the page's background: WCAG AA, 4.5:1.
func requireReadable(t *testing.T, ctx context.Context, mode string) {
	t.Helper()
	body := styleOf(t, ctx, chromedp.CSS("body"))
	bg := cssColor(t, body["background-color"])
	if mode == "dark" {
		require.Less(t, bg.luminance(), 0.05, "the dark page is dark")
	} else {
		require.Equal(t, white, bg)
	}
	require.GreaterOrEqual(t, contrast(cssColor(t, body["color"]), bg), minTextContrast, "%s: body text", mode)
	if buttons := run(ctx, t, chromedp.Nodes(chromedp.CSS("main button"), chromedp.AtLeast(0))); len(buttons) > 0 {
		st := styleOf(t, ctx, chromedp.CSS("main button"))
		fg, bbg := cssColor(t, st["color"]), cssColor(t, st["background-color"])
		c := contrast(fg, bbg)
		t.Logf("%s: button text %s on %s: %.2f:1", mode, fg, bbg, c)
		require.GreaterOrEqual(t, c, minTextContrast, "%s: button text %s on %s", mode, fg, bbg)
	}
	links := run(ctx, t, chromedp.Nodes(chromedp.CSSAll("a"), chromedp.AtLeast(0)))
	for _, a := range links {
		st := styleOf(t, ctx, []cdp.NodeID{a.NodeID})
		require.GreaterOrEqual(t, contrast(cssColor(t, st["color"]), bg), minTextContrast, "%s: link %s", mode, a.AttributeValue("href"))
	}
}

// styleOf returns the computed style of the first element sel finds.
func styleOf[S chromedp.Selectable](t *testing.T, ctx context.Context, sel S) map[string]string {
	t.Helper()
	st := map[string]string{}
	for _, p := range run(ctx, t, chromedp.ComputedStyle(sel)) {
		st[p.Name] = p.Value
	}
	return st
}

var cssRGB = regexp.MustCompile(`^rgba?\((\d+), (\d+), (\d+)(, ([\d.]+))?\)$`)

// cssColor reads a computed colour, "rgb(r, g, b)"; an opaque one only, as
// contrast on a see-through colour depends on what is behind it.
func cssColor(t *testing.T, s string) rgb {
	t.Helper()
	m := cssRGB.FindStringSubmatch(s)
	require.NotNil(t, m, "computed colour %q", s)
	require.True(t, m[5] == "" || m[5] == "1", "computed colour %q is not opaque", s)
	c := func(v string) uint8 {
		n, err := strconv.Atoi(v)
		require.NoError(t, err)
		return uint8(n)
	}
	return rgb{c(m[1]), c(m[2]), c(m[3])}
}
