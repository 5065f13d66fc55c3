// Package benchmix is the mix of opt-outs the README's throughput and
// memory figures are measured on, so every benchmark that reports per
// identifier means the same identifiers: 80 % emails, a third of them
// Gmail, and 20 % phone numbers.
//
// Gmail addresses expand into more match keys than others (Google's forms
// without dots, TikTok's without the +tag): half of them here are written
// with dots (2 keys), half with dots and a +tag (4 keys). Other addresses
// have 1 key and phones 2 (E.164 with '+', digits alone), so an identifier
// averages 1.73 match keys: 0.8 × (2/3 × 1 + 1/3 × 3) + 0.2 × 2.
package benchmix

import (
	"fmt"
	"strconv"
	"time"

	"github.com/suppressd/suppressd/suppression"
)

// KeysPerIdentifier is the mix's average number of match keys per
// identifier, over any multiple of 30 identifiers.
const KeysPerIdentifier = 0.8*(2.0/3*1+1.0/3*3) + 0.2*2

// Source is the source of the mix's events: suppressd's own unsubscribe
// link handler, the usual origin of an opt-out.
const Source = "/unsubscribe-link"

// Identifier returns the i-th identifier of the mix (i >= 0); distinct i
// give distinct identifiers. Every fifth is a phone number; of the emails,
// every third is a Gmail address.
func Identifier(i int) suppression.Identifier {
	if i%5 == 4 {
		// +1 415 2xx xxxx: a possible and valid US number for up to 8
		// million i.
		return suppression.Identifier{Type: suppression.IDPhone, Value: "+1415" + strconv.Itoa(2_000_000+i/5)}
	}
	e := i/5*4 + i%5 // the email's own index
	switch {
	case e%3 != 2:
		return suppression.Identifier{Type: suppression.IDEmail, Value: fmt.Sprintf("user%d@example.org", e)}
	case e/3%2 == 0:
		return suppression.Identifier{Type: suppression.IDEmail, Value: fmt.Sprintf("first.last%d@gmail.com", e)}
	default:
		return suppression.Identifier{Type: suppression.IDEmail, Value: fmt.Sprintf("first.last%d+news@gmail.com", e)}
	}
}

// Event returns a global unsubscribe of the i-th identifier from the
// unsubscribe link, at at, normalised.
func Event(i int, at time.Time) (suppression.Event, error) {
	e := suppression.Event{
		ID: "mix-" + strconv.Itoa(i), Source: Source, Type: suppression.EventUnsubscribe, OccurredAt: at,
		Identifiers: []suppression.Identifier{Identifier(i)},
		Scopes:      []suppression.Scope{suppression.ScopeGlobal}, Origin: suppression.OriginRecipient,
	}
	if err := e.Normalize(time.Time{}); err != nil {
		return e, fmt.Errorf("mix event %d: %w", i, err)
	}
	return e, nil
}
