package webhook

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/suppressd/suppressd/suppression"
)

// SendGrid's signature headers (Signed Event Webhook).
const (
	SendGridSignatureHeader = "X-Twilio-Email-Event-Webhook-Signature"
	SendGridTimestampHeader = "X-Twilio-Email-Event-Webhook-Timestamp"
)

// SendGridOptions configure /hooks/sendgrid: the Event Webhook with its
// Signed Event Webhook on. SendGrid signs timestamp + raw body with ECDSA
// (P-256, SHA-256); the signature is base64 ASN.1 in
// X-Twilio-Email-Event-Webhook-Signature, the timestamp (Unix seconds) in
// X-Twilio-Email-Event-Webhook-Timestamp.
type SendGridOptions struct {
	ProviderOptions
	// PublicKeys are the verification keys as the SendGrid console shows
	// them (base64 of the DER SubjectPublicKeyInfo); a request verifying with
	// any of them is accepted (one per webhook, or an old and a new one).
	// The provider is served only when at least one is set.
	PublicKeys []string
	// Tolerance is how far the signed timestamp may be from the clock.
	// Default DefaultTolerance.
	Tolerance time.Duration
	// GroupTopics maps an unsubscribe group (asm_group_id) to a topic: a
	// group_unsubscribe from a mapped group is published with the one scope
	// topic:<name>. Any other group_unsubscribe gets Scopes: leaving an
	// unknown group then stops more mail than asked for, never less.
	GroupTopics map[int64]string
}

func (o *SendGridOptions) validate() error {
	if err := o.ProviderOptions.validate("SendGrid"); err != nil || len(o.PublicKeys) == 0 {
		return err
	}
	for i, k := range o.PublicKeys {
		if _, err := parseSendGridKey(k); err != nil {
			return bad("SendGrid.PublicKeys", "key %d: %v", i, err)
		}
	}
	for id, topic := range o.GroupTopics {
		if err := suppression.CheckName(topic); err != nil {
			return bad("SendGrid.GroupTopics", "group %d: topic %v", id, err)
		}
	}
	if o.Tolerance < 0 {
		return bad("SendGrid.Tolerance", "must not be negative")
	}
	return nil
}

// parseSendGridKey reads a verification key as SendGrid shows it.
func parseSendGridKey(s string) (*ecdsa.PublicKey, error) {
	der, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return nil, errors.New("not base64")
	}
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, errors.New("not a DER public key")
	}
	ec, ok := k.(*ecdsa.PublicKey)
	if !ok || ec.Curve != elliptic.P256() {
		return nil, errors.New("not an ECDSA P-256 public key")
	}
	return ec, nil
}

type sendGridProvider struct {
	common
	keys      []*ecdsa.PublicKey
	tolerance time.Duration
	groups    map[int64]string
}

func newSendGrid(o SendGridOptions) *sendGridProvider {
	if len(o.PublicKeys) == 0 {
		return nil
	}
	p := &sendGridProvider{common: o.ProviderOptions.common(ProviderSendGrid, DefaultSendGridMaxBody), tolerance: o.Tolerance, groups: o.GroupTopics}
	for _, k := range o.PublicKeys {
		key, _ := parseSendGridKey(k) // validated
		p.keys = append(p.keys, key)
	}
	if p.tolerance <= 0 {
		p.tolerance = DefaultTolerance
	}
	return p
}

func (p *sendGridProvider) info() *common { return &p.common }

// authorize refuses, before reading a large batch, a request without the
// signature headers or with a stale timestamp.
func (p *sendGridProvider) authorize(r *http.Request, rest string, now time.Time) error {
	if err := notBelow(rest); err != nil {
		return err
	}
	sig, ts := r.Header.Get(SendGridSignatureHeader), r.Header.Get(SendGridTimestampHeader)
	if sig == "" || ts == "" {
		return unsigned("%s and %s are required: turn on the Signed Event Webhook", SendGridSignatureHeader, SendGridTimestampHeader)
	}
	signed, err := strconv.ParseInt(strings.TrimSpace(ts), 10, 64)
	if err != nil {
		return badSignature("%s is not a Unix time", SendGridTimestampHeader)
	}
	return checkFresh(SendGridTimestampHeader, time.Unix(signed, 0), now, p.tolerance)
}

// sendGridEvent is one event of a batch; only the fields used are read.
type sendGridEvent struct {
	Event      string      `json:"event"`
	Email      string      `json:"email"`
	Timestamp  json.Number `json:"timestamp"`
	EventID    string      `json:"sg_event_id"`
	MessageID  string      `json:"sg_message_id"`
	Type       string      `json:"type"` // bounce events: "bounce" or "blocked"
	ASMGroupID json.Number `json:"asm_group_id"`
}

func (p *sendGridProvider) parse(_ context.Context, r *http.Request, body []byte, _ time.Time) (*delivery, error) {
	ts := strings.TrimSpace(r.Header.Get(SendGridTimestampHeader))
	sig, err := base64.StdEncoding.DecodeString(strings.TrimSpace(r.Header.Get(SendGridSignatureHeader)))
	if err != nil {
		return nil, badSignature("%s is not base64", SendGridSignatureHeader)
	}
	h := sha256.New()
	h.Write([]byte(ts)) // the header as sent: the signature covers its text
	h.Write(body)
	digest := h.Sum(nil)
	verified := false
	for _, k := range p.keys {
		if ecdsa.VerifyASN1(k, digest, sig) {
			verified = true
			break
		}
	}
	if !verified {
		return nil, badSignature("%s does not verify with any configured public key", SendGridSignatureHeader)
	}
	signed, _ := strconv.ParseInt(ts, 10, 64) // checked by authorize
	replay := sha256.Sum256(sig)
	d := &delivery{replayKey: hex.EncodeToString(replay[:]), replayUntil: time.Unix(signed, 0).Add(p.tolerance)}
	var raws []json.RawMessage
	if err := json.Unmarshal(body, &raws); err != nil {
		return nil, invalid("not a SendGrid Event Webhook batch: the body is not a JSON array")
	}
	for _, raw := range raws {
		// One odd event must not hold back the batch: refusing it would
		// have SendGrid retry every opt-out in it, to the same end.
		var e sendGridEvent
		if err := json.Unmarshal(raw, &e); err != nil {
			d.malformed++
			continue
		}
		o := optOut{id: e.EventID, email: e.Email, messageID: e.MessageID}
		if sec, err := e.Timestamp.Int64(); err == nil {
			o.at = time.Unix(sec, 0)
		}
		switch {
		case e.Event == "bounce" && e.Type == "bounce":
			// A "blocked" bounce is temporary (SendGrid's own reading); an
			// event without the type is not known to be permanent.
			o.typ = suppression.EventHardBounce
		case e.Event == "spamreport":
			o.typ = suppression.EventComplaint
		case e.Event == "unsubscribe":
			o.typ = suppression.EventUnsubscribe
		case e.Event == "group_unsubscribe":
			o.typ = suppression.EventUnsubscribe
			if g, err := e.ASMGroupID.Int64(); err == nil && p.groups[g] != "" {
				o.scopes = []suppression.Scope{suppression.TopicScope(p.groups[g])}
			}
		default:
			d.ignored++
			continue
		}
		d.optOuts = append(d.optOuts, o)
	}
	return d, nil
}
