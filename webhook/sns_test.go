package webhook

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/suppression"
)

const testTopic = "arn:aws:sns:us-east-1:123456789012:ses-feedback"

// testRSA holds the keys of the SNS tests, made once: 2048-bit keys are slow
// to generate under -race.
var testRSA struct {
	once       sync.Once
	key, other *rsa.PrivateKey
}

func rsaKeys(t *testing.T) (key, other *rsa.PrivateKey) {
	t.Helper()
	testRSA.once.Do(func() {
		var err error
		testRSA.key, err = rsa.GenerateKey(rand.Reader, 2048)
		if err == nil {
			testRSA.other, err = rsa.GenerateKey(rand.Reader, 2048)
		}
		if err != nil {
			panic(err)
		}
	})
	return testRSA.key, testRSA.other
}

// snsSide plays Amazon SNS: a TLS server with the signing certificate and
// the subscription confirmation URL, and the key that signs messages.
type snsSide struct {
	t                     *testing.T
	key, other            *rsa.PrivateKey
	srv                   *httptest.Server
	certURL               string
	certHits, confirmHits atomic.Int32
	confirmStatus         atomic.Int32
}

func newSNSSide(t *testing.T) *snsSide {
	t.Helper()
	s := &snsSide{t: t}
	s.key, s.other = rsaKeys(t)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "sns.us-east-1.amazonaws.com"},
		NotBefore:    testNow.Add(-365 * 24 * time.Hour),
		NotAfter:     testNow.Add(365 * 24 * time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &s.key.PublicKey, s.key)
	require.NoError(t, err)
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	s.confirmStatus.Store(http.StatusOK)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /SimpleNotificationService-test.pem", func(w http.ResponseWriter, _ *http.Request) {
		s.certHits.Add(1)
		w.Write(certPEM)
	})
	mux.HandleFunc("GET /confirm", func(w http.ResponseWriter, r *http.Request) {
		s.confirmHits.Add(1)
		w.WriteHeader(int(s.confirmStatus.Load()))
		w.Write([]byte("<ConfirmSubscriptionResponse/>"))
	})
	s.srv = httptest.NewTLSServer(mux)
	t.Cleanup(s.srv.Close)
	s.certURL = s.srv.URL + "/SimpleNotificationService-test.pem"
	return s
}

// env serves /hooks/sns trusting this side's TLS server, as the handler
// trusts sns.<region>.amazonaws.com in production.
func (s *snsSide) env(configure func(*Options)) *env {
	return newEnv(s.t, func(o *Options) {
		o.SNS = SNSOptions{
			TopicARNs:       []string{testTopic},
			CertHostPattern: `^127\.0\.0\.1$`,
			HTTPClient:      s.srv.Client(),
		}
		if configure != nil {
			configure(o)
		}
	})
}

// notification is an SNS Notification carrying an SES message.
func (s *snsSide) notification(message []byte) map[string]string {
	return map[string]string{
		"Type":             "Notification",
		"MessageId":        "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
		"TopicArn":         testTopic,
		"Message":          string(message),
		"Timestamp":        testNow.Add(-2 * time.Second).Format("2006-01-02T15:04:05.000Z"),
		"SignatureVersion": "1",
		"SigningCertURL":   s.certURL,
		"UnsubscribeURL":   "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=" + testTopic + ":c9135db0",
	}
}

// confirmation is a SubscriptionConfirmation or UnsubscribeConfirmation.
func (s *snsSide) confirmation(typ string) map[string]string {
	return map[string]string{
		"Type":             typ,
		"MessageId":        "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
		"Token":            "2336412f37fb687f5d51e6e241d09c805a5a57b30d712f794cc5f6a988666d92768dd60a747ba6f3beb71854e285d6ad02428b09ceece29417f1f02d609c582afbacc99c583a916b9981dd2728f4ae6fdb82efd087cc3b7849e05798d2d2785c03b0879594eeac82c01f235d0e717736",
		"TopicArn":         testTopic,
		"Message":          "You have chosen to subscribe to the topic " + testTopic + ".\nTo confirm the subscription, visit the SubscribeURL included in this message.",
		"SubscribeURL":     s.srv.URL + "/confirm?Action=ConfirmSubscription&TopicArn=" + testTopic + "&Token=2336412f37",
		"Timestamp":        testNow.Add(-2 * time.Second).Format("2006-01-02T15:04:05.000Z"),
		"SignatureVersion": "1",
		"SigningCertURL":   s.certURL,
	}
}

