package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
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
	// replicas; an error means it may not have been published.
	Publish(ctx context.Context, e suppression.Event) error
}

// PublishLog remembers which events were published, so that a webhook the
// provider retries publishes nothing twice. It must be safe for concurrent
// use; store/redisstore.PublishLog implements it on Redis, shared by
// every replica.
type PublishLog interface {
	// Published reports whether an event with this source and id was
	// recorded and has not expired.
	Published(ctx context.Context, source, id string) (bool, error)
	// RecordPublished records an event as published for ttl.
	RecordPublished(ctx context.Context, source, id string, ttl time.Duration) error
}

// Provider names: the last segment of the route (/hooks/<provider>), the
// event source (/hooks/<provider>) and the provider label of the metrics.
const (
	ProviderSNS      = "sns"      // Amazon SES notifications through Amazon SNS
	ProviderSendGrid = "sendgrid" // SendGrid Event Webhook
	ProviderMailgun  = "mailgun"  // Mailgun webhooks
	ProviderPostmark = "postmark" // Postmark webhooks
)

// Providers lists every provider, in documentation order.
var Providers = []string{ProviderSNS, ProviderSendGrid, ProviderMailgun, ProviderPostmark}

// Source is the CloudEvents source of the events published for a provider.
func Source(provider string) string { return "/hooks/" + provider }

// Defaults.
const (
	// DefaultTolerance is how old (or how far ahead) a signed timestamp may
	// be. Five minutes is what Stripe, Svix and the Standard Webhooks
	// specification use; none of the providers here documents one.
	DefaultTolerance = 5 * time.Minute
	// DefaultMaxBody bounds a request body: an SNS message is at most
	// 256 KiB, Mailgun and Postmark post one event per request.
	DefaultMaxBody = 1 << 20
	// DefaultSendGridMaxBody bounds a SendGrid batch. SendGrid posts "within
	// approximately 30 seconds or when the batch size reaches 768
	// kilobytes" (Event Webhook overview), so a batch can pass 768 KB by the
	// event that tipped it over; 4 MiB leaves room for that and more.
	DefaultSendGridMaxBody = 4 << 20
	// DefaultPostmarkMaxBody bounds a Postmark record. A bounce carries the
	// bounce message itself when "include bounce content" is on; the
	// credentials are checked before the body is read, so only Postmark can
	// send this much.
	DefaultPostmarkMaxBody = 10 << 20
	// DefaultPublishedTTL is how long a published event id is remembered:
	// longer than any provider retries (SendGrid for 24 hours, the longest
	// documented here).
	DefaultPublishedTTL = 72 * time.Hour
)

// Options configure the handler. The zero value plus a Publisher serves no
// provider (every path is 404); each provider is served once its
// credentials are set.
type Options struct {
	// Publisher publishes the events. Required.
	Publisher Publisher
	// PublishLog recognises events already published. Default: a bounded
	// in-memory log, which recognises a retry only when it reaches the same
	// process; give the Redis one when several replicas serve /hooks/.
	PublishLog PublishLog
	// PublishedTTL is how long the PublishLog remembers an event. Default
	// DefaultPublishedTTL.
	PublishedTTL time.Duration
	// PublishTimeout bounds one Publish call. The call is not cancelled when
	// the provider hangs up: the opt-out is still worth recording. Default
	// 10s.
	PublishTimeout time.Duration
	// RetryAfter is sent with a 503. Default 60s.
	RetryAfter time.Duration
	// Logger receives one line per request: provider, outcome and event
	// ids, never an address, a body or a secret. Default: discard.
	Logger *slog.Logger
	// Registerer registers the metrics. Default: a registry of the
	// handler's own, which nothing serves.
	Registerer prometheus.Registerer
	// Now is the clock of timestamp checks and event times. Default
	// time.Now.
	Now func() time.Time
	// ReplayCacheSize bounds the signatures and tokens remembered to refuse
	// replays, and MemoryLogSize the in-memory PublishLog. Default 100,000
	// each; the oldest go first.
	ReplayCacheSize, MemoryLogSize int

	SNS      SNSOptions
	SendGrid SendGridOptions
	Mailgun  MailgunOptions
	Postmark PostmarkOptions
}

