package unsubscribe

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/suppressd/suppressd/suppression"
)

// MaxHeaderLine is the longest line of a message RFC 5322 (2.1.1) allows,
// CRLF aside. A header is folded only at white space, never inside <...>,
// so each link of List-Unsubscribe must fit on a line of its own: the mail
// library folds after the comma between them.
const MaxHeaderLine = 998

// Links are what one send needs: the values of the two headers, and the
// links in them, for the message's footer. Every value is printable ASCII
// without quotes or backslashes: it goes into a header, or a JSON string,
// as it is.
type Links struct {
	// ListUnsubscribe is the List-Unsubscribe value: "<URL>", or
	// "<URL>, <Mailto>" when a mailto address is configured.
	ListUnsubscribe string
	// ListUnsubscribePost is OneClick, the List-Unsubscribe-Post value.
	ListUnsubscribePost string
	// URL is the https link: the mail provider's one-click POST, or a
	// page with a button for a browser's GET.
	URL string
	// Mailto is the mailto: alternative, whose subject carries the token
	// (MailtoSubject); "" when no address is configured.
	Mailto string
	// Token is the token both carry.
	Token string
	// ExpiresAt is when the links stop working.
	ExpiresAt time.Time
}

// linkFormat turns tokens into links: a base URL and mailto address
// checked once, so building the links of a token is concatenation.
type linkFormat struct {
	prefix string // "https://host/path/u/"
	mailto string // "mailto:addr?subject=unsubscribe%20", or ""
}

func newLinkFormat(baseURL, mailto string) (linkFormat, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return linkFormat{}, fmt.Errorf("unsubscribe base URL: %w", err)
	}
	switch {
	case u.Host == "":
		return linkFormat{}, errors.New("unsubscribe base URL: no host")
	case u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return linkFormat{}, errors.New("unsubscribe base URL: may hold only scheme, host and path")
	case u.Scheme == "https":
	case u.Scheme == "http" && isLoopbackName(u.Hostname()):
	default:
		return linkFormat{}, errors.New("unsubscribe base URL: must be https (RFC 8058); http only for 127.0.0.1 or localhost")
	}
	f := linkFormat{prefix: strings.TrimRight(u.String(), "/") + "/u/"}
	if !plainText(f.prefix) {
		return linkFormat{}, errors.New("unsubscribe base URL: may hold only printable ASCII, without quotes, backslashes, commas or angle brackets")
	}
	if mailto != "" {
		addr, err := checkMailto(mailto)
		if err != nil {
			return linkFormat{}, err
		}
		// The subject is "unsubscribe <token>": a token is base64url and
		// '.', nothing a URI needs to escape but the space.
		f.mailto = "mailto:" + addr + "?subject=" + subjectWord + "%20"
	}
	return f, nil
}

// plainText reports whether s has only printable ASCII other than '"',
// '\\', ',', '<' and '>': what a link may hold, so that the header values
// built from it need no quoting in a header, nor escaping in a JSON string.
func plainText(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || c == '"' || c == '\\' || c == ',' || c == '<' || c == '>' {
			return false
		}
	}
	return true
}

// The lines a folded List-Unsubscribe takes: "List-Unsubscribe: <URL>,"
// then " <Mailto>".
const (
	urlLineExtra    = len("List-Unsubscribe: <>,")
	mailtoLineExtra = len(" <>")
)

// links builds the links of a token; one string holds them all.
func (f linkFormat) links(token string) (Links, error) {
	if n := urlLineExtra + len(f.prefix) + len(token); n > MaxHeaderLine {
		return Links{}, &ClaimError{Reason: fmt.Sprintf("the link would make a List-Unsubscribe line of %d characters, over the %d a mail header line may have (RFC 5322); use fewer or shorter scopes, campaign and list ids", n, MaxHeaderLine)}
	}
	n := 1 + len(f.prefix) + len(token) + 1
	if f.mailto != "" {
		if m := mailtoLineExtra + len(f.mailto) + len(token); m > MaxHeaderLine {
			return Links{}, &ClaimError{Reason: fmt.Sprintf("the mailto: link would make a List-Unsubscribe line of %d characters, over the %d a mail header line may have (RFC 5322); use fewer or shorter scopes, campaign and list ids", m, MaxHeaderLine)}
		}
		n += 3 + len(f.mailto) + len(token) + 1
	}
	var b strings.Builder
	b.Grow(n)
	b.WriteByte('<')
	b.WriteString(f.prefix)
	b.WriteString(token)
	b.WriteByte('>')
	if f.mailto != "" {
		b.WriteString(", <")
		b.WriteString(f.mailto)
		b.WriteString(token)
		b.WriteByte('>')
	}
	lu := b.String()
	l := Links{ListUnsubscribe: lu, ListUnsubscribePost: OneClick, URL: lu[1 : 1+len(f.prefix)+len(token)], Token: token}
	if f.mailto != "" {
		start := len("<") + len(l.URL) + len(">, <")
		l.Mailto = lu[start : start+len(f.mailto)+len(token)]
	}
	return l, nil
}

