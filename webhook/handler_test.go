package webhook

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Nothing is served until its credentials are set, and what is not served
// is 404, never an unauthenticated endpoint.
func TestRoutes(t *testing.T) {
	side := newSendGridSide(t)
	body := fixture(t, "sendgrid/batch.json")
	for _, c := range []struct {
		name     string
		opts     func(*Options)
		method   string
		path     string
		status   int
		provider string
		outcome  string
	}{
		{"zero options: SendGrid not served", nil, http.MethodPost, "/hooks/sendgrid", http.StatusNotFound, ProviderSendGrid, outcomeNotFound},
		{"zero options: SNS not served", nil, http.MethodPost, "/hooks/sns", http.StatusNotFound, ProviderSNS, outcomeNotFound},
		{"zero options: Mailgun not served", nil, http.MethodPost, "/hooks/mailgun", http.StatusNotFound, ProviderMailgun, outcomeNotFound},
		{"zero options: Postmark not served", nil, http.MethodPost, "/hooks/postmark", http.StatusNotFound, ProviderPostmark, outcomeNotFound},
		{"unknown provider", nil, http.MethodPost, "/hooks/mandrill", http.StatusNotFound, "unknown", outcomeNotFound},
		{"the prefix alone", nil, http.MethodPost, "/hooks/", http.StatusNotFound, "unknown", outcomeNotFound},
		{"only Mailgun configured: SendGrid still 404", func(o *Options) { o.Mailgun.SigningKeys = []string{testMailgunKey} },
			http.MethodPost, "/hooks/sendgrid", http.StatusNotFound, ProviderSendGrid, outcomeNotFound},
		{"a path below a provider's route", func(o *Options) { o.SendGrid.PublicKeys = []string{side.public} },
			http.MethodPost, "/hooks/sendgrid/extra", http.StatusNotFound, ProviderSendGrid, outcomeNotFound},
		{"a GET", func(o *Options) { o.SendGrid.PublicKeys = []string{side.public} },
			http.MethodGet, "/hooks/sendgrid", http.StatusMethodNotAllowed, ProviderSendGrid, outcomeMethod},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, c.opts)
			req, err := http.NewRequest(c.method, e.srv.URL+c.path, nil)
			require.NoError(t, err)
			for k, v := range side.headers(side.key, testNow, body) {
				req.Header[k] = v
			}
			r := e.do(req)
			require.Equal(t, c.status, r.status)
			require.Equal(t, 1, e.requests(c.provider, c.outcome))
			if c.status == http.StatusMethodNotAllowed {
				require.Equal(t, http.MethodPost, r.header.Get("Allow"))
			}
			require.Empty(t, e.pub.Events())
		})
	}
}

func TestNewHandlerPanicsOnWiringMistakes(t *testing.T) {
	require.PanicsWithValue(t, "webhook.NewHandler: Options.Publisher is required", func() { NewHandler(Options{}) })
	require.Panics(t, func() {
		NewHandler(Options{Publisher: &fakePublisher{}, SendGrid: SendGridOptions{PublicKeys: []string{"not a key"}}})
	})
}

// fakeLog is a PublishLog that says what it was asked.
type fakeLog struct {
	mu       sync.Mutex
	seen     map[string]bool
	failRead bool
	ttls     []time.Duration
}

func (l *fakeLog) Published(_ context.Context, source, id string) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failRead {
		return false, errors.New("redis: connection refused")
	}
	return l.seen[source+" "+id], nil
}

func (l *fakeLog) RecordPublished(_ context.Context, source, id string, ttl time.Duration) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seen[source+" "+id] = true
	l.ttls = append(l.ttls, ttl)
	return nil
}

func TestPublishLog(t *testing.T) {
	mailgunEvent := fixture(t, "mailgun/complained.json")
	const id = "-Agny091SquKnsrW2NEKUA/1795859925.123456"
	t.Run("an event the log holds is a duplicate, not published", func(t *testing.T) {
		log := &fakeLog{seen: map[string]bool{"/hooks/mailgun " + id: true}}
		e := newEnv(t, func(o *Options) { o.Mailgun.SigningKeys = []string{testMailgunKey}; o.PublishLog = log })
		r := e.post("/hooks/mailgun", mailgunBody(t, testMailgunKey, testNow, "token-log-0123456789012345678901234567890123456789", mailgunEvent), nil)
		require.Equal(t, http.StatusOK, r.status)
		require.Equal(t, 1, r.count("duplicates"))
		require.Empty(t, e.pub.Events())
	})
	t.Run("a published event is recorded for the configured time", func(t *testing.T) {
		log := &fakeLog{seen: map[string]bool{}}
		e := newEnv(t, func(o *Options) {
			o.Mailgun.SigningKeys = []string{testMailgunKey}
			o.PublishLog = log
			o.PublishedTTL = 96 * time.Hour
		})
		require.Equal(t, http.StatusOK, e.post("/hooks/mailgun", mailgunBody(t, testMailgunKey, testNow, "token-log-1123456789012345678901234567890123456789", mailgunEvent), nil).status)
		require.True(t, log.seen["/hooks/mailgun "+id])
		require.Equal(t, []time.Duration{96 * time.Hour}, log.ttls)
	})
	t.Run("an unavailable log does not hold back the opt-out", func(t *testing.T) {
		log := &fakeLog{seen: map[string]bool{}, failRead: true}
		e := newEnv(t, func(o *Options) { o.Mailgun.SigningKeys = []string{testMailgunKey}; o.PublishLog = log })
		r := e.post("/hooks/mailgun", mailgunBody(t, testMailgunKey, testNow, "token-log-2123456789012345678901234567890123456789", mailgunEvent), nil)
		require.Equal(t, http.StatusOK, r.status)
		require.Len(t, e.pub.Events(), 1)
	})
}
