package suppression

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func variantTexts(vs []Variant) map[string][]string {
	out := map[string][]string{}
	for _, v := range vs {
		out[v.Text] = v.Platforms
	}
	return out
}

// platformText returns the normalised text a platform hashes.
func platformText(t *testing.T, vs []Variant, platform string) string {
	t.Helper()
	for _, v := range vs {
		for _, p := range v.Platforms {
			if p == platform {
				return v.Text
			}
		}
	}
	t.Fatalf("no variant for platform %s", platform)
	return ""
}

func TestEmailVariants(t *testing.T) {
	n := Normalizer{}
	const (
		plain  = "meta,x,linkedin,snap"
		google = "google"
		tiktok = "tiktok"
	)
	tests := []struct {
		name, raw string
		// forms maps each normalised text to the platforms hashing it.
		forms map[string]string
	}{
		{
			// Google's Data Manager guide: cloudy.sanfrancisco+shopping@gmail.com
			// -> cloudysanfrancisco@gmail.com; its Ads API (Customer Match)
			// drops the dots and keeps the tag; TikTok drops the tag only.
			name: "gmail with dots and tag: the closure", raw: "cloudy.sanfrancisco+shopping@gmail.com",
			forms: map[string]string{
				"cloudy.sanfrancisco+shopping@gmail.com": plain,
				"cloudysanfrancisco+shopping@gmail.com":  google,
				"cloudy.sanfrancisco@gmail.com":          tiktok,
				"cloudysanfrancisco@gmail.com":           google,
			},
		},
		{
			// Google's example of a non-gmail address: dots and tag stay;
			// TikTok drops the tag on every domain.
			name: "google guide non-gmail", raw: "user.name+NYC@Example.com",
			forms: map[string]string{
				"user.name+nyc@example.com": plain + ",google",
				"user.name@example.com":     tiktok,
			},
		},
		{
			name: "googlemail dots", raw: "  J.Doe@GoogleMail.com\t",
			forms: map[string]string{"j.doe@googlemail.com": plain + ",tiktok", "jdoe@googlemail.com": google},
		},
		{
			name: "gmail tag without dots", raw: "bob+news@gmail.com",
			forms: map[string]string{"bob+news@gmail.com": plain + ",google", "bob@gmail.com": "tiktok,google"},
		},
		{
			name: "plain address has one form", raw: "Alice@Example.org",
			forms: map[string]string{"alice@example.org": plain + ",google,tiktok"},
		},
		{
			name: "gmail without dots or tag", raw: "bob@gmail.com",
			forms: map[string]string{"bob@gmail.com": plain + ",google,tiktok"},
		},
		{
			name: "tag only local part keeps the plain form", raw: "+promo@example.org",
			forms: map[string]string{"+promo@example.org": plain + ",google"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			vs, err := n.Variants(Identifier{Type: IDEmail, Value: tc.raw})
			require.NoError(t, err)
			got := map[string][]string{}
			for _, v := range vs {
				got[v.Text] = v.Platforms
			}
			require.Len(t, got, len(tc.forms), "forms: %v", got)
			for text, platforms := range tc.forms {
				require.Contains(t, got, text)
				require.ElementsMatch(t, strings.Split(platforms, ","), got[text], "platforms of %s", text)
			}

			keys, err := n.Expand(Identifier{Type: IDEmail, Value: tc.raw})
			require.NoError(t, err)
			require.Len(t, keys, len(tc.forms))
			// The keys are exactly the SHA-256 of each form, so a list hashed
			// by any platform's rules matches by exact key.
			for text := range tc.forms {
				require.Contains(t, keys, MatchKey{Kind: KindEmail, Hash: sha256.Sum256([]byte(text))}, text)
			}
			require.Equal(t, sha256.Sum256([]byte(vs[0].Text)), keys[0].Hash, "the plain form is the primary key")
			require.Contains(t, vs[0].Platforms, PlatformMeta)
		})
	}
}

