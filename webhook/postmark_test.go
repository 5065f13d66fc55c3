package webhook

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/suppression"
)

const (
	testPostmarkUser     = "postmark-hooks"
	testPostmarkPassword = "correct-horse-battery-staple"
	testPostmarkPath     = "n8Zq3v-Yt0pWm4Rk_2Lx9sBd7Hc1Fg5Je6Ua.Vo~"
)

func postmarkEnv(t *testing.T, configure func(*PostmarkOptions)) *env {
	return newEnv(t, func(o *Options) {
		o.Postmark = PostmarkOptions{Username: testPostmarkUser, Password: testPostmarkPassword, PathSecret: testPostmarkPath}
		if configure != nil {
			configure(&o.Postmark)
		}
	})
}

// postmarkPost posts as Postmark does with
// https://user:password@host/hooks/postmark/<secret> as the webhook URL.
func postmarkPost(e *env, path, user, password string, body []byte) reply {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.srv.URL+path, bytes.NewReader(body))
	require.NoError(e.t, err)
	req.Header.Set("Content-Type", "application/json")
	if user != "" || password != "" {
		req.SetBasicAuth(user, password)
	}
	return e.do(req)
}

func TestPostmarkRecords(t *testing.T) {
	scID := func(e *env) string { return e.pub.Events()[0].ID }
	for _, c := range []struct {
		fixture string
		want    []wantEvent
		outcome string
	}{
		{"bounce_hard.json", []wantEvent{{id: "4323372036854775807", typ: suppression.EventHardBounce, email: "john.doe@example.org",
			at: time.Date(2026, 11, 28, 9, 58, 54, 907025900, time.UTC), msgID: "883953f4-6105-42a2-a16a-77a8eac79483"}}, outcomeAccepted},
		{"spam_complaint.json", []wantEvent{{id: "42", typ: suppression.EventComplaint, email: "complainer@example.org",
			at: time.Date(2026, 11, 28, 9, 54, 23, 339643400, time.UTC)}}, outcomeAccepted},
		{"subscription_change.json", []wantEvent{{typ: suppression.EventUnsubscribe, email: "unsubscriber@example.org",
			at: time.Date(2026, 11, 28, 9, 53, 34, 416071000, time.UTC)}}, outcomeAccepted},
		{"bounce_soft.json", nil, outcomeIgnored},
		{"subscription_reactivation.json", nil, outcomeIgnored},
		{"delivery.json", nil, outcomeIgnored},
	} {
		t.Run(c.fixture, func(t *testing.T) {
			e := postmarkEnv(t, nil)
			r := postmarkPost(e, "/hooks/postmark/"+testPostmarkPath, testPostmarkUser, testPostmarkPassword, fixture(t, "postmark/"+c.fixture))
			require.Equal(t, http.StatusOK, r.status, "%v", r.body)
			if len(c.want) == 1 && c.want[0].id == "" {
				// A SubscriptionChange has no id of its own: the one made
				// for it is keyed, deterministic, and holds no address.
				id := scID(e)
				require.True(t, strings.HasPrefix(id, "subscription-change-"), id)
				require.NotContains(t, strings.ToLower(id), "unsubscriber")
				c.want[0].id = id
			}
			requireEvents(t, ProviderPostmark, e.pub.Events(), c.want)
			require.Equal(t, 1, e.requests(ProviderPostmark, c.outcome))
			e.requireNoLeak(append(fixtureAddresses(t), testPostmarkPassword, testPostmarkPath)...)
		})
	}
}

// SubscriptionChange's made id is the same on a retry and differs between
// recipients changed at the same instant.
func TestPostmarkSubscriptionChangeID(t *testing.T) {
	p := newPostmark(PostmarkOptions{PathSecret: testPostmarkPath})
	rec := postmarkRecord{ServerID: "123456", MessageStream: "broadcast", ChangedAt: "2026-11-28T09:53:34.416071Z",
		Recipient: "a@example.org", Origin: "Recipient", SuppressionReason: "ManualSuppression"}
	other := rec
	other.Recipient = "b@example.org"
	same := rec
	same.Recipient = " A@Example.org"
	require.Equal(t, p.subscriptionChangeID(&rec), p.subscriptionChangeID(&same), "the address is normalised first")
	require.NotEqual(t, p.subscriptionChangeID(&rec), p.subscriptionChangeID(&other))
	rotated := newPostmark(PostmarkOptions{PathSecret: strings.Repeat("x", 40)})
	require.NotEqual(t, p.subscriptionChangeID(&rec), rotated.subscriptionChangeID(&rec), "keyed by the secrets: no one else can compute it")
}

// Every mapping of SubscriptionChange's SuppressionReason.
func TestPostmarkSuppressionReasons(t *testing.T) {
	for reason, want := range map[string]suppression.EventType{
		"HardBounce":        suppression.EventHardBounce,
		"SpamComplaint":     suppression.EventComplaint,
		"ManualSuppression": suppression.EventUnsubscribe,
	} {
		t.Run(reason, func(t *testing.T) {
			e := postmarkEnv(t, nil)
			body := bytes.Replace(fixture(t, "postmark/subscription_change.json"), []byte(`"ManualSuppression"`), []byte(`"`+reason+`"`), 1)
			require.Equal(t, http.StatusOK, postmarkPost(e, "/hooks/postmark/"+testPostmarkPath, testPostmarkUser, testPostmarkPassword, body).status)
			require.Len(t, e.pub.Events(), 1)
			require.Equal(t, want, e.pub.Events()[0].Type)
		})
	}
}

