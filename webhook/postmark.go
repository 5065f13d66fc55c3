package webhook

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/suppressd/suppressd/suppression"
)

// PostmarkOptions configure /hooks/postmark. Postmark signs nothing: it
// offers basic HTTP authentication in the webhook URL
// (https://user:password@host/...), and a URL of one's own choosing, which
// can carry a secret path segment (/hooks/postmark/<secret>). Either or both
// can be configured; when both are, both are required. Without a timestamp
// or a nonce in the scheme, there is nothing to check for staleness or
// replay: a replayed request is a duplicate, which PublishLog absorbs.
type PostmarkOptions struct {
	ProviderOptions
	// Username and Password are the basic authentication credentials, set
	// together; the password is at least 16 characters.
	Username, Password string
	// PathSecret is the secret last path segment: at least 32 characters
	// of A-Z, a-z, 0-9, '-', '_', '.' and '~' (no escaping needed). A path
	// ends up in access logs of proxies on the way; basic authentication
	// does not.
	PathSecret string
}

// Minimum lengths of Postmark secrets: guessing either must be hopeless.
const (
	minPostmarkPassword   = 16
	minPostmarkPathSecret = 32
)

func (o *PostmarkOptions) validate() error {
	if err := o.ProviderOptions.validate("Postmark"); err != nil {
		return err
	}
	if !o.configured() {
		if o.Username != "" || o.Password != "" {
			return bad("Postmark.Username", "username and password are set together")
		}
		return nil
	}
	if (o.Username == "") != (o.Password == "") {
		return bad("Postmark.Username", "username and password are set together")
	}
	if o.Password != "" && len(o.Password) < minPostmarkPassword {
		return bad("Postmark.Password", "at least %d characters", minPostmarkPassword)
	}
	if o.Username != "" && strings.Contains(o.Username, ":") {
		return bad("Postmark.Username", "a basic authentication user name cannot contain ':'")
	}
	if o.PathSecret != "" {
		if len(o.PathSecret) < minPostmarkPathSecret {
			return bad("Postmark.PathSecret", "at least %d characters", minPostmarkPathSecret)
		}
		for _, c := range o.PathSecret {
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.ContainsRune("-_.~", c)) {
				return bad("Postmark.PathSecret", "only A-Z, a-z, 0-9, '-', '_', '.' and '~'")
			}
		}
	}
	return nil
}

func (o *PostmarkOptions) configured() bool {
	return o.Username != "" && o.Password != "" || o.PathSecret != ""
}

type postmarkProvider struct {
	common
	user, password, path [32]byte // SHA-256 of each, compared in constant time
	basic, hasPath       bool
	idKey                []byte
}

func newPostmark(o PostmarkOptions) *postmarkProvider {
	if !o.configured() {
		return nil
	}
	p := &postmarkProvider{common: o.ProviderOptions.common(ProviderPostmark, DefaultPostmarkMaxBody)}
	if o.Username != "" {
		p.basic = true
		p.user, p.password = sha256.Sum256([]byte(o.Username)), sha256.Sum256([]byte(o.Password))
	}
	if o.PathSecret != "" {
		p.hasPath = true
		p.path = sha256.Sum256([]byte(o.PathSecret))
	}
	// The key of the ids made for records that have none: derived from the
	// secrets, so that an id says nothing about the address in it to anyone
	// without them. Rotating a secret changes the ids, which at worst
	// publishes a retry twice, harmlessly.
	k := sha256.New()
	for _, s := range []string{"suppressd webhook postmark event id", o.Username, o.Password, o.PathSecret} {
		k.Write([]byte(s))
		k.Write([]byte{0})
	}
	p.idKey = k.Sum(nil)
	return p
}

func (p *postmarkProvider) info() *common { return &p.common }

// authorize checks the path secret and the basic credentials before the
// body is read.
func (p *postmarkProvider) authorize(r *http.Request, rest string, _ time.Time) error {
	if p.hasPath {
		got := sha256.Sum256([]byte(rest))
		if subtle.ConstantTimeCompare(got[:], p.path[:]) != 1 {
			e := refuse(http.StatusUnauthorized, outcomeRejectedSignature, "bad_credentials", "the path secret is missing or wrong")
			e.challenge = p.basic
			return e
		}
	} else if err := notBelow(rest); err != nil {
		return err
	}
	if !p.basic {
		return nil
	}
	user, password, ok := r.BasicAuth()
	if !ok {
		e := unsigned("basic authentication is required: put the user name and password in the webhook URL")
		e.challenge = true
		return e
	}
	u, pw := sha256.Sum256([]byte(user)), sha256.Sum256([]byte(password))
	if subtle.ConstantTimeCompare(u[:], p.user[:])&subtle.ConstantTimeCompare(pw[:], p.password[:]) != 1 {
		e := refuse(http.StatusUnauthorized, outcomeRejectedSignature, "bad_credentials", "the user name or password is wrong")
		e.challenge = true
		return e
	}
	return nil
}

