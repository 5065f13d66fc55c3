package unsubscribe

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/suppression"
)

// fakePublisher keeps what it was given; with fail set it publishes nothing
// and says so, like a Kafka writer whose acks did not come.
type fakePublisher struct {
	mu     sync.Mutex
	events []suppression.Event
	calls  int
	fail   error
}

func (p *fakePublisher) Publish(_ context.Context, e suppression.Event) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls++
	if p.fail != nil {
		return p.fail
	}
	p.events = append(p.events, e)
	return nil
}

func (p *fakePublisher) Events() []suppression.Event {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]suppression.Event(nil), p.events...)
}

func (p *fakePublisher) Calls() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls
}

func (p *fakePublisher) setFail(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fail = err
}

// lockedBuffer collects log lines written from the server's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type env struct {
	t      *testing.T
	srv    *httptest.Server
	pub    *fakePublisher
	ring   *Keyring
	token  string
	claims Claims
	logs   *lockedBuffer
}

func newEnv(t *testing.T, change func(*Options)) *env {
	t.Helper()
	e := &env{t: t, pub: &fakePublisher{}, ring: testRing(t, "k1", testKey("k1", "a")), logs: &lockedBuffer{}}
	e.claims = newsletterClaims()
	e.token = mint(t, e.ring, e.claims, testNow.Add(-24*time.Hour))
	opts := Options{
		Keyring:   e.ring,
		Publisher: e.pub,
		Now:       func() time.Time { return testNow },
		Logger:    slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if change != nil {
		change(&opts)
	}
	e.srv = httptest.NewServer(NewHandler(opts))
	t.Cleanup(e.srv.Close)
	return e
}

// do sends a request the way a mail provider does: no cookies, no
// redirects followed, so a Location would be seen.
func (e *env) do(method, path, contentType string, body io.Reader, header http.Header) (*http.Response, string) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, body)
	require.NoError(e.t, err)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	require.NoError(e.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(e.t, err)
	return resp, string(b)
}

// gmailPost is Gmail's one-click POST: urlencoded.
func (e *env) gmailPost(path string) (*http.Response, string) {
	return e.do(http.MethodPost, path, "application/x-www-form-urlencoded", strings.NewReader(OneClick), nil)
}

// rfcPost is RFC 8058's one-click POST: multipart/form-data.
func (e *env) rfcPost(path string) (*http.Response, string) {
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	require.NoError(e.t, mw.WriteField("List-Unsubscribe", "One-Click"))
	require.NoError(e.t, mw.Close())
	return e.do(http.MethodPost, path, mw.FormDataContentType(), &b, nil)
}

func (e *env) form(path string, v url.Values, header http.Header) (*http.Response, string) {
	return e.do(http.MethodPost, path, "application/x-www-form-urlencoded", strings.NewReader(v.Encode()), header)
}

func requireSecurityHeaders(t *testing.T, resp *http.Response) {
	t.Helper()
	require.Equal(t, "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'", resp.Header.Get("Content-Security-Policy"))
	require.Equal(t, "no-referrer", resp.Header.Get("Referrer-Policy"))
	require.Equal(t, "no-store", resp.Header.Get("Cache-Control"))
	require.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"))
	require.Empty(t, resp.Header.Values("Set-Cookie"), "no cookies")
	require.Empty(t, resp.Header.Get("Location"), "no redirect")
}

// requireNoAddress checks a page shows the identifier masked only.
func requireNoAddress(t *testing.T, body string) {
	t.Helper()
	low := strings.ToLower(body)
	require.NotContains(t, low, strings.ToLower(testAddress))
	require.NotContains(t, low, "alice.example")
}

var hexID = regexp.MustCompile(`^[0-9a-f]{64}$`)

