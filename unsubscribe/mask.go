package unsubscribe

import (
	"strings"
	"unicode/utf8"

	"github.com/suppressd/suppressd/suppression"
)

// Mask returns an identifier as a page may show it: enough for the person to
// recognise it ("a***e@example.org"), too little for whoever else sees the
// page (a shared screen, a forwarded link) to learn it. The words around a
// phone number or a device ("phone number ending 89") are English here; the
// pages use the words of their language.
func Mask(id suppression.Identifier) string { return english.mask(id) }

// mask is Mask in the catalog's language.
func (c *catalog) mask(id suppression.Identifier) string {
	key, args, masked := maskMessage(id)
	if key == "" {
		return masked
	}
	return c.text(key, args...)
}

// maskMessage returns the message naming an identifier, or, for an email
// address, the masked address itself (key "").
func maskMessage(id suppression.Identifier) (key string, args []string, masked string) {
	v := strings.TrimSpace(id.Value)
	switch id.Type {
	case suppression.IDEmail:
		at := strings.LastIndexByte(v, '@')
		if at < 0 {
			return "id.address", nil, ""
		}
		return "", nil, maskMiddle(v[:at]) + v[at:]
	case suppression.IDPhone:
		digits := strings.Map(func(r rune) rune {
			if '0' <= r && r <= '9' {
				return r
			}
			return -1
		}, v)
		if len(digits) < 6 {
			return "id.phone", nil, ""
		}
		return "id.phone_ending", []string{"digits", digits[len(digits)-2:]}, ""
	case suppression.IDMAID:
		if len(v) < 8 {
			return "id.device", nil, ""
		}
		return "id.device_ending", []string{"suffix", strings.ToLower(v[len(v)-4:])}, ""
	case suppression.IDUserID:
		return "id.account", nil, ""
	}
	return "id.address", nil, "" // pre-hashed: nothing to show
}

// maskMiddle keeps the first and last character of s when it is long enough
// that they give little away.
func maskMiddle(s string) string {
	n := utf8.RuneCountInString(s)
	if n < 3 {
		return strings.Repeat("*", max(n, 1))
	}
	first, _ := utf8.DecodeRuneInString(s)
	last, _ := utf8.DecodeLastRuneInString(s)
	return string(first) + "***" + string(last)
}