func TestPhoneVariants(t *testing.T) {
	us := Normalizer{DefaultRegion: "US"}
	tests := []struct {
		name   string
		n      Normalizer
		raw    string
		e164   string
		digits string
	}{
		{name: "google guide example", n: us, raw: "(800)555-0100", e164: "+18005550100", digits: "18005550100"},
		{name: "international format ignores region", n: us, raw: "+44 20 7946 0958", e164: "+442079460958", digits: "442079460958"},
		{name: "00 prefix without region", n: Normalizer{}, raw: "0044 20 7946 0958", e164: "+442079460958", digits: "442079460958"},
		{name: "national format in GB", n: Normalizer{DefaultRegion: "GB"}, raw: "020 7946 0958", e164: "+442079460958", digits: "442079460958"},
		{name: "dotted US", n: us, raw: " 650.253.0000 ", e164: "+16502530000", digits: "16502530000"},
		{name: "German mobile", n: Normalizer{DefaultRegion: "DE"}, raw: "0151 23456789", e164: "+4915123456789", digits: "4915123456789"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			vs, err := tc.n.Variants(Identifier{Type: IDPhone, Value: tc.raw})
			require.NoError(t, err)
			require.Equal(t, tc.e164, platformText(t, vs, PlatformGoogle), "Google hashes E.164 with +")
			require.Equal(t, tc.e164, platformText(t, vs, PlatformX), "X hashes E.164 with +")
			require.Equal(t, tc.digits, platformText(t, vs, PlatformMeta), "Meta hashes digits without +")
			require.Equal(t, tc.digits, platformText(t, vs, PlatformSnap), "Snap hashes digits without +")
			got := variantTexts(vs)
			require.ElementsMatch(t, []string{PlatformGoogle, PlatformX, PlatformTikTok}, got[tc.e164])
			require.ElementsMatch(t, []string{PlatformMeta, PlatformSnap, PlatformTikTok}, got[tc.digits])

			keys, err := tc.n.Expand(Identifier{Type: IDPhone, Value: tc.raw})
			require.NoError(t, err)
			require.Equal(t, []MatchKey{
				{Kind: KindPhone, Hash: sha256.Sum256([]byte(tc.e164))},
				{Kind: KindPhone, Hash: sha256.Sum256([]byte(tc.digits))},
			}, keys)
		})
	}
}

func TestOtherIdentifiers(t *testing.T) {
	n := Normalizer{}
	digest := sha256.Sum256([]byte("alice@example.org"))
	hexLower := hex.EncodeToString(digest[:])
	tests := []struct {
		name string
		id   Identifier
		want MatchKey
	}{
		{"user id keeps case", Identifier{IDUserID, "  Cust-0042 "}, MatchKey{KindUserID, sha256.Sum256([]byte("Cust-0042"))}},
		{"maid lowercased", Identifier{IDMAID, "6D92078A-8246-4BA4-AE5B-76104861E7DC"}, MatchKey{KindMAID, sha256.Sum256([]byte("6d92078a-8246-4ba4-ae5b-76104861e7dc"))}},
		{"maid without hyphens", Identifier{IDMAID, "6d92078a82464ba4ae5b76104861e7dc"}, MatchKey{KindMAID, sha256.Sum256([]byte("6d92078a-8246-4ba4-ae5b-76104861e7dc"))}},
		{"email hash hex lower", Identifier{IDEmailSHA256, hexLower}, MatchKey{KindEmail, digest}},
		{"email hash hex upper", Identifier{IDEmailSHA256, strings.ToUpper(hexLower)}, MatchKey{KindEmail, digest}},
		{"email hash base64", Identifier{IDEmailSHA256, base64.StdEncoding.EncodeToString(digest[:])}, MatchKey{KindEmail, digest}},
		{"email hash base64 unpadded", Identifier{IDEmailSHA256, base64.RawStdEncoding.EncodeToString(digest[:])}, MatchKey{KindEmail, digest}},
		{"email hash base64url", Identifier{IDEmailSHA256, base64.URLEncoding.EncodeToString(digest[:])}, MatchKey{KindEmail, digest}},
		{"phone hash", Identifier{IDPhoneSHA256, hexLower}, MatchKey{KindPhone, digest}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			keys, err := n.Expand(tc.id)
			require.NoError(t, err)
			require.Equal(t, []MatchKey{tc.want}, keys)
		})
	}

	// A pre-hashed email matches the raw email's key: the point of expansion.
	raw, err := n.Expand(Identifier{IDEmail, "Alice@Example.org"})
	require.NoError(t, err)
	hashed, err := n.Expand(Identifier{IDEmailSHA256, hexLower})
	require.NoError(t, err)
	require.Equal(t, raw[0], hashed[0])
}