func TestOneClickPost(t *testing.T) {
	for _, tc := range []struct {
		name string
		post func(*env, string) (*http.Response, string)
	}{
		{"gmail urlencoded", (*env).gmailPost},
		{"rfc 8058 multipart", (*env).rfcPost},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			resp, body := tc.post(e, "/u/"+e.token)
			require.Equal(t, http.StatusOK, resp.StatusCode, body)
			requireSecurityHeaders(t, resp)
			require.Contains(t, body, "You are unsubscribed")
			require.Contains(t, body, "A***e@Example.org")
			requireNoAddress(t, body)

			evs := e.pub.Events()
			require.Len(t, evs, 1)
			ev := evs[0]
			require.Equal(t, suppression.EventUnsubscribe, ev.Type)
			require.Equal(t, DefaultSource, ev.Source)
			require.Equal(t, "acme", ev.Namespace)
			require.Equal(t, []suppression.Identifier{{Type: suppression.IDEmail, Value: testAddress}}, ev.Identifiers)
			require.Equal(t, []suppression.Scope{"topic:newsletter"}, ev.Scopes)
			require.Equal(t, suppression.OriginRecipient, ev.Origin)
			require.Equal(t, suppression.ReasonUnsubscribe, ev.Reason)
			require.Equal(t, "c-2026-11", ev.Context.CampaignID)
			require.True(t, ev.OccurredAt.Equal(testNow))
			require.Regexp(t, hexID, ev.ID)

			// The provider retries, the person clicks again: same event id.
			resp, _ = tc.post(e, "/u/"+e.token)
			require.Equal(t, http.StatusOK, resp.StatusCode)
			evs = e.pub.Events()
			require.Len(t, evs, 2)
			require.Equal(t, ev.ID, evs[1].ID)
		})
	}
}

func TestOneClickEncodingsAndButtonShareEventID(t *testing.T) {
	e := newEnv(t, nil)
	e.gmailPost("/u/" + e.token)
	e.rfcPost("/u/" + e.token)
	resp, body := e.form("/u/"+e.token, url.Values{"confirm": {"1"}}, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, body, `<h1 id="done">You are unsubscribed</h1>`)
	evs := e.pub.Events()
	require.Len(t, evs, 3)
	require.Equal(t, evs[0].ID, evs[1].ID)
	require.Equal(t, evs[0].ID, evs[2].ID)

	// Another token for the same person (another send) is another event.
	other := newEnv(t, nil)
	other.gmailPost("/u/" + other.token)
	require.NotEqual(t, evs[0].ID, other.pub.Events()[0].ID)
}

func TestGetChangesNothing(t *testing.T) {
	e := newEnv(t, nil)
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		resp, body := e.do(method, "/u/"+e.token, "", nil, nil)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		requireSecurityHeaders(t, resp)
		if method == http.MethodHead {
			// Nobody sees a HEAD's page, so a privacy signal on one is not
			// recorded as honoured either.
			resp, _ = e.do(method, "/u/"+e.token+"/preferences", "", nil, http.Header{"Sec-Gpc": {"1"}})
			require.Equal(t, http.StatusOK, resp.StatusCode)
			continue
		}
		require.Equal(t, "text/html; charset=utf-8", resp.Header.Get("Content-Type"))
		require.Contains(t, body, `<html lang="en">`)
		require.Regexp(t, `<title>[^<]+</title>`, body)
		require.Contains(t, body, "<main>")
		require.Regexp(t, `<form method="post"[^>]*>\s*<input type="hidden" name="confirm" value="1">\s*<button type="submit">Unsubscribe</button>`, body)
		require.Contains(t, body, "A***e@Example.org")
		require.Contains(t, body, "the “newsletter” list")
		require.Contains(t, body, `href="`+e.token+`/preferences"`)
		require.NotContains(t, body, "<script")
		require.NotRegexp(t, `(src|href)="(https?:)?//`, body, "no external resources")
		requireNoAddress(t, body)
	}
	require.Empty(t, e.pub.Events(), "a GET (a link scanner) unsubscribes no one")
	require.Zero(t, e.pub.Calls())
}

