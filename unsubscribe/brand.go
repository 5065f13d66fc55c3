package unsubscribe

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"math"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/suppressd/suppressd/suppression"
)

// Brand is how the pages of one namespace present their sender. Only Name is
// required; every URL is https, so the pages never load or link anything in
// clear.
type Brand struct {
	// Name is the sender as the recipient knows it ("ACME Outdoor"): 1 to
	// MaxBrandNameLen characters, no control characters, no surrounding
	// spaces. It is the logo's text alternative and part of each page title.
	Name string `json:"name"`
	// LogoURL is an https image shown at the top of each page. Its origin
	// (scheme, host, port) is the only one the pages' Content-Security-Policy
	// allows in img-src; without a logo img-src stays 'none'.
	LogoURL string `json:"logo_url,omitempty"`
	// PrivacyURL is the sender's privacy policy (https), linked in the
	// footer.
	PrivacyURL string `json:"privacy_url,omitempty"`
	// SupportEmail is a bare address people may write to, shown in the
	// footer as a mailto link.
	SupportEmail string `json:"support_email,omitempty"`
	// AccentColor is "#rgb" or "#rrggbb": the button, the links and the band
	// at the top. Text is never drawn in a colour that reads worse than 4.5:1
	// (WCAG AA): the button's text is white or black, whichever reads on the
	// accent, and links use the accent darkened (or, in dark mode, lightened)
	// until they read on the page.
	AccentColor string `json:"accent_color,omitempty"`
}

// Brands are the brands of the namespaces, and the fallback for a namespace
// without one (and for the page of a link that did not verify, whose
// namespace is unknown). The zero value shows neutral pages.
type Brands struct {
	// Fallback is used for namespaces not in Namespaces. The zero Brand
	// (no name) is allowed here and means neutral pages.
	Fallback Brand `json:"fallback"`
	// Namespaces maps a namespace, as tokens carry it, to its brand. A token
	// minted without a namespace carries suppression.DefaultNamespace
	// ("default").
	Namespaces map[string]Brand `json:"namespaces,omitempty"`
}

// Limits of a brand's fields.
const (
	MaxBrandNameLen = 80   // characters
	maxBrandURLLen  = 2048 // bytes
	maxEmailLen     = 254  // bytes (RFC 5321 path limit)
	maxBrandsFile   = 1 << 20
)

// For returns the brand of a namespace: its own, or the fallback.
func (b Brands) For(namespace string) Brand {
	if br, ok := b.Namespaces[namespace]; ok {
		return br
	}
	return b.Fallback
}

// LoadBrands reads a brands file:
//
//	{
//	  "fallback":   {"name": "Example Group", "privacy_url": "https://example.com/privacy"},
//	  "namespaces": {
//	    "acme": {"name": "ACME Outdoor", "logo_url": "https://cdn.acme.example/logo.svg",
//	             "privacy_url": "https://acme.example/privacy",
//	             "support_email": "support@acme.example", "accent_color": "#e4572e"}
//	  }
//	}
//
// Unknown fields, a key given twice and invalid values are errors that name
// the namespace and the field; all of them are reported at once.
func LoadBrands(path string) (Brands, error) {
	f, err := os.Open(path)
	if err != nil {
		return Brands{}, fmt.Errorf("brands file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxBrandsFile+1))
	if err != nil {
		return Brands{}, fmt.Errorf("brands file %s: %w", path, err)
	}
	if len(data) > maxBrandsFile {
		return Brands{}, fmt.Errorf("brands file %s: larger than %d bytes", path, maxBrandsFile)
	}
	b, err := ParseBrands(data)
	if err != nil {
		return Brands{}, fmt.Errorf("brands file %s: %w", path, err)
	}
	return b, nil
}

// ParseBrands decodes and validates the JSON of a brands file (see
// LoadBrands).
func ParseBrands(data []byte) (Brands, error) {
	if err := checkDuplicateKeys(data); err != nil {
		return Brands{}, err
	}
	var raw struct {
		Fallback   json.RawMessage            `json:"fallback"`
		Namespaces map[string]json.RawMessage `json:"namespaces"`
	}
	if err := decodeStrict(data, &raw); err != nil {
		return Brands{}, err
	}
	var b Brands
	var errs []error
	if raw.Fallback != nil {
		if err := decodeStrict(raw.Fallback, &b.Fallback); err != nil {
			errs = append(errs, fmt.Errorf("fallback: %w", err))
		}
	}
	names := make([]string, 0, len(raw.Namespaces))
	for ns := range raw.Namespaces {
		names = append(names, ns)
	}
	slices.Sort(names)
	if len(names) > 0 {
		b.Namespaces = make(map[string]Brand, len(names))
	}
	for _, ns := range names {
		var br Brand
		if err := decodeStrict(raw.Namespaces[ns], &br); err != nil {
			errs = append(errs, fmt.Errorf("namespace %q: %w", ns, err))
			continue
		}
		b.Namespaces[ns] = br
	}
	if err := errors.Join(errs...); err != nil {
		return Brands{}, err
	}
	if err := b.Validate(); err != nil {
		return Brands{}, err
	}
	return b, nil
}

// decodeStrict decodes one JSON value into v, refusing unknown fields and
// trailing data.
func decodeStrict(data []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(data))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return cleanJSONError(err)
	}
	if _, err := d.Token(); err != io.EOF {
		return errors.New("data after the JSON value")
	}
	return nil
}