func TestRejectedIdentifiers(t *testing.T) {
	n := Normalizer{DefaultRegion: "US"}
	tests := []struct {
		id      Identifier
		message string
	}{
		{Identifier{IDEmail, ""}, "invalid email: empty"},
		{Identifier{IDEmail, "   "}, "invalid email: empty"},
		{Identifier{IDEmail, "alice.example.org"}, "invalid email: no @"},
		{Identifier{IDEmail, "@example.org"}, "invalid email: empty local part"},
		{Identifier{IDEmail, "alice@"}, "invalid email: empty domain"},
		{Identifier{IDEmail, "al ice@example.org"}, "invalid email: contains white space or control characters"},
		{Identifier{IDEmail, "a@b@example.org"}, "invalid email: more than one @"},
		{Identifier{IDEmail, "alice@example..org"}, "invalid email: malformed domain"},
		{Identifier{IDEmail, strings.Repeat("a", 250) + "@example.org"}, "invalid email: longer than 254 bytes"},
		{Identifier{IDEmail, "a\xff\xfe@example.org"}, "invalid email: not valid UTF-8"},
		{Identifier{IDEmail, "A\xc3@example.org"}, "invalid email: not valid UTF-8"},
		{Identifier{IDUserID, "cust-\xff"}, "invalid user_id: not valid UTF-8"},
		{Identifier{IDPhone, ""}, "invalid phone: empty"},
		{Identifier{IDPhone, "12"}, "invalid phone: too short for its country code"},
		{Identifier{IDPhone, "call me maybe"}, "invalid phone: not a phone number"},
		{Identifier{IDPhone, "+1 555 0100"}, "invalid phone: a local number without its area code"},
		{Identifier{IDPhone, "(800)555-01000000"}, "invalid phone: too long for its country code"},
		{Identifier{IDPhone, "+999 1234567"}, "invalid phone: not a phone number (unknown country code)"},
		{Identifier{IDUserID, " "}, "invalid user_id: empty"},
		{Identifier{IDMAID, "not-a-uuid"}, "invalid maid: not a UUID"},
		{Identifier{IDEmailSHA256, "abc123"}, "invalid email_sha256: a SHA-256 digest is 64 hex digits or 44 base64 characters, got 6 characters"},
		{Identifier{IDEmailSHA256, strings.Repeat("z", 64)}, "invalid email_sha256: not hexadecimal"},
		{Identifier{IDPhoneSHA256, strings.Repeat("!", 44)}, "invalid phone_sha256: not base64"},
		{Identifier{"fax", "+18005550100"}, "invalid fax: unknown identifier type"},
	}
	for _, tc := range tests {
		t.Run(tc.message, func(t *testing.T) {
			_, err := n.Expand(tc.id)
			require.Error(t, err)
			require.True(t, errors.Is(err, ErrInvalidIdentifier))
			require.Contains(t, err.Error(), tc.message)
			if v := strings.TrimSpace(tc.id.Value); len(v) > 3 {
				require.NotContains(t, err.Error(), v, "errors must not echo the identifier")
			}
		})
	}
	t.Run("phone without region or country code", func(t *testing.T) {
		_, err := Normalizer{}.Expand(Identifier{IDPhone, "(800)555-0100"})
		require.ErrorContains(t, err, "no country code and no default region configured")
	})
	t.Run("bad default region", func(t *testing.T) {
		_, err := NewNormalizer("XX")
		require.ErrorContains(t, err, `default phone region "XX" is not a known`)
		got, err := NewNormalizer(" gb ")
		require.NoError(t, err)
		require.Equal(t, "GB", got.DefaultRegion)
	})
	t.Run("Expand names every failing position", func(t *testing.T) {
		_, err := n.Expand(Identifier{IDEmail, "ok@example.org"}, Identifier{IDEmail, "broken"}, Identifier{IDPhone, "12"})
		require.EqualError(t, err, "identifiers[1]: invalid email: no @; identifiers[2]: invalid phone: too short for its country code")
		var ee *ExpandError
		require.ErrorAs(t, err, &ee)
		require.Equal(t, []int{1, 2}, []int{ee.Invalid[0].Index, ee.Invalid[1].Index})
		var ie *IdentifierError
		require.ErrorAs(t, err, &ie)
		require.Equal(t, IDEmail, ie.Type)
	})
}