func TestPostWithoutRequestChangesNothing(t *testing.T) {
	e := newEnv(t, nil)
	for _, tc := range []struct {
		name, contentType, body string
	}{
		{"empty", "application/x-www-form-urlencoded", ""},
		{"other field", "application/x-www-form-urlencoded", "List-Unsubscribe=Maybe"},
		{"field in a text body", "text/plain", OneClick},
		{"body too large", "application/x-www-form-urlencoded", OneClick + "&x=" + strings.Repeat("a", maxBody)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := e.do(http.MethodPost, "/u/"+e.token, tc.contentType, strings.NewReader(tc.body), nil)
			require.Equal(t, http.StatusBadRequest, resp.StatusCode)
			requireSecurityHeaders(t, resp)
			require.Contains(t, body, "<button type=\"submit\">Unsubscribe</button>", "offers the button instead")
		})
	}
	// The field in the query string is not the body RFC 8058 asks for.
	resp, _ := e.do(http.MethodPost, "/u/"+e.token+"?List-Unsubscribe=One-Click", "", nil, nil)
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	require.Empty(t, e.pub.Events())
}

func TestInvalidTokens(t *testing.T) {
	e := newEnv(t, nil)
	kid, body, _ := strings.Cut(e.token, ".")
	flipped := []byte(body)
	flipped[10] ^= 'A' ^ 'B'
	if flipped[10] == body[10] {
		flipped[10] = 'C'
	}
	expired := mint(t, e.ring, e.claims, testNow.Add(-DefaultTTL-time.Hour))
	foreign := mint(t, testRing(t, "k1", testKey("k1", "other")), e.claims, testNow)
	unknown := mint(t, testRing(t, "k9", testKey("k9", "a")), e.claims, testNow)
	for _, tc := range []struct{ name, token string }{
		{"tampered", kid + "." + string(flipped)},
		{"truncated", e.token[:len(e.token)-5]},
		{"expired", expired},
		{"foreign key", foreign},
		{"unknown key", unknown},
		{"garbage", "hello"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, req := range []func() (*http.Response, string){
				func() (*http.Response, string) { return e.gmailPost("/u/" + tc.token) },
				func() (*http.Response, string) { return e.rfcPost("/u/" + tc.token) },
				func() (*http.Response, string) {
					return e.do(http.MethodGet, "/u/"+tc.token, "", nil, http.Header{"Sec-Gpc": {"1"}})
				},
				func() (*http.Response, string) {
					return e.form("/u/"+tc.token+"/preferences", url.Values{"scope": {"*"}}, nil)
				},
			} {
				resp, body := req()
				require.Equal(t, http.StatusBadRequest, resp.StatusCode)
				requireSecurityHeaders(t, resp)
				require.Contains(t, body, "This link is not valid or has expired")
				require.NotContains(t, body, "<form")
			}
		})
	}
	require.Empty(t, e.pub.Events())
	require.Zero(t, e.pub.Calls())
}

func TestPublisherFailure(t *testing.T) {
	e := newEnv(t, nil)
	e.pub.setFail(errors.New("kafka: not enough in-sync replicas"))
	for _, post := range []func(string) (*http.Response, string){e.gmailPost, e.rfcPost} {
		resp, body := post("/u/" + e.token)
		require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
		require.Equal(t, "60", resp.Header.Get("Retry-After"))
		requireSecurityHeaders(t, resp)
		require.NotContains(t, body, "unsubscribed")
		require.Contains(t, body, "Nothing has been changed")
		require.Contains(t, body, `<input type="hidden" name="confirm" value="1">`, "the page can retry")
	}
	resp, body := e.form("/u/"+e.token+"/preferences", url.Values{"scope": {"*"}}, nil)
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	require.Contains(t, body, `<input type="hidden" name="scope" value="*">`)
	require.Equal(t, 3, e.pub.Calls())
	require.Empty(t, e.pub.Events())

	e.pub.setFail(nil) // Kafka is back: the retry works
	resp, _ = e.gmailPost("/u/" + e.token)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Len(t, e.pub.Events(), 1)
}

