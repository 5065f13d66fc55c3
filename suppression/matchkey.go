package suppression

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"log/slog"
	"strconv"
	"strings"
	"sync"
)

// KeyKind is what a match key hashes: hashed emails from any source share the
// email kind, so a pre-hashed list matches the keys of a raw unsubscribe.
type KeyKind string

// Match key kinds.
const (
	KindEmail  KeyKind = "email"
	KindPhone  KeyKind = "phone"
	KindUserID KeyKind = "user_id"
	KindMAID   KeyKind = "maid"
)

// MatchKey is the SHA-256 of one normalised form of an identifier. Two
// identifiers match when they share a match key.
type MatchKey struct {
	Kind KeyKind
	Hash [32]byte
}

// String gives the kind and the first bytes of the hash: enough to correlate
// log lines, too little to look anyone up.
func (k MatchKey) String() string { return string(k.Kind) + ":" + hex.EncodeToString(k.Hash[:4]) }

// LogValue logs a match key as String does.
func (k MatchKey) LogValue() slog.Value { return slog.StringValue(k.String()) }

// Variant is one normalised form of an identifier and the ad platforms that
// hash that form. It holds the normalised plain text and exists for tests and
// operator tooling; production code wants Expand.
type Variant struct {
	Platforms []string
	Text      string
}

// Platform names, as they appear in Variant and in the filter API.
const (
	PlatformGoogle   = "google"
	PlatformMeta     = "meta"
	PlatformTikTok   = "tiktok"
	PlatformX        = "x"
	PlatformLinkedIn = "linkedin"
	PlatformSnap     = "snap"
)

// Platforms lists every ad platform whose hashing rules are modelled.
var Platforms = []string{PlatformGoogle, PlatformMeta, PlatformTikTok, PlatformX, PlatformLinkedIn, PlatformSnap}

// platformSet is a set of platforms, a bit per entry of Platforms.
type platformSet uint8

const (
	onGoogle platformSet = 1 << iota
	onMeta
	onTikTok
	onX
	onLinkedIn
	onSnap
)

func (s platformSet) names() []string {
	out := []string{}
	for i, p := range Platforms {
		if s&(1<<i) != 0 {
			out = append(out, p)
		}
	}
	return out
}

// Variants returns every normalised form of a raw identifier that some ad
// platform hashes, deduplicated, with the platforms that use each. User ids
// and MAIDs have a single form.
func (n Normalizer) Variants(id Identifier) ([]Variant, error) {
	var (
		vs   []Variant
		sets []platformSet
	)
	err := n.forms(id, func(text string, on platformSet) {
		for i := range vs {
			if vs[i].Text == text {
				sets[i] |= on
				return
			}
		}
		vs = append(vs, Variant{Text: text})
		sets = append(sets, on)
	})
	if err != nil {
		return nil, err
	}
	for i := range vs {
		vs[i].Platforms = sets[i].names()
	}
	return vs, nil
}