// sign signs a message as SNS does, building the string to sign from the
// AWS documentation rather than from the code under test, and returns the
// JSON body.
func (s *snsSide) sign(m map[string]string, key *rsa.PrivateKey) []byte {
	s.t.Helper()
	fields := []string{"Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"}
	if m["Type"] != "Notification" {
		fields = []string{"Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"}
	}
	var b strings.Builder
	for _, f := range fields {
		if v, ok := m[f]; ok {
			b.WriteString(f + "\n" + v + "\n")
		}
	}
	var digest []byte
	hash := crypto.SHA1
	if m["SignatureVersion"] == "2" {
		hash = crypto.SHA256
		d := sha256.Sum256([]byte(b.String()))
		digest = d[:]
	} else {
		d := sha1.Sum([]byte(b.String()))
		digest = d[:]
	}
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, hash, digest)
	require.NoError(s.t, err)
	m["Signature"] = base64.StdEncoding.EncodeToString(sig)
	body, err := json.Marshal(m)
	require.NoError(s.t, err)
	return body
}

func TestSNSNotifications(t *testing.T) {
	side := newSNSSide(t)
	bounceAt := time.Date(2026, 11, 28, 9, 58, 38, 237e6, time.UTC)
	for _, c := range []struct {
		name     string
		fixture  string
		change   func(map[string]string)
		want     []wantEvent
		outcome  string
		ignored  int
		provider func(*Options)
	}{
		{
			name: "permanent bounce, SignatureVersion 1: one hard bounce per recipient, normalised", fixture: "ses_bounce_permanent.json",
			want: []wantEvent{
				{id: "00000138111222aa-33322211-cccc-cccc-cccc-ddddaaaa068a-000000/0", typ: suppression.EventHardBounce, email: "jane.roe@example.org", at: bounceAt, msgID: "00000138111222aa-33322211-cccc-cccc-cccc-ddddaaaa0680-000000"},
				{id: "00000138111222aa-33322211-cccc-cccc-cccc-ddddaaaa068a-000000/1", typ: suppression.EventHardBounce, email: "richard.roe@example.net", at: bounceAt},
			},
			outcome: outcomeAccepted,
		},
		{
			name: "complaint, SignatureVersion 2, with a Subject", fixture: "ses_complaint.json",
			change: func(m map[string]string) {
				m["SignatureVersion"] = "2"
				m["Subject"] = "Amazon SES Email Event Notification"
			},
			want: []wantEvent{{id: "000001378603177f-18c07c78-fa81-4a58-9dd1-fedc3cb8f49a-000000/0", typ: suppression.EventComplaint,
				email: "complainer@example.org", at: time.Date(2026, 11, 28, 9, 57, 2, 0, time.UTC)}},
			outcome: outcomeAccepted,
		},
		{
			name: "event publishing record (eventType), with the scopes configured", fixture: "ses_event_bounce.json",
			provider: func(o *Options) { o.SNS.Scopes = []suppression.Scope{"*"} },
			want: []wantEvent{{id: "01000157c44f053b-61b59c11-9236-11e6-8f96-7be8aexample-000000/0", typ: suppression.EventHardBounce,
				email: "event.publishing@example.org", at: time.Date(2026, 11, 28, 9, 59, 2, 669e6, time.UTC), scope: []suppression.Scope{"*"}}},
			outcome: outcomeAccepted,
		},
		{name: "transient bounce is acknowledged and ignored", fixture: "ses_bounce_transient.json", outcome: outcomeIgnored, ignored: 1},
		{name: "not-spam feedback is no complaint", fixture: "ses_complaint_not_spam.json", outcome: outcomeIgnored, ignored: 1},
		{name: "delivery is acknowledged and ignored", fixture: "ses_delivery.json", outcome: outcomeIgnored, ignored: 1},
		{name: "a message that is not from SES is ignored", change: func(m map[string]string) { m["Message"] = "hello" }, outcome: outcomeIgnored, ignored: 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			side.t = t
			e := side.env(c.provider)
			msg := side.notification(fixtureOrEmpty(t, "sns", c.fixture))
			if c.change != nil {
				c.change(msg)
			}
			r := e.post("/hooks/sns", side.sign(msg, side.key), nil)
			require.Equal(t, http.StatusOK, r.status, "%v", r.body)
			require.Equal(t, len(c.want), r.count("published"))
			require.Equal(t, c.ignored, r.count("ignored"))
			requireEvents(t, ProviderSNS, e.pub.Events(), c.want)
			require.Equal(t, 1, e.requests(ProviderSNS, c.outcome))
			for _, w := range c.want {
				require.Positive(t, e.published(ProviderSNS, w.typ))
			}
			e.requireNoLeak(fixtureAddresses(t)...)
		})
	}
}

