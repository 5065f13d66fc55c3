package unsubscribe

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const brandsJSON = `{
  "fallback": {"name": "Example Group", "privacy_url": "https://example.com/privacy"},
  "namespaces": {
    "acme": {
      "name": "ACME Outdoor",
      "logo_url": "https://cdn.acme.example:8443/brand/logo.svg?v=3",
      "privacy_url": "https://acme.example/privacy#email",
      "support_email": "support@acme.example",
      "accent_color": "#E4572E"
    },
    "default": {"name": "Example Mail", "accent_color": "#0a0"}
  }
}`

func acmeBrand() Brand {
	return Brand{
		Name:         "ACME Outdoor",
		LogoURL:      "https://cdn.acme.example:8443/brand/logo.svg?v=3",
		PrivacyURL:   "https://acme.example/privacy#email",
		SupportEmail: "support@acme.example",
		AccentColor:  "#E4572E",
	}
}

func TestParseBrands(t *testing.T) {
	b, err := ParseBrands([]byte(brandsJSON))
	require.NoError(t, err)
	require.Equal(t, Brands{
		Fallback: Brand{Name: "Example Group", PrivacyURL: "https://example.com/privacy"},
		Namespaces: map[string]Brand{
			"acme":    acmeBrand(),
			"default": {Name: "Example Mail", AccentColor: "#0a0"},
		},
	}, b)
	require.Equal(t, "ACME Outdoor", b.For("acme").Name)
	require.Equal(t, "Example Mail", b.For("default").Name, "a token minted without a namespace carries \"default\"")
	require.Equal(t, "Example Group", b.For("other").Name, "a namespace without a brand gets the fallback")

	for _, minimal := range []string{`{}`, `{"namespaces": {}}`, `{"fallback": {}}`} {
		b, err := ParseBrands([]byte(minimal))
		require.NoError(t, err, minimal)
		require.Equal(t, Brand{}, b.For("acme"), "neutral pages")
	}
}

func TestLoadBrands(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "brands.json")
	require.NoError(t, os.WriteFile(path, []byte(brandsJSON), 0o600))
	b, err := LoadBrands(path)
	require.NoError(t, err)
	require.Equal(t, acmeBrand(), b.Namespaces["acme"])

	_, err = LoadBrands(filepath.Join(dir, "missing.json"))
	require.ErrorContains(t, err, "missing.json")

	bad := filepath.Join(dir, "bad.json")
	require.NoError(t, os.WriteFile(bad, []byte(`{"namespaces": {"acme": {"name": "ACME", "logo_url": "http://cdn.acme.example/logo.png"}}}`), 0o600))
	_, err = LoadBrands(bad)
	require.EqualError(t, err, `brands file `+bad+`: namespace "acme": logo_url: must be an https URL, got scheme "http"`)
}