// ProviderOptions are what every provider's events share.
type ProviderOptions struct {
	// Scopes of the events published. Default [email]: a bounce, a
	// complaint or an unsubscribe reported by a mail provider is about
	// email.
	Scopes []suppression.Scope
	// Namespace of the events published. Default suppression.DefaultNamespace.
	Namespace string
	// MaxBody bounds a request body; beyond it the answer is 413. Default
	// DefaultMaxBody (DefaultSendGridMaxBody for SendGrid,
	// DefaultPostmarkMaxBody for Postmark).
	MaxBody int64
}

// errNoPublisher is the wiring mistake NewHandler panics on.
var errNoPublisher = errors.New("Options.Publisher is required")

// fieldError names the option at fault, so that Config can name the
// environment variable instead.
type fieldError struct {
	field string
	msg   string
}

func (e *fieldError) Error() string { return e.field + ": " + e.msg }

func bad(field, format string, args ...any) error {
	return &fieldError{field: field, msg: fmt.Sprintf(format, args...)}
}

// validate checks the options; a provider with no credentials is valid (it
// is not served).
func (o *Options) validate() error {
	if o.Publisher == nil {
		return errNoPublisher
	}
	return o.validateConfig()
}

// validateConfig checks everything configuration sets.
func (o *Options) validateConfig() error {
	for _, d := range []struct {
		field string
		v     time.Duration
	}{{"PublishedTTL", o.PublishedTTL}, {"PublishTimeout", o.PublishTimeout}, {"RetryAfter", o.RetryAfter}} {
		if d.v < 0 {
			return bad(d.field, "must not be negative")
		}
	}
	if o.ReplayCacheSize < 0 || o.MemoryLogSize < 0 {
		return bad("ReplayCacheSize", "must not be negative")
	}
	for _, check := range []func() error{o.SNS.validate, o.SendGrid.validate, o.Mailgun.validate, o.Postmark.validate} {
		if err := check(); err != nil {
			return err
		}
	}
	return nil
}

func (p *ProviderOptions) validate(provider string) error {
	for i, s := range p.Scopes {
		if _, err := suppression.ParseScope(string(s)); err != nil {
			return bad(provider+".Scopes", "scope %d: %v", i, err)
		}
	}
	if len(p.Scopes) > suppression.MaxScopes {
		return bad(provider+".Scopes", "at most %d scopes", suppression.MaxScopes)
	}
	if p.Namespace != "" {
		if err := suppression.CheckName(p.Namespace); err != nil {
			return bad(provider+".Namespace", "%v", err)
		}
	}
	if p.MaxBody < 0 {
		return bad(provider+".MaxBody", "must not be negative")
	}
	return nil
}

func (p ProviderOptions) common(name string, defaultMaxBody int64) common {
	c := common{name: name, source: Source(name), scopes: slices.Clone(p.Scopes), namespace: p.Namespace, maxBody: p.MaxBody}
	if len(c.scopes) == 0 {
		c.scopes = []suppression.Scope{suppression.ChannelScope(suppression.ChannelEmail)}
	}
	if c.namespace == "" {
		c.namespace = suppression.DefaultNamespace
	}
	if c.maxBody <= 0 {
		c.maxBody = defaultMaxBody
	}
	return c
}

// common is what the handler knows of every served provider.
type common struct {
	name      string
	source    string
	scopes    []suppression.Scope
	namespace string
	maxBody   int64
}

// provider is one mail provider's scheme.
type provider interface {
	info() *common
	// authorize checks what the request carries outside its body, before
	// the body is read, so that a request refused on its headers costs no
	// more. rest is the path after /hooks/<provider>/.
	authorize(r *http.Request, rest string, now time.Time) error
	// parse authenticates the body and reads the opt-outs in it.
	parse(ctx context.Context, r *http.Request, body []byte, now time.Time) (*delivery, error)
}

// delivery is what one authenticated request brings.
type delivery struct {
	// replayKey identifies the signed request (its signature or token);
	// empty when the scheme has none. Until replayUntil, when the request
	// would be stale anyway, the same key is refused.
	replayKey   string
	replayUntil time.Time
	// confirm does what the request asks before it is acknowledged: SNS's
	// subscription confirmation.
	confirm func(ctx context.Context) error
	optOuts []optOut
	// ignored counts the provider's records that are not opt-outs, and
	// malformed those that could not be read (counted as ignored too).
	ignored, malformed int
	// note is logged with the outcome.
	note string
}

