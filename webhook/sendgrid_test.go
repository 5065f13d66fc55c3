package webhook

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/suppression"
)

// sendGridSide plays SendGrid: the key pair of a Signed Event Webhook.
type sendGridSide struct {
	t      *testing.T
	key    *ecdsa.PrivateKey
	public string // as the SendGrid console shows it
}

func newSendGridSide(t *testing.T) *sendGridSide {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	require.NoError(t, err)
	return &sendGridSide{t: t, key: key, public: base64.StdEncoding.EncodeToString(der)}
}

// headers signs timestamp + body with key.
func (s *sendGridSide) headers(key *ecdsa.PrivateKey, at time.Time, body []byte) http.Header {
	s.t.Helper()
	ts := strconv.FormatInt(at.Unix(), 10)
	d := sha256.Sum256(append([]byte(ts), body...))
	sig, err := ecdsa.SignASN1(rand.Reader, key, d[:])
	require.NoError(s.t, err)
	return http.Header{SendGridSignatureHeader: {base64.StdEncoding.EncodeToString(sig)}, SendGridTimestampHeader: {ts}}
}

func (s *sendGridSide) env(t *testing.T, configure func(*Options)) *env {
	return newEnv(t, func(o *Options) {
		o.SendGrid = SendGridOptions{PublicKeys: []string{s.public}, GroupTopics: map[int64]string{42: "newsletter"}}
		if configure != nil {
			configure(o)
		}
	})
}

// The documented batch: hard bounces, spam reports and unsubscribes are
// published, in order; blocked bounces, deliveries, drops, opens, clicks
// and resubscribes are acknowledged and dropped.
func TestSendGridBatch(t *testing.T) {
	side := newSendGridSide(t)
	e := side.env(t, nil)
	body := fixture(t, "sendgrid/batch.json")
	r := e.post("/hooks/sendgrid", body, side.headers(side.key, testNow, body))
	require.Equal(t, http.StatusOK, r.status, "%v", r.body)
	require.Equal(t, 5, r.count("published"))
	require.Equal(t, 8, r.count("ignored"))
	at := func(sec int64) time.Time { return time.Unix(sec, 0) }
	requireEvents(t, ProviderSendGrid, e.pub.Events(), []wantEvent{
		{id: "Ym91bmNlLTEyMzQ1Njc4OQ", typ: suppression.EventHardBounce, email: "hard.bounce@example.org", at: at(1795859882), msgID: "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0"},
		{id: "c3BhbXJlcG9ydC0xMjM0NTY3ODk", typ: suppression.EventComplaint, email: "spam.report@example.org", at: at(1795859888)},
		{id: "dW5zdWJzY3JpYmUtMTIzNDU2Nzg5", typ: suppression.EventUnsubscribe, email: "unsubscribe@example.org", at: at(1795859889)},
		{id: "Z3JvdXAtdW5zdWJzY3JpYmUtNDI", typ: suppression.EventUnsubscribe, email: "group.unsubscribe@example.org", at: at(1795859890),
			scope: []suppression.Scope{"topic:newsletter"}},
		{id: "Z3JvdXAtdW5zdWJzY3JpYmUtNw", typ: suppression.EventUnsubscribe, email: "other.group@example.org", at: at(1795859891)},
	})
	require.Equal(t, 1, e.requests(ProviderSendGrid, outcomeAccepted))
	require.Equal(t, 1, e.published(ProviderSendGrid, suppression.EventHardBounce))
	require.Equal(t, 3, e.published(ProviderSendGrid, suppression.EventUnsubscribe))
	e.requireNoLeak(fixtureAddresses(t)...)
}

func TestSendGridRefusals(t *testing.T) {
	side := newSendGridSide(t)
	stranger := newSendGridSide(t)
	body := fixture(t, "sendgrid/batch.json")
	for _, c := range []struct {
		name    string
		body    []byte
		header  func() http.Header
		status  int
		code    string
		outcome string
	}{
		{
			name:   "tampered body",
			body:   bytes.Replace(body, []byte("spam.report@example.org"), []byte("someone.else@example.org"), 1),
			header: func() http.Header { return side.headers(side.key, testNow, body) },
			status: http.StatusUnauthorized, code: "bad_signature", outcome: outcomeRejectedSignature,
		},
		{
			name:   "signed with another key",
			header: func() http.Header { return stranger.headers(stranger.key, testNow, body) },
			status: http.StatusUnauthorized, code: "bad_signature", outcome: outcomeRejectedSignature,
		},
		{
			name: "timestamp header changed after signing",
			header: func() http.Header {
				h := side.headers(side.key, testNow, body)
				h.Set(SendGridTimestampHeader, strconv.FormatInt(testNow.Unix()+1, 10))
				return h
			},
			status: http.StatusUnauthorized, code: "bad_signature", outcome: outcomeRejectedSignature,
		},
		{
			name:   "unsigned",
			header: func() http.Header { return http.Header{} },
			status: http.StatusUnauthorized, code: "unsigned", outcome: outcomeRejectedSignature,
		},
		{
			name: "signature without timestamp",
			header: func() http.Header {
				h := side.headers(side.key, testNow, body)
				h.Del(SendGridTimestampHeader)
				return h
			},
			status: http.StatusUnauthorized, code: "unsigned", outcome: outcomeRejectedSignature,
		},
		{
			name:   "expired timestamp",
			header: func() http.Header { return side.headers(side.key, testNow.Add(-5*time.Minute-time.Second), body) },
			status: http.StatusUnauthorized, code: "stale", outcome: outcomeStale,
		},
		{
			name: "signature not base64",
			header: func() http.Header {
				h := side.headers(side.key, testNow, body)
				h.Set(SendGridSignatureHeader, "not base64!")
				return h
			},
			status: http.StatusUnauthorized, code: "bad_signature", outcome: outcomeRejectedSignature,
		},
		{
			name:   "signed, but not a batch",
			body:   []byte(`{"event":"bounce"}`),
			header: func() http.Header { return side.headers(side.key, testNow, []byte(`{"event":"bounce"}`)) },
			status: http.StatusBadRequest, code: "invalid_payload", outcome: outcomeInvalid,
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			side.t, stranger.t = t, t
			e := side.env(t, nil)
			b := c.body
			if b == nil {
				b = body
			}
			r := e.post("/hooks/sendgrid", b, c.header())
			require.Equal(t, c.status, r.status, "%v", r.body)
			require.Equal(t, c.code, r.code())
			require.Empty(t, e.pub.Events(), "nothing is published")
			require.Equal(t, 1, e.requests(ProviderSendGrid, c.outcome))
			e.requireNoLeak(append(fixtureAddresses(t), side.public)...)
		})
	}
}

