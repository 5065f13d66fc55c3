package unsubscribe

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/suppression"
)

var testNow = time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)

// testKey returns a key whose secret is derived from its id and a label, so
// "k1"/"a" and "k1"/"b" share an id but not a secret.
func testKey(id, label string) Key {
	s := sha256.Sum256([]byte("test secret " + id + " " + label))
	return Key{ID: id, Secret: s[:]}
}

func testRing(t testing.TB, signing string, keys ...Key) *Keyring {
	t.Helper()
	kr, err := NewKeyring(signing, keys)
	require.NoError(t, err)
	return kr
}

const testAddress = "Alice.Example@Example.org"

func newsletterClaims() Claims {
	return Claims{
		Namespace:  "acme",
		Identifier: suppression.Identifier{Type: suppression.IDEmail, Value: testAddress},
		Scopes:     []suppression.Scope{"topic:newsletter"},
		CampaignID: "c-2026-11",
	}
}

func mint(t testing.TB, kr *Keyring, c Claims, now time.Time) string {
	t.Helper()
	tok, err := kr.Mint(c, now)
	require.NoError(t, err)
	return tok
}

func TestTokenRoundTrip(t *testing.T) {
	kr := testRing(t, "k1", testKey("k1", "a"))
	for _, tc := range []struct {
		name string
		in   Claims
	}{
		{"email, topic, campaign", newsletterClaims()},
		{"phone, two scopes, list id, default namespace", Claims{
			Identifier: suppression.Identifier{Type: suppression.IDPhone, Value: "+1 415 555 0100"},
			Scopes:     []suppression.Scope{"sms", "marketing"}, ListID: "list-7",
		}},
		{"user id, global scope, own expiry", Claims{
			Namespace:  "brand-b",
			Identifier: suppression.Identifier{Type: suppression.IDUserID, Value: "Cust-42"},
			Scopes:     []suppression.Scope{"*"}, ExpiresAt: testNow.Add(400 * 24 * time.Hour),
		}},
		{"hashed email, every coded scope", Claims{
			Identifier: suppression.Identifier{Type: suppression.IDEmailSHA256, Value: strings.Repeat("ab", 32)},
			Scopes:     scopeCodes,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := mint(t, kr, tc.in, testNow)
			got, err := kr.Verify(tok, testNow.Add(time.Hour))
			require.NoError(t, err)

			want := tc.in
			if want.Namespace == "" {
				want.Namespace = suppression.DefaultNamespace
			}
			want.IssuedAt = testNow
			if want.ExpiresAt.IsZero() {
				want.ExpiresAt = testNow.Add(DefaultTTL)
			}
			require.Equal(t, want, got)
		})
	}
}

func TestTokenSize(t *testing.T) {
	kr := testRing(t, "k1", testKey("k1", "a"))
	c := newsletterClaims()
	c.Identifier.Value = "alice.example@example.org"
	tok := mint(t, kr, c, testNow)
	t.Logf("token for a 25-character address, one topic and a campaign id: %d characters", len(tok))
	require.Less(t, len(tok), 200)
	require.True(t, strings.HasPrefix(tok, "k1."), "key id in clear as a prefix")
	require.NotContains(t, tok, "=", "no padding")
	for _, r := range tok {
		require.True(t, r < 0x80 && (isB64URL(byte(r)) || r == '.'), "URL-safe: %q", r)
	}
}

func TestTokenTamperedByteIsForged(t *testing.T) {
	kr := testRing(t, "k1", testKey("k1", "a"))
	tok := mint(t, kr, newsletterClaims(), testNow)
	kid, body, _ := strings.Cut(tok, ".")
	sealed, err := base64.RawURLEncoding.DecodeString(body)
	require.NoError(t, err)
	for i := range sealed {
		for _, bit := range []byte{0x01, 0x80} {
			b := bytes.Clone(sealed)
			b[i] ^= bit
			_, err := kr.Verify(kid+"."+base64.RawURLEncoding.EncodeToString(b), testNow)
			require.ErrorIs(t, err, ErrForged, "byte %d bit %#x", i, bit)
		}
	}

	// And at the text level: any character of the token changed to another
	// is refused, whatever the reason.
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
	for i := range tok {
		for _, c := range []byte{alphabet[(strings.IndexByte(alphabet, tok[i])+1)%len(alphabet)], '~'} {
			mangled := tok[:i] + string(c) + tok[i+1:]
			_, err := kr.Verify(mangled, testNow)
			require.Error(t, err, "character %d changed to %q", i, c)
			require.True(t, errors.Is(err, ErrForged) || errors.Is(err, ErrMalformed) || errors.Is(err, ErrUnknownKey), "%v", err)
		}
	}
}

