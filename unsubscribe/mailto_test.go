package unsubscribe

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/schemas"
	"github.com/suppressd/suppressd/suppression"
)

// TestVerifySubject: the subject of the mail a client sends for the
// mailto: alternative gives back the token's claims however the client or
// the mail system dressed it; anything else is refused without quoting it.
func TestVerifySubject(t *testing.T) {
	kr := testRing(t, "k1", testKey("k1", "a"))
	tok := mint(t, kr, newsletterClaims(), testNow)
	b64 := func(s string) string { return "=?UTF-8?B?" + base64.StdEncoding.EncodeToString([]byte(s)) + "?=" }
	for _, subject := range []string{
		"unsubscribe " + tok,
		MailtoSubject(tok),
		"Re: unsubscribe " + tok,
		"AW: Fwd: unsubscribe " + tok + " please",
		"unsubscribe\r\n " + tok, // folded
		"unsubscribe%20" + tok,   // a client that left the URI's escape
		b64("unsubscribe " + tok),
		"unsubscribe k2.AAAAAAAAAAAAAAAAAAAAAAAA " + tok, // a look-alike first
		"<" + tok + ">",
	} {
		t.Run(subject[:min(len(subject), 24)], func(t *testing.T) {
			c, got, err := kr.VerifySubject(subject, testNow)
			require.NoError(t, err)
			require.Equal(t, tok, got)
			require.Equal(t, testAddress, c.Identifier.Value)
			require.Equal(t, []suppression.Scope{"topic:newsletter"}, c.Scopes)
		})
	}

	other := mint(t, testRing(t, "k1", testKey("k1", "b")), newsletterClaims(), testNow)
	mid := len(tok) / 2
	tampered := tok[:mid] + map[bool]string{true: "B", false: "A"}[tok[mid] == 'A'] + tok[mid+1:]
	for _, tc := range []struct {
		name, subject string
		now           time.Time
		want          error
	}{
		{"no token", "unsubscribe", testNow, ErrMalformed},
		{"empty", "", testNow, ErrMalformed},
		{"a human's words", "Please take alice.example@example.org off your list", testNow, ErrMalformed},
		{"forged", "unsubscribe " + other, testNow, ErrForged},
		{"tampered", "unsubscribe " + tampered, testNow, ErrForged},
		{"expired", "unsubscribe " + tok, testNow.Add(DefaultTTL), ErrExpired},
		{"unknown key", "unsubscribe k9" + strings.TrimPrefix(tok, "k1"), testNow, ErrUnknownKey},
		{"huge", strings.Repeat("x ", 5000) + tok, testNow, ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, got, err := kr.VerifySubject(tc.subject, tc.now)
			require.ErrorIs(t, err, tc.want)
			require.Empty(t, got)
			require.Zero(t, c)
			require.NotContains(t, err.Error(), "alice")
			require.NotContains(t, err.Error(), tok[3:20], "the error does not quote the subject")
		})
	}
}

// TestMailEventIsAccepted: the event an inbound-mail processor publishes for
// a verified mail passes the event schemas (POST /v1/events and the
// consumer accept it), unsubscribes from every scope of the token, and has
// the same id for the same token, so processing a mail twice publishes once.
func TestMailEventIsAccepted(t *testing.T) {
	kr := testRing(t, "k1", testKey("k1", "a"))
	c := newsletterClaims()
	c.Scopes = append(c.Scopes, "email")
	tok := mint(t, kr, c, testNow)
	claims, tok2, err := kr.VerifySubject(MailtoSubject(tok), testNow)
	require.NoError(t, err)
	now := time.Now().UTC().Truncate(time.Second)
	e := MailEvent(claims, tok2, now)
	require.Equal(t, MailEvent(claims, tok2, now.Add(time.Minute)).ID, e.ID, "one id per token")
	require.Equal(t, MailSource, e.Source)

	raw, err := schemas.Encode(e)
	require.NoError(t, err)
	v, err := schemas.New()
	require.NoError(t, err)
	d, err := v.Decode(raw, now, suppression.Normalizer{})
	require.NoError(t, err)
	require.Equal(t, suppression.EventUnsubscribe, d.Event.Type)
	require.Equal(t, "acme", d.Event.Namespace)
	require.ElementsMatch(t, []suppression.Scope{"topic:newsletter", "email"}, d.Event.Scopes)
	require.Equal(t, suppression.OriginRecipient, d.Event.Origin)
	require.Equal(t, "c-2026-11", d.Event.Context.CampaignID)
}