// forms is the rule of which normalised forms an identifier has: it calls
// emit for each, the plain normalised form first (a form may repeat when
// two transformations agree). Pre-hashed identifiers have none.
//
// Emails expand into the closure of the transformations the platforms
// document: lowercase and trim always; for gmail.com and googlemail.com every
// combination of removing the dots of the local part (Google) and removing
// the +tag (Google's Data Manager API, TikTok), since Google's Ads API keeps
// the tag while its Data Manager API drops it; for every other domain the
// address with and without the +tag (TikTok drops it everywhere).
func (n Normalizer) forms(id Identifier, emit func(text string, on platformSet)) error {
	switch id.Type {
	case IDEmail:
		e, err := NormalizeEmail(id.Value)
		if err != nil {
			return err
		}
		untagged := e.Local
		if i := strings.IndexByte(untagged, '+'); i >= 0 {
			untagged = untagged[:i]
		}
		if e.Domain != "gmail.com" && e.Domain != "googlemail.com" {
			emit(e.String(), onMeta|onX|onLinkedIn|onSnap|onGoogle)
			if untagged != "" {
				emit(untagged+"@"+e.Domain, onTikTok)
			}
			return nil
		}
		emit(e.String(), onMeta|onX|onLinkedIn|onSnap)
		if l := strings.ReplaceAll(e.Local, ".", ""); l != "" {
			emit(l+"@"+e.Domain, onGoogle) // Ads API Customer Match: dots go, the tag stays
		}
		if untagged != "" {
			emit(untagged+"@"+e.Domain, onTikTok)
		}
		if l := strings.ReplaceAll(untagged, ".", ""); l != "" {
			emit(l+"@"+e.Domain, onGoogle) // Data Manager API: dots and tag go
		}
	case IDPhone:
		e164, err := n.NormalizePhone(id.Value)
		if err != nil {
			return err
		}
		// TikTok's guides disagree (E.164 with '+', or digits only), so it
		// gets both.
		emit(e164, onGoogle|onX|onTikTok)
		emit(e164[1:], onMeta|onSnap|onTikTok)
	case IDUserID:
		v, err := NormalizeUserID(id.Value)
		if err != nil {
			return err
		}
		emit(v, 0)
	case IDMAID:
		v, err := NormalizeMAID(id.Value)
		if err != nil {
			return err
		}
		emit(v, onGoogle|onMeta|onTikTok|onX|onSnap)
	case IDEmailSHA256, IDPhoneSHA256:
		return invalid(id.Type, "a pre-hashed identifier has no plain-text variants")
	default:
		return &IdentifierError{Type: id.Type, Reason: "unknown identifier type"}
	}
	return nil
}

// Expand returns the match keys of the identifiers of one person: the
// SHA-256 of each platform form of a raw email or phone (see Variants), or
// the digest itself for a pre-hashed one. It is the one place identifiers
// become keys: the API's checks, the consumer, the schemas' decoding, import
// and the access right all call it. Keys are distinct and in a stable order;
// the first is the first identifier's primary key (its plain normalised
// form), the Kafka message key of an event.
//
// Every identifier is checked; when any cannot be normalised the error is an
// *ExpandError naming each one by position, and no keys are returned.
func (n Normalizer) Expand(ids ...Identifier) ([]MatchKey, error) {
	keys := make([]MatchKey, 0, 2*len(ids))
	var bad []IndexedError
	for i, id := range ids {
		var err error
		keys, err = n.appendKeys(keys, id)
		if err != nil {
			bad = append(bad, IndexedError{Index: i, Err: err})
		}
	}
	if bad != nil {
		return nil, &ExpandError{Invalid: bad}
	}
	return keys, nil
}

// appendKeys appends the keys of one identifier that dst does not hold yet.
func (n Normalizer) appendKeys(dst []MatchKey, id Identifier) ([]MatchKey, error) {
	add := func(k MatchKey) {
		for _, d := range dst {
			if d == k {
				return
			}
		}
		dst = append(dst, k)
	}
	if id.Type.Hashed() {
		h, err := ParseSHA256(id.Type, id.Value)
		if err != nil {
			return dst, err
		}
		add(MatchKey{Kind: id.Type.Kind(), Hash: h})
		return dst, nil
	}
	kind := id.Type.Kind()
	err := n.forms(id, func(text string, _ platformSet) { add(MatchKey{Kind: kind, Hash: sum(text)}) })
	return dst, err
}

// ExpandError lists every identifier that could not be normalised. Its
// message names positions, types and problems, never a value.
type ExpandError struct {
	Invalid []IndexedError
}

func (e *ExpandError) Error() string {
	parts := make([]string, len(e.Invalid))
	for i := range e.Invalid {
		parts[i] = e.Invalid[i].Error()
	}
	return strings.Join(parts, "; ")
}

