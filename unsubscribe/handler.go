package unsubscribe

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"errors"
	"html/template"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/suppressd/suppressd/suppression"
)

// Publisher publishes suppression events. The handler calls it from many
// requests at once.
type Publisher interface {
	// Publish returns nil only once Kafka acknowledged e from all in-sync
	// replicas; an error means nothing was published.
	Publish(ctx context.Context, e suppression.Event) error
}

// DefaultSource is the CloudEvents source of the events the handler
// publishes when Options.Source is empty.
const DefaultSource = "/unsubscribe-link"

// Options configure the handler. Keyring and Publisher are required; the
// rest has safe defaults.
type Options struct {
	// Keyring verifies the tokens. Required.
	Keyring *Keyring
	// Publisher publishes the events. Required.
	Publisher Publisher
	// Now is the clock for expiry and event times. Default time.Now.
	Now func() time.Time
	// HonorDNT treats "DNT: 1" like "Sec-GPC: 1". Default false: no law
	// requires honouring Do Not Track, and some browsers sent it by default.
	HonorDNT bool
	// Logger receives one line per outcome, with the key id and event id,
	// never the token or the identifier. Default: discard.
	Logger *slog.Logger
	// Source is the source of the events published. Default DefaultSource.
	Source string
	// PublishTimeout bounds one Publish call. The call is not cancelled when
	// the client goes away: the person asked, so the opt-out is still
	// recorded. Default 10s.
	PublishTimeout time.Duration
	// RetryAfter is sent with a 503 when publishing failed. Default 60s.
	RetryAfter time.Duration
	// PublishLog, if set, makes the same token and action publish once
	// within DedupWindow (default 1h): a repeated click, a provider's
	// retry, every page view with Sec-GPC all answer as the first did. A
	// log that does not answer does not stop a publish: a duplicate is
	// harmless, a lost opt-out is not. The window is short because a later
	// click with the same link, after a resubscribe, is a new opt-out that
	// must be published again.
	PublishLog  PublishLog
	DedupWindow time.Duration
	// TokenRate and ClientRate bound the requests per minute of one link
	// and of one client address (ClientIPHeader names the header a trusted
	// proxy sets with it; default the connection's address). Over them the
	// answer is 429 with Retry-After, and nothing is published. Counted in
	// memory, per replica. Zero: DefaultTokenRate, DefaultClientRate;
	// negative: no limit.
	TokenRate, ClientRate int
	ClientIPHeader        string
	// Brands give the pages of each namespace a sender's name, logo,
	// privacy-policy link, support address and colour (LoadBrands reads
	// them from a file). Default: neutral pages. NewHandler panics if they
	// do not pass Brands.Validate.
	Brands Brands
	// Registerer registers the pages' metrics. Default: a registry of the
	// handler's own, which nothing serves.
	Registerer prometheus.Registerer
}

//go:embed pages.html
var pagesFS embed.FS

var pages = template.Must(template.New("pages.html").Funcs(template.FuncMap{
	// strong marks up a value given to a message (the address).
	"strong": func(s string) template.HTML {
		return "<strong>" + template.HTML(template.HTMLEscapeString(s)) + "</strong>"
	},
	// mailto links a validated address (checkEmail: nothing to encode).
	"mailto": func(addr string) template.HTML {
		a := template.HTMLEscapeString(addr)
		return template.HTML(`<a href="mailto:` + a + `">` + a + `</a>`)
	},
}).ParseFS(pagesFS, "pages.html"))

// maxBody bounds a form POST: the one-click body is 26 bytes.
const maxBody = 16 << 10