func fixtureOrEmpty(t *testing.T, dir, name string) []byte {
	if name == "" {
		return []byte("{}")
	}
	return fixture(t, dir+"/"+name)
}

// Every forged, foreign, stale or malformed message is refused before
// anything is published, and the certificate is fetched only once the
// cheap checks passed.
func TestSNSRefusals(t *testing.T) {
	side := newSNSSide(t)
	bounce := fixture(t, "sns/ses_bounce_permanent.json")
	for _, c := range []struct {
		name      string
		body      func() []byte
		status    int
		code      string
		outcome   string
		certFetch bool // whether the certificate may be fetched first
	}{
		{
			name: "tampered body: another recipient after signing",
			body: func() []byte {
				b := side.sign(side.notification(bounce), side.key)
				return []byte(strings.Replace(string(b), "richard.roe@example.net", "someone.else@example.net", 1))
			},
			status: http.StatusUnauthorized, code: "bad_signature", outcome: outcomeRejectedSignature, certFetch: true,
		},
		{
			name:   "signed with a key that is not the certificate's",
			body:   func() []byte { return side.sign(side.notification(bounce), side.other) },
			status: http.StatusUnauthorized, code: "bad_signature", outcome: outcomeRejectedSignature, certFetch: true,
		},
		{
			name: "unsigned (raw message delivery)",
			body: func() []byte {
				m := side.notification(bounce)
				delete(m, "SignatureVersion")
				b, _ := json.Marshal(m)
				return b
			},
			status: http.StatusUnauthorized, code: "unsigned", outcome: outcomeRejectedSignature,
		},
		{
			name: "unknown SignatureVersion",
			body: func() []byte {
				m := side.notification(bounce)
				b := side.sign(m, side.key)
				return []byte(strings.Replace(string(b), `"SignatureVersion":"1"`, `"SignatureVersion":"3"`, 1))
			},
			status: http.StatusUnauthorized, code: "bad_signature", outcome: outcomeRejectedSignature,
		},
		{
			name: "expired timestamp",
			body: func() []byte {
				m := side.notification(bounce)
				m["Timestamp"] = testNow.Add(-6 * time.Minute).Format(time.RFC3339Nano)
				return side.sign(m, side.key)
			},
			status: http.StatusUnauthorized, code: "stale", outcome: outcomeStale,
		},
		{
			name: "timestamp from the future",
			body: func() []byte {
				m := side.notification(bounce)
				m["Timestamp"] = testNow.Add(6 * time.Minute).Format(time.RFC3339Nano)
				return side.sign(m, side.key)
			},
			status: http.StatusUnauthorized, code: "stale", outcome: outcomeStale,
		},
		{
			name: "certificate URL on a foreign host",
			body: func() []byte {
				m := side.notification(bounce)
				m["SigningCertURL"] = strings.Replace(side.certURL, "127.0.0.1", "localhost", 1)
				return side.sign(m, side.key)
			},
			status: http.StatusForbidden, code: "cert_url_not_allowed", outcome: outcomeRejectedSignature,
		},
		{
			name: "certificate URL over plain http",
			body: func() []byte {
				m := side.notification(bounce)
				m["SigningCertURL"] = strings.Replace(side.certURL, "https://", "http://", 1)
				return side.sign(m, side.key)
			},
			status: http.StatusForbidden, code: "cert_url_not_allowed", outcome: outcomeRejectedSignature,
		},
		{
			name: "certificate URL that is not a .pem",
			body: func() []byte {
				m := side.notification(bounce)
				m["SigningCertURL"] = side.srv.URL + "/confirm"
				return side.sign(m, side.key)
			},
			status: http.StatusForbidden, code: "cert_url_not_allowed", outcome: outcomeRejectedSignature,
		},
		{
			name: "wrong TopicArn",
			body: func() []byte {
				m := side.notification(bounce)
				m["TopicArn"] = "arn:aws:sns:us-east-1:210987654321:someone-elses-topic"
				return side.sign(m, side.key)
			},
			status: http.StatusForbidden, code: "topic_not_allowed", outcome: outcomeRejectedSignature,
		},
		{
			name:   "not JSON",
			body:   func() []byte { return []byte("Type=Notification") },
			status: http.StatusBadRequest, code: "invalid_payload", outcome: outcomeInvalid,
		},
		{
			name: "not an SNS message type",
			body: func() []byte {
				m := side.notification(bounce)
				m["Type"] = "Bounce"
				return side.sign(m, side.key)
			},
			status: http.StatusBadRequest, code: "invalid_payload", outcome: outcomeInvalid,
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			side.t = t
			side.certHits.Store(0)
			e := side.env(nil)
			r := e.post("/hooks/sns", c.body(), nil)
			require.Equal(t, c.status, r.status, "%v", r.body)
			require.Equal(t, c.code, r.code())
			require.Empty(t, e.pub.Events(), "nothing is published")
			require.Equal(t, 1, e.requests(ProviderSNS, c.outcome))
			if !c.certFetch {
				require.Zero(t, side.certHits.Load(), "no certificate is fetched for a message refused on its face")
			}
			e.requireNoLeak(fixtureAddresses(t)...)
		})
	}
}

