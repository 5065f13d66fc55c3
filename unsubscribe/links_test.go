package unsubscribe

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/suppression"
)

func testMinter(t testing.TB, kr *Keyring, mailto string) *Minter {
	t.Helper()
	m, err := NewMinter(MinterOptions{Keyring: kr, BaseURL: "https://mail.example.org/sd", Mailto: mailto,
		TTL: 60 * 24 * time.Hour, Normalizer: suppression.Normalizer{DefaultRegion: "US"}})
	require.NoError(t, err)
	return m
}

func emailID(v string) suppression.Identifier {
	return suppression.Identifier{Type: suppression.IDEmail, Value: v}
}

// TestMinterLinks: what a sender gets for a recipient is a pair of headers
// whose links carry a token the handler's keyring opens into the claims
// asked for, the shared ones filling in what the recipient leaves out.
func TestMinterLinks(t *testing.T) {
	kr := testRing(t, "k1", testKey("k1", "a"))
	m := testMinter(t, kr, "unsubscribe@example.org")
	shared := Claims{Namespace: "acme", Scopes: []suppression.Scope{"topic:newsletter"}, CampaignID: "c-1", ListID: "l-1"}
	for _, tc := range []struct {
		name   string
		shared Claims
		c      Claims
		want   Claims
	}{
		{"shared claims fill in", shared, Claims{Identifier: emailID(testAddress)},
			Claims{Namespace: "acme", Identifier: emailID(testAddress), Scopes: []suppression.Scope{"topic:newsletter"}, CampaignID: "c-1", ListID: "l-1"}},
		{"the recipient's own win", shared, Claims{Identifier: emailID(testAddress), Namespace: "brand-b", Scopes: []suppression.Scope{"*"}, CampaignID: "c-2"},
			Claims{Namespace: "brand-b", Identifier: emailID(testAddress), Scopes: []suppression.Scope{"*"}, CampaignID: "c-2", ListID: "l-1"}},
		{"an address without scopes: email", Claims{}, Claims{Identifier: emailID(testAddress)},
			Claims{Namespace: suppression.DefaultNamespace, Identifier: emailID(testAddress), Scopes: []suppression.Scope{"email"}}},
		{"a phone without scopes: sms", Claims{}, Claims{Identifier: suppression.Identifier{Type: suppression.IDPhone, Value: "(415) 555-0100"}},
			Claims{Namespace: suppression.DefaultNamespace, Identifier: suppression.Identifier{Type: suppression.IDPhone, Value: "(415) 555-0100"}, Scopes: []suppression.Scope{"sms"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := m.Links(tc.shared, tc.c, testNow)
			require.NoError(t, err)
			require.Equal(t, "<"+l.URL+">, <"+l.Mailto+">", l.ListUnsubscribe)
			require.Equal(t, "List-Unsubscribe=One-Click", l.ListUnsubscribePost)
			require.Equal(t, "https://mail.example.org/sd/u/"+l.Token, l.URL)
			require.Equal(t, 1, strings.Count(l.ListUnsubscribe, "<https://"), "exactly one https URI (RFC 8058)")
			require.NotContains(t, strings.ToLower(l.ListUnsubscribe), "alice", "the links do not show the address")
			require.NotContains(t, l.ListUnsubscribe, "555")
			require.Equal(t, testNow.Add(60*24*time.Hour), l.ExpiresAt)

			got, err := kr.Verify(l.Token, testNow.Add(59*24*time.Hour))
			require.NoError(t, err, "the handler's keyring opens it")
			want := tc.want
			want.IssuedAt, want.ExpiresAt = testNow, testNow.Add(60*24*time.Hour)
			require.Equal(t, want, got)
			_, err = kr.Verify(l.Token, testNow.Add(60*24*time.Hour))
			require.ErrorIs(t, err, ErrExpired, "it lives for the minter's TTL")

			// A mail client sends the mailto's subject; its reader gets the
			// same claims back.
			u, err := url.Parse(l.Mailto)
			require.NoError(t, err)
			require.Equal(t, "unsubscribe@example.org", u.Opaque)
			subject := u.Query().Get("subject")
			require.Equal(t, MailtoSubject(l.Token), subject)
			fromMail, tok, err := kr.VerifySubject(subject, testNow)
			require.NoError(t, err)
			require.Equal(t, l.Token, tok)
			require.Equal(t, want, fromMail)
		})
	}
}

func TestMinterWithoutMailto(t *testing.T) {
	m := testMinter(t, testRing(t, "k1", testKey("k1", "a")), "")
	l, err := m.Links(Claims{}, Claims{Identifier: emailID(testAddress)}, testNow)
	require.NoError(t, err)
	require.Equal(t, "<"+l.URL+">", l.ListUnsubscribe)
	require.Empty(t, l.Mailto)
}

// TestMinterRefuses: a refused claim names its field, says whether it is
// the recipient's own or a shared one, and never quotes the identifier.
func TestMinterRefuses(t *testing.T) {
	m := testMinter(t, testRing(t, "k1", testKey("k1", "a")), "unsubscribe@example.org")
	topics := make([]suppression.Scope, suppression.MaxScopes)
	for i := range topics {
		topics[i] = suppression.TopicScope(fmt.Sprintf("t%02d-", i) + strings.Repeat("x", 60))
	}
	for _, tc := range []struct {
		name     string
		shared   Claims
		c        Claims
		field    string
		isShared bool
		reason   string
	}{
		{"bad address", Claims{}, Claims{Identifier: emailID("alice.example.org")}, "identifier.value", false, ""},
		{"unknown identifier type", Claims{}, Claims{Identifier: suppression.Identifier{Type: "fax", Value: "alice-fax-1"}}, "identifier.type", false, ""},
		{"phone too short for its region", Claims{}, Claims{Identifier: suppression.Identifier{Type: suppression.IDPhone, Value: "555-01"}}, "identifier.value", false, ""},
		{"a user id needs scopes", Claims{}, Claims{Identifier: suppression.Identifier{Type: suppression.IDUserID, Value: "alice-42"}}, "scopes", false, ""},
		{"own bad scope", Claims{}, Claims{Identifier: emailID(testAddress), Scopes: []suppression.Scope{"email", "newsletter"}}, "scopes[1]", false, ""},
		{"shared bad scope", Claims{Scopes: []suppression.Scope{"transactional"}}, Claims{Identifier: emailID(testAddress)}, "scopes[0]", true, ""},
		{"shared bad namespace", Claims{Namespace: "Acme Inc"}, Claims{Identifier: emailID(testAddress)}, "namespace", true, ""},
		{"own bad namespace over a good shared one", Claims{Namespace: "acme"}, Claims{Identifier: emailID(testAddress), Namespace: "Acme Inc"}, "namespace", false, ""},
		{"shared long campaign id", Claims{CampaignID: strings.Repeat("c", MaxContextLen+1)}, Claims{Identifier: emailID(testAddress)}, "campaign_id", true, ""},
		{"too long for a header line", Claims{}, Claims{Identifier: emailID(testAddress), Scopes: topics[:12]}, "", false, "over the 998"},
		{"too long for a token", Claims{}, Claims{Identifier: emailID(strings.Repeat("z", 230) + "@example.org"), Scopes: topics,
			CampaignID: strings.Repeat("c", MaxContextLen), ListID: strings.Repeat("l", MaxContextLen)}, "", false, "over the 2048"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := m.Links(tc.shared, tc.c, testNow)
			require.Empty(t, l.ListUnsubscribe)
			require.ErrorIs(t, err, ErrInvalidClaims)
			var ce *ClaimError
			require.True(t, errors.As(err, &ce), "%v", err)
			require.Equal(t, tc.field, ce.Field, ce.Reason)
			require.Equal(t, tc.isShared, ce.Shared)
			require.NotEmpty(t, ce.Reason)
			require.Contains(t, ce.Reason, tc.reason)
			for _, v := range []string{"alice", "555"} {
				require.NotContains(t, strings.ToLower(err.Error()), v, "errors never quote the identifier")
			}
		})
	}
}

