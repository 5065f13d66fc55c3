package unsubscribe

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/suppressd/suppressd/suppression"
)

// Token lifetimes. CAN-SPAM requires an opt-out to keep working for at least
// 30 days after the send; links are read late, so the default is three times
// that.
const (
	DefaultTTL = 90 * 24 * time.Hour
	MinTTL     = 30 * 24 * time.Hour
)

// Errors of Verify, each wrapped with a short reason that never quotes the
// token. They tell apart a link that was mangled in transit (ErrMalformed),
// signed by a key since retired (ErrUnknownKey), altered or made up
// (ErrForged), or simply old (ErrExpired).
var (
	ErrMalformed  = errors.New("malformed unsubscribe token")
	ErrUnknownKey = errors.New("unsubscribe token signed by an unknown key")
	ErrForged     = errors.New("unsubscribe token failed authentication")
	ErrExpired    = errors.New("unsubscribe token expired")
)

// Errors of Mint.
var (
	ErrInvalidClaims = errors.New("invalid unsubscribe claims")
	ErrTTLTooShort   = errors.New("unsubscribe token lifetime below the 30-day minimum")
)

// Limits on keys and claims. They keep a token short enough for a mail
// header and bound what a forged one can make Verify do.
const (
	MaxKeyIDLen     = 16
	MinSecretLen    = 32
	MaxContextLen   = 128 // campaign and list ids
	maxValueLen     = 256
	maxTokenLen     = 2048
	formatVersion   = 1
	nonceLen        = 12
	subkeyInfo      = "suppressd unsubscribe token v1 AES-256-GCM"
	additionalLabel = "suppressd/unsubscribe/v1|"
)

// Key is one token key. ID travels in clear at the start of every token it
// seals, so a verifier knows which secret to use: pick a short, meaningless
// one ("k1", "2026a"). Secret is at least 32 random bytes; the AES key is
// derived from it with HKDF-SHA256, so the same secret is never used raw.
type Key struct {
	ID     string
	Secret []byte
}

// Keyring seals tokens with its signing key and opens tokens sealed by any
// of its keys. To rotate: add the new key, make it the signing key, and keep
// the old one for as long as its tokens live (DefaultTTL after the last send
// it signed). A Keyring is safe for concurrent use.
//
// Each key may seal about 2^32 tokens (the bound for random 96-bit GCM
// nonces); rotate well before that.
type Keyring struct {
	signing   string
	signingAD []byte // additionalData(signing), made once: Mint is hot
	aeads     map[string]cipher.AEAD
}