// A message received twice is refused the second time; after the
// tolerance it would be stale anyway.
func TestSNSReplay(t *testing.T) {
	side := newSNSSide(t)
	e := side.env(nil)
	body := side.sign(side.notification(fixture(t, "sns/ses_complaint.json")), side.key)
	require.Equal(t, http.StatusOK, e.post("/hooks/sns", body, nil).status)
	r := e.post("/hooks/sns", body, nil)
	require.Equal(t, http.StatusConflict, r.status)
	require.Equal(t, "replayed", r.code())
	require.Len(t, e.pub.Events(), 1, "published once")
	require.Equal(t, 1, e.requests(ProviderSNS, outcomeReplayed))
	e.advance(6 * time.Minute)
	r = e.post("/hooks/sns", body, nil)
	require.Equal(t, "stale", r.code())
	require.Len(t, e.pub.Events(), 1)
}

// SNS delivering the same SES notification again (a new message id and
// signature, the same feedback) publishes nothing new.
func TestSNSDuplicateDelivery(t *testing.T) {
	side := newSNSSide(t)
	e := side.env(nil)
	bounce := fixture(t, "sns/ses_bounce_permanent.json")
	require.Equal(t, 2, e.post("/hooks/sns", side.sign(side.notification(bounce), side.key), nil).count("published"))
	again := side.notification(bounce)
	again["MessageId"] = "f3b2a1c0-fdea-4c2c-8f9d-bdfb0c7bf324"
	again["SignatureVersion"] = "2"
	r := e.post("/hooks/sns", side.sign(again, side.key), nil)
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, 0, r.count("published"))
	require.Equal(t, 2, r.count("duplicates"))
	require.Len(t, e.pub.Events(), 2, "each recipient published once")
	require.Equal(t, 1, e.requests(ProviderSNS, outcomeDuplicate))
}

// Kafka not acknowledging is a 503 (SNS retries); the retry publishes what
// was left, and nothing twice.
func TestSNSPublishFailure(t *testing.T) {
	side := newSNSSide(t)
	e := side.env(nil)
	body := side.sign(side.notification(fixture(t, "sns/ses_bounce_permanent.json")), side.key)

	e.pub.failFromCall(1) // the first recipient is published, the second is not
	r := e.post("/hooks/sns", body, nil)
	require.Equal(t, http.StatusServiceUnavailable, r.status)
	require.Equal(t, "publish_failed", r.code())
	require.NotEmpty(t, r.header.Get("Retry-After"))
	require.Len(t, e.pub.Events(), 1)
	require.Equal(t, 1, e.requests(ProviderSNS, outcomePublishFailed))

	e.pub.failFromCall(-1)
	r = e.post("/hooks/sns", body, nil) // SNS's retry: the same signed message
	require.Equal(t, http.StatusOK, r.status, "a retry after a 503 is no replay: %v", r.body)
	require.Equal(t, 1, r.count("published"))
	require.Equal(t, 1, r.count("duplicates"))
	ids := []string{}
	for _, ev := range e.pub.Events() {
		ids = append(ids, ev.ID)
	}
	require.Equal(t, []string{
		"00000138111222aa-33322211-cccc-cccc-cccc-ddddaaaa068a-000000/0",
		"00000138111222aa-33322211-cccc-cccc-cccc-ddddaaaa068a-000000/1",
	}, ids)
}