func TestTokenTruncated(t *testing.T) {
	kr := testRing(t, "k1", testKey("k1", "a"))
	tok := mint(t, kr, newsletterClaims(), testNow)
	for n := range len(tok) {
		_, err := kr.Verify(tok[:n], testNow)
		require.True(t, errors.Is(err, ErrMalformed) || errors.Is(err, ErrForged), "cut to %d: %v", n, err)
	}
	_, err := kr.Verify(tok+"A", testNow)
	require.True(t, errors.Is(err, ErrMalformed) || errors.Is(err, ErrForged), "one more character: %v", err)
}

func TestTokenExpired(t *testing.T) {
	kr := testRing(t, "k1", testKey("k1", "a"))
	tok := mint(t, kr, newsletterClaims(), testNow)
	expiry := testNow.Add(DefaultTTL)

	_, err := kr.Verify(tok, expiry.Add(-time.Second))
	require.NoError(t, err, "valid until the last second")
	_, err = kr.Verify(tok, expiry)
	require.ErrorIs(t, err, ErrExpired)
	_, err = kr.Verify(tok, expiry.Add(365*24*time.Hour))
	require.ErrorIs(t, err, ErrExpired)
}

func TestTokenUnknownKey(t *testing.T) {
	tok := mint(t, testRing(t, "k1", testKey("k1", "a")), newsletterClaims(), testNow)
	other := testRing(t, "k2", testKey("k2", "a"))
	_, err := other.Verify(tok, testNow)
	require.ErrorIs(t, err, ErrUnknownKey)
	require.Empty(t, other.KeyID(tok), "an unknown key id is not echoed for logs")
}

func TestTokenForeignKey(t *testing.T) {
	tok := mint(t, testRing(t, "k1", testKey("k1", "a")), newsletterClaims(), testNow)
	impostor := testRing(t, "k1", testKey("k1", "b")) // same id, other secret
	_, err := impostor.Verify(tok, testNow)
	require.ErrorIs(t, err, ErrForged)
}

func TestTokenBoundToKeyID(t *testing.T) {
	// Two ids with one secret: the sealed part cannot move between them.
	shared := testKey("k1", "a")
	alias := Key{ID: "k2", Secret: shared.Secret}
	kr := testRing(t, "k1", shared, alias)
	tok := mint(t, kr, newsletterClaims(), testNow)
	_, err := kr.Verify("k2"+strings.TrimPrefix(tok, "k1"), testNow)
	require.ErrorIs(t, err, ErrForged)
}

func TestKeyRotation(t *testing.T) {
	k1, k2 := testKey("k1", "a"), testKey("k2", "a")
	before := testRing(t, "k1", k1)
	old := mint(t, before, newsletterClaims(), testNow)

	after := testRing(t, "k2", k1, k2) // k2 signs, k1 still verifies
	c, err := after.Verify(old, testNow.Add(24*time.Hour))
	require.NoError(t, err)
	require.Equal(t, testAddress, c.Identifier.Value)

	fresh := mint(t, after, newsletterClaims(), testNow)
	require.True(t, strings.HasPrefix(fresh, "k2."), "new tokens use the new signing key")
	_, err = before.Verify(fresh, testNow)
	require.ErrorIs(t, err, ErrUnknownKey, "a verifier without k2 cannot open them")

	retired := testRing(t, "k2", k2) // k1 dropped once its tokens expired
	_, err = retired.Verify(old, testNow)
	require.ErrorIs(t, err, ErrUnknownKey)
}

func TestTokenHidesIdentifier(t *testing.T) {
	kr := testRing(t, "k1", testKey("k1", "a"))
	c := newsletterClaims()
	tok := mint(t, kr, c, testNow)
	_, body, _ := strings.Cut(tok, ".")
	sealed, err := base64.RawURLEncoding.DecodeString(body)
	require.NoError(t, err)

	forms := []string{testAddress, strings.ToLower(testAddress), "alice.example", "Alice.Example", "example.org", "Example.org"}
	var encoded []string
	for _, f := range forms {
		// Every alignment of the text inside a base64 stream, minus the
		// characters at the ends that depend on the neighbouring bytes.
		for k := range 3 {
			for _, enc := range []*base64.Encoding{base64.RawURLEncoding, base64.RawStdEncoding} {
				s := enc.EncodeToString([]byte(f[k:]))
				encoded = append(encoded, s[:len(s)-2])
			}
		}
	}
	// The check can fail: the same claims unsealed contain every form.
	plain, err := encodeClaims(Claims{
		Namespace: c.Namespace, Identifier: c.Identifier, Scopes: c.Scopes, CampaignID: c.CampaignID,
		IssuedAt: testNow, ExpiresAt: testNow.Add(DefaultTTL),
	})
	require.NoError(t, err)
	require.True(t, bytes.Contains(plain, []byte(testAddress)))
	plainB64 := base64.RawURLEncoding.EncodeToString(plain)
	require.True(t, slices.ContainsFunc(encoded[:6], func(e string) bool { return strings.Contains(plainB64, e) }),
		"one alignment of the address shows in base64 of the unsealed payload")

	for _, f := range forms {
		require.NotContains(t, strings.ToLower(tok), strings.ToLower(f))
		require.False(t, bytes.Contains(bytes.ToLower(sealed), bytes.ToLower([]byte(f))), "sealed bytes hold %q", f)
	}
	for _, e := range encoded {
		require.NotContains(t, tok, e)
	}
}