// cleanJSONError drops the "json: " prefix, so a wrapped error reads as one
// sentence: `namespace "acme": unknown field "logo"`.
func cleanJSONError(err error) error {
	if s, ok := strings.CutPrefix(err.Error(), "json: "); ok {
		return errors.New(s)
	}
	return err
}

// checkDuplicateKeys reports an object key given twice, which encoding/json
// would silently resolve to the last one: in a file edited by hand that is a
// copied block whose name was not changed.
func checkDuplicateKeys(data []byte) error {
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	type frame struct {
		keys   map[string]bool // nil for an array
		path   string
		expect bool // the next string token in an object is a key
	}
	var stack []*frame
	var lastKey string
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return cleanJSONError(err)
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && top.keys != nil && top.expect {
			if key, ok := tok.(string); ok {
				if top.keys[key] {
					where := "at the top level"
					if top.path != "" {
						where = "in " + top.path
					}
					return fmt.Errorf("key %q appears twice %s", key, where)
				}
				top.keys[key] = true
				top.expect = false
				lastKey = key
				continue
			}
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			path := ""
			if top != nil {
				path = top.path
				if top.keys != nil {
					path = strings.TrimPrefix(path+"."+lastKey, ".")
				}
			}
			f := &frame{path: path}
			if tok == json.Delim('{') {
				f.keys, f.expect = map[string]bool{}, true
			}
			stack = append(stack, f)
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
		if len(stack) > 0 && stack[len(stack)-1].keys != nil {
			stack[len(stack)-1].expect = true // a value ended: a key comes next
		}
	}
}

// Validate checks every brand: the fallback may be the zero Brand, every
// other field follows the rules of Brand. Errors name the namespace and the
// field; all of them are reported at once.
func (b Brands) Validate() error {
	var errs []error
	if b.Fallback != (Brand{}) {
		for _, err := range b.Fallback.problems() {
			errs = append(errs, fmt.Errorf("fallback: %w", err))
		}
	}
	names := make([]string, 0, len(b.Namespaces))
	for ns := range b.Namespaces {
		names = append(names, ns)
	}
	slices.Sort(names)
	for _, ns := range names {
		if err := suppression.CheckName(ns); err != nil {
			errs = append(errs, fmt.Errorf("namespace %q: not a namespace: %w", ns, err))
			continue
		}
		for _, err := range b.Namespaces[ns].problems() {
			errs = append(errs, fmt.Errorf("namespace %q: %w", ns, err))
		}
	}
	return errors.Join(errs...)
}