// optOut is one opt-out a provider reported, before it is an event.
type optOut struct {
	id        string // the provider's id, made per recipient
	typ       suppression.EventType
	email     string    // as the provider sent it
	at        time.Time // the provider's time of the event; zero: unknown
	messageID string
	scopes    []suppression.Scope // nil: the provider's
}

// handler serves /hooks/.
type handler struct {
	providers      map[string]provider
	pub            Publisher
	log            PublishLog
	publishedTTL   time.Duration
	publishTimeout time.Duration
	retryAfter     time.Duration
	logger         *slog.Logger
	now            func() time.Time
	replays        *ttlSet
	inflight       keyedMutex
	m              *metrics
}

// NewHandler returns the handler of the providers' webhooks. Mount it where
// the request path still starts with /hooks/:
//
//	mux.Handle("/hooks/", webhook.NewHandler(opts)) // no http.StripPrefix
//
// NewHandler panics if the options are invalid (Config.Options reports the
// same problems as errors): a wiring mistake, caught at start-up.
func NewHandler(opts Options) http.Handler {
	if err := opts.validate(); err != nil {
		panic("webhook.NewHandler: " + err.Error())
	}
	h := &handler{
		pub:            opts.Publisher,
		log:            opts.PublishLog,
		publishedTTL:   opts.PublishedTTL,
		publishTimeout: opts.PublishTimeout,
		retryAfter:     opts.RetryAfter,
		logger:         opts.Logger,
		now:            opts.Now,
		providers:      map[string]provider{},
	}
	if h.now == nil {
		h.now = time.Now
	}
	if h.logger == nil {
		h.logger = slog.New(slog.DiscardHandler)
	}
	h.logger = h.logger.With("component", "webhook")
	if h.publishedTTL <= 0 {
		h.publishedTTL = DefaultPublishedTTL
	}
	if h.publishTimeout <= 0 {
		h.publishTimeout = 10 * time.Second
	}
	if h.retryAfter <= 0 {
		h.retryAfter = time.Minute
	}
	size := func(n int) int {
		if n <= 0 {
			return 100_000
		}
		return n
	}
	h.replays = newTTLSet(size(opts.ReplayCacheSize), h.now)
	if h.log == nil {
		h.log = newMemoryLog(size(opts.MemoryLogSize), h.now)
	}
	reg := opts.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	h.m = newMetrics(reg)
	if p := newSNS(opts.SNS, h.now); p != nil {
		h.providers[ProviderSNS] = p
	}
	if p := newSendGrid(opts.SendGrid); p != nil {
		h.providers[ProviderSendGrid] = p
	}
	if p := newMailgun(opts.Mailgun); p != nil {
		h.providers[ProviderMailgun] = p
	}
	if p := newPostmark(opts.Postmark); p != nil {
		h.providers[ProviderPostmark] = p
	}
	h.logger.Info("webhooks served", "providers", opts.Served())
	return h
}

// Outcomes of a request, the outcome label of the requests metric.
const (
	outcomeAccepted          = "accepted"           // opt-outs published (or a subscription confirmed)
	outcomeIgnored           = "ignored"            // authentic, but nothing in it is an opt-out
	outcomeDuplicate         = "duplicate"          // authentic, every opt-out in it published before
	outcomeRejectedSignature = "rejected_signature" // unsigned, wrongly signed, unknown topic or certificate host, wrong credentials
	outcomeStale             = "stale"              // signed too long ago (or too far ahead)
	outcomeReplayed          = "replayed"           // a signature or token already seen
	outcomePublishFailed     = "publish_failed"     // Kafka did not acknowledge: 503, the provider retries
	outcomeUnavailable       = "unavailable"        // a certificate or a subscription confirmation could not be fetched: 503
	outcomeInvalid           = "invalid"            // not the provider's format
	outcomeTooLarge          = "too_large"          // body over the limit: 413
	outcomeNotFound          = "not_found"          // no such provider, or not configured
	outcomeMethod            = "method_not_allowed" // not a POST
	outcomeInternal          = "internal"           // a bug: 500, the log has the error
)

