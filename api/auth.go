package api

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"slices"
	"strings"
)

// Scope is what an API key may do.
type Scope string

// Scopes of API keys.
const (
	ScopeCheck   Scope = "check"
	ScopeFilter  Scope = "filter"
	ScopePublish Scope = "publish"
	ScopeAdmin   Scope = "admin"
	// ScopeLinks mints unsubscribe links (POST /v1/links): the sender's
	// scope beside check. It reveals nothing stored.
	ScopeLinks Scope = "links"
)

var allScopes = []Scope{ScopeCheck, ScopeFilter, ScopePublish, ScopeAdmin, ScopeLinks}

// Key is an API key as configured: its name, the SHA-256 of its secret and
// its scopes. The secret itself is never held.
type Key struct {
	Name   string
	Hash   [32]byte
	Scopes []Scope
}

func (k *Key) has(s Scope) bool { return slices.Contains(k.Scopes, s) }

// keyOf returns the key that authorised the request.
func keyOf(r *http.Request) *Key {
	k, _ := r.Context().Value(ctxKey{}).(*Key)
	return k
}

// ParseKeys reads SUPPRESSD_API_KEYS: comma-separated entries
// "name:scope+scope:sha256-hex-of-secret". Errors name an entry by its
// position ("entry 2").
func ParseKeys(spec string) ([]Key, error) {
	var entries []KeyEntry
	for i, text := range strings.Split(spec, ",") {
		entries = append(entries, KeyEntry{Text: text, Where: fmt.Sprintf("entry %d", i+1)})
	}
	return ParseKeyEntries(entries)
}

// KeyEntry is one configured key as written, and where it was found, for
// errors: "entry 2" of a list, "line 7" of a file.
type KeyEntry struct {
	Text, Where string
}

// ParseKeyEntries reads keys; blank entries are skipped. Errors name the
// entry by Where, never by its text, which may hold a secret pasted by
// mistake; a name appears only once its entry is otherwise valid.
func ParseKeyEntries(entries []KeyEntry) ([]Key, error) {
	var keys []Key
	seen := map[string]string{}
	for _, e := range entries {
		text := strings.TrimSpace(e.Text)
		if text == "" {
			continue
		}
		k, err := parseKey(text)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", e.Where, err)
		}
		if first, ok := seen[k.Name]; ok {
			return nil, fmt.Errorf("%s: key %s is configured twice (also %s)", e.Where, k.Name, first)
		}
		seen[k.Name] = e.Where
		keys = append(keys, k)
	}
	return keys, nil
}

func parseKey(entry string) (Key, error) {
	parts := strings.Split(entry, ":")
	if len(parts) != 3 {
		return Key{}, fmt.Errorf("want name:scope+scope:sha256hex (%d fields, want 3)", len(parts))
	}
	k := Key{Name: parts[0]}
	if k.Name == "" {
		return Key{}, fmt.Errorf("empty name")
	}
	for _, s := range strings.Split(parts[1], "+") {
		if !slices.Contains(allScopes, Scope(s)) {
			return Key{}, fmt.Errorf("unknown scope (want check, filter, publish, admin or links, joined by +)")
		}
		k.Scopes = append(k.Scopes, Scope(s))
	}
	h, err := hex.DecodeString(strings.TrimPrefix(parts[2], "sha256="))
	if err != nil || len(h) != 32 {
		return Key{}, fmt.Errorf("the hash must be 64 hex digits (the SHA-256 of the secret, as suppressd apikey prints it)")
	}
	copy(k.Hash[:], h)
	return k, nil
}

// ParseScopes reads a comma-separated list of scope names.
func ParseScopes(list string) ([]Scope, error) {
	var out []Scope
	for _, s := range strings.Split(list, ",") {
		s = strings.TrimSpace(s)
		if !slices.Contains(allScopes, Scope(s)) {
			return nil, fmt.Errorf("unknown scope %q (want check, filter, publish, admin)", s)
		}
		out = append(out, Scope(s))
	}
	return out, nil
}

// NewKey makes a random secret and its configuration entry.
func NewKey(name string, scopes ...Scope) (secret, entry string, err error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", err
	}
	secret = "sdk_" + base64.RawURLEncoding.EncodeToString(b[:])
	h := sha256.Sum256([]byte(secret))
	names := make([]string, len(scopes))
	for i, s := range scopes {
		names[i] = string(s)
	}
	return secret, name + ":" + strings.Join(names, "+") + ":" + hex.EncodeToString(h[:]), nil
}

// authenticate finds the key presented in the Authorization header. Every
// configured key is compared, in constant time, whatever matches. The
// scheme is case-insensitive (RFC 9110, 11.1): "bearer" is "Bearer".
func authenticate(keys []Key, r *http.Request) (*Key, bool) {
	scheme, token, ok := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
	token = strings.TrimSpace(token)
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return nil, false
	}
	h := sha256.Sum256([]byte(token))
	var found *Key
	for i := range keys {
		if subtle.ConstantTimeCompare(h[:], keys[i].Hash[:]) == 1 {
			found = &keys[i]
		}
	}
	return found, found != nil
}