// NewHandler returns the handler of the unsubscribe link. Its routes are
// registered as "GET /u/{token}", "POST /u/{token}", "GET
// /u/{token}/preferences" and "POST /u/{token}/preferences", so mount it
// where the request path still starts with /u/:
//
//	mux.Handle("/u/", unsubscribe.NewHandler(opts)) // no http.StripPrefix
//
// The pages link to each other with relative URLs, so a proxy may serve the
// whole API under a path prefix. They speak the language the browser asks
// for (Accept-Language) among those of locales/, English otherwise, and
// offer the others as links that add "?lang=xx", kept by the page's links
// and forms (a form posts to its page's URL, query included; the one-click
// body stays List-Unsubscribe=One-Click alone).
//
// NewHandler panics if Keyring or Publisher is nil or Brands are invalid: a
// wiring mistake, caught at start-up.
func NewHandler(opts Options) http.Handler {
	if opts.Keyring == nil || opts.Publisher == nil {
		panic("unsubscribe.NewHandler: Options.Keyring and Options.Publisher are required")
	}
	if err := opts.Brands.Validate(); err != nil {
		panic("unsubscribe.NewHandler: Options.Brands: " + err.Error())
	}
	h := &handler{
		keys:       opts.Keyring,
		pub:        opts.Publisher,
		now:        opts.Now,
		honorDNT:   opts.HonorDNT,
		log:        opts.Logger,
		source:     opts.Source,
		timeout:    opts.PublishTimeout,
		retryAfter: opts.RetryAfter,
		fallback:   newBrandView(opts.Brands.Fallback),
		brands:     make(map[string]*brandView, len(opts.Brands.Namespaces)),
	}
	for ns, b := range opts.Brands.Namespaces {
		h.brands[ns] = newBrandView(b)
	}
	if h.now == nil {
		h.now = time.Now
	}
	h.plog, h.window, h.ipHeader = opts.PublishLog, opts.DedupWindow, opts.ClientIPHeader
	if h.window <= 0 {
		h.window = time.Hour
	}
	rate := func(n, def int) int {
		if n == 0 {
			return def
		}
		return n
	}
	h.tokens = newLimiter(rate(opts.TokenRate, DefaultTokenRate), h.now)
	h.clients = newLimiter(rate(opts.ClientRate, DefaultClientRate), h.now)
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	h.log = h.log.With("component", "unsubscribe")
	if h.source == "" {
		h.source = DefaultSource
	}
	reg := opts.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	h.m = newMetrics(reg)
	if h.timeout <= 0 {
		h.timeout = 10 * time.Second
	}
	if h.retryAfter <= 0 {
		h.retryAfter = time.Minute
	}
	mux := http.NewServeMux()
	mux.Handle("GET /u/{token}", h.withToken(h.confirm))
	mux.Handle("POST /u/{token}", h.withToken(h.unsubscribe))
	mux.Handle("GET /u/{token}/preferences", h.withToken(h.preferences))
	mux.Handle("POST /u/{token}/preferences", h.withToken(h.savePreferences))
	return h.instrument(mux, securityHeaders(h.limitClients(mux)))
}

// limitClients answers 429 to a client address over its rate, before its
// token is looked at.
func (h *handler) limitClients(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ok, wait := h.clients.allow(clientKey(r, h.ipHeader)); !ok {
			loc, explicit := chooseLanguage(r)
			h.log.Info("unsubscribe page rate limited", "per", "client", "method", r.Method)
			h.busy(w, wait, newView(loc, explicit, h.fallback))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// busy is the answer to a request over a rate: nothing was done.
func (h *handler) busy(w http.ResponseWriter, wait time.Duration, v view) {
	w.Header().Set("Retry-After", strconv.Itoa(max(1, int(wait.Round(time.Second)/time.Second))))
	h.render(w, http.StatusTooManyRequests, "busy", page{view: v})
}

type handler struct {
	keys       *Keyring
	pub        Publisher
	now        func() time.Time
	honorDNT   bool
	log        *slog.Logger
	source     string
	timeout    time.Duration
	retryAfter time.Duration
	fallback   *brandView
	brands     map[string]*brandView // by namespace
	plog       PublishLog
	window     time.Duration
	tokens     *limiter
	clients    *limiter
	ipHeader   string
	flights    inflight
	m          *metrics
}

func (h *handler) brand(namespace string) *brandView {
	if b, ok := h.brands[namespace]; ok {
		return b
	}
	return h.fallback
}

// securityHeaders are on every answer, errors included: the pages load
// nothing, run nothing, cannot be framed, leak no token in a Referer and are
// never cached (a shared proxy must not keep a page naming a person). A page
// whose brand has a logo allows that logo's origin in img-src, and nothing
// else (render).
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", baseCSP)
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("Cache-Control", "no-store")
		hd.Set("X-Content-Type-Options", "nosniff")
		next.ServeHTTP(w, r)
	})
}