// Unwrap returns each identifier's error, so errors.Is(err,
// ErrInvalidIdentifier) holds.
func (e *ExpandError) Unwrap() []error {
	out := make([]error, len(e.Invalid))
	for i := range e.Invalid {
		out[i] = &e.Invalid[i]
	}
	return out
}

// IndexedError says which element of a list failed.
type IndexedError struct {
	Index int
	Err   error
}

func (e *IndexedError) Error() string {
	return "identifiers[" + strconv.Itoa(e.Index) + "]: " + e.Err.Error()
}

// Unwrap returns the element's error.
func (e *IndexedError) Unwrap() error { return e.Err }

// Keyer turns match keys into the opaque keys the store files them under.
// With a pepper the key is HMAC-SHA256(pepper, kind || 0 || hash), so a leaked
// store cannot be dictionary-attacked without the pepper; without one it is
// SHA-256 of the same bytes. The kind is mixed in so a user id that happens to
// equal a phone number never shares its key.
type Keyer struct {
	pepper []byte
	macs   *sync.Pool // of hash.Hash: HMAC-SHA256 under the pepper, reused
}

// NewKeyer returns a Keyer; an empty pepper means unkeyed SHA-256.
func NewKeyer(pepper []byte) Keyer {
	p := append([]byte(nil), pepper...)
	return Keyer{pepper: p, macs: &sync.Pool{New: func() any { return hmac.New(sha256.New, p) }}}
}

// StorageKeys appends the storage key of each match key to dst.
func (k Keyer) StorageKeys(dst []StorageKey, ms []MatchKey) []StorageKey {
	for _, m := range ms {
		dst = append(dst, k.StorageKey(m))
	}
	return dst
}

// Tag returns a keyed digest of parts (each followed by a NUL byte): an
// HMAC-SHA256 under the pepper, SHA-256 without one. It is for ids derived
// from personal data, such as an imported row's event id, which may be
// logged: without the pepper nobody can test them against guessed
// addresses.
func (k Keyer) Tag(parts ...string) [32]byte {
	var h hash.Hash
	if len(k.pepper) == 0 {
		h = sha256.New()
	} else {
		h = k.macs.Get().(hash.Hash)
		defer k.macs.Put(h)
		h.Reset()
	}
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// Peppered reports whether storage keys are HMACs.
func (k Keyer) Peppered() bool { return len(k.pepper) > 0 }

// StorageKey is the opaque key the store files a match key under: an HMAC
// of the match key under the pepper. Everything below the domain (the
// store, the ledger, the replicas' index) sees only storage keys.
type StorageKey [32]byte

// String gives the first bytes in hex: enough to correlate log lines.
func (k StorageKey) String() string { return hex.EncodeToString(k[:4]) }

// LogValue logs a storage key as String does.
func (k StorageKey) LogValue() slog.Value { return slog.StringValue(k.String()) }

// StorageKey returns the key the store files a match key under.
func (k Keyer) StorageKey(m MatchKey) StorageKey {
	var out StorageKey
	if len(k.pepper) == 0 {
		h := sha256.New()
		writeKeyInput(h, m)
		h.Sum(out[:0])
		return out
	}
	h := k.macs.Get().(hash.Hash)
	h.Reset()
	writeKeyInput(h, m)
	h.Sum(out[:0])
	k.macs.Put(h)
	return out
}

type byteWriter interface{ Write([]byte) (int, error) }

func writeKeyInput(w byteWriter, m MatchKey) {
	_, _ = w.Write([]byte(m.Kind))
	_, _ = w.Write([]byte{0})
	_, _ = w.Write(m.Hash[:])
}

// Fingerprint names the keying without revealing the pepper: the first bytes
// of the storage key of a fixed probe. Replicas with different peppers file
// the same person under different keys; comparing fingerprints catches it.
func (k Keyer) Fingerprint() string {
	sk := k.StorageKey(MatchKey{Kind: "fingerprint-probe"})
	return hex.EncodeToString(sk[:4])
}