// MinterOptions configure a Minter.
type MinterOptions struct {
	// Keyring seals the tokens; whatever serves the links (NewHandler)
	// verifies with the same keys. Required.
	Keyring *Keyring
	// BaseURL is the public URL under which the handler is mounted at /u/
	// (scheme, host and an optional path prefix): https, except
	// http://127.0.0.1, localhost or [::1] for development. Required.
	BaseURL string
	// Mailto is the address of the mailto: alternative
	// ("unsubscribe@example.org"), read by an inbound-mail processor
	// (VerifySubject). Optional.
	Mailto string
	// TTL is how long a link works. Default DefaultTTL; at least MinTTL.
	TTL time.Duration
	// Normalizer reads phone numbers (its default region), so that a link
	// is minted only for a number the consumer will accept. The zero value
	// accepts only numbers with a country code.
	Normalizer suppression.Normalizer
}

// Minter mints the links of sends: a token per recipient, and the header
// values and links built from it. The API's POST /v1/links and the
// `suppressd link` command both use one, so their links are the same. A
// Minter is safe for concurrent use.
type Minter struct {
	keys   *Keyring
	format linkFormat
	ttl    time.Duration
	norm   suppression.Normalizer
}

// NewMinter checks the options and returns a Minter.
func NewMinter(o MinterOptions) (*Minter, error) {
	if o.Keyring == nil {
		return nil, errors.New("unsubscribe minter: no keyring")
	}
	if o.BaseURL == "" {
		return nil, errors.New("unsubscribe minter: no base URL for the links")
	}
	f, err := newLinkFormat(o.BaseURL, o.Mailto)
	if err != nil {
		return nil, err
	}
	if o.TTL == 0 {
		o.TTL = DefaultTTL
	}
	if o.TTL < MinTTL {
		return nil, fmt.Errorf("%w: %s", ErrTTLTooShort, o.TTL)
	}
	return &Minter{keys: o.Keyring, format: f, ttl: o.TTL, norm: o.Normalizer}, nil
}

// TTL returns how long the links it mints work.
func (m *Minter) TTL() time.Duration { return m.ttl }

// Links mints a token for one recipient and builds the links of the send.
// c names the recipient; shared holds what every recipient of a request
// has in common, and fills in what c leaves empty: namespace, scopes,
// campaign and list ids (shared.Identifier is ignored). Without scopes in
// either, an email address gets "email" and a phone number "sms"; other
// identifiers must name theirs. The links work from now for the Minter's
// TTL (c.ExpiresAt is ignored).
//
// A claim refused is a *ClaimError naming its field, with Shared set when
// the field came from shared.
func (m *Minter) Links(shared, c Claims, now time.Time) (Links, error) {
	own := c
	if c.Namespace == "" {
		c.Namespace = shared.Namespace
	}
	if len(c.Scopes) == 0 {
		c.Scopes = shared.Scopes
	}
	if c.CampaignID == "" {
		c.CampaignID = shared.CampaignID
	}
	if c.ListID == "" {
		c.ListID = shared.ListID
	}
	if len(c.Scopes) == 0 {
		switch c.Identifier.Type {
		case suppression.IDEmail:
			c.Scopes = emailScope
		case suppression.IDPhone:
			c.Scopes = smsScope
		default:
			if c.Identifier.Type.Valid() {
				return Links{}, &ClaimError{Field: "scopes", Reason: "required for this identifier type: what the link unsubscribes from (email, sms, topic:<name>, *...)"}
			}
		}
	}
	c.ExpiresAt = now.Add(m.ttl)
	token, err := m.mint(c, now)
	if err != nil {
		var ce *ClaimError
		if errors.As(err, &ce) {
			ce.Shared = fromShared(ce.Field, own, shared)
		}
		return Links{}, err
	}
	l, err := m.format.links(token)
	if err != nil {
		return Links{}, err
	}
	l.ExpiresAt = c.ExpiresAt.UTC().Truncate(time.Second)
	return l, nil
}

var (
	emailScope = []suppression.Scope{suppression.ChannelScope(suppression.ChannelEmail)}
	smsScope   = []suppression.Scope{suppression.ChannelScope(suppression.ChannelSMS)}
)

// mint checks what Mint cannot (a phone number needs the default region)
// and mints.
func (m *Minter) mint(c Claims, now time.Time) (string, error) {
	if c.Identifier.Type == suppression.IDPhone {
		if _, err := m.norm.NormalizePhone(c.Identifier.Value); err != nil {
			return "", &ClaimError{Field: "identifier.value", Reason: err.Error()} // never quotes the number
		}
	}
	return m.keys.Mint(c, now)
}

// fromShared reports whether the claim named by field came from shared.
func fromShared(field string, own, shared Claims) bool {
	root, _, _ := strings.Cut(field, "[")
	switch root {
	case "namespace":
		return own.Namespace == "" && shared.Namespace != ""
	case "scopes":
		return len(own.Scopes) == 0 && len(shared.Scopes) > 0
	case "campaign_id":
		return own.CampaignID == "" && shared.CampaignID != ""
	case "list_id":
		return own.ListID == "" && shared.ListID != ""
	}
	return false
}
