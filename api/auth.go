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
// "name:scope+scope:sha256-hex-of-secret".
func ParseKeys(spec string) ([]Key, error) {
	var keys []Key
	for i, entry := range strings.Split(spec, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		parts := strings.Split(entry, ":")
		if len(parts) != 3 {
			return nil, fmt.Errorf("entry %d: want name:scope+scope:sha256hex", i+1)
		}
		k := Key{Name: parts[0]}
		if k.Name == "" {
			return nil, fmt.Errorf("entry %d: empty name", i+1)
		}
		for _, s := range strings.Split(parts[1], "+") {
			if !slices.Contains(allScopes, Scope(s)) {
				return nil, fmt.Errorf("key %s: unknown scope %q (want check, filter, publish, admin, links)", k.Name, s)
			}
			k.Scopes = append(k.Scopes, Scope(s))
		}
		h, err := hex.DecodeString(strings.TrimPrefix(parts[2], "sha256="))
		if err != nil || len(h) != 32 {
			return nil, fmt.Errorf("key %s: the hash must be 64 hex digits (the SHA-256 of the secret)", k.Name)
		}
		copy(k.Hash[:], h)
		for _, other := range keys {
			if other.Name == k.Name {
				return nil, fmt.Errorf("key %s: configured twice", k.Name)
			}
		}
		keys = append(keys, k)
	}
	return keys, nil
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
// configured key is compared, in constant time, whatever matches.
func authenticate(keys []Key, r *http.Request) (*Key, bool) {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || token == "" {
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