// postmarkRecord holds the fields used of a Bounce, SpamComplaint or
// SubscriptionChange record (and the RecordType of any other).
type postmarkRecord struct {
	RecordType string      `json:"RecordType"`
	ID         json.Number `json:"ID"` // an int64 (4323372036854775807 in Postmark's example), past float64's precision
	Type       string      `json:"Type"`
	MessageID  string      `json:"MessageID"`
	Email      string      `json:"Email"`
	BouncedAt  string      `json:"BouncedAt"`
	// SubscriptionChange
	ServerID          json.Number `json:"ServerID"`
	MessageStream     string      `json:"MessageStream"`
	ChangedAt         string      `json:"ChangedAt"`
	Recipient         string      `json:"Recipient"`
	Origin            string      `json:"Origin"`
	SuppressSending   bool        `json:"SuppressSending"`
	SuppressionReason string      `json:"SuppressionReason"`
}

// postmarkHardBounces are the bounce types that say the address will not
// take mail (Postmark's bounce types: HardBounce "unknown user, mailbox not
// found", BadEmailAddress "not a valid email address"). Every other type is
// temporary, an auto-reply or a notice.
var postmarkHardBounces = map[string]bool{"HardBounce": true, "BadEmailAddress": true}

func (p *postmarkProvider) parse(_ context.Context, _ *http.Request, body []byte, _ time.Time) (*delivery, error) {
	var rec postmarkRecord
	if err := json.Unmarshal(body, &rec); err != nil {
		return nil, invalid("not a Postmark webhook: the body is not a JSON record")
	}
	d := &delivery{}
	o := optOut{messageID: rec.MessageID}
	switch rec.RecordType {
	case "Bounce", "SpamComplaint":
		// The bounce webhook used to carry spam complaints too, as
		// RecordType Bounce with Type SpamComplaint.
		o.id, o.email, o.at = rec.ID.String(), rec.Email, postmarkTime(rec.BouncedAt)
		switch {
		case rec.RecordType == "SpamComplaint" || rec.Type == "SpamComplaint":
			o.typ = suppression.EventComplaint
		case postmarkHardBounces[rec.Type]:
			o.typ = suppression.EventHardBounce
		default:
			d.ignored++
			return d, nil
		}
	case "SubscriptionChange":
		if !rec.SuppressSending {
			// A reactivation in Postmark lifts Postmark's suppression, not
			// the person's opt-out here.
			d.ignored++
			return d, nil
		}
		o.email, o.at = rec.Recipient, postmarkTime(rec.ChangedAt)
		o.id = p.subscriptionChangeID(&rec)
		switch rec.SuppressionReason {
		case "HardBounce":
			o.typ = suppression.EventHardBounce
		case "SpamComplaint":
			o.typ = suppression.EventComplaint
		default:
			// ManualSuppression: the recipient unsubscribed (Origin
			// Recipient) or the sender suppressed the address (Customer,
			// Admin); both mean no more of this mail. An unknown reason is
			// read the same way: Postmark stopped sending.
			o.typ = suppression.EventUnsubscribe
		}
	default:
		d.ignored++
		return d, nil
	}
	d.optOuts = []optOut{o}
	return d, nil
}

// subscriptionChangeID makes an id for a SubscriptionChange record, which
// has none of its own: an HMAC of what identifies the change, the recipient
// included (two addresses suppressed at the same instant are two events),
// under a key only suppressd holds, so the id gives the address away to no
// one. A retry of the same record gives the same id.
func (p *postmarkProvider) subscriptionChangeID(rec *postmarkRecord) string {
	m := hmac.New(sha256.New, p.idKey)
	email := rec.Recipient
	if e, err := suppression.NormalizeEmail(rec.Recipient); err == nil {
		email = e.String()
	}
	for _, s := range []string{rec.ServerID.String(), rec.MessageStream, rec.ChangedAt, rec.SuppressionReason, rec.Origin, rec.MessageID, email} {
		m.Write([]byte(strconv.Itoa(len(s))))
		m.Write([]byte{':'})
		m.Write([]byte(s))
	}
	return "subscription-change-" + hex.EncodeToString(m.Sum(nil)[:16])
}

// postmarkTime reads Postmark's ISO 8601 times ("2019-11-05T16:33:54.9070259Z",
// "2018-02-20T12:54:23.3396434-05:00"); zero if it cannot.
func postmarkTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}
	}
	return t
}