// NewKeyring returns a keyring that signs with the key named signing and
// verifies with every key in keys.
func NewKeyring(signing string, keys []Key) (*Keyring, error) {
	if len(keys) == 0 {
		return nil, errors.New("unsubscribe keyring: no keys")
	}
	kr := &Keyring{signing: signing, aeads: make(map[string]cipher.AEAD, len(keys))}
	for i, k := range keys {
		if err := checkKeyID(k.ID); err != nil {
			return nil, fmt.Errorf("unsubscribe keyring: key %d: %w", i, err)
		}
		if _, dup := kr.aeads[k.ID]; dup {
			return nil, fmt.Errorf("unsubscribe keyring: key id %q appears twice", k.ID)
		}
		if len(k.Secret) < MinSecretLen {
			return nil, fmt.Errorf("unsubscribe keyring: key %q: secret is %d bytes, want at least %d", k.ID, len(k.Secret), MinSecretLen)
		}
		sub, err := hkdf.Key(sha256.New, k.Secret, nil, subkeyInfo, 32)
		if err != nil {
			return nil, fmt.Errorf("unsubscribe keyring: key %q: %w", k.ID, err)
		}
		block, err := aes.NewCipher(sub)
		if err != nil {
			return nil, fmt.Errorf("unsubscribe keyring: key %q: %w", k.ID, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("unsubscribe keyring: key %q: %w", k.ID, err)
		}
		kr.aeads[k.ID] = aead
	}
	if _, ok := kr.aeads[signing]; !ok {
		return nil, fmt.Errorf("unsubscribe keyring: signing key %q is not among the keys", signing)
	}
	kr.signingAD = additionalData(signing)
	return kr, nil
}

// SigningKeyID returns the id of the key new tokens are sealed with.
func (kr *Keyring) SigningKeyID() string { return kr.signing }

// checkKeyID allows the characters of base64url: a key id sits in a URL
// path and in a mail header, and '.' separates it from the sealed part.
func checkKeyID(id string) error {
	if id == "" || len(id) > MaxKeyIDLen {
		return fmt.Errorf("key id must be 1 to %d characters", MaxKeyIDLen)
	}
	for i := 0; i < len(id); i++ {
		if !isB64URL(id[i]) {
			return errors.New("key id may hold only A-Z, a-z, 0-9, '-' and '_'")
		}
	}
	return nil
}

func isB64URL(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_'
}

// Claims is what a token says: who may unsubscribe, from what, and until
// when.
type Claims struct {
	// Namespace is the tenant or brand; empty means the default one.
	// Verify returns suppression.DefaultNamespace for it.
	Namespace  string
	Identifier suppression.Identifier
	// Scopes are what the link unsubscribes from: "email", "topic:newsletter"...
	Scopes     []suppression.Scope
	CampaignID string // optional, copied into the event's context
	ListID     string // optional, copied into the event's context
	// IssuedAt is set by Mint to its now; any value given is ignored.
	IssuedAt time.Time
	// ExpiresAt defaults to now + DefaultTTL in Mint, and may not be sooner
	// than now + MinTTL.
	ExpiresAt time.Time
}

// Mint seals claims into a token with the signing key. The token is
// URL-safe: a key id, '.', and unpadded base64url.
func (kr *Keyring) Mint(c Claims, now time.Time) (string, error) {
	if c.ExpiresAt.IsZero() {
		c.ExpiresAt = now.Add(DefaultTTL)
	}
	if ttl := c.ExpiresAt.Sub(now); ttl < MinTTL {
		return "", fmt.Errorf("%w: expires %s after issue", ErrTTLTooShort, ttl.Round(time.Second))
	}
	c.IssuedAt = now
	payload, err := encodeClaims(c)
	if err != nil {
		return "", err
	}
	aead := kr.aeads[kr.signing]
	if n := len(kr.signing) + 1 + base64.RawURLEncoding.EncodedLen(nonceLen+len(payload)+aead.Overhead()); n > maxTokenLen {
		// Verify would refuse it: too many or too long scopes and ids.
		return "", &ClaimError{Reason: fmt.Sprintf("the token would be %d characters, over the %d a link may have; use fewer or shorter scopes, campaign and list ids", n, maxTokenLen)}
	}
	sealed := make([]byte, nonceLen, nonceLen+len(payload)+aead.Overhead())
	rand.Read(sealed[:nonceLen]) // never fails (crypto/rand since Go 1.24)
	sealed = aead.Seal(sealed, sealed[:nonceLen], payload, kr.signingAD)
	return kr.signing + "." + base64.RawURLEncoding.EncodeToString(sealed), nil
}

// Verify opens a token and checks its expiry. Errors wrap ErrMalformed,
// ErrUnknownKey, ErrForged or ErrExpired; an expired token is reported only
// once it proved genuine.
func (kr *Keyring) Verify(token string, now time.Time) (Claims, error) {
	kid, aead, sealed, err := kr.open(token)
	if err != nil {
		return Claims{}, err
	}
	payload, err := aead.Open(nil, sealed[:nonceLen], sealed[nonceLen:], additionalData(kid))
	if err != nil {
		return Claims{}, ErrForged
	}
	c, err := decodeClaims(payload)
	if err != nil {
		// Authentic but unreadable: sealed by a newer or broken minter.
		return Claims{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if !now.Before(c.ExpiresAt) {
		return Claims{}, fmt.Errorf("%w on %s", ErrExpired, c.ExpiresAt.UTC().Format(time.DateOnly))
	}
	return c, nil
}

// open splits a token and finds its key, without authenticating it.
func (kr *Keyring) open(token string) (kid string, aead cipher.AEAD, sealed []byte, err error) {
	if len(token) > maxTokenLen {
		return "", nil, nil, fmt.Errorf("%w: longer than %d characters", ErrMalformed, maxTokenLen)
	}
	kid, body, ok := strings.Cut(token, ".")
	if !ok {
		return "", nil, nil, fmt.Errorf("%w: no key id", ErrMalformed)
	}
	if checkKeyID(kid) != nil {
		return "", nil, nil, fmt.Errorf("%w: bad key id", ErrMalformed)
	}
	aead, ok = kr.aeads[kid]
	if !ok {
		return "", nil, nil, ErrUnknownKey
	}
	// Strict: one byte string has exactly one spelling, so a token's text
	// (and the event id derived from it) cannot be varied.
	sealed, err = base64.RawURLEncoding.Strict().DecodeString(body)
	if err != nil {
		return "", nil, nil, fmt.Errorf("%w: not base64url", ErrMalformed)
	}
	if len(sealed) < nonceLen+aead.Overhead()+1 {
		return "", nil, nil, fmt.Errorf("%w: too short", ErrMalformed)
	}
	return kid, aead, sealed, nil
}

// KeyID returns the key id of a token whose key the keyring holds, for
// logs; "" otherwise, so a made-up id never reaches a log line.
func (kr *Keyring) KeyID(token string) string {
	kid, _, _ := strings.Cut(token, ".")
	if _, ok := kr.aeads[kid]; ok {
		return kid
	}
	return ""
}

// additionalData binds a token to its key id: a sealed part moved under
// another id fails even if both ids share a secret.
func additionalData(kid string) []byte { return []byte(additionalLabel + kid) }

// The payload, version 1 (all integers unsigned varints, strings a length
// then bytes):
//
//	version(1) issued_at(unix s) ttl(s) id_type(byte) id_value(str)
//	namespace(str, "" = default) n_scopes(byte) scope... campaign_id(str) list_id(str)
//
// A scope is one byte: a code from scopeCodes, or topicCode followed by the
// topic name. The codes are part of the format: append, never reorder.
var idTypeCodes = []suppression.IDType{
	suppression.IDEmail, suppression.IDPhone, suppression.IDUserID,
	suppression.IDMAID, suppression.IDEmailSHA256, suppression.IDPhoneSHA256,
}

var scopeCodes = []suppression.Scope{
	suppression.ScopeGlobal,
	suppression.ChannelScope(suppression.ChannelEmail),
	suppression.ChannelScope(suppression.ChannelSMS),
	suppression.ChannelScope(suppression.ChannelPush),
	suppression.ChannelScope(suppression.ChannelAds),
	suppression.PurposeScope(suppression.PurposeMarketing),
	suppression.PurposeScope(suppression.PurposeAdvertising),
	suppression.PurposeScope(suppression.PurposeProfiling),
	suppression.PurposeScope(suppression.PurposeSaleSharing),
}

const topicCode = 0x40

// ClaimError is a claim Mint refuses. Field names it as POST /v1/links
// spells it ("namespace", "identifier.type", "identifier.value", "scopes",
// "scopes[1]", "campaign_id", "list_id"), or is empty when no one field is
// at fault; Reason never quotes an identifier's value. It wraps
// ErrInvalidClaims.
type ClaimError struct {
	Field  string
	Reason string
	// Shared is set by Minter.Links when the field at fault is one of the
	// shared claims (every recipient of a request would fail the same way),
	// not the recipient's own.
	Shared bool
}

func (e *ClaimError) Error() string {
	if e.Field == "" {
		return ErrInvalidClaims.Error() + ": " + e.Reason
	}
	return ErrInvalidClaims.Error() + ": " + e.Field + ": " + e.Reason
}

// Unwrap makes errors.Is(err, ErrInvalidClaims) hold.
func (e *ClaimError) Unwrap() error { return ErrInvalidClaims }

// checkClaims applies the domain's rules, so a token that verifies always
// yields an event the consumer accepts.
func checkClaims(c *Claims) error {
	bad := func(field, format string, args ...any) error {
		return &ClaimError{Field: field, Reason: fmt.Sprintf(format, args...)}
	}
	if c.Namespace != "" {
		if err := suppression.CheckName(c.Namespace); err != nil {
			return bad("namespace", "%v", err)
		}
	}
	if !slices.Contains(idTypeCodes, c.Identifier.Type) {
		// Not quoted: a caller who swapped type and value would see the
		// value in the message.
		return bad("identifier.type", "unknown identifier type (want email, phone, user_id, maid, email_sha256, phone_sha256)")
	}
	if err := checkValue(c.Identifier); err != nil {
		return bad("identifier.value", "%v", err) // IdentifierError never quotes the value
	}
	if n := len(c.Scopes); n == 0 || n > suppression.MaxScopes {
		return bad("scopes", "1 to %d scopes required, got %d", suppression.MaxScopes, n)
	}
	for i, s := range c.Scopes {
		if _, err := suppression.ParseScope(string(s)); err != nil {
			return bad(fmt.Sprintf("scopes[%d]", i), "%v", err)
		}
	}
	for _, f := range [...]struct{ name, v string }{{"campaign_id", c.CampaignID}, {"list_id", c.ListID}} {
		if len(f.v) > MaxContextLen || !utf8.ValidString(f.v) {
			return bad(f.name, "must be valid UTF-8 of at most %d bytes", MaxContextLen)
		}
	}
	return nil
}

// checkValue rejects an identifier the consumer would dead-letter. Phones
// are only bounded: reading one needs the deployment's default region.
func checkValue(id suppression.Identifier) error {
	var err error
	switch id.Type {
	case suppression.IDEmail:
		_, err = suppression.NormalizeEmail(id.Value)
	case suppression.IDUserID:
		_, err = suppression.NormalizeUserID(id.Value)
	case suppression.IDMAID:
		_, err = suppression.NormalizeMAID(id.Value)
	case suppression.IDEmailSHA256, suppression.IDPhoneSHA256:
		_, err = suppression.ParseSHA256(id.Type, id.Value)
	case suppression.IDPhone:
		if strings.TrimSpace(id.Value) == "" {
			err = &suppression.IdentifierError{Type: id.Type, Reason: "empty"}
		}
	}
	if err == nil && len(id.Value) > maxValueLen {
		err = &suppression.IdentifierError{Type: id.Type, Reason: fmt.Sprintf("longer than %d bytes", maxValueLen)}
	}
	return err
}

func encodeClaims(c Claims) ([]byte, error) {
	if err := checkClaims(&c); err != nil {
		return nil, err
	}
	iat, exp := c.IssuedAt.Unix(), c.ExpiresAt.Unix()
	b := make([]byte, 0, 64+len(c.Identifier.Value))
	b = append(b, formatVersion)
	b = binary.AppendUvarint(b, uint64(iat))
	b = binary.AppendUvarint(b, uint64(exp-iat))
	b = append(b, byte(slices.Index(idTypeCodes, c.Identifier.Type)+1))
	b = appendString(b, c.Identifier.Value)
	ns := c.Namespace
	if ns == suppression.DefaultNamespace {
		ns = ""
	}
	b = appendString(b, ns)
	scopes := dedupe(c.Scopes)
	b = append(b, byte(len(scopes)))
	for _, s := range scopes {
		if i := slices.Index(scopeCodes, s); i >= 0 {
			b = append(b, byte(i+1))
		} else {
			topic, _ := s.Topic() // checkClaims: every other scope is a topic
			b = append(b, topicCode)
			b = appendString(b, topic)
		}
	}
	b = appendString(b, c.CampaignID)
	b = appendString(b, c.ListID)
	return b, nil
}

func decodeClaims(b []byte) (Claims, error) {
	d := decoder{b: b}
	if v := d.byte(); v != formatVersion {
		return Claims{}, fmt.Errorf("format version %d", v)
	}
	var c Claims
	iat, ttl := d.uvarint(), d.uvarint()
	if iat > 1<<40 || ttl > 1<<40 {
		return Claims{}, errors.New("time out of range")
	}
	c.IssuedAt = time.Unix(int64(iat), 0).UTC()
	c.ExpiresAt = time.Unix(int64(iat+ttl), 0).UTC()
	t := int(d.byte())
	if t < 1 || t > len(idTypeCodes) {
		return Claims{}, errors.New("identifier type")
	}
	c.Identifier = suppression.Identifier{Type: idTypeCodes[t-1], Value: d.string()}
	c.Namespace = d.string()
	if c.Namespace == "" {
		c.Namespace = suppression.DefaultNamespace
	}
	n := int(d.byte())
	for range n {
		switch code := int(d.byte()); {
		case code == topicCode:
			c.Scopes = append(c.Scopes, suppression.TopicScope(d.string()))
		case code >= 1 && code <= len(scopeCodes):
			c.Scopes = append(c.Scopes, scopeCodes[code-1])
		default:
			return Claims{}, errors.New("scope code")
		}
	}
	c.CampaignID = d.string()
	c.ListID = d.string()
	if d.err != nil {
		return Claims{}, d.err
	}
	if len(d.b) != 0 {
		return Claims{}, errors.New("trailing bytes")
	}
	if err := checkClaims(&c); err != nil {
		return Claims{}, err
	}
	return c, nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// decoder reads the payload; the first error sticks and later reads return
// zero values.
type decoder struct {
	b   []byte
	err error
}

var errShort = errors.New("payload truncated")

func (d *decoder) byte() byte {
	if d.err != nil || len(d.b) == 0 {
		d.err = firstErr(d.err, errShort)
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errShort
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) string() string {
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.b)) {
		d.err = firstErr(d.err, errShort)
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func firstErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

func dedupe(ss []suppression.Scope) []suppression.Scope {
	out := make([]suppression.Scope, 0, len(ss))
	for _, s := range ss {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}
