package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/suppressd/suppressd/suppression"
)

// MailgunOptions configure /hooks/mailgun: Mailgun's JSON webhooks. Mailgun
// signs each request with HMAC-SHA256(webhook signing key, timestamp +
// token), sent as hex in the body's signature object beside event-data.
//
// The signature does not cover event-data: it proves the request came from
// Mailgun, and the token makes it single-use, but only TLS keeps the event
// itself from being altered in transit. Serve /hooks/ over HTTPS only.
type MailgunOptions struct {
	ProviderOptions
	// SigningKeys are HTTP webhook signing keys (Mailgun's "Webhook Signing
	// Key"); a request verifying with any of them is accepted, so a key can
	// be rotated without a gap. A subaccount's request also verifies when
	// its parent-signature does. The provider is served only when at least
	// one is set.
	SigningKeys []string
	// Tolerance is how far the signed timestamp may be from the clock.
	// Default DefaultTolerance.
	Tolerance time.Duration
}

func (o *MailgunOptions) validate() error {
	if err := o.ProviderOptions.validate("Mailgun"); err != nil || len(o.SigningKeys) == 0 {
		return err
	}
	for i, k := range o.SigningKeys {
		if strings.TrimSpace(k) == "" {
			return bad("Mailgun.SigningKeys", "key %d is empty", i)
		}
	}
	if o.Tolerance < 0 {
		return bad("Mailgun.Tolerance", "must not be negative")
	}
	return nil
}

type mailgunProvider struct {
	common
	keys      [][]byte
	tolerance time.Duration
}

func newMailgun(o MailgunOptions) *mailgunProvider {
	if len(o.SigningKeys) == 0 {
		return nil
	}
	p := &mailgunProvider{common: o.ProviderOptions.common(ProviderMailgun, DefaultMaxBody), tolerance: o.Tolerance}
	for _, k := range o.SigningKeys {
		p.keys = append(p.keys, []byte(strings.TrimSpace(k)))
	}
	if p.tolerance <= 0 {
		p.tolerance = DefaultTolerance
	}
	return p
}

func (p *mailgunProvider) info() *common { return &p.common }

// authorize has nothing to check before the body, which carries the
// signature.
func (p *mailgunProvider) authorize(_ *http.Request, rest string, _ time.Time) error {
	return notBelow(rest)
}

// mailgunWebhook is the JSON body of a Mailgun webhook.
type mailgunWebhook struct {
	Signature *struct {
		Timestamp       jsonText `json:"timestamp"`
		Token           string   `json:"token"`
		Signature       string   `json:"signature"`
		ParentSignature string   `json:"parent-signature"`
	} `json:"signature"`
	EventData json.RawMessage `json:"event-data"`
}

type mailgunEvent struct {
	Event     string   `json:"event"`
	ID        string   `json:"id"`
	Timestamp jsonText `json:"timestamp"`
	Severity  string   `json:"severity"`
	Reason    string   `json:"reason"`
	Recipient string   `json:"recipient"`
	Message   struct {
		Headers struct {
			MessageID string `json:"message-id"`
		} `json:"headers"`
	} `json:"message"`
}

// mailgunNotBounces are the reasons of a permanent failure that are not the
// address failing: a send dropped because the address had unsubscribed or
// complained before (that opt-out came, or comes, as its own event and
// must not turn into a bounce that also stops transactional mail), and a
// message that ran out of retries after temporary failures.
var mailgunNotBounces = []string{"suppress-unsubscribe", "suppress-complaint", "old"}

func (p *mailgunProvider) parse(_ context.Context, _ *http.Request, body []byte, now time.Time) (*delivery, error) {
	var w mailgunWebhook
	if err := json.Unmarshal(body, &w); err != nil {
		return nil, invalid("not a Mailgun webhook: the body is not a JSON object (legacy form-encoded webhooks are not served)")
	}
	s := w.Signature
	if s == nil || s.Timestamp == "" || s.Token == "" || s.Signature == "" {
		return nil, unsigned("the signature object with timestamp, token and signature is required")
	}
	sec, err := strconv.ParseInt(string(s.Timestamp), 10, 64)
	if err != nil {
		return nil, badSignature("signature.timestamp is not a Unix time")
	}
	signed := time.Unix(sec, 0)
	if err := checkFresh("signature.timestamp", signed, now, p.tolerance); err != nil {
		return nil, err
	}
	if !p.verify(string(s.Timestamp), s.Token, s.Signature) && (s.ParentSignature == "" || !p.verify(string(s.Timestamp), s.Token, s.ParentSignature)) {
		return nil, badSignature("signature does not verify with any configured signing key")
	}
	token := sha256.Sum256([]byte(s.Token))
	d := &delivery{replayKey: hex.EncodeToString(token[:]), replayUntil: signed.Add(p.tolerance)}
	var e mailgunEvent
	if len(w.EventData) == 0 || json.Unmarshal(w.EventData, &e) != nil {
		d.malformed++
		return d, nil
	}
	o := optOut{email: e.Recipient, messageID: strings.Trim(e.Message.Headers.MessageID, "<>"), at: e.Timestamp.unixTime()}
	// Mailgun's event id is "guaranteed to be unique within a day" only:
	// with the event's own timestamp it is unique for good, and still the
	// same on every retry of the event.
	if e.ID != "" {
		o.id = e.ID + "/" + string(e.Timestamp)
	}
	switch {
	case e.Event == "failed" && e.Severity == "permanent" && !slices.Contains(mailgunNotBounces, e.Reason):
		o.typ = suppression.EventHardBounce
	case e.Event == "complained":
		o.typ = suppression.EventComplaint
	case e.Event == "unsubscribed":
		o.typ = suppression.EventUnsubscribe
	default:
		d.ignored++
		return d, nil
	}
	d.optOuts = []optOut{o}
	return d, nil
}

// verify checks one hex signature in constant time.
func (p *mailgunProvider) verify(timestamp, token, signature string) bool {
	got, err := hex.DecodeString(signature)
	if err != nil {
		return false
	}
	for _, k := range p.keys {
		m := hmac.New(sha256.New, k)
		m.Write([]byte(timestamp))
		m.Write([]byte(token))
		if hmac.Equal(m.Sum(nil), got) {
			return true
		}
	}
	return false
}

// jsonText keeps a JSON string or number as its text: Mailgun sends the
// signature timestamp as a string and the event timestamp as a number, and
// the text is what is signed and what a retry repeats.
type jsonText string

func (t *jsonText) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*t = jsonText(s)
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return err
	}
	*t = jsonText(n)
	return nil
}

// unixTime reads Unix seconds with a fraction; zero if it is not a number.
func (t jsonText) unixTime() time.Time {
	f, err := strconv.ParseFloat(string(t), 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) || f <= 0 {
		return time.Time{}
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)).Truncate(time.Microsecond)
}
