package suppression

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/nyaruka/phonenumbers"
)

// NormalizationVersion is the version of the normalisation rules below. It is
// part of the store's key layout: a change to any rule that alters a match key
// must bump it, and the store rebuilt from Kafka under the new layout.
const NormalizationVersion = 2

// IDType is the type of an identifier.
type IDType string

// Identifier types accepted in events and checks.
const (
	IDEmail       IDType = "email"        // raw email address
	IDPhone       IDType = "phone"        // raw phone number, any common format
	IDUserID      IDType = "user_id"      // the business's own customer id
	IDMAID        IDType = "maid"         // mobile advertising id (IDFA, GAID): a UUID
	IDEmailSHA256 IDType = "email_sha256" // SHA-256 of a normalised email, hex or base64
	IDPhoneSHA256 IDType = "phone_sha256" // SHA-256 of a normalised phone, hex or base64
)

// IDTypes lists every identifier type, in documentation order.
var IDTypes = []IDType{IDEmail, IDPhone, IDUserID, IDMAID, IDEmailSHA256, IDPhoneSHA256}

// Valid reports whether t is a known identifier type.
func (t IDType) Valid() bool {
	switch t {
	case IDEmail, IDPhone, IDUserID, IDMAID, IDEmailSHA256, IDPhoneSHA256:
		return true
	}
	return false
}

// Hashed reports whether identifiers of type t arrive already hashed.
func (t IDType) Hashed() bool { return t == IDEmailSHA256 || t == IDPhoneSHA256 }

// Kind is the kind of match key an identifier of type t produces: a
// pre-hashed email matches the keys of a raw email, and likewise for phones.
func (t IDType) Kind() KeyKind {
	switch t {
	case IDEmail, IDEmailSHA256:
		return KindEmail
	case IDPhone, IDPhoneSHA256:
		return KindPhone
	case IDUserID:
		return KindUserID
	case IDMAID:
		return KindMAID
	}
	return ""
}

// Identifier is one way of naming a person. Its value is personal data: it
// prints and logs redacted, and must not be stored anywhere but in memory.
type Identifier struct {
	Type  IDType `json:"type"`
	Value string `json:"value"`
}

// String returns the type and a redacted value, so an Identifier passed to a
// formatter by mistake leaks nothing.
func (id Identifier) String() string { return string(id.Type) + ":<redacted>" }

// GoString redacts like String, for %#v.
func (id Identifier) GoString() string { return id.String() }

// LogValue redacts the identifier in structured logs.
func (id Identifier) LogValue() slog.Value { return slog.StringValue(id.String()) }

// ErrInvalidIdentifier is wrapped by every normalisation error.
var ErrInvalidIdentifier = errors.New("invalid identifier")

// IdentifierError says which identifier type failed normalisation and why. It
// never carries the value itself.
type IdentifierError struct {
	Type   IDType
	Reason string
}

func (e *IdentifierError) Error() string {
	return fmt.Sprintf("invalid %s: %s", e.Type, e.Reason)
}

// Unwrap makes errors.Is(err, ErrInvalidIdentifier) hold.
func (e *IdentifierError) Unwrap() error { return ErrInvalidIdentifier }

func invalid(t IDType, format string, args ...any) error {
	return &IdentifierError{Type: t, Reason: fmt.Sprintf(format, args...)}
}

// Limits on raw values, well above anything legitimate; they bound the work a
// hostile input can cause.
const (
	maxEmailLen  = 254 // RFC 5321 path limit
	maxUserIDLen = 256
	maxPhoneLen  = 64
)

// Normalizer turns raw identifiers into their canonical form and match keys.
// Its zero value is usable: phones must then carry a country code.
type Normalizer struct {
	// DefaultRegion is the ISO 3166-1 alpha-2 region (e.g. "US", "GB") used to
	// read phone numbers written without a country code. Empty means such
	// numbers are rejected.
	DefaultRegion string
}

