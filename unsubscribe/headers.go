package unsubscribe

import (
	"errors"
	"fmt"
	"net/mail"
	"net/url"
	"strings"
)

// OneClick is the value of the List-Unsubscribe-Post header (RFC 8058), and
// the form field a mail provider POSTs to the link.
const OneClick = "List-Unsubscribe=One-Click"

// Headers returns the values of the List-Unsubscribe and
// List-Unsubscribe-Post headers for a send:
//
//	List-Unsubscribe: <https://mail.example.org/u/TOKEN>, <mailto:unsubscribe@example.org?subject=unsubscribe>
//	List-Unsubscribe-Post: List-Unsubscribe=One-Click
//
// baseURL is the public URL under which the handler is mounted at /u/
// (scheme, host and an optional path prefix); it must be https, except
// http://127.0.0.1, localhost or [::1] for development. mailto is an optional
// bare address ("unsubscribe@example.org" or "mailto:unsubscribe@example.org").
// The mail library must fold the header and DKIM must sign both (RFC 8058).
func Headers(baseURL, token, mailto string) (listUnsubscribe, listUnsubscribePost string, err error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return "", "", fmt.Errorf("unsubscribe base URL: %w", err)
	}
	switch {
	case u.Host == "":
		return "", "", errors.New("unsubscribe base URL: no host")
	case u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return "", "", errors.New("unsubscribe base URL: may hold only scheme, host and path")
	case u.Scheme == "https":
	case u.Scheme == "http" && isLoopbackName(u.Hostname()):
	default:
		return "", "", errors.New("unsubscribe base URL: must be https (RFC 8058); http only for 127.0.0.1 or localhost")
	}
	if token == "" || len(token) > maxTokenLen || strings.IndexFunc(token, func(r rune) bool {
		return r > 0x7f || !isB64URL(byte(r)) && r != '.'
	}) >= 0 {
		return "", "", errors.New("unsubscribe token: not a token from Keyring.Mint")
	}
	link := strings.TrimRight(u.String(), "/") + "/u/" + token
	listUnsubscribe = "<" + link + ">"
	if mailto != "" {
		addr, err := checkMailto(mailto)
		if err != nil {
			return "", "", err
		}
		listUnsubscribe += ", <mailto:" + addr + "?subject=unsubscribe>"
	}
	return listUnsubscribe, OneClick, nil
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