func TestPreferences(t *testing.T) {
	e := newEnv(t, nil)
	path := "/u/" + e.token + "/preferences"
	resp, body := e.do(http.MethodGet, path, "", nil, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	requireSecurityHeaders(t, resp)
	require.Contains(t, body, `<form method="post">`)
	require.Contains(t, body, `<legend>What would you like to unsubscribe from?</legend>`)
	require.Regexp(t, `<input type="radio" id="scope-0" name="scope" value="topic:newsletter" required checked><label for="scope-0">Only from the “newsletter” list</label>`, body)
	require.Regexp(t, `<input type="radio" id="scope-1" name="scope" value="\*" required><label for="scope-1">Everything: all marketing we send</label>`, body)
	requireNoAddress(t, body)
	require.Empty(t, e.pub.Events())

	resp, body = e.form(path, url.Values{"scope": {"topic:newsletter"}}, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, body, "We have unsubscribed <strong>A***e@Example.org</strong> from the “newsletter” list.")
	resp, body = e.form(path, url.Values{"scope": {"*"}}, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, body, "We have unsubscribed <strong>A***e@Example.org</strong> from all marketing we send.")

	evs := e.pub.Events()
	require.Len(t, evs, 2)
	require.Equal(t, []suppression.Scope{"topic:newsletter"}, evs[0].Scopes)
	require.Equal(t, []suppression.Scope{"*"}, evs[1].Scopes)
	require.Equal(t, suppression.EventUnsubscribe, evs[1].Type)
	require.Equal(t, "acme", evs[1].Namespace)
	require.NotEqual(t, evs[0].ID, evs[1].ID, "leaving everything is a new event")

	// The one-click and the topic choice are the same opt-out.
	e.gmailPost("/u/" + e.token)
	require.Equal(t, evs[0].ID, e.pub.Events()[2].ID)

	for _, scope := range []string{"", "email", "topic:other", "transactional"} {
		resp, body := e.form(path, url.Values{"scope": {scope}}, nil)
		require.Equal(t, http.StatusBadRequest, resp.StatusCode, "scope %q", scope)
		require.Contains(t, body, `role="alert"`)
	}
	require.Len(t, e.pub.Events(), 3)
}

func TestPrivacySignals(t *testing.T) {
	gpc := http.Header{"Sec-Gpc": {"1"}}
	dnt := http.Header{"Dnt": {"1"}}
	for _, tc := range []struct {
		name     string
		honorDNT bool
		header   http.Header
		request  func(e *env, h http.Header) (*http.Response, string)
		wantGPC  bool
		unsubs   int
	}{
		{"Sec-GPC on the confirmation page", false, gpc, getConfirm, true, 0},
		{"Sec-GPC on the preference page", false, gpc, getPreferences, true, 0},
		{"Sec-GPC posting preferences", false, gpc, postPreferences, true, 1},
		{"Sec-GPC with the button", false, gpc, postButton, true, 1},
		{"Sec-GPC: 0", false, http.Header{"Sec-Gpc": {"0"}}, getPreferences, false, 0},
		{"DNT ignored by default", false, dnt, getPreferences, false, 0},
		{"DNT honoured when enabled", true, dnt, getPreferences, true, 0},
		{"DNT honoured when enabled, confirmation page", true, dnt, getConfirm, true, 0},
		{"no signal", true, nil, getPreferences, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(o *Options) { o.HonorDNT = tc.honorDNT })
			resp, body := tc.request(e, tc.header)
			require.Equal(t, http.StatusOK, resp.StatusCode)
			var gpcs []suppression.Event
			unsubs := 0
			for _, ev := range e.pub.Events() {
				switch ev.Type {
				case suppression.EventGPC:
					gpcs = append(gpcs, ev)
				case suppression.EventUnsubscribe:
					unsubs++
				}
			}
			require.Equal(t, tc.unsubs, unsubs)
			if !tc.wantGPC {
				require.Empty(t, gpcs)
				require.NotContains(t, body, "honoured")
				return
			}
			require.Len(t, gpcs, 1)
			ev := gpcs[0]
			require.Equal(t, []suppression.Scope{"sale_sharing", "advertising"}, ev.Scopes)
			require.Equal(t, suppression.ReasonGPC, ev.Reason)
			require.Equal(t, e.claims.Identifier, ev.Identifiers[0])
			require.Equal(t, "acme", ev.Namespace)
			require.Equal(t, suppression.OriginRecipient, ev.Origin)
			require.Contains(t, body, "we have honoured it")
			requireNoAddress(t, body)

			// Once per token: the next page view repeats the same event id.
			tc.request(e, tc.header)
			var again []string
			for _, ev := range e.pub.Events() {
				if ev.Type == suppression.EventGPC {
					again = append(again, ev.ID)
				}
			}
			require.Equal(t, []string{ev.ID, ev.ID}, again)
		})
	}
}