// refusal is a request turned away: the status, a stable code, a message
// safe to show (it never repeats a value from the request) and the outcome
// counted.
type refusal struct {
	status  int
	code    string
	outcome string
	message string
	cause   error // logged, never shown: it may be internal
	// challenge asks for basic authentication (WWW-Authenticate).
	challenge bool
}

func (e *refusal) Error() string {
	if e.cause != nil {
		return e.code + ": " + e.message + ": " + e.cause.Error()
	}
	return e.code + ": " + e.message
}

func (e *refusal) Unwrap() error { return e.cause }

// because records the error behind a refusal, for the log.
func (e *refusal) because(err error) *refusal {
	e.cause = err
	return e
}

func refuse(status int, outcome, code, format string, args ...any) *refusal {
	return &refusal{status: status, outcome: outcome, code: code, message: fmt.Sprintf(format, args...)}
}

func unsigned(format string, args ...any) *refusal {
	return refuse(http.StatusUnauthorized, outcomeRejectedSignature, "unsigned", format, args...)
}

func badSignature(format string, args ...any) *refusal {
	return refuse(http.StatusUnauthorized, outcomeRejectedSignature, "bad_signature", format, args...)
}

func invalid(format string, args ...any) *refusal {
	return refuse(http.StatusBadRequest, outcomeInvalid, "invalid_payload", format, args...)
}

func unavailable(format string, args ...any) *refusal {
	return refuse(http.StatusServiceUnavailable, outcomeUnavailable, "unavailable", format, args...)
}

// checkFresh refuses a signed time further than tolerance from now, either
// way: an old one may be a captured request replayed after the replay cache
// forgot it, and one ahead would stay in the cache's window too long.
func checkFresh(what string, signed, now time.Time, tolerance time.Duration) error {
	if d := now.Sub(signed); d > tolerance || d < -tolerance {
		return refuse(http.StatusUnauthorized, outcomeStale, "stale",
			"%s is more than %s from the server's time; refused as a possible replay", what, tolerance)
	}
	return nil
}

// result is how a request ended.
type result struct {
	status     int
	outcome    string
	code       string
	message    string
	published  int
	duplicates int
	ignored    int
	malformed  int
	eventIDs   []string
	note       string
	challenge  bool
	err        error // for the log line only
}

type okBody struct {
	Published  int    `json:"published"`
	Duplicates int    `json:"duplicates"`
	Ignored    int    `json:"ignored"`
	Note       string `json:"note,omitempty"`
}

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	name, rest := splitPath(r.URL.Path)
	label := name
	if !slices.Contains(Providers, name) {
		label = "unknown"
	}
	res := h.serve(w, r, h.providers[name], rest)
	h.finish(w, label, res, time.Since(start))
}

// splitPath reads /hooks/<provider>[/<rest>].
func splitPath(p string) (name, rest string) {
	p = strings.TrimPrefix(p, "/hooks/")
	name, rest, _ = strings.Cut(p, "/")
	return name, rest
}

func (h *handler) serve(w http.ResponseWriter, r *http.Request, p provider, rest string) result {
	if p == nil {
		return refused(refuse(http.StatusNotFound, outcomeNotFound, "not_found", "no webhook is served here; a provider is served once its credentials are configured"))
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return refused(refuse(http.StatusMethodNotAllowed, outcomeMethod, "method_not_allowed", "webhooks are POSTed"))
	}
	c := p.info()
	now := h.now()
	if err := p.authorize(r, rest, now); err != nil {
		return h.failed(err)
	}
	body, err := readBody(w, r, c.maxBody)
	if err != nil {
		return h.failed(err)
	}
	d, err := p.parse(r.Context(), r, body, now)
	if err != nil {
		return h.failed(err)
	}
	res := result{status: http.StatusOK, ignored: d.ignored + d.malformed, malformed: d.malformed, note: d.note}
	if d.replayKey != "" {
		key := c.name + "\x00" + d.replayKey
		if !h.replays.reserve(key, d.replayUntil) {
			return refused(refuse(http.StatusConflict, outcomeReplayed, "replayed",
				"this signed request was already received; a provider's retry after a 2xx is not needed"))
		}
		// Only a request that was acknowledged stays remembered: the
		// provider's retry of one answered 503 must get through.
		defer func() {
			if res.status != http.StatusOK {
				h.replays.release(key)
			}
		}()
	}
	if d.confirm != nil {
		if err := d.confirm(r.Context()); err != nil {
			res = h.failed(err)
			return res
		}
		res.outcome = outcomeAccepted
		return res
	}
	events := h.events(c, d.optOuts, now, &res)
	if err := h.publish(r.Context(), c, events, &res); err != nil {
		res.status, res.outcome, res.code = http.StatusServiceUnavailable, outcomePublishFailed, "publish_failed"
		res.message = fmt.Sprintf("Kafka did not acknowledge an event after %d were published; retry the same request, nothing is published twice", res.published)
		res.err = err
		return res
	}
	switch {
	case res.published > 0:
		res.outcome = outcomeAccepted
	case res.duplicates > 0:
		res.outcome = outcomeDuplicate
	default:
		res.outcome = outcomeIgnored
	}
	return res
}