// problems lists what is wrong with a brand, one error per field, each
// starting with the field's JSON name.
func (br Brand) problems() []error {
	var errs []error
	if err := checkBrandName(br.Name); err != nil {
		errs = append(errs, fmt.Errorf("name: %w", err))
	}
	for _, f := range []struct{ name, v string }{{"logo_url", br.LogoURL}, {"privacy_url", br.PrivacyURL}} {
		if f.v == "" {
			continue
		}
		if _, err := checkHTTPS(f.v); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f.name, err))
		}
	}
	if br.SupportEmail != "" {
		if err := checkEmail(br.SupportEmail); err != nil {
			errs = append(errs, fmt.Errorf("support_email: %w", err))
		}
	}
	if br.AccentColor != "" {
		if _, err := parseColor(br.AccentColor); err != nil {
			errs = append(errs, fmt.Errorf("accent_color: %w", err))
		}
	}
	return errs
}

func checkBrandName(s string) error {
	switch n := utf8.RuneCountInString(s); {
	case s == "":
		return errors.New("required")
	case !utf8.ValidString(s):
		return errors.New("not valid UTF-8")
	case n > MaxBrandNameLen:
		return fmt.Errorf("%d characters, at most %d allowed", n, MaxBrandNameLen)
	case strings.TrimSpace(s) != s:
		return errors.New("starts or ends with a space")
	}
	for _, r := range s {
		// Controls, line breaks and the bidi overrides that could make a
		// name read as something else.
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' ||
			'\u202a' <= r && r <= '\u202e' || '\u2066' <= r && r <= '\u2069' {
			return fmt.Errorf("contains the control character %U", r)
		}
	}
	return nil
}