func TestPrivacySignalNotRecorded(t *testing.T) {
	e := newEnv(t, nil)
	e.pub.setFail(errors.New("broker down"))
	resp, body := getPreferences(e, http.Header{"Sec-Gpc": {"1"}})
	require.Equal(t, http.StatusOK, resp.StatusCode, "the page still works")
	require.NotContains(t, body, "honoured")
	require.Contains(t, body, "could not record it")
}

func getConfirm(e *env, h http.Header) (*http.Response, string) {
	return e.do(http.MethodGet, "/u/"+e.token, "", nil, h)
}

func getPreferences(e *env, h http.Header) (*http.Response, string) {
	return e.do(http.MethodGet, "/u/"+e.token+"/preferences", "", nil, h)
}

func postPreferences(e *env, h http.Header) (*http.Response, string) {
	return e.form("/u/"+e.token+"/preferences", url.Values{"scope": {"topic:newsletter"}}, h)
}

func postButton(e *env, h http.Header) (*http.Response, string) {
	return e.form("/u/"+e.token, url.Values{"confirm": {"1"}}, h)
}

func TestOtherPaths(t *testing.T) {
	e := newEnv(t, nil)
	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{http.MethodGet, "/u/", http.StatusNotFound},
		{http.MethodGet, "/u/" + e.token + "/other", http.StatusNotFound},
		{http.MethodPut, "/u/" + e.token, http.StatusMethodNotAllowed},
		{http.MethodDelete, "/u/" + e.token + "/preferences", http.StatusMethodNotAllowed},
	} {
		resp, body := e.do(tc.method, tc.path, "", nil, nil)
		require.Equal(t, tc.want, resp.StatusCode, "%s %s", tc.method, tc.path)
		requireSecurityHeaders(t, resp)
		require.NotContains(t, body, e.token)
	}
	require.Empty(t, e.pub.Events())
}

func TestLogsNameNoOne(t *testing.T) {
	e := newEnv(t, nil)
	e.gmailPost("/u/" + e.token)
	getConfirm(e, http.Header{"Sec-Gpc": {"1"}})
	e.gmailPost("/u/" + e.token[:len(e.token)-3] + "AAA") // forged
	e.pub.setFail(errors.New("broker down"))
	e.rfcPost("/u/" + e.token)

	logs := e.logs.String()
	evs := e.pub.Events()
	require.Len(t, evs, 2)
	require.Contains(t, logs, "key_id=k1")
	require.Contains(t, logs, "event_id="+evs[0].ID)
	require.Contains(t, logs, "reason=forged")
	require.Contains(t, logs, "broker down")
	_, sealed, _ := strings.Cut(e.token, ".")
	require.NotContains(t, logs, sealed[:20], "no token")
	low := strings.ToLower(logs)
	require.NotContains(t, low, "alice")
	require.NotContains(t, low, "example.org")
}