// NewNormalizer returns a Normalizer for the default region, which must be a
// region libphonenumber knows, or empty.
func NewNormalizer(defaultRegion string) (Normalizer, error) {
	r := strings.ToUpper(strings.TrimSpace(defaultRegion))
	if r != "" && phonenumbers.GetCountryCodeForRegion(r) == 0 {
		return Normalizer{}, fmt.Errorf("default phone region %q is not a known ISO 3166-1 region", defaultRegion)
	}
	return Normalizer{DefaultRegion: r}, nil
}

// Email is a normalised email address split at its last '@'.
type Email struct{ Local, Domain string }

func (e Email) String() string { return e.Local + "@" + e.Domain }

// NormalizeEmail trims and lowercases an address and checks its shape. It does
// not try to be an RFC 5322 parser: ad platforms and mail providers all match
// on the trimmed, lowercased text, and so must we.
func NormalizeEmail(raw string) (Email, error) {
	// Checked before lowercasing: strings.ToLower turns each invalid byte
	// into a valid U+FFFD, and the address would pass as another.
	if !utf8.ValidString(raw) {
		return Email{}, invalid(IDEmail, "not valid UTF-8")
	}
	s := strings.ToLower(strings.TrimFunc(raw, unicode.IsSpace))
	switch {
	case s == "":
		return Email{}, invalid(IDEmail, "empty")
	case len(s) > maxEmailLen:
		return Email{}, invalid(IDEmail, "longer than %d bytes", maxEmailLen)
	case strings.IndexFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
		return Email{}, invalid(IDEmail, "contains white space or control characters")
	}
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		return Email{}, invalid(IDEmail, "no @")
	}
	e := Email{Local: s[:at], Domain: s[at+1:]}
	switch {
	case e.Local == "":
		return Email{}, invalid(IDEmail, "empty local part")
	case e.Domain == "":
		return Email{}, invalid(IDEmail, "empty domain")
	case strings.ContainsRune(e.Local, '@') && !strings.HasPrefix(e.Local, `"`):
		return Email{}, invalid(IDEmail, "more than one @")
	case strings.HasPrefix(e.Domain, ".") || strings.HasSuffix(e.Domain, ".") || strings.Contains(e.Domain, ".."):
		return Email{}, invalid(IDEmail, "malformed domain")
	}
	return e, nil
}

// NormalizePhone parses a phone number with libphonenumber and returns it in
// E.164 form ("+18005550100"). A number without a country code is read in the
// default region. Every possible number is accepted (a known country code and
// a plausible length), valid or not: only what cannot be a phone number is
// rejected.
func (n Normalizer) NormalizePhone(raw string) (string, error) {
	s := strings.TrimFunc(raw, unicode.IsSpace)
	switch {
	case s == "":
		return "", invalid(IDPhone, "empty")
	case len(s) > maxPhoneLen:
		return "", invalid(IDPhone, "longer than %d bytes", maxPhoneLen)
	}
	if n.DefaultRegion == "" {
		// Without a region the international prefix is unknown; "00" is the
		// ITU's recommendation and most of the world's, so read it as '+'.
		if rest, ok := strings.CutPrefix(s, "00"); ok {
			s = "+" + rest
		}
		if !strings.HasPrefix(s, "+") {
			return "", invalid(IDPhone, "no country code and no default region configured")
		}
	}
	num, err := phonenumbers.Parse(s, n.DefaultRegion)
	if err != nil {
		return "", invalid(IDPhone, "not a phone number (%s)", phoneParseReason(err))
	}
	// Possible, not valid: validity follows the numbering plans' allocated
	// ranges, which lag reality and exclude reserved ranges (Ofcom's
	// +44 7700 900xxx drama numbers), and an opt-out refused for that would
	// leave a person who asked contactable. A possible number has a known
	// country code and a length its plan allows; that is all normalisation
	// needs.
	switch phonenumbers.IsPossibleNumberWithReason(num) {
	case phonenumbers.IS_POSSIBLE:
	case phonenumbers.IS_POSSIBLE_LOCAL_ONLY:
		return "", invalid(IDPhone, "a local number without its area code")
	case phonenumbers.INVALID_COUNTRY_CODE:
		return "", invalid(IDPhone, "unknown country code")
	case phonenumbers.TOO_SHORT:
		return "", invalid(IDPhone, "too short for its country code")
	case phonenumbers.TOO_LONG:
		return "", invalid(IDPhone, "too long for its country code")
	default:
		return "", invalid(IDPhone, "not a possible length for its country code")
	}
	return phonenumbers.Format(num, phonenumbers.E164), nil
}

