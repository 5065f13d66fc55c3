package unsubscribe

import (
	"strings"
	"unicode/utf8"

	"github.com/suppressd/suppressd/suppression"
)

// Mask returns an identifier as a page may show it: enough for the person to
// recognise it ("a***e@example.org"), too little for whoever else sees the
// page (a shared screen, a forwarded link) to learn it.
func Mask(id suppression.Identifier) string {
	v := strings.TrimSpace(id.Value)
	switch id.Type {
	case suppression.IDEmail:
		at := strings.LastIndexByte(v, '@')
		if at < 0 {
			return "your address"
		}
		return maskMiddle(v[:at]) + v[at:]
	case suppression.IDPhone:
		digits := strings.Map(func(r rune) rune {
			if '0' <= r && r <= '9' {
				return r
			}
			return -1
		}, v)
		if len(digits) < 6 {
			return "your phone number"
		}
		return "phone number ending " + digits[len(digits)-2:]
	case suppression.IDMAID:
		if len(v) < 8 {
			return "your device"
		}
		return "device ending " + strings.ToLower(v[len(v)-4:])
	case suppression.IDUserID:
		return "your account"
	}
	return "your address" // pre-hashed: nothing to show
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
