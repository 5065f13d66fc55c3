package unsubscribe

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/suppression"
)

func TestHeaders(t *testing.T) {
	const tok = "k1.AbC-_9"
	for _, tc := range []struct {
		name, base, mailto, want string
	}{
		{"https, no mailto", "https://mail.example.org", "",
			"<https://mail.example.org/u/k1.AbC-_9>"},
		{"trailing slash and path prefix", "https://example.org/suppressd/", "",
			"<https://example.org/suppressd/u/k1.AbC-_9>"},
		{"with mailto", "https://mail.example.org", "unsubscribe@example.org",
			"<https://mail.example.org/u/k1.AbC-_9>, <mailto:unsubscribe@example.org?subject=unsubscribe%20k1.AbC-_9>"},
		{"mailto: prefix accepted", "https://mail.example.org", "mailto:unsubscribe@example.org",
			"<https://mail.example.org/u/k1.AbC-_9>, <mailto:unsubscribe@example.org?subject=unsubscribe%20k1.AbC-_9>"},
		{"dev on 127.0.0.1", "http://127.0.0.1:8080", "", "<http://127.0.0.1:8080/u/k1.AbC-_9>"},
		{"dev on localhost", "http://localhost:8080", "", "<http://localhost:8080/u/k1.AbC-_9>"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lu, lup, err := Headers(tc.base, tok, tc.mailto)
			require.NoError(t, err)
			require.Equal(t, tc.want, lu)
			require.Equal(t, "List-Unsubscribe=One-Click", lup)
			require.Equal(t, 1, strings.Count(lu, "<http"), "exactly one http(s) URI (RFC 8058)")
		})
	}
}

func TestHeadersRefuse(t *testing.T) {
	for _, tc := range []struct {
		name, base, token, mailto string
	}{
		{"plain http", "http://mail.example.org", "k1.AAAA", ""},
		{"http on a look-alike host", "http://localhost.example.org", "k1.AAAA", ""},
		{"other scheme", "ftp://mail.example.org", "k1.AAAA", ""},
		{"no scheme", "mail.example.org", "k1.AAAA", ""},
		{"query", "https://mail.example.org/?a=b", "k1.AAAA", ""},
		{"user info", "https://u:p@mail.example.org", "k1.AAAA", ""},
		{"empty token", "https://mail.example.org", "", ""},
		{"token with a slash", "https://mail.example.org", "k1.AA/AA", ""},
		{"token with a header break", "https://mail.example.org", "k1.AA>\r\nBcc: x", ""},
		{"mailto with display name", "https://mail.example.org", "k1.AAAA", "Unsub <u@example.org>"},
		{"mailto with a query", "https://mail.example.org", "k1.AAAA", "u@example.org?body=x"},
		{"mailto not an address", "https://mail.example.org", "k1.AAAA", "unsubscribe"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lu, lup, err := Headers(tc.base, tc.token, tc.mailto)
			require.Error(t, err)
			require.Empty(t, lu)
			require.Empty(t, lup)
		})
	}
}

func TestHeadersWithMintedToken(t *testing.T) {
	kr := testRing(t, "k1", testKey("k1", "a"))
	tok := mint(t, kr, newsletterClaims(), testNow)
	lu, _, err := Headers("https://mail.example.org", tok, "unsubscribe@example.org")
	require.NoError(t, err)
	require.Contains(t, lu, "/u/"+tok+">")
	require.NotContains(t, strings.ToLower(lu), "alice")
}

func TestMask(t *testing.T) {
	for _, tc := range []struct {
		id   suppression.Identifier
		want string
	}{
		{suppression.Identifier{Type: suppression.IDEmail, Value: "alice@example.org"}, "a***e@example.org"},
		{suppression.Identifier{Type: suppression.IDEmail, Value: " Alice.Example@Example.org "}, "A***e@Example.org"},
		{suppression.Identifier{Type: suppression.IDEmail, Value: "al@example.org"}, "**@example.org"},
		{suppression.Identifier{Type: suppression.IDEmail, Value: "a@example.org"}, "*@example.org"},
		{suppression.Identifier{Type: suppression.IDEmail, Value: "émilie@example.fr"}, "é***e@example.fr"},
		{suppression.Identifier{Type: suppression.IDPhone, Value: "+1 (415) 555-0189"}, "phone number ending 89"},
		{suppression.Identifier{Type: suppression.IDPhone, Value: "12"}, "your phone number"},
		{suppression.Identifier{Type: suppression.IDMAID, Value: "6D92078A-8246-4BA4-AE5B-76104861E7DC"}, "device ending e7dc"},
		{suppression.Identifier{Type: suppression.IDUserID, Value: "cust-42"}, "your account"},
		{suppression.Identifier{Type: suppression.IDEmailSHA256, Value: strings.Repeat("ab", 32)}, "your address"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			require.Equal(t, tc.want, Mask(tc.id))
		})
	}
}