// notBelow answers 404 for a path below a provider's route: only Postmark
// has one (its secret).
func notBelow(rest string) error {
	if rest != "" {
		return refuse(http.StatusNotFound, outcomeNotFound, "not_found", "no webhook is served here")
	}
	return nil
}

func refused(e *refusal) result {
	return result{status: e.status, outcome: e.outcome, code: e.code, message: e.message, challenge: e.challenge}
}

// failed turns an error into the answer: a refusal says what failed,
// anything else is internal and says nothing.
func (h *handler) failed(err error) result {
	var e *refusal
	if errors.As(err, &e) {
		res := refused(e)
		res.err = err
		return res
	}
	return result{status: http.StatusInternalServerError, outcome: outcomeInternal, code: "internal", message: "internal error", err: err}
}

// readBody reads the whole body, which the signature covers, up to limit.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	tooLarge := refuse(http.StatusRequestEntityTooLarge, outcomeTooLarge, "too_large", "the body is over the %d bytes accepted", limit)
	if r.ContentLength > limit {
		return nil, tooLarge
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var maxErr *http.MaxBytesError
		if errors.As(err, &maxErr) {
			return nil, tooLarge
		}
		return nil, invalid("the body could not be read")
	}
	return b, nil
}

// finish writes the answer, counts it and logs it: one line per request.
func (h *handler) finish(w http.ResponseWriter, provider string, res result, took time.Duration) {
	h.m.requests.WithLabelValues(provider, res.outcome).Inc()
	h.m.duration.WithLabelValues(provider).Observe(took.Seconds())
	attrs := []any{"provider", provider, "outcome", res.outcome, "status", res.status, "took", took}
	if res.published+res.duplicates+res.ignored > 0 {
		attrs = append(attrs, "published", res.published, "duplicates", res.duplicates, "ignored", res.ignored)
	}
	if res.malformed > 0 {
		attrs = append(attrs, "malformed", res.malformed)
	}
	if len(res.eventIDs) > 0 {
		ids := res.eventIDs
		if len(ids) > 20 {
			ids = append(ids[:20:20], fmt.Sprintf("... %d more", len(res.eventIDs)-20))
		}
		attrs = append(attrs, "event_ids", ids)
	}
	if res.note != "" {
		attrs = append(attrs, "note", res.note)
	}
	if res.status == http.StatusOK {
		h.logger.Info("webhook", attrs...)
		writeJSON(w, res.status, okBody{Published: res.published, Duplicates: res.duplicates, Ignored: res.ignored, Note: res.note})
		return
	}
	attrs = append(attrs, "code", res.code)
	if res.err != nil {
		// Errors here are ours (refusal messages, wrapped publisher errors);
		// none quotes a value from the request.
		attrs = append(attrs, "err", res.err)
	}
	level := slog.LevelWarn
	if res.status == http.StatusNotFound || res.status == http.StatusMethodNotAllowed {
		level = slog.LevelInfo
	}
	if res.status == http.StatusInternalServerError {
		level = slog.LevelError
	}
	h.logger.Log(context.Background(), level, "webhook refused", attrs...)
	if res.status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", strconv.Itoa(max(1, int(h.retryAfter/time.Second))))
	}
	if res.challenge {
		w.Header().Set("WWW-Authenticate", `Basic realm="suppressd webhooks", charset="UTF-8"`)
	}
	writeJSON(w, res.status, errorBody{Error: errorDetail{Code: res.code, Message: res.message}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}