// request is one request whose token verified.
type request struct {
	w      http.ResponseWriter
	r      *http.Request
	token  string
	kid    string
	claims Claims
	now    time.Time
	// signal is the privacy signal the browser sent ("Global Privacy
	// Control", "Do Not Track") and honoured whether it was recorded.
	signal   string
	honoured bool
	view     view
}

// withToken verifies the token, answers 400 if it does not, and records a
// privacy signal before the route runs.
func (h *handler) withToken(route func(*request)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token := r.PathValue("token")
		now := h.now()
		loc, explicit := chooseLanguage(r)
		c, err := h.keys.Verify(token, now)
		if err != nil {
			h.log.Info("unsubscribe link rejected", "key_id", h.keys.KeyID(token), "reason", rejection(err), "method", r.Method)
			h.m.rejected.WithLabelValues(rejection(err)).Inc()
			// The namespace of a link that did not verify is unknown.
			h.render(w, http.StatusBadRequest, "invalid", page{view: newView(loc, explicit, h.fallback)})
			return
		}
		q := &request{w: w, r: r, token: token, kid: h.keys.KeyID(token), claims: c, now: now,
			view: newView(loc, explicit, h.brand(c.Namespace))}
		tk := sha256.Sum256([]byte(token))
		if ok, wait := h.tokens.allow(string(tk[:16])); !ok {
			h.log.Info("unsubscribe page rate limited", "per", "token", "key_id", q.kid, "method", r.Method)
			h.busy(w, wait, q.view)
			return
		}
		if r.Method != http.MethodHead {
			h.honourSignal(q)
		}
		route(q)
	})
}

func rejection(err error) string {
	for _, e := range []struct {
		err  error
		name string
	}{{ErrMalformed, "malformed"}, {ErrUnknownKey, "unknown_key"}, {ErrForged, "forged"}, {ErrExpired, "expired"}} {
		if errors.Is(err, e.err) {
			return e.name
		}
	}
	return "other"
}

// honourSignal publishes a gpc opt-out when the browser sends Global Privacy
// Control (or Do Not Track, if enabled). Under the CCPA regulations the
// signal is an opt-out of sale/sharing that may not be second-guessed, so any
// page of a valid link records it, GETs included: it is not an unsubscribe,
// and opting out of sale is always safe to over-honour. The event id is the
// same for every request with this token.
func (h *handler) honourSignal(q *request) {
	var via string
	switch {
	case strings.TrimSpace(q.r.Header.Get("Sec-GPC")) == "1":
		q.signal, via = "Global Privacy Control", "gpc"
	case h.honorDNT && strings.TrimSpace(q.r.Header.Get("DNT")) == "1":
		q.signal, via = "Do Not Track", "dnt"
	default:
		return
	}
	e := h.event(q, suppression.EventGPC, suppression.EventGPC.DefaultScopes())
	q.honoured = h.publish(q, e, via) == nil
}

// confirm is GET /u/{token}: a page with a button, and nothing else. Link
// scanners fetch every URL in a message; a GET that unsubscribed would
// unsubscribe people who never asked.
func (h *handler) confirm(q *request) {
	h.render(q.w, http.StatusOK, "confirm", h.page(q, q.claims.Scopes, q.token+"/preferences"))
}

// unsubscribe is POST /u/{token}: the mail provider's one-click POST
// (RFC 8058; multipart or, as Gmail sends it, urlencoded) or the
// confirmation page's button.
func (h *handler) unsubscribe(q *request) {
	form, err := parseForm(q.w, q.r)
	oneClick := err == nil && strings.EqualFold(strings.TrimSpace(form.Get("List-Unsubscribe")), "One-Click")
	button := err == nil && form.Get("confirm") == "1"
	if !oneClick && !button {
		h.log.Info("unsubscribe POST without a request", "key_id", q.kid)
		h.render(q.w, http.StatusBadRequest, "confirm", h.page(q, q.claims.Scopes, q.token+"/preferences"))
		return
	}
	via := "button"
	if oneClick {
		via = "one_click"
	}
	h.unsubscribeFrom(q, via, q.claims.Scopes, []field{{"confirm", "1"}}, q.token+"/preferences")
}

// choice is one option of the preference page: one scope of the token
// (From says what leaving it stops), or everything.
type choice struct {
	Value      string
	From       string
	Everything bool
}

