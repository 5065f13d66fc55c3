package unsubscribe

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"mime"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/suppressd/suppressd/suppression"
)

// The mailto: alternative of List-Unsubscribe (RFC 2369) asks the reader's
// mail client to send a mail. Its subject carries the token, so whoever
// reads that mailbox can tell who asked, from what, and that the request is
// genuine, with the same keys as the https link:
//
//	mailto:unsubscribe@example.org?subject=unsubscribe%20k1.AbC...
//
// The subject, not a +subaddress: a token (about 110 characters for a
// 25-character address and one topic) does not fit the 64 octets a local
// part may have (RFC 5321 4.5.3.1.1), and some providers lowercase local
// parts while a token is case-sensitive. A subject keeps its case, and a
// mail client folds a long one only at white space, which a token has none
// of; Minter keeps each link within the 998 characters of a header line.

// subjectWord is the word before the token in the mail's subject, for the
// reader of the mailbox and for list managers that look for it.
const subjectWord = "unsubscribe"

// MailSource is the CloudEvents source of the unsubscribes that come from
// the mailto: alternative (MailEvent).
const MailSource = "/unsubscribe-mailto"

// MailtoSubject returns the subject the mailto: alternative of token asks a
// mail client to send: "unsubscribe <token>".
func MailtoSubject(token string) string { return subjectWord + " " + token }

// VerifySubject finds the token in the Subject of a mail sent through the
// mailto: alternative, verifies it as Verify does, and returns its claims
// and the token (for MailEvent). subject is the header's value as received:
// RFC 2047 encoded words are decoded, and the words around the token
// ("unsubscribe", "Re:", "AW:", a %20 a client did not decode, folding) are
// ignored. Errors wrap those of Verify, ErrMalformed when the subject holds
// no token; like them, they never quote the subject.
func (kr *Keyring) VerifySubject(subject string, now time.Time) (Claims, string, error) {
	if len(subject) > 4*maxTokenLen {
		return Claims{}, "", fmt.Errorf("%w: subject longer than %d characters", ErrMalformed, 4*maxTokenLen)
	}
	if decoded, err := new(mime.WordDecoder).DecodeHeader(subject); err == nil {
		subject = decoded
	}
	subject = strings.ReplaceAll(subject, "%20", " ")
	var first error
	for _, w := range strings.FieldsFunc(subject, func(r rune) bool {
		return unicode.IsSpace(r) || r == ':' || r == '<' || r == '>' || r == ',' || r == '"'
	}) {
		if !looksLikeToken(w) {
			continue
		}
		c, err := kr.Verify(w, now)
		if err == nil {
			return c, w, nil
		}
		if first == nil {
			first = err
		}
	}
	if first == nil {
		first = fmt.Errorf("%w: no unsubscribe token in the subject", ErrMalformed)
	}
	return Claims{}, "", first
}

// looksLikeToken: a key id, '.', and base64url.
func looksLikeToken(w string) bool {
	kid, body, ok := strings.Cut(w, ".")
	if !ok || checkKeyID(kid) != nil || body == "" {
		return false
	}
	for i := 0; i < len(body); i++ {
		if !isB64URL(body[i]) {
			return false
		}
	}
	return true
}

// MailEvent returns the unsubscribe a verified mailto: request asks for:
// the token's identifier, from every scope of the token, in its namespace,
// by the recipient, at now, from MailSource, with the campaign and list ids
// as context. Its id is derived from the token, as for the https link, so
// the same mail processed twice publishes one event (POST /v1/events
// recognises a repeated source and id).
func MailEvent(c Claims, token string, now time.Time) suppression.Event {
	return newEvent(c, token, MailSource, suppression.EventUnsubscribe, c.Scopes, now)
}

// newEvent builds the event a token asks for. Its id depends only on the
// token, the type and the scopes: a repeated click, a provider's retry and
// the button after a one-click all publish the same id.
func newEvent(c Claims, token, source string, t suppression.EventType, scopes []suppression.Scope, now time.Time) suppression.Event {
	return suppression.Event{
		ID:          eventID(t, token, scopes),
		Source:      source,
		Type:        t,
		OccurredAt:  now,
		Namespace:   c.Namespace,
		Identifiers: []suppression.Identifier{c.Identifier},
		Scopes:      slices.Clone(scopes),
		Origin:      suppression.OriginRecipient,
		Context:     suppression.EventContext{CampaignID: c.CampaignID, ListID: c.ListID},
	}
}

// eventID is hex SHA-256 of the type, the token and the sorted scopes. The
// token is canonical (strict base64), so one token has one id per choice.
func eventID(t suppression.EventType, token string, scopes []suppression.Scope) string {
	s := slices.Clone(scopes)
	slices.Sort(s)
	d := sha256.New()
	d.Write([]byte(t))
	d.Write([]byte{0})
	d.Write([]byte(token))
	for _, sc := range s {
		d.Write([]byte{0})
		d.Write([]byte(sc))
	}
	return hex.EncodeToString(d.Sum(nil))
}