func TestSendGridReplayAndDuplicates(t *testing.T) {
	side := newSendGridSide(t)
	e := side.env(t, nil)
	body := fixture(t, "sendgrid/batch.json")
	h := side.headers(side.key, testNow, body)
	require.Equal(t, 5, e.post("/hooks/sendgrid", body, h).count("published"))

	r := e.post("/hooks/sendgrid", body, h)
	require.Equal(t, http.StatusConflict, r.status, "the same signed request again is a replay")
	require.Equal(t, "replayed", r.code())

	// SendGrid's retry of the batch, signed anew a minute later: a
	// duplicate delivery, acknowledged and published once.
	e.advance(time.Minute)
	r = e.post("/hooks/sendgrid", body, side.headers(side.key, testNow.Add(time.Minute), body))
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, 0, r.count("published"))
	require.Equal(t, 5, r.count("duplicates"))
	require.Len(t, e.pub.Events(), 5)
	require.Equal(t, 1, e.requests(ProviderSendGrid, outcomeReplayed))
	require.Equal(t, 1, e.requests(ProviderSendGrid, outcomeDuplicate))
}

// A batch is acknowledged only once all of it is published: a failure in
// its middle is a 503, and the retry publishes the rest, nothing twice.
func TestSendGridPublishFailure(t *testing.T) {
	side := newSendGridSide(t)
	e := side.env(t, nil)
	body := fixture(t, "sendgrid/batch.json")
	e.pub.failFromCall(2)
	r := e.post("/hooks/sendgrid", body, side.headers(side.key, testNow, body))
	require.Equal(t, http.StatusServiceUnavailable, r.status)
	require.Equal(t, "publish_failed", r.code())
	require.Len(t, e.pub.Events(), 2)

	e.pub.failFromCall(-1)
	e.advance(30 * time.Second)
	r = e.post("/hooks/sendgrid", body, side.headers(side.key, testNow.Add(30*time.Second), body))
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, 3, r.count("published"))
	require.Equal(t, 2, r.count("duplicates"))
	seen := map[string]int{}
	for _, ev := range e.pub.Events() {
		seen[ev.ID]++
	}
	require.Len(t, seen, 5)
	for id, n := range seen {
		require.Equal(t, 1, n, "%s published once", id)
	}
}

func TestSendGridBodyLimit(t *testing.T) {
	side := newSendGridSide(t)
	e := side.env(t, func(o *Options) { o.SendGrid.MaxBody = 1024 })
	body := append([]byte("["), bytes.Repeat([]byte(`{"event":"open","email":"a@example.org"},`), 40)...)
	body = append(body[:len(body)-1], ']')
	r := e.post("/hooks/sendgrid", body, side.headers(side.key, testNow, body))
	require.Equal(t, http.StatusRequestEntityTooLarge, r.status)
	require.Equal(t, "too_large", r.code())
	require.Equal(t, 1, e.requests(ProviderSendGrid, outcomeTooLarge))
}

// A key rotation: the old and the new key both verify while both are
// configured.
func TestSendGridSeveralKeys(t *testing.T) {
	old, current := newSendGridSide(t), newSendGridSide(t)
	e := newEnv(t, func(o *Options) { o.SendGrid.PublicKeys = []string{old.public, current.public} })
	for _, s := range []*sendGridSide{old, current} {
		body := []byte(`[{"email":"x@example.org","timestamp":1795859882,"event":"spamreport","sg_event_id":"` + s.public[40:60] + `"}]`)
		require.Equal(t, http.StatusOK, e.post("/hooks/sendgrid", body, s.headers(s.key, testNow, body)).status)
	}
	require.Len(t, e.pub.Events(), 2)
}