// preferences is GET /u/{token}/preferences.
func (h *handler) preferences(q *request) {
	h.render(q.w, http.StatusOK, "preferences", h.page(q, q.claims.Scopes, ""))
}

// savePreferences is POST /u/{token}/preferences: one of the token's scopes,
// or everything. No other scope: the link speaks only for what it was sent
// for, and for the person's wish to hear nothing more.
func (h *handler) savePreferences(q *request) {
	form, err := parseForm(q.w, q.r)
	scope := suppression.Scope(form.Get("scope"))
	if err != nil || !slices.ContainsFunc(q.view.loc.choices(q.claims.Scopes), func(c choice) bool { return c.Value == string(scope) }) {
		p := h.page(q, q.claims.Scopes, "")
		p.Invalid = true
		h.render(q.w, http.StatusBadRequest, "preferences", p)
		return
	}
	h.unsubscribeFrom(q, "preferences", []suppression.Scope{scope}, []field{{"scope", string(scope)}}, "preferences")
}

// unsubscribeFrom publishes the unsubscribe and answers 200 only once it is
// stored; otherwise 503, a page that claims nothing and a button to retry.
func (h *handler) unsubscribeFrom(q *request, via string, scopes []suppression.Scope, retry []field, prefs string) {
	e := h.event(q, suppression.EventUnsubscribe, scopes)
	if err := h.publish(q, e, via); err != nil {
		q.w.Header().Set("Retry-After", strconv.Itoa(int(h.retryAfter.Round(time.Second)/time.Second)))
		p := h.page(q, scopes, "")
		p.Retry = retry
		h.render(q.w, http.StatusServiceUnavailable, "unavailable", p)
		return
	}
	h.render(q.w, http.StatusOK, "done", h.page(q, scopes, prefs))
}

// event builds the event a request asks for (newEvent).
func (h *handler) event(q *request, t suppression.EventType, scopes []suppression.Scope) suppression.Event {
	return newEvent(q.claims, q.token, h.source, t, scopes, q.now)
}

// publish publishes e once per DedupWindow; via says how the person asked,
// for the metrics. Requests that wait for the same event's publish are not
// counted again: the events metric counts publishes, the requests metric
// requests.
func (h *handler) publish(q *request, e suppression.Event, via string) error {
	log := h.log.With("key_id", q.kid, "event_id", e.ID, "type", e.Type, "namespace", e.Namespace)
	if err := e.Normalize(q.now); err != nil {
		// Verify applies the same rules, so this is a bug, not bad input.
		log.Error("unsubscribe event invalid", "err", err)
		h.m.events.WithLabelValues(via, "invalid").Inc()
		return err
	}
	// One request at a time per event id, so a burst of the same click
	// publishes once, not once per request that beat the log.
	return h.flights.do(e.ID, func() error {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(q.r.Context()), h.timeout)
		defer cancel()
		if h.plog != nil {
			seen, err := h.plog.Published(ctx, e.Source, e.ID)
			switch {
			case err != nil:
				log.Warn("publish log not answering; publishing anyway", "err", err)
			case seen:
				log.Info("unsubscribe event already published; not published again", "window", h.window)
				h.m.events.WithLabelValues(via, "repeat").Inc()
				return nil
			}
		}
		start := time.Now()
		if err := h.pub.Publish(ctx, e); err != nil {
			log.Warn("unsubscribe event not published", "err", err, "took", time.Since(start))
			h.m.events.WithLabelValues(via, "failed").Inc()
			return err
		}
		log.Info("unsubscribe event published", "scopes", e.Scopes, "took", time.Since(start))
		h.m.events.WithLabelValues(via, "published").Inc()
		if h.plog != nil {
			if err := h.plog.RecordPublished(ctx, e.Source, e.ID, h.window); err != nil {
				log.Warn("could not record the published event; a repeat will publish it again", "err", err)
			}
		}
		return nil
	})
}

// parseForm reads a POST body as multipart/form-data (RFC 8058) or
// application/x-www-form-urlencoded (Gmail, browsers). Query parameters are
// ignored: the one-click field must be in the body.
func parseForm(w http.ResponseWriter, r *http.Request) (url.Values, error) {
	r.Body = http.MaxBytesReader(unwrapped(w), r.Body, maxBody)
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	var err error
	if ct == "multipart/form-data" {
		err = r.ParseMultipartForm(maxBody)
		if r.MultipartForm != nil {
			defer r.MultipartForm.RemoveAll()
		}
	} else {
		err = r.ParseForm()
	}
	if err != nil {
		return url.Values{}, err
	}
	return r.PostForm, nil
}