func TestSNSSubscription(t *testing.T) {
	t.Run("confirmation is confirmed by visiting SubscribeURL", func(t *testing.T) {
		side := newSNSSide(t)
		e := side.env(nil)
		r := e.post("/hooks/sns", side.sign(side.confirmation("SubscriptionConfirmation"), side.key), nil)
		require.Equal(t, http.StatusOK, r.status, "%v", r.body)
		require.Equal(t, int32(1), side.confirmHits.Load())
		require.Equal(t, 1, e.requests(ProviderSNS, outcomeAccepted))
		require.Empty(t, e.pub.Events())
	})
	t.Run("SubscribeURL on a foreign host is not visited", func(t *testing.T) {
		side := newSNSSide(t)
		e := side.env(nil)
		m := side.confirmation("SubscriptionConfirmation")
		m["SubscribeURL"] = strings.Replace(m["SubscribeURL"], "127.0.0.1", "localhost", 1)
		r := e.post("/hooks/sns", side.sign(m, side.key), nil)
		require.Equal(t, http.StatusForbidden, r.status)
		require.Equal(t, "subscribe_url_not_allowed", r.code())
		require.Zero(t, side.confirmHits.Load())
	})
	t.Run("a forged confirmation visits nothing", func(t *testing.T) {
		side := newSNSSide(t)
		e := side.env(nil)
		r := e.post("/hooks/sns", side.sign(side.confirmation("SubscriptionConfirmation"), side.other), nil)
		require.Equal(t, http.StatusUnauthorized, r.status)
		require.Zero(t, side.confirmHits.Load())
	})
	t.Run("a failed confirmation is a 503, and its retry confirms", func(t *testing.T) {
		side := newSNSSide(t)
		e := side.env(nil)
		body := side.sign(side.confirmation("SubscriptionConfirmation"), side.key)
		side.confirmStatus.Store(http.StatusInternalServerError)
		r := e.post("/hooks/sns", body, nil)
		require.Equal(t, http.StatusServiceUnavailable, r.status)
		require.Equal(t, "unavailable", r.code())
		require.NotContains(t, e.logs.String(), "Token=", "the confirmation token is not logged")
		side.confirmStatus.Store(http.StatusOK)
		require.Equal(t, http.StatusOK, e.post("/hooks/sns", body, nil).status)
		require.Equal(t, int32(2), side.confirmHits.Load())
	})
	t.Run("unsubscribe confirmation is acknowledged, its URL not visited", func(t *testing.T) {
		side := newSNSSide(t)
		e := side.env(nil)
		r := e.post("/hooks/sns", side.sign(side.confirmation("UnsubscribeConfirmation"), side.key), nil)
		require.Equal(t, http.StatusOK, r.status)
		require.Zero(t, side.confirmHits.Load(), "visiting it would subscribe the endpoint again")
	})
}

func TestSNSCertificate(t *testing.T) {
	t.Run("fetched once and cached", func(t *testing.T) {
		side := newSNSSide(t)
		e := side.env(nil)
		for _, f := range []string{"ses_bounce_permanent.json", "ses_complaint.json", "ses_delivery.json"} {
			require.Equal(t, http.StatusOK, e.post("/hooks/sns", side.sign(side.notification(fixture(t, "sns/"+f)), side.key), nil).status)
		}
		require.Equal(t, int32(1), side.certHits.Load())
	})
	t.Run("missing certificate on an allowed host: 503, SNS retries", func(t *testing.T) {
		side := newSNSSide(t)
		e := side.env(nil)
		m := side.notification(fixture(t, "sns/ses_complaint.json"))
		m["SigningCertURL"] = side.srv.URL + "/missing.pem"
		r := e.post("/hooks/sns", side.sign(m, side.key), nil)
		require.Equal(t, http.StatusServiceUnavailable, r.status)
		require.Equal(t, "unavailable", r.code())
		require.Empty(t, e.pub.Events())
	})
}

