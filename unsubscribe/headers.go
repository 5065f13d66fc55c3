package unsubscribe

import (
	"errors"
	"net/mail"
	"strings"
)

// OneClick is the value of the List-Unsubscribe-Post header (RFC 8058), and
// the form field a mail provider POSTs to the link.
const OneClick = "List-Unsubscribe=One-Click"

// Headers returns the values of the List-Unsubscribe and
// List-Unsubscribe-Post headers for a send:
//
//	List-Unsubscribe: <https://mail.example.org/u/TOKEN>, <mailto:unsubscribe@example.org?subject=unsubscribe%20TOKEN>
//	List-Unsubscribe-Post: List-Unsubscribe=One-Click
//
// baseURL is the public URL under which the handler is mounted at /u/
// (scheme, host and an optional path prefix); it must be https, except
// http://127.0.0.1, localhost or [::1] for development. mailto is an optional
// bare address ("unsubscribe@example.org" or "mailto:unsubscribe@example.org");
// the mailto: link asks for a mail whose subject carries the token
// (MailtoSubject, VerifySubject). The mail library must fold the header
// (after the comma) and DKIM must sign both (RFC 8058).
//
// Headers checks baseURL and mailto on every call; a sender minting many
// links uses a Minter, which checks them once.
func Headers(baseURL, token, mailto string) (listUnsubscribe, listUnsubscribePost string, err error) {
	f, err := newLinkFormat(baseURL, mailto)
	if err != nil {
		return "", "", err
	}
	if token == "" || len(token) > maxTokenLen || strings.IndexFunc(token, func(r rune) bool {
		return r > 0x7f || !isB64URL(byte(r)) && r != '.'
	}) >= 0 {
		return "", "", errors.New("unsubscribe token: not a token from Keyring.Mint")
	}
	l, err := f.links(token)
	if err != nil {
		return "", "", err
	}
	return l.ListUnsubscribe, l.ListUnsubscribePost, nil
}

func isLoopbackName(host string) bool {
	return host == "127.0.0.1" || host == "localhost" || host == "::1"
}

// checkMailto accepts a bare address whose characters need no escaping in a
// mailto URI inside angle brackets.
func checkMailto(s string) (string, error) {
	addr := strings.TrimPrefix(s, "mailto:")
	a, err := mail.ParseAddress(addr)
	if err != nil || a.Address != addr || a.Name != "" || strings.ContainsAny(addr, "?<>,;%\"\\()[] \t\r\n") {
		return "", errors.New("unsubscribe mailto: want a bare address such as unsubscribe@example.org")
	}
	return addr, nil
}
