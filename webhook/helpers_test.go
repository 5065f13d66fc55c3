package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/suppression"
)

// testNow is the server's clock in every test.
var testNow = time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)

// fakePublisher keeps what it was given. With failFrom >= 0, every Publish
// from that call on (0-based) publishes nothing and says so, like a Kafka
// writer whose acks did not come.
type fakePublisher struct {
	mu       sync.Mutex
	events   []suppression.Event
	calls    int
	failFrom int
}

var errNoAcks = errors.New("kafka: no acknowledgement from the in-sync replicas")

func (p *fakePublisher) Publish(_ context.Context, e suppression.Event) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls++
	if p.failFrom >= 0 && p.calls > p.failFrom {
		return errNoAcks
	}
	p.events = append(p.events, e)
	return nil
}

func (p *fakePublisher) Events() []suppression.Event {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]suppression.Event(nil), p.events...)
}

// failFromCall makes Publish fail from its n-th next call on; -1 heals it.
func (p *fakePublisher) failFromCall(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n < 0 {
		p.failFrom = -1
		return
	}
	p.failFrom = p.calls + n
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

// env is a handler mounted as the api role mounts it, behind a real
// listener.
type env struct {
	t    *testing.T
	srv  *httptest.Server
	pub  *fakePublisher
	logs *lockedBuffer
	reg  *prometheus.Registry
	now  time.Time
	mu   sync.Mutex
}

func newEnv(t *testing.T, configure func(*Options)) *env {
	t.Helper()
	e := &env{t: t, pub: &fakePublisher{failFrom: -1}, logs: &lockedBuffer{}, reg: prometheus.NewRegistry(), now: testNow}
	opts := Options{
		Publisher:  e.pub,
		Logger:     slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Registerer: e.reg,
		Now:        e.clock,
	}
	if configure != nil {
		configure(&opts)
	}
	mux := http.NewServeMux()
	mux.Handle("/hooks/", NewHandler(opts))
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)
	return e
}

func (e *env) clock() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.now
}

func (e *env) advance(d time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.now = e.now.Add(d)
}

// reply is an answer as a provider sees it.
type reply struct {
	status int
	header http.Header
	body   map[string]any
}

// code is the error code of a refusal.
func (r reply) code() string {
	if e, ok := r.body["error"].(map[string]any); ok {
		s, _ := e["code"].(string)
		return s
	}
	return ""
}

func (r reply) count(field string) int {
	n, _ := r.body[field].(float64)
	return int(n)
}

func (e *env) post(path string, body []byte, header http.Header) reply {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.srv.URL+path, bytes.NewReader(body))
	require.NoError(e.t, err)
	req.Header.Set("Content-Type", "application/json")
	for k, vs := range header {
		req.Header[k] = vs
	}
	return e.do(req)
}

func (e *env) do(req *http.Request) reply {
	e.t.Helper()
	resp, err := http.DefaultClient.Do(req)
	require.NoError(e.t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(e.t, err)
	r := reply{status: resp.StatusCode, header: resp.Header}
	require.Equal(e.t, "application/json", resp.Header.Get("Content-Type"), "every answer is JSON: %s", raw)
	require.NoError(e.t, json.Unmarshal(raw, &r.body), "%s", raw)
	return r
}

// requests reads suppressd_webhook_requests_total for a provider and outcome.
func (e *env) requests(provider, outcome string) int {
	return counter(e.t, e.reg, "suppressd_webhook_requests_total", map[string]string{"provider": provider, "outcome": outcome})
}

// published reads suppressd_webhook_events_published_total.
func (e *env) published(provider string, typ suppression.EventType) int {
	return counter(e.t, e.reg, "suppressd_webhook_events_published_total", map[string]string{"provider": provider, "type": string(typ)})
}

// counter reads one series of a counter; a series never touched reads 0.
func counter(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) int {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := len(m.GetLabel()) == len(labels)
			for _, l := range m.GetLabel() {
				match = match && l.GetValue() == labels[l.GetName()]
			}
			if match {
				return int(m.GetCounter().GetValue())
			}
		}
	}
	return 0
}

// requireNoLeak fails if a log line or a metric label holds any of the
// given strings (addresses, secrets), in any case.
func (e *env) requireNoLeak(secrets ...string) {
	e.t.Helper()
	logs := strings.ToLower(e.logs.String())
	var labels strings.Builder
	mfs, err := e.reg.Gather()
	require.NoError(e.t, err)
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				labels.WriteString(strings.ToLower(l.GetValue()) + "\n")
			}
		}
	}
	require.NotContains(e.t, labels.String(), "@", "a metric label holds an address")
	for _, s := range secrets {
		s = strings.ToLower(strings.TrimSpace(s))
		require.NotContains(e.t, logs, s, "the logs hold a value they must not")
		require.NotContains(e.t, labels.String(), s, "a metric label holds a value it must not")
	}
}

// fixture reads a file of testdata/.
func fixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	return b
}

// fixtureAddresses lists every address in testdata, for requireNoLeak.
func fixtureAddresses(t *testing.T) []string {
	t.Helper()
	var out []string
	dirs, err := os.ReadDir("testdata")
	require.NoError(t, err)
	for _, dir := range dirs {
		files, err := os.ReadDir(filepath.Join("testdata", dir.Name()))
		require.NoError(t, err)
		for _, f := range files {
			for _, word := range strings.FieldsFunc(string(fixture(t, filepath.Join(dir.Name(), f.Name()))), func(r rune) bool {
				return strings.ContainsRune(" \"<>,:[]{}\n\t", r)
			}) {
				if strings.Contains(word, "@") && strings.Contains(word, ".") {
					out = append(out, word)
				}
			}
		}
	}
	require.NotEmpty(t, out)
	return out
}

// wantEvent is what a test expects of a published event.
type wantEvent struct {
	id    string
	typ   suppression.EventType
	email string // normalised
	at    time.Time
	scope []suppression.Scope
	msgID string
}

// requireEvents checks the events published, in order.
func requireEvents(t *testing.T, provider string, got []suppression.Event, want []wantEvent) {
	t.Helper()
	require.Len(t, got, len(want), "events published")
	for i, w := range want {
		g := got[i]
		require.Equal(t, w.id, g.ID, "event %d id", i)
		require.Equal(t, w.typ, g.Type, "event %d type", i)
		require.Equal(t, Source(provider), g.Source, "event %d source", i)
		require.Equal(t, suppression.OriginSystem, g.Origin, "event %d origin", i)
		require.Equal(t, suppression.DefaultNamespace, g.Namespace, "event %d namespace", i)
		require.Equal(t, []suppression.Identifier{{Type: suppression.IDEmail, Value: w.email}}, g.Identifiers, "event %d identifier", i)
		require.WithinDuration(t, w.at, g.OccurredAt, time.Millisecond, "event %d time", i)
		require.Equal(t, time.UTC, g.OccurredAt.Location(), "event %d time zone", i)
		scope := w.scope
		if scope == nil {
			scope = []suppression.Scope{"email"}
		}
		require.Equal(t, scope, g.Scopes, "event %d scopes", i)
		require.Equal(t, w.typ.ImpliedReason(), g.Reason, "event %d reason", i)
		if w.msgID != "" {
			require.Equal(t, w.msgID, g.Context.MessageID, "event %d message id", i)
		}
		ev := g
		require.NoError(t, ev.Normalize(testNow.Add(time.Hour)), "event %d is valid", i)
	}
}