// The default host pattern allows SNS's own hosts and nothing that merely
// looks like one.
func TestSNSDefaultHostPattern(t *testing.T) {
	p := newSNS(SNSOptions{TopicARNs: []string{testTopic}}, time.Now)
	for _, c := range []struct {
		url  string
		want bool
	}{
		{"https://sns.us-east-1.amazonaws.com/SimpleNotificationService-f3ecfb7224c7233fe7bb5f59f96de52f.pem", true},
		{"https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-abc.pem", true},
		{"https://sns.us-gov-west-1.amazonaws.com/SimpleNotificationService-abc.pem", true},
		{"http://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem", false},
		{"https://sns.us-east-1.amazonaws.com.evil.example/x.pem", false},
		{"https://evilsns.us-east-1.amazonaws.com/x.pem", false},
		{"https://sns.us-east-1.amazonaws.com@evil.example/x.pem", false},
		{"https://user@sns.us-east-1.amazonaws.com/x.pem", false},
		{"https://s3.amazonaws.com/sns/x.pem", false},
		{"https://evil.example/sns.us-east-1.amazonaws.com/x.pem", false},
		{"sns.us-east-1.amazonaws.com/x.pem", false},
	} {
		t.Run(c.url, func(t *testing.T) {
			require.Equal(t, c.want, p.allowedURL(c.url))
		})
	}
}

// stringToSign builds AWS's documented examples byte for byte.
func TestStringToSign(t *testing.T) {
	subject := "My subject"
	for _, c := range []struct {
		name string
		m    snsMessage
		want string
	}{
		{
			name: "Notification (AWS example)",
			m: snsMessage{Type: "Notification", Message: "My Test Message", MessageID: "4d4dc071-ddbf-465d-bba8-08f81c89da64", Subject: &subject,
				Timestamp: "2019-01-31T04:37:04.321Z", TopicArn: "arn:aws:sns:us-east-2:123456789012:s4-MySNSTopic-1G1WEFCOXTC0P"},
			want: "Message\nMy Test Message\nMessageId\n4d4dc071-ddbf-465d-bba8-08f81c89da64\nSubject\nMy subject\nTimestamp\n2019-01-31T04:37:04.321Z\n" +
				"TopicArn\narn:aws:sns:us-east-2:123456789012:s4-MySNSTopic-1G1WEFCOXTC0P\nType\nNotification\n",
		},
		{
			name: "Notification without a Subject",
			m:    snsMessage{Type: "Notification", Message: "m", MessageID: "id", Timestamp: "t", TopicArn: "arn"},
			want: "Message\nm\nMessageId\nid\nTimestamp\nt\nTopicArn\narn\nType\nNotification\n",
		},
		{
			name: "SubscriptionConfirmation (AWS example)",
			m: snsMessage{Type: "SubscriptionConfirmation", Message: "My Test Message", MessageID: "3d891288-136d-417f-bc05-901c108273ee",
				SubscribeURL: "https://sns.us-east-2.amazonaws.com/?Action=ConfirmSubscription&TopicArn=arn:aws:sns:us-east-2:123456789012:s4-MySNSTopic-1G1WEFCOXTC0P&Token=233...",
				Timestamp:    "2019-01-31T19:25:13.719Z", Token: "233...", TopicArn: "arn:aws:sns:us-east-2:123456789012:s4-MySNSTopic-1G1WEFCOXTC0P"},
			want: "Message\nMy Test Message\nMessageId\n3d891288-136d-417f-bc05-901c108273ee\n" +
				"SubscribeURL\nhttps://sns.us-east-2.amazonaws.com/?Action=ConfirmSubscription&TopicArn=arn:aws:sns:us-east-2:123456789012:s4-MySNSTopic-1G1WEFCOXTC0P&Token=233...\n" +
				"Timestamp\n2019-01-31T19:25:13.719Z\nToken\n233...\nTopicArn\narn:aws:sns:us-east-2:123456789012:s4-MySNSTopic-1G1WEFCOXTC0P\nType\nSubscriptionConfirmation\n",
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			require.Equal(t, c.want, string(stringToSign(&c.m)))
		})
	}
}