// unsubscribeFails publishes privacy-signal events but not unsubscribes: a
// partial outage, the one case where a page has recorded something and
// still failed at what was asked.
type unsubscribeFails struct{ fakePublisher }

func (p *unsubscribeFails) Publish(ctx context.Context, e suppression.Event) error {
	if e.Type == suppression.EventUnsubscribe {
		return errors.New("broker down")
	}
	return p.fakePublisher.Publish(ctx, e)
}

// TestSignalWordingIsTrue: what a page says it changed is what it changed,
// in each state of the privacy signal: honoured (a gpc event was published,
// so "nothing changed" would be false), sent but not recorded (nothing was
// published), or absent. In every language.
func TestSignalWordingIsTrue(t *testing.T) {
	gpc := http.Header{"Sec-Gpc": {"1"}}
	for _, loc := range catalogs {
		msg := func(key string) string { return string(loc.html(key)) }
		q := "?lang=" + loc.code
		t.Run(loc.code, func(t *testing.T) {
			// No signal: nothing changed, and the page says so.
			e := newEnv(t, nil)
			_, body := e.do(http.MethodGet, "/u/"+e.token+q, "", nil, nil)
			require.Contains(t, body, msg("confirm.unchanged"))
			require.NotContains(t, body, msg("confirm.unchanged_after_signal"))
			require.NotContains(t, body, `class="note"`)
			_, body = e.do(http.MethodGet, "/u/"+e.token+"/preferences"+q, "", nil, nil)
			require.Contains(t, body, msg("preferences.unchanged"))
			require.Empty(t, e.pub.Events())

			// Honoured: the gpc opt-out is recorded, so the page says that
			// this, and only this, has changed.
			e = newEnv(t, nil)
			_, body = e.do(http.MethodGet, "/u/"+e.token+q, "", nil, gpc)
			require.Len(t, e.pub.Events(), 1)
			require.Equal(t, suppression.EventGPC, e.pub.Events()[0].Type)
			require.Contains(t, body, string(loc.html("signal.honoured", "signal", "Global Privacy Control", "address", "A***e@Example.org")))
			require.Contains(t, body, msg("confirm.unchanged_after_signal"))
			require.NotContains(t, body, msg("confirm.unchanged"), "a page that recorded the signal does not say it changed nothing")
			_, body = e.do(http.MethodGet, "/u/"+e.token+"/preferences"+q, "", nil, gpc)
			require.Contains(t, body, msg("preferences.unchanged_after_signal"))
			require.NotContains(t, body, msg("preferences.unchanged"))

			// Sent but not recorded: nothing was published, and the page
			// says both.
			e = newEnv(t, nil)
			e.pub.setFail(errors.New("broker down"))
			_, body = e.do(http.MethodGet, "/u/"+e.token+q, "", nil, gpc)
			require.Empty(t, e.pub.Events())
			require.Contains(t, body, string(loc.html("signal.failed", "signal", "Global Privacy Control")))
			require.Contains(t, body, msg("confirm.unchanged"))
			require.NotContains(t, body, msg("confirm.unchanged_after_signal"))

			// The button fails but the signal was recorded: the 503 page does
			// not claim that nothing changed.
			pub := &unsubscribeFails{}
			e = newEnv(t, func(o *Options) { o.Publisher = pub })
			resp, body := e.form("/u/"+e.token+q, url.Values{"confirm": {"1"}}, gpc)
			require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
			require.Len(t, pub.Events(), 1)
			require.Equal(t, suppression.EventGPC, pub.Events()[0].Type)
			require.Contains(t, body, msg("unavailable.unchanged_after_signal"))
			require.NotContains(t, body, msg("unavailable.unchanged"))
			resp, body = e.form("/u/"+e.token+q, url.Values{"confirm": {"1"}}, nil)
			require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
			require.Contains(t, body, msg("unavailable.unchanged"))
		})
	}
}