// phoneParseReason maps libphonenumber's errors to text that cannot echo the
// input back.
func phoneParseReason(err error) string {
	switch {
	case errors.Is(err, phonenumbers.ErrInvalidCountryCode):
		return "unknown country code"
	case errors.Is(err, phonenumbers.ErrNotANumber):
		return "not a number"
	case errors.Is(err, phonenumbers.ErrTooShortNSN), errors.Is(err, phonenumbers.ErrTooShortAfterIDD):
		return "too short"
	case errors.Is(err, phonenumbers.ErrNumTooLong):
		return "too long"
	}
	return "unparseable"
}

// NormalizeUserID trims a customer id. Case is kept: it is the business's own
// key and may be case-sensitive.
func NormalizeUserID(raw string) (string, error) {
	s := strings.TrimFunc(raw, unicode.IsSpace)
	switch {
	case s == "":
		return "", invalid(IDUserID, "empty")
	case len(s) > maxUserIDLen:
		return "", invalid(IDUserID, "longer than %d bytes", maxUserIDLen)
	case !utf8.ValidString(s):
		return "", invalid(IDUserID, "not valid UTF-8")
	}
	return s, nil
}

// NormalizeMAID returns a mobile advertising id as a lowercase hyphenated
// UUID, the form Meta and Google match on. 32 hex digits without hyphens are
// accepted too.
func NormalizeMAID(raw string) (string, error) {
	s := strings.ToLower(strings.TrimFunc(raw, unicode.IsSpace))
	if s == "" {
		return "", invalid(IDMAID, "empty")
	}
	plain := strings.ReplaceAll(s, "-", "")
	if len(plain) != 32 || !isHex(plain) {
		return "", invalid(IDMAID, "not a UUID")
	}
	if len(s) != 32 && (len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-') {
		return "", invalid(IDMAID, "not a UUID")
	}
	return plain[:8] + "-" + plain[8:12] + "-" + plain[12:16] + "-" + plain[16:20] + "-" + plain[20:], nil
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// ParseSHA256 decodes a SHA-256 digest written as 64 hex digits (any case) or
// as standard or URL-safe base64, padded or not.
func ParseSHA256(t IDType, raw string) ([32]byte, error) {
	var d [32]byte
	s := strings.TrimFunc(raw, unicode.IsSpace)
	switch len(s) {
	case 0:
		return d, invalid(t, "empty")
	case 64:
		if _, err := hex.Decode(d[:], []byte(s)); err != nil {
			return d, invalid(t, "not hexadecimal")
		}
		return d, nil
	case 43, 44:
		s = strings.TrimRight(s, "=")
		enc := base64.RawStdEncoding
		if strings.ContainsAny(s, "-_") {
			enc = base64.RawURLEncoding
		}
		b, err := enc.DecodeString(s)
		if err != nil || len(b) != 32 {
			return d, invalid(t, "not base64")
		}
		copy(d[:], b)
		return d, nil
	}
	return d, invalid(t, "a SHA-256 digest is 64 hex digits or 44 base64 characters, got %d characters", len(s))
}

// sum hashes a normalised text value.
func sum(s string) [32]byte { return sha256.Sum256([]byte(s)) }