func TestMintTTL(t *testing.T) {
	kr := testRing(t, "k1", testKey("k1", "a"))
	for _, tc := range []struct {
		name    string
		expires time.Time
		wantErr error
	}{
		{"default is 90 days", time.Time{}, nil},
		{"exactly 30 days", testNow.Add(MinTTL), nil},
		{"29 days", testNow.Add(29 * 24 * time.Hour), ErrTTLTooShort},
		{"a second short of 30 days", testNow.Add(MinTTL - time.Second), ErrTTLTooShort},
		{"already past", testNow.Add(-time.Hour), ErrTTLTooShort},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newsletterClaims()
			c.ExpiresAt = tc.expires
			tok, err := kr.Mint(c, testNow)
			if tc.wantErr != nil {
				require.ErrorIs(t, err, tc.wantErr)
				require.Empty(t, tok)
				return
			}
			require.NoError(t, err)
			got, err := kr.Verify(tok, testNow)
			require.NoError(t, err)
			require.GreaterOrEqual(t, got.ExpiresAt.Sub(got.IssuedAt), MinTTL)
			if tc.expires.IsZero() {
				require.Equal(t, testNow.Add(DefaultTTL), got.ExpiresAt)
			}
		})
	}
}

func TestMintRejectsInvalidClaims(t *testing.T) {
	kr := testRing(t, "k1", testKey("k1", "a"))
	for _, tc := range []struct {
		name   string
		change func(*Claims)
	}{
		{"bad namespace", func(c *Claims) { c.Namespace = "Acme Inc" }},
		{"unknown identifier type", func(c *Claims) { c.Identifier.Type = "fax" }},
		{"email without @", func(c *Claims) { c.Identifier.Value = "alice.example.org" }},
		{"empty phone", func(c *Claims) { c.Identifier = suppression.Identifier{Type: suppression.IDPhone, Value: " "} }},
		{"bad hash", func(c *Claims) { c.Identifier = suppression.Identifier{Type: suppression.IDEmailSHA256, Value: "abc"} }},
		{"no scope", func(c *Claims) { c.Scopes = nil }},
		{"unknown scope", func(c *Claims) { c.Scopes = []suppression.Scope{"fax"} }},
		{"transactional is not a scope", func(c *Claims) { c.Scopes = []suppression.Scope{"transactional"} }},
		{"too many scopes", func(c *Claims) { c.Scopes = make([]suppression.Scope, suppression.MaxScopes+1) }},
		{"long campaign id", func(c *Claims) { c.CampaignID = strings.Repeat("c", MaxContextLen+1) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newsletterClaims()
			tc.change(&c)
			_, err := kr.Mint(c, testNow)
			require.ErrorIs(t, err, ErrInvalidClaims)
			require.NotContains(t, err.Error(), "alice", "errors never quote the identifier")
		})
	}
}

func TestNewKeyringRejects(t *testing.T) {
	good := testKey("k1", "a")
	for _, tc := range []struct {
		name    string
		signing string
		keys    []Key
	}{
		{"no keys", "k1", nil},
		{"signing key missing", "k9", []Key{good}},
		{"short secret", "k1", []Key{{ID: "k1", Secret: make([]byte, MinSecretLen-1)}}},
		{"duplicate id", "k1", []Key{good, good}},
		{"id with a dot", "k.1", []Key{{ID: "k.1", Secret: good.Secret}}},
		{"long id", "k1234567890123456", []Key{{ID: "k1234567890123456", Secret: good.Secret}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewKeyring(tc.signing, tc.keys)
			require.Error(t, err)
		})
	}
}

func TestVerifyGarbage(t *testing.T) {
	kr := testRing(t, "k1", testKey("k1", "a"))
	for _, tok := range []string{"", "k1", "k1.", "k1.!!!!", "k1.AAAA", "bad id.AAAA", ".AAAA", strings.Repeat("A", 5000)} {
		_, err := kr.Verify(tok, testNow)
		require.ErrorIs(t, err, ErrMalformed, "%.20q", tok)
	}
}