// hostPattern is a DNS name or an IPv4 address: what may stand, unquoted, in
// a CSP source expression.
var hostPattern = regexp.MustCompile(`^(?i)([a-z0-9]([a-z0-9-]*[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)

// checkHTTPS accepts an absolute https URL with a plain host and returns its
// origin ("https://cdn.example.org" or with ":port"), lower-cased.
func checkHTTPS(s string) (origin string, err error) {
	if len(s) > maxBrandURLLen {
		return "", fmt.Errorf("longer than %d bytes", maxBrandURLLen)
	}
	if strings.IndexFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f || r > 0x7e }) >= 0 {
		return "", errors.New("must be an https URL without spaces or non-ASCII characters (percent-encode them)")
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("not a URL: %v", cleanURLError(err))
	}
	switch {
	case u.Scheme != "https":
		return "", fmt.Errorf("must be an https URL, got scheme %q", u.Scheme)
	case u.Opaque != "" || u.Host == "":
		return "", errors.New("must be an absolute https URL (https://host/path)")
	case u.User != nil:
		return "", errors.New("must not carry a user name or password")
	case !hostPattern.MatchString(u.Hostname()):
		return "", fmt.Errorf("host %q is not a DNS name or IPv4 address", u.Hostname())
	}
	return "https://" + strings.ToLower(u.Host), nil
}

func cleanURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// checkEmail accepts a bare address (no display name, no mailto:) with a
// dot in its domain, whose characters need no escaping in a mailto link.
func checkEmail(s string) error {
	bad := fmt.Errorf("want a bare address such as support@example.org, got %q", s)
	if len(s) > maxEmailLen {
		return fmt.Errorf("longer than %d bytes", maxEmailLen)
	}
	if strings.HasPrefix(s, "mailto:") {
		return bad
	}
	if _, err := checkMailto(s); err != nil {
		return bad
	}
	at := strings.LastIndexByte(s, '@')
	if domain := s[at+1:]; !strings.Contains(domain, ".") || strings.HasPrefix(domain, ".") || strings.HasSuffix(domain, ".") {
		return bad
	}
	return nil
}

// rgb is an sRGB colour.
type rgb struct{ r, g, b uint8 }

var colorPattern = regexp.MustCompile(`^#([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$`)

func parseColor(s string) (rgb, error) {
	if !colorPattern.MatchString(s) {
		return rgb{}, fmt.Errorf("want a hex colour #rgb or #rrggbb, got %q", s)
	}
	h := strings.ToLower(s[1:])
	if len(h) == 3 {
		h = string([]byte{h[0], h[0], h[1], h[1], h[2], h[2]})
	}
	v, _ := strconv.ParseUint(h, 16, 32) // six hex digits
	return rgb{uint8(v >> 16), uint8(v >> 8), uint8(v)}, nil
}

func (c rgb) String() string { return fmt.Sprintf("#%02x%02x%02x", c.r, c.g, c.b) }

// luminance is the relative luminance of WCAG 2.x.
func (c rgb) luminance() float64 {
	lin := func(v uint8) float64 {
		s := float64(v) / 255
		if s <= 0.04045 {
			return s / 12.92
		}
		return math.Pow((s+0.055)/1.055, 2.4)
	}
	return 0.2126*lin(c.r) + 0.7152*lin(c.g) + 0.0722*lin(c.b)
}

// contrast is the WCAG 2.x contrast ratio of two colours, 1 to 21.
func contrast(a, b rgb) float64 {
	la, lb := a.luminance(), b.luminance()
	if la < lb {
		la, lb = lb, la
	}
	return (la + 0.05) / (lb + 0.05)
}

// mix moves c toward to by t (0: c, 1: to).
func mix(c, to rgb, t float64) rgb {
	m := func(a, b uint8) uint8 { return uint8(math.Round(float64(a) + (float64(b)-float64(a))*t)) }
	return rgb{m(c.r, to.r), m(c.g, to.g), m(c.b, to.b)}
}

// readableOn returns c, or c moved toward black or white (whichever the
// background is not) just enough to contrast at least minRatio with bg.
func readableOn(c, bg rgb, minRatio float64) rgb {
	to := black
	if bg.luminance() < 0.18 {
		to = white
	}
	for i := 0; i <= 100; i++ {
		if m := mix(c, to, float64(i)/100); contrast(m, bg) >= minRatio {
			return m
		}
	}
	return to
}

// textOn returns the colour of text drawn on bg: white when it reads (the
// usual look of a coloured button), else near-black, else black. One of white
// and black always reaches 4.5:1, as their two ratios multiply to 21.
func textOn(bg rgb) rgb {
	for _, c := range []rgb{white, ink, black} {
		if contrast(c, bg) >= minTextContrast {
			return c
		}
	}
	return black
}

// The palette of the pages around the brand's colour.
var (
	white     = rgb{0xff, 0xff, 0xff}
	black     = rgb{0, 0, 0}
	ink       = rgb{0x1b, 0x1b, 0x1b} // text, light mode
	paperDark = rgb{0x12, 0x12, 0x12} // background, dark mode
	// defaultAccent is the accent of a brand without one: a blue that reads
	// on white (6.5:1).
	defaultAccent = rgb{0x0b, 0x57, 0xd0}
)

// minTextContrast is WCAG 2.x AA for normal text.
const minTextContrast = 4.5

// theme is a brand's colours, computed once.
type theme struct {
	Accent   template.CSS // button background, top band
	OnAccent template.CSS // button text
	Link     template.CSS // links, focus ring, button border on the light page
	LinkDark template.CSS // the same on the dark page
}

func newTheme(accent string) theme {
	a := defaultAccent
	if accent != "" {
		a, _ = parseColor(accent) // validated
	}
	css := func(c rgb) template.CSS { return template.CSS(c.String()) }
	return theme{
		Accent:   css(a),
		OnAccent: css(textOn(a)),
		Link:     css(readableOn(a, white, minTextContrast)),
		LinkDark: css(readableOn(a, paperDark, minTextContrast)),
	}
}

// brandView is a brand as the pages use it.
type brandView struct {
	Brand
	Theme theme
	csp   string
}

// baseCSP is the policy of every answer: nothing loads, nothing runs, forms
// post only here, no framing.
const baseCSP = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"

func newBrandView(b Brand) *brandView {
	v := &brandView{Brand: b, Theme: newTheme(b.AccentColor), csp: baseCSP}
	if b.LogoURL != "" {
		origin, _ := checkHTTPS(b.LogoURL) // validated
		v.csp = "default-src 'none'; style-src 'unsafe-inline'; img-src " + origin + "; form-action 'self'; frame-ancestors 'none'"
	}
	return v
}