// TestMintedLinksFitAndVerify: whatever claims Links accepts make header
// lines within RFC 5322's 998 characters and a token Verify opens; longer
// ones are refused, not minted into links that break.
func TestMintedLinksFitAndVerify(t *testing.T) {
	kr := testRing(t, "k1", testKey("k1", "a"))
	m := testMinter(t, kr, "unsubscribe@example.org")
	accepted := 0
	for n := 1; n <= suppression.MaxScopes; n++ {
		for _, idLen := range []int{0, 64, MaxContextLen} {
			c := Claims{Identifier: emailID(strings.Repeat("a", 200) + "@example.org"), CampaignID: strings.Repeat("c", idLen), ListID: strings.Repeat("l", idLen)}
			for i := range n {
				c.Scopes = append(c.Scopes, suppression.TopicScope(fmt.Sprintf("t%02d-", i)+strings.Repeat("x", 60)))
			}
			l, err := m.Links(Claims{}, c, testNow)
			if err != nil {
				require.ErrorIs(t, err, ErrInvalidClaims)
				continue
			}
			accepted++
			first, second, _ := strings.Cut(l.ListUnsubscribe, ", ")
			require.LessOrEqual(t, len("List-Unsubscribe: "+first+","), MaxHeaderLine)
			require.LessOrEqual(t, len(" "+second), MaxHeaderLine)
			_, err = kr.Verify(l.Token, testNow)
			require.NoError(t, err)
		}
	}
	require.Greater(t, accepted, 10)
}

func TestNewMinterRefuses(t *testing.T) {
	kr := testRing(t, "k1", testKey("k1", "a"))
	for _, tc := range []struct {
		name string
		o    MinterOptions
		want string
	}{
		{"no keyring", MinterOptions{BaseURL: "https://mail.example.org"}, "no keyring"},
		{"no base URL", MinterOptions{Keyring: kr}, "no base URL"},
		{"plain http", MinterOptions{Keyring: kr, BaseURL: "http://mail.example.org"}, "must be https"},
		{"mailto with a display name", MinterOptions{Keyring: kr, BaseURL: "https://mail.example.org", Mailto: "Unsub <u@example.org>"}, "bare address"},
		{"short TTL", MinterOptions{Keyring: kr, BaseURL: "https://mail.example.org", TTL: 24 * time.Hour}, "30-day"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := NewMinter(tc.o)
			require.ErrorContains(t, err, tc.want)
			require.Nil(t, m)
		})
	}
	m, err := NewMinter(MinterOptions{Keyring: kr, BaseURL: "https://mail.example.org"})
	require.NoError(t, err)
	require.Equal(t, DefaultTTL, m.TTL())
}