func TestPossiblePhonesAreAccepted(t *testing.T) {
	// Numbers the library calls possible but not valid: reserved drama
	// ranges and unallocated blocks. An opt-out naming them must be kept.
	for _, tc := range []struct{ raw, e164 string }{
		{"+44 7700 900123", "+447700900123"},  // Ofcom's reserved drama range
		{"+1 555 555 0123", "+15555550123"},   // the 555 exchange
		{"+49 30 123", "+4930123"},            // short German number
		{"(201) 555-0123", "+12015550123"},    // national format, default region
		{"+33 6 00 00 00 00", "+33600000000"}, // unallocated French mobile block
	} {
		t.Run(tc.raw, func(t *testing.T) {
			got, err := Normalizer{DefaultRegion: "US"}.NormalizePhone(tc.raw)
			require.NoError(t, err)
			require.Equal(t, tc.e164, got)
			keys, err := Normalizer{DefaultRegion: "US"}.Expand(Identifier{IDPhone, tc.raw})
			require.NoError(t, err)
			require.Len(t, keys, 2)
		})
	}
}

func TestExpandDeduplicates(t *testing.T) {
	n := Normalizer{DefaultRegion: "US"}
	digest := sha256.Sum256([]byte("alice@example.org"))
	keys, err := n.Expand([]Identifier{
		{IDEmail, "alice@example.org"},
		{IDEmailSHA256, hex.EncodeToString(digest[:])},
		{IDPhone, "(800)555-0100"},
	}...)
	require.NoError(t, err)
	require.Len(t, keys, 3, "the hashed email repeats the raw one's key")
}

func TestIdentifierRedacts(t *testing.T) {
	id := Identifier{Type: IDEmail, Value: "secret.person@example.org"}
	var buf strings.Builder
	slog.New(slog.NewTextHandler(&buf, nil)).Info("x", "id", id, "ids", []Identifier{id})
	for _, s := range []string{fmt.Sprint(id), fmt.Sprintf("%v %+v %#v %s", id, id, id, id), buf.String()} {
		require.NotContains(t, s, "secret.person")
		require.Contains(t, s, "email:<redacted>")
	}
}

func TestKeyer(t *testing.T) {
	k := MatchKey{Kind: KindEmail, Hash: sha256.Sum256([]byte("alice@example.org"))}
	plain := NewKeyer(nil)
	require.False(t, plain.Peppered())
	input := append([]byte("email\x00"), k.Hash[:]...)
	require.Equal(t, StorageKey(sha256.Sum256(input)), plain.StorageKey(k))

	a, b := NewKeyer([]byte("pepper-a")), NewKeyer([]byte("pepper-b"))
	require.True(t, a.Peppered())
	require.NotEqual(t, a.StorageKey(k), b.StorageKey(k), "the pepper changes every key")
	require.NotEqual(t, plain.StorageKey(k), a.StorageKey(k))
	require.Equal(t, a.StorageKey(k), NewKeyer([]byte("pepper-a")).StorageKey(k), "keys are stable")

	// Same hash, other kind: other key.
	require.NotEqual(t, a.StorageKey(k), a.StorageKey(MatchKey{Kind: KindUserID, Hash: k.Hash}))
	require.Equal(t, "email:"+hex.EncodeToString(k.Hash[:4]), k.String())
}