// TestParseBrandsErrors: every field is checked, and the error names the
// namespace (or the fallback) and the field, so whoever edits the file finds
// the line.
func TestParseBrandsErrors(t *testing.T) {
	brand := func(field, value string) string {
		b := map[string]string{"name": "ACME"}
		b[field] = value
		var parts []string
		for k, v := range b {
			parts = append(parts, fmt.Sprintf("%q: %q", k, v))
		}
		return `{"namespaces": {"acme": {` + strings.Join(parts, ", ") + `}}}`
	}
	for _, tc := range []struct {
		name, json, want string
	}{
		{"name missing", `{"namespaces": {"acme": {"accent_color": "#fff"}}}`, `namespace "acme": name: required`},
		{"name too long", brand("name", strings.Repeat("é", MaxBrandNameLen+1)), `namespace "acme": name: 81 characters, at most 80 allowed`},
		{"name padded", brand("name", " ACME"), `namespace "acme": name: starts or ends with a space`},
		{"name with a line break", brand("name", "ACME\nInc"), `namespace "acme": name: contains the control character U+000A`},
		{"name with a bidi override", brand("name", "ACME\u202egnp.exe"), `namespace "acme": name: contains the control character U+202E`},
		{"logo over http", brand("logo_url", "http://cdn.acme.example/logo.png"), `namespace "acme": logo_url: must be an https URL, got scheme "http"`},
		{"logo as a data URL", brand("logo_url", "data:image/png;base64,AAAA"), `namespace "acme": logo_url: must be an https URL, got scheme "data"`},
		{"logo relative", brand("logo_url", "/logo.png"), `namespace "acme": logo_url: must be an https URL, got scheme ""`},
		{"logo with credentials", brand("logo_url", "https://u:p@cdn.acme.example/logo.png"), `namespace "acme": logo_url: must not carry a user name or password`},
		{"logo host not DNS", brand("logo_url", "https://cdn_acme.example/logo.png"), `namespace "acme": logo_url: host "cdn_acme.example" is not a DNS name or IPv4 address`},
		{"logo with a space", brand("logo_url", "https://cdn.acme.example/my logo.png"), `namespace "acme": logo_url: must be an https URL without spaces or non-ASCII characters (percent-encode them)`},
		{"logo that breaks out of the CSP", brand("logo_url", "https://cdn.acme.example;script-src/x.png"), `namespace "acme": logo_url: host "cdn.acme.example;script-src" is not a DNS name or IPv4 address`},
		{"privacy over http", brand("privacy_url", "http://acme.example/privacy"), `namespace "acme": privacy_url: must be an https URL, got scheme "http"`},
		{"privacy javascript", brand("privacy_url", "javascript:alert(1)"), `namespace "acme": privacy_url: must be an https URL, got scheme "javascript"`},
		{"email with a name", brand("support_email", "ACME <support@acme.example>"), `namespace "acme": support_email: want a bare address such as support@example.org, got "ACME <support@acme.example>"`},
		{"email as mailto", brand("support_email", "mailto:support@acme.example"), `namespace "acme": support_email: want a bare address such as support@example.org, got "mailto:support@acme.example"`},
		{"email without a domain dot", brand("support_email", "support@localhost"), `namespace "acme": support_email: want a bare address such as support@example.org, got "support@localhost"`},
		{"email with a query", brand("support_email", "support@acme.example?subject=x"), `namespace "acme": support_email: want a bare address such as support@example.org, got "support@acme.example?subject=x"`},
		{"email not an address", brand("support_email", "support"), `namespace "acme": support_email: want a bare address such as support@example.org, got "support"`},
		{"colour by name", brand("accent_color", "red"), `namespace "acme": accent_color: want a hex colour #rgb or #rrggbb, got "red"`},
		{"colour of 5 digits", brand("accent_color", "#12345"), `namespace "acme": accent_color: want a hex colour #rgb or #rrggbb, got "#12345"`},
		{"colour with alpha", brand("accent_color", "#11223344"), `namespace "acme": accent_color: want a hex colour #rgb or #rrggbb, got "#11223344"`},
		{"colour as CSS", brand("accent_color", "#fff;background:url(x)"), `namespace "acme": accent_color: want a hex colour #rgb or #rrggbb, got "#fff;background:url(x)"`},
		{"unknown field", `{"namespaces": {"acme": {"name": "ACME", "logo": "https://x.example/l.png"}}}`, `namespace "acme": unknown field "logo"`},
		{"wrong type", `{"namespaces": {"acme": {"name": 7}}}`, `namespace "acme": cannot unmarshal number into Go struct field Brand.name of type string`},
		{"unknown top-level field", `{"brands": {}}`, `unknown field "brands"`},
		{"namespace given twice", `{"namespaces": {"acme": {"name": "A"}, "acme": {"name": "B"}}}`, `key "acme" appears twice in namespaces`},
		{"field given twice", `{"namespaces": {"acme": {"name": "A", "name": "B"}}}`, `key "name" appears twice in namespaces.acme`},
		{"not a namespace", `{"namespaces": {"ACME": {"name": "ACME"}}}`, `namespace "ACME": not a namespace: name "ACME": only a-z, 0-9, '.', '_' and '-' are allowed, starting with a letter or digit`},
		{"fallback", `{"fallback": {"name": "X", "accent_color": "blue"}}`, `fallback: accent_color: want a hex colour #rgb or #rrggbb, got "blue"`},
		{"fallback needs a name once it has anything", `{"fallback": {"accent_color": "#123"}}`, `fallback: name: required`},
		{"trailing data", `{} {}`, `data after the JSON value`},
		{"not JSON", `{"namespaces": `, `unexpected EOF`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseBrands([]byte(tc.json))
			require.EqualError(t, err, tc.want)
		})
	}

	// Every problem at once, in namespace order.
	_, err := ParseBrands([]byte(`{"namespaces": {
		"zeta": {"name": "Z", "accent_color": "zz"},
		"acme": {"name": "", "logo_url": "ftp://x.example/l.png", "support_email": "x"}}}`))
	require.EqualError(t, err, strings.Join([]string{
		`namespace "acme": name: required`,
		`namespace "acme": logo_url: must be an https URL, got scheme "ftp"`,
		`namespace "acme": support_email: want a bare address such as support@example.org, got "x"`,
		`namespace "zeta": accent_color: want a hex colour #rgb or #rrggbb, got "zz"`,
	}, "\n"))
}

func TestNewHandlerRefusesInvalidBrands(t *testing.T) {
	require.PanicsWithValue(t,
		`unsubscribe.NewHandler: Options.Brands: namespace "acme": accent_color: want a hex colour #rgb or #rrggbb, got "orange"`,
		func() {
			NewHandler(Options{Keyring: testRing(t, "k1", testKey("k1", "a")), Publisher: &fakePublisher{},
				Brands: Brands{Namespaces: map[string]Brand{"acme": {Name: "ACME", AccentColor: "orange"}}}})
		})
}

