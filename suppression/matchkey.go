package suppression

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"log/slog"
	"strconv"
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

// Variants returns every normalised form of a raw email or phone that some ad
// platform hashes, deduplicated, with the platforms that use each. User ids and
// MAIDs have a single form.
func (n Normalizer) Variants(id Identifier) ([]Variant, error) {
	var vs []Variant
	add := func(text string, platforms ...string) {
		for i := range vs {
			if vs[i].Text == text {
				vs[i].Platforms = append(vs[i].Platforms, platforms...)
				return
			}
		}
		vs = append(vs, Variant{Text: text, Platforms: platforms})
	}
	switch id.Type {
	case IDEmail:
		e, err := NormalizeEmail(id.Value)
		if err != nil {
			return nil, err
		}
		// Meta, X, LinkedIn and Snap hash the trimmed, lowercased address.
		add(e.String(), PlatformMeta, PlatformX, PlatformLinkedIn, PlatformSnap)
		add(e.googleVariant().String(), PlatformGoogle)
		if t := e.tiktokVariant(); t.Local != "" {
			add(t.String(), PlatformTikTok)
		}
	case IDPhone:
		e164, err := n.NormalizePhone(id.Value)
		if err != nil {
			return nil, err
		}
		// TikTok's guides disagree (E.164 with '+', or digits only), so it
		// gets both.
		add(e164, PlatformGoogle, PlatformX, PlatformTikTok)
		add(e164[1:], PlatformMeta, PlatformSnap, PlatformTikTok)
	case IDUserID:
		v, err := NormalizeUserID(id.Value)
		if err != nil {
			return nil, err
		}
		add(v)
	case IDMAID:
		v, err := NormalizeMAID(id.Value)
		if err != nil {
			return nil, err
		}
		add(v, PlatformGoogle, PlatformMeta, PlatformTikTok, PlatformX, PlatformSnap)
	case IDEmailSHA256, IDPhoneSHA256:
		return nil, invalid(id.Type, "a pre-hashed identifier has no plain-text variants")
	default:
		return nil, &IdentifierError{Type: id.Type, Reason: "unknown identifier type"}
	}
	return vs, nil
}

// Expand returns every match key of an identifier: the SHA-256 of each
// platform variant of a raw email or phone, or the digest itself for a
// pre-hashed one. Keys are distinct and in a stable order; the first is the
// identifier's primary key (the plain normalised form).
func (n Normalizer) Expand(id Identifier) ([]MatchKey, error) {
	if id.Type.Hashed() {
		h, err := ParseSHA256(id.Type, id.Value)
		if err != nil {
			return nil, err
		}
		return []MatchKey{{Kind: id.Type.Kind(), Hash: h}}, nil
	}
	vs, err := n.Variants(id)
	if err != nil {
		return nil, err
	}
	kind := id.Type.Kind()
	keys := make([]MatchKey, len(vs))
	for i, v := range vs {
		keys[i] = MatchKey{Kind: kind, Hash: sum(v.Text)}
	}
	return keys, nil
}

// ExpandAll expands several identifiers of one person and drops duplicate
// keys. It fails on the first invalid identifier, naming its position.
func (n Normalizer) ExpandAll(ids []Identifier) ([]MatchKey, error) {
	var out []MatchKey
	seen := make(map[MatchKey]struct{}, 4*len(ids))
	for i, id := range ids {
		keys, err := n.Expand(id)
		if err != nil {
			return nil, &IndexedError{Index: i, Err: err}
		}
		for _, k := range keys {
			if _, dup := seen[k]; !dup {
				seen[k] = struct{}{}
				out = append(out, k)
			}
		}
	}
	return out, nil
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

// Peppered reports whether storage keys are HMACs.
func (k Keyer) Peppered() bool { return len(k.pepper) > 0 }

// StorageKey returns the 32-byte key the store files a match key under.
func (k Keyer) StorageKey(m MatchKey) [32]byte {
	var out [32]byte
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