func TestPostmarkAuthentication(t *testing.T) {
	body := fixture(t, "postmark/bounce_hard.json")
	for _, c := range []struct {
		name               string
		configure          func(*PostmarkOptions)
		path, user, passwd string
		status             int
		code               string
		outcome            string
	}{
		{name: "both: right", path: "/hooks/postmark/" + testPostmarkPath, user: testPostmarkUser, passwd: testPostmarkPassword,
			status: http.StatusOK, outcome: outcomeAccepted},
		{name: "both: wrong password", path: "/hooks/postmark/" + testPostmarkPath, user: testPostmarkUser, passwd: "correct-horse-battery-stapler",
			status: http.StatusUnauthorized, code: "bad_credentials", outcome: outcomeRejectedSignature},
		{name: "both: wrong user", path: "/hooks/postmark/" + testPostmarkPath, user: "postmark", passwd: testPostmarkPassword,
			status: http.StatusUnauthorized, code: "bad_credentials", outcome: outcomeRejectedSignature},
		{name: "both: no credentials", path: "/hooks/postmark/" + testPostmarkPath,
			status: http.StatusUnauthorized, code: "unsigned", outcome: outcomeRejectedSignature},
		{name: "both: no path secret", path: "/hooks/postmark", user: testPostmarkUser, passwd: testPostmarkPassword,
			status: http.StatusUnauthorized, code: "bad_credentials", outcome: outcomeRejectedSignature},
		{name: "both: wrong path secret", path: "/hooks/postmark/" + strings.ToUpper(testPostmarkPath), user: testPostmarkUser, passwd: testPostmarkPassword,
			status: http.StatusUnauthorized, code: "bad_credentials", outcome: outcomeRejectedSignature},
		{name: "path only: right", configure: func(o *PostmarkOptions) { o.Username, o.Password = "", "" },
			path: "/hooks/postmark/" + testPostmarkPath, status: http.StatusOK, outcome: outcomeAccepted},
		{name: "path only: wrong", configure: func(o *PostmarkOptions) { o.Username, o.Password = "", "" },
			path: "/hooks/postmark/" + testPostmarkPath[1:], status: http.StatusUnauthorized, code: "bad_credentials", outcome: outcomeRejectedSignature},
		{name: "basic only: right", configure: func(o *PostmarkOptions) { o.PathSecret = "" },
			path: "/hooks/postmark", user: testPostmarkUser, passwd: testPostmarkPassword, status: http.StatusOK, outcome: outcomeAccepted},
		{name: "basic only: a path is not served", configure: func(o *PostmarkOptions) { o.PathSecret = "" },
			path: "/hooks/postmark/anything", user: testPostmarkUser, passwd: testPostmarkPassword, status: http.StatusNotFound, code: "not_found", outcome: outcomeNotFound},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := postmarkEnv(t, c.configure)
			r := postmarkPost(e, c.path, c.user, c.passwd, body)
			require.Equal(t, c.status, r.status, "%v", r.body)
			require.Equal(t, c.code, r.code())
			require.Equal(t, 1, e.requests(ProviderPostmark, c.outcome))
			if c.status != http.StatusOK {
				require.Empty(t, e.pub.Events(), "nothing is published")
			}
			if c.status == http.StatusUnauthorized && c.configure == nil {
				require.Contains(t, r.header.Get("WWW-Authenticate"), "Basic", "basic authentication is asked for")
			}
			if c.status == http.StatusUnauthorized && c.configure != nil {
				require.Empty(t, r.header.Get("WWW-Authenticate"), "no basic authentication to ask for")
			}
			e.requireNoLeak(append(fixtureAddresses(t), testPostmarkPassword, testPostmarkPath)...)
		})
	}
}

// Postmark's scheme has no nonce: a repeated record is a duplicate,
// acknowledged and published once.
func TestPostmarkDuplicatesAndFailure(t *testing.T) {
	e := postmarkEnv(t, nil)
	body := fixture(t, "postmark/spam_complaint.json")
	post := func() reply {
		return postmarkPost(e, "/hooks/postmark/"+testPostmarkPath, testPostmarkUser, testPostmarkPassword, body)
	}
	e.pub.failFromCall(0)
	r := post()
	require.Equal(t, http.StatusServiceUnavailable, r.status)
	require.Equal(t, "publish_failed", r.code())
	e.pub.failFromCall(-1)
	require.Equal(t, 1, post().count("published"))
	r = post()
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, 1, r.count("duplicates"))
	require.Len(t, e.pub.Events(), 1)
	require.Equal(t, 1, e.requests(ProviderPostmark, outcomeDuplicate))
}

// Credentials are checked before the body is read, so an unauthenticated
// sender cannot make the server read the large limit Postmark gets.
func TestPostmarkAuthenticatesBeforeReading(t *testing.T) {
	e := postmarkEnv(t, func(o *PostmarkOptions) { o.MaxBody = 64 })
	big := bytes.Repeat([]byte("x"), 1024)
	r := postmarkPost(e, "/hooks/postmark/"+testPostmarkPath, testPostmarkUser, "wrong-password-wrong", big)
	require.Equal(t, http.StatusUnauthorized, r.status)
	r = postmarkPost(e, "/hooks/postmark/"+testPostmarkPath, testPostmarkUser, testPostmarkPassword, big)
	require.Equal(t, http.StatusRequestEntityTooLarge, r.status)
}