// view is what every page shows around its content: the language, the
// brand, and whether the language was chosen on a page (?lang=), so that the
// page's links keep it.
type view struct {
	loc      *catalog
	explicit bool
	brand    *brandView
}

func newView(loc *catalog, explicit bool, b *brandView) view {
	return view{loc: loc, explicit: explicit, brand: b}
}

// langQuery is what the page's own links append to keep a chosen language.
func (v view) langQuery() string {
	if v.explicit {
		return "?lang=" + v.loc.code
	}
	return ""
}

// page is what the templates show. Nothing in it is the raw identifier.
type page struct {
	view
	Title           string
	Masked          string
	What            string // what is left, with its preposition ("from the “newsletter” list")
	Signal          string // "", "honoured" or "failed"
	SignalName      string
	PreferencesHref string // relative to the page's own URL
	Choices         []choice
	Invalid         bool // the preference form came back without a valid choice
	Retry           []field
	// Languages are the switcher's entries; none on the pages that answer a
	// POST, whose URL a GET would not show again.
	Languages []langLink
}

type field struct{ Name, Value string }

// langLink is one entry of the language switcher.
type langLink struct {
	Code, Name, Href string
	Current          bool
}

// T returns a message of the page's language as HTML, its placeholders
// filled from name/value pairs (see catalog.html). Templates call it with a
// literal key, which TestTemplateKeys checks against locales/en.json.
func (p page) T(key string, args ...any) template.HTML { return p.loc.html(key, args...) }

// S returns a message without placeholders as plain text, for attributes.
func (p page) S(key string) string { return p.loc.text(key) }

// Titled returns the page with its <title>: the message, then the sender.
func (p page) Titled(key string) page {
	p.Title = p.loc.text(key)
	if p.brand.Name != "" {
		p.Title += " – " + p.brand.Name
	}
	return p
}

// Lang is the page's language, for <html lang>.
func (p page) Lang() string { return p.loc.code }

// Brand is the page's sender.
func (p page) Brand() *brandView { return p.brand }

func (h *handler) page(q *request, scopes []suppression.Scope, prefs string) page {
	loc := q.view.loc
	p := page{
		view:       q.view,
		Masked:     loc.mask(q.claims.Identifier),
		What:       loc.describeAll(scopes),
		Choices:    loc.choices(q.claims.Scopes),
		SignalName: q.signal,
	}
	if prefs != "" {
		p.PreferencesHref = prefs + q.view.langQuery()
	}
	if q.signal != "" {
		p.Signal = "failed"
		if q.honoured {
			p.Signal = "honoured"
		}
	}
	return p
}

// render writes a page with the headers of its brand and language.
func (h *handler) render(w http.ResponseWriter, status int, name string, p page) {
	if name != "done" && name != "unavailable" {
		for _, c := range catalogs {
			p.Languages = append(p.Languages, langLink{Code: c.code, Name: c.name, Href: "?lang=" + c.code, Current: c == p.loc})
		}
	}
	var b bytes.Buffer
	if err := pages.ExecuteTemplate(&b, name, p); err != nil {
		h.log.Error("unsubscribe page", "page", name, "err", err)
		setOutcome(w, http.StatusInternalServerError, name)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	setOutcome(w, status, name)
	hd := w.Header()
	hd.Set("Content-Security-Policy", p.brand.csp)
	hd.Set("Content-Type", "text/html; charset=utf-8")
	hd.Set("Content-Language", p.loc.code)
	hd.Add("Vary", "Accept-Language")
	hd.Set("Content-Length", strconv.Itoa(b.Len()))
	w.WriteHeader(status)
	w.Write(b.Bytes())
}

// choices are the preference page's options: each scope of the token, then
// everything.
func (c *catalog) choices(scopes []suppression.Scope) []choice {
	var cs []choice
	for _, s := range scopes {
		if s != suppression.ScopeGlobal {
			cs = append(cs, choice{Value: string(s), From: c.describe(s)})
		}
	}
	return append(cs, choice{Value: string(suppression.ScopeGlobal), Everything: true})
}