// TestThemeContrast: whatever accent a brand picks, the button's text reads
// on it and the links read on the light and the dark page, at WCAG AA 4.5:1.
// All 4096 colours #rgb, and some #rrggbb between them.
func TestThemeContrast(t *testing.T) {
	check := func(accent string) {
		th := newTheme(accent)
		a, _ := parseColor(string(th.Accent))
		on, _ := parseColor(string(th.OnAccent))
		link, _ := parseColor(string(th.Link))
		dark, _ := parseColor(string(th.LinkDark))
		if c := contrast(on, a); c < 4.5 {
			t.Fatalf("accent %s: button text %s contrasts %.2f", accent, on, c)
		}
		if c := contrast(link, white); c < 4.5 {
			t.Fatalf("accent %s: link %s on white contrasts %.2f", accent, link, c)
		}
		if c := contrast(dark, paperDark); c < 4.5 {
			t.Fatalf("accent %s: dark-mode link %s contrasts %.2f", accent, dark, c)
		}
	}
	for i := range 4096 {
		check(fmt.Sprintf("#%03x", i))
	}
	for i := 0; i < 1<<24; i += 9973 {
		check(fmt.Sprintf("#%06x", i))
	}
	check("")

	// An accent that already reads is kept as it is; one that does not is
	// only darkened (or lightened) as far as needed.
	th := newTheme("#0B57D0")
	require.Equal(t, "#0b57d0", string(th.Accent))
	require.Equal(t, "#ffffff", string(th.OnAccent))
	require.Equal(t, "#0b57d0", string(th.Link))
	th = newTheme("#fc0") // yellow: dark text, a darker yellow for links
	require.Equal(t, "#1b1b1b", string(th.OnAccent))
	link, _ := parseColor(string(th.Link))
	require.GreaterOrEqual(t, contrast(link, white), 4.5)
	require.Less(t, contrast(link, white), 4.9, "darkened no more than needed")
	require.Equal(t, "#ffcc00", string(th.LinkDark), "yellow reads on the dark page as it is")

	// The contrast formula itself: black on white is 21:1, a colour on
	// itself 1:1, #777 on white just under 4.5.
	require.InDelta(t, 21, contrast(black, white), 1e-9)
	require.InDelta(t, 1, contrast(defaultAccent, defaultAccent), 1e-9)
	require.InDelta(t, 4.48, contrast(rgb{0x77, 0x77, 0x77}, white), 0.01)
}

// TestBrandedPages: a namespace's pages show its brand, and the CSP admits
// its logo's origin in img-src and nothing more; other namespaces, and links
// that do not verify, get the fallback and the strict policy.
func TestBrandedPages(t *testing.T) {
	brands := Brands{
		Fallback:   Brand{Name: "Example Group"},
		Namespaces: map[string]Brand{"acme": acmeBrand()},
	}
	e := newEnv(t, func(o *Options) { o.Brands = brands })

	resp, body := e.do(http.MethodGet, "/u/"+e.token, "", nil, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "default-src 'none'; style-src 'unsafe-inline'; img-src https://cdn.acme.example:8443; form-action 'self'; frame-ancestors 'none'",
		resp.Header.Get("Content-Security-Policy"))
	require.Contains(t, body, `<title>Unsubscribe – ACME Outdoor</title>`)
	require.Contains(t, body, `<img src="https://cdn.acme.example:8443/brand/logo.svg?v=3" alt="ACME Outdoor">`)
	require.Contains(t, body, `<a href="https://acme.example/privacy#email" rel="noreferrer">Privacy policy</a>`)
	require.Contains(t, body, `Questions? Write to <a href="mailto:support@acme.example">support@acme.example</a>.`)
	require.Contains(t, body, `--accent:#e4572e;--on-accent:#1b1b1b;`, "white on this orange reads at 3.6:1 only")
	require.Equal(t, 1, strings.Count(body, "<h1"))
	requireNoAddress(t, body)

	// The same person in another namespace: the fallback, no logo, no img-src.
	other := e.claims
	other.Namespace = "globex"
	tok := mint(t, e.ring, other, testNow)
	resp, body = e.do(http.MethodGet, "/u/"+tok+"/preferences", "", nil, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	requireSecurityHeaders(t, resp)
	require.Contains(t, body, `<p class="brand brand-name">Example Group</p>`)
	require.Contains(t, body, `<title>Email preferences – Example Group</title>`)
	require.NotContains(t, body, "<img")
	require.NotContains(t, body, "ACME")

	// A link that does not verify has no namespace: the fallback.
	resp, body = e.gmailPost("/u/" + e.token[:len(e.token)-4] + "AAAA")
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	requireSecurityHeaders(t, resp)
	require.Contains(t, body, "Example Group")
	require.NotContains(t, body, "ACME")
	require.Empty(t, e.pub.Events())

	// The one-click POST is unchanged by branding.
	resp, _ = e.rfcPost("/u/" + e.token)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Len(t, e.pub.Events(), 1)
}
