package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/suppression"
)

const (
	testMailgunKey  = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0"
	otherMailgunKey = "key-0123456789abcdef0123456789abcdef"
)

// mailgunBody wraps event-data in a webhook body signed with key, as
// Mailgun posts it. token must be new for every delivery.
func mailgunBody(t *testing.T, key string, at time.Time, token string, eventData []byte) []byte {
	t.Helper()
	ts := strconv.FormatInt(at.Unix(), 10)
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte(ts + token))
	body, err := json.Marshal(map[string]any{
		"signature":  map[string]string{"timestamp": ts, "token": token, "signature": hex.EncodeToString(m.Sum(nil))},
		"event-data": json.RawMessage(eventData),
	})
	require.NoError(t, err)
	return body
}

func mailgunEnv(t *testing.T) *env {
	return newEnv(t, func(o *Options) { o.Mailgun.SigningKeys = []string{testMailgunKey} })
}

// unixMicro is how the event timestamps of the fixtures read.
func unixMicro(sec int64, micro int64) time.Time { return time.Unix(sec, micro*1000) }

func TestMailgunEvents(t *testing.T) {
	for _, c := range []struct {
		fixture string
		want    []wantEvent
		outcome string
	}{
		{"failed_permanent.json", []wantEvent{{id: "G9Bn5sl1TC6nu79C8C0bwg/1795859922.389832", typ: suppression.EventHardBounce,
			email: "bounced.address@example.org", at: unixMicro(1795859922, 389832), msgID: "20261128095842.1.A3E4A47A0F0B3B2A@mg.example.com"}}, outcomeAccepted},
		{"complained.json", []wantEvent{{id: "-Agny091SquKnsrW2NEKUA/1795859925.123456", typ: suppression.EventComplaint,
			email: "complainer@example.org", at: unixMicro(1795859925, 123456)}}, outcomeAccepted},
		{"unsubscribed.json", []wantEvent{{id: "Ase7i2zsRYeDXztHGENqRA/1795859926.654321", typ: suppression.EventUnsubscribe,
			email: "leaver@example.org", at: unixMicro(1795859926, 654321)}}, outcomeAccepted},
		{"failed_temporary.json", nil, outcomeIgnored},
		// A send dropped because the address unsubscribed earlier is no
		// bounce: a bounce would stop transactional mail too.
		{"failed_suppress_unsubscribe.json", nil, outcomeIgnored},
		{"delivered.json", nil, outcomeIgnored},
	} {
		t.Run(c.fixture, func(t *testing.T) {
			e := mailgunEnv(t)
			body := mailgunBody(t, testMailgunKey, testNow.Add(-time.Second), "token-"+c.fixture+"-0123456789012345678901234567890", fixture(t, "mailgun/"+c.fixture))
			r := e.post("/hooks/mailgun", body, nil)
			require.Equal(t, http.StatusOK, r.status, "%v", r.body)
			requireEvents(t, ProviderMailgun, e.pub.Events(), c.want)
			require.Equal(t, 1, e.requests(ProviderMailgun, c.outcome))
			e.requireNoLeak(append(fixtureAddresses(t), testMailgunKey)...)
		})
	}
}

func TestMailgunRefusals(t *testing.T) {
	event := fixture(t, "mailgun/failed_permanent.json")
	signed := func(change func(sig map[string]any)) []byte {
		var w map[string]any
		require.NoError(t, json.Unmarshal(mailgunBody(t, testMailgunKey, testNow, "e0b5477167110d68991efc6b9f89f0a11066af27834600e123", event), &w))
		change(w["signature"].(map[string]any))
		b, err := json.Marshal(w)
		require.NoError(t, err)
		return b
	}
	for _, c := range []struct {
		name    string
		body    []byte
		status  int
		code    string
		outcome string
	}{
		{"signed with another key", mailgunBody(t, otherMailgunKey, testNow, "e0b5477167110d68991efc6b9f89f0a11066af27834600e124", event),
			http.StatusUnauthorized, "bad_signature", outcomeRejectedSignature},
		{"token changed after signing", signed(func(s map[string]any) { s["token"] = "e0b5477167110d68991efc6b9f89f0a11066af27834600e999" }),
			http.StatusUnauthorized, "bad_signature", outcomeRejectedSignature},
		{"timestamp changed after signing", signed(func(s map[string]any) { s["timestamp"] = strconv.FormatInt(testNow.Unix()-1, 10) }),
			http.StatusUnauthorized, "bad_signature", outcomeRejectedSignature},
		{"signature not hex", signed(func(s map[string]any) { s["signature"] = "zz" }),
			http.StatusUnauthorized, "bad_signature", outcomeRejectedSignature},
		{"unsigned", signed(func(s map[string]any) { delete(s, "signature") }),
			http.StatusUnauthorized, "unsigned", outcomeRejectedSignature},
		{"expired timestamp", mailgunBody(t, testMailgunKey, testNow.Add(-10*time.Minute), "e0b5477167110d68991efc6b9f89f0a11066af27834600e125", event),
			http.StatusUnauthorized, "stale", outcomeStale},
		{"legacy form-encoded webhook", []byte("timestamp=1&token=x&signature=y&event=bounced"),
			http.StatusBadRequest, "invalid_payload", outcomeInvalid},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := mailgunEnv(t)
			r := e.post("/hooks/mailgun", c.body, nil)
			require.Equal(t, c.status, r.status, "%v", r.body)
			require.Equal(t, c.code, r.code())
			require.Empty(t, e.pub.Events(), "nothing is published")
			require.Equal(t, 1, e.requests(ProviderMailgun, c.outcome))
			e.requireNoLeak(append(fixtureAddresses(t), testMailgunKey)...)
		})
	}
}

// A subaccount's webhook verifies with the parent account's key through
// parent-signature.
func TestMailgunParentSignature(t *testing.T) {
	e := mailgunEnv(t)
	var w map[string]any
	require.NoError(t, json.Unmarshal(mailgunBody(t, otherMailgunKey, testNow, "parent-token-0123456789012345678901234567890123", fixture(t, "mailgun/complained.json")), &w))
	sig := w["signature"].(map[string]any)
	m := hmac.New(sha256.New, []byte(testMailgunKey))
	m.Write([]byte(sig["timestamp"].(string) + sig["token"].(string)))
	sig["parent-signature"] = hex.EncodeToString(m.Sum(nil))
	body, err := json.Marshal(w)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, e.post("/hooks/mailgun", body, nil).status)
	require.Len(t, e.pub.Events(), 1)
}

func TestMailgunReplayAndDuplicates(t *testing.T) {
	e := mailgunEnv(t)
	event := fixture(t, "mailgun/unsubscribed.json")
	body := mailgunBody(t, testMailgunKey, testNow, "first-token-0123456789012345678901234567890123456", event)
	require.Equal(t, 1, e.post("/hooks/mailgun", body, nil).count("published"))

	r := e.post("/hooks/mailgun", body, nil)
	require.Equal(t, http.StatusConflict, r.status, "a token is single-use")
	require.Equal(t, "replayed", r.code())

	// Mailgun delivering the same event again, with a new token.
	r = e.post("/hooks/mailgun", mailgunBody(t, testMailgunKey, testNow, "second-token-012345678901234567890123456789012345", event), nil)
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, 1, r.count("duplicates"))
	require.Len(t, e.pub.Events(), 1, "published once")
}

func TestMailgunPublishFailure(t *testing.T) {
	e := mailgunEnv(t)
	body := mailgunBody(t, testMailgunKey, testNow, "retry-token-0123456789012345678901234567890123456", fixture(t, "mailgun/complained.json"))
	e.pub.failFromCall(0)
	r := e.post("/hooks/mailgun", body, nil)
	require.Equal(t, http.StatusServiceUnavailable, r.status)
	require.Equal(t, "publish_failed", r.code())
	require.Empty(t, e.pub.Events())
	require.Equal(t, 1, e.requests(ProviderMailgun, outcomePublishFailed))

	e.pub.failFromCall(-1)
	require.Equal(t, http.StatusOK, e.post("/hooks/mailgun", body, nil).status, "Mailgun's retry of the same request")
	require.Len(t, e.pub.Events(), 1)
}
