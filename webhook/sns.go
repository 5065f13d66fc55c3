package webhook

import (
	"context"
	"crypto"
	"crypto/rsa"
	_ "crypto/sha1" // SignatureVersion 1 is SHA1withRSA
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/suppressd/suppressd/suppression"
)

// DefaultSNSCertHostPattern matches the hosts Amazon SNS serves signing
// certificates and subscription confirmations from: sns.<region>.amazonaws.com,
// and sns.<region>.amazonaws.com.cn in the China regions.
const DefaultSNSCertHostPattern = `^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$`

// SNSOptions configure /hooks/sns: Amazon SES bounce and complaint
// notifications (or SES event publishing) delivered by an Amazon SNS HTTPS
// subscription, with raw message delivery off (a raw message carries no
// signature and is refused).
type SNSOptions struct {
	ProviderOptions
	// TopicARNs are the topics accepted; a message from any other is refused
	// (AWS: "Reject any message with an unexpected TopicArn"). The provider
	// is served only when at least one is set: a topic ARN is no secret, but
	// without the allow-list anyone with an AWS account could publish to
	// their own topic and have it verify.
	TopicARNs []string
	// CertHostPattern is the regular expression the host of SigningCertURL
	// and of SubscribeURL must match; both must be https. Default
	// DefaultSNSCertHostPattern.
	CertHostPattern string
	// HTTPClient fetches signing certificates and confirms subscriptions.
	// Redirects are never followed, whatever the client says. Default: a
	// client with a 10s timeout.
	HTTPClient *http.Client
	// Tolerance is how far the message's Timestamp may be from the clock.
	// SNS keeps a message's Timestamp on its retries: with a delivery policy
	// that retries for longer than this, raise it. Default
	// DefaultTolerance.
	Tolerance time.Duration
}

func (o *SNSOptions) validate() error {
	if err := o.ProviderOptions.validate("SNS"); err != nil || len(o.TopicARNs) == 0 {
		return err
	}
	for i, arn := range o.TopicARNs {
		if !topicARN.MatchString(arn) {
			return bad("SNS.TopicARNs", "entry %d is not an SNS topic ARN (arn:aws:sns:<region>:<account>:<topic>)", i)
		}
	}
	if o.CertHostPattern != "" {
		if _, err := regexp.Compile(o.CertHostPattern); err != nil {
			return bad("SNS.CertHostPattern", "not a regular expression: %v", err)
		}
	}
	if o.Tolerance < 0 {
		return bad("SNS.Tolerance", "must not be negative")
	}
	return nil
}

// topicARN is the shape of an SNS topic ARN, in every AWS partition.
var topicARN = regexp.MustCompile(`^arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_.-]{1,256}$`)

type snsProvider struct {
	common
	topics    map[string]bool
	host      *regexp.Regexp
	client    *http.Client
	tolerance time.Duration
	certs     *certCache
}

func newSNS(o SNSOptions, now func() time.Time) *snsProvider {
	if len(o.TopicARNs) == 0 {
		return nil
	}
	p := &snsProvider{common: o.ProviderOptions.common(ProviderSNS, DefaultMaxBody), topics: map[string]bool{}, tolerance: o.Tolerance}
	for _, arn := range o.TopicARNs {
		p.topics[arn] = true
	}
	pattern := o.CertHostPattern
	if pattern == "" {
		pattern = DefaultSNSCertHostPattern
	}
	p.host = regexp.MustCompile(pattern)
	if p.tolerance <= 0 {
		p.tolerance = DefaultTolerance
	}
	client := http.Client{Timeout: 10 * time.Second}
	if o.HTTPClient != nil {
		client = *o.HTTPClient
	}
	// A redirect could lead anywhere; the host check holds only for the URL
	// the message names.
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	p.client = &client
	p.certs = &certCache{max: 64, now: now, fetch: p.fetchCert, entries: map[string]certEntry{}}
	return p
}

func (p *snsProvider) info() *common { return &p.common }

// authorize has nothing to check before the body: SNS signs the JSON
// document itself.
func (p *snsProvider) authorize(_ *http.Request, rest string, _ time.Time) error {
	return notBelow(rest)
}

// snsMessage is the JSON document SNS POSTs (Notification,
// SubscriptionConfirmation, UnsubscribeConfirmation).
type snsMessage struct {
	Type             string  `json:"Type"`
	MessageID        string  `json:"MessageId"`
	Token            string  `json:"Token"`
	TopicArn         string  `json:"TopicArn"`
	Subject          *string `json:"Subject"` // signed only when present
	Message          string  `json:"Message"`
	Timestamp        string  `json:"Timestamp"`
	SignatureVersion string  `json:"SignatureVersion"`
	Signature        string  `json:"Signature"`
	SigningCertURL   string  `json:"SigningCertURL"`
	SubscribeURL     string  `json:"SubscribeURL"`
}

const (
	snsNotification     = "Notification"
	snsSubscription     = "SubscriptionConfirmation"
	snsUnsubscription   = "UnsubscribeConfirmation"
	maxCertBytes        = 64 << 10
	certFailureCacheFor = 15 * time.Second
)

// parse checks, cheapest first, the message type, the topic, the time and
// the certificate's host, then fetches the certificate and verifies the
// signature: nothing from a forged or foreign message reaches the network.
func (p *snsProvider) parse(ctx context.Context, _ *http.Request, body []byte, now time.Time) (*delivery, error) {
	var m snsMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, invalid("not an Amazon SNS message: the body is not a JSON object")
	}
	switch m.Type {
	case snsNotification, snsSubscription, snsUnsubscription:
	default:
		return nil, invalid("not an Amazon SNS message: Type is not Notification, SubscriptionConfirmation or UnsubscribeConfirmation")
	}
	if m.Signature == "" || m.SigningCertURL == "" {
		return nil, unsigned("the message has no Signature or SigningCertURL (is raw message delivery on? it must be off)")
	}
	var hash crypto.Hash
	switch m.SignatureVersion {
	case "1":
		hash = crypto.SHA1
	case "2":
		hash = crypto.SHA256
	default:
		return nil, badSignature("SignatureVersion must be 1 or 2")
	}
	sig, err := base64.StdEncoding.DecodeString(m.Signature)
	if err != nil {
		return nil, badSignature("Signature is not base64")
	}
	if !p.topics[m.TopicArn] {
		return nil, refuse(http.StatusForbidden, outcomeRejectedSignature, "topic_not_allowed", "TopicArn is not one of the configured topics")
	}
	signed, err := time.Parse(time.RFC3339Nano, m.Timestamp)
	if err != nil {
		return nil, invalid("Timestamp is not an ISO 8601 time")
	}
	if err := checkFresh("Timestamp", signed, now, p.tolerance); err != nil {
		return nil, err
	}
	if !p.allowedURL(m.SigningCertURL) || !strings.HasSuffix(mustPath(m.SigningCertURL), ".pem") {
		return nil, refuse(http.StatusForbidden, outcomeRejectedSignature, "cert_url_not_allowed",
			"SigningCertURL must be an https URL of a .pem on a host matching the configured SNS host pattern")
	}
	key, err := p.certs.get(ctx, m.SigningCertURL)
	if err != nil {
		return nil, unavailable("the signing certificate could not be fetched or read").because(err)
	}
	digest := hash.New()
	digest.Write(stringToSign(&m))
	if err := rsa.VerifyPKCS1v15(key, hash, digest.Sum(nil), sig); err != nil {
		return nil, badSignature("the Signature does not verify with the signing certificate")
	}
	replay := sha256.Sum256(sig)
	d := &delivery{replayKey: hex.EncodeToString(replay[:]), replayUntil: signed.Add(p.tolerance)}
	switch m.Type {
	case snsSubscription:
		if !p.allowedURL(m.SubscribeURL) {
			return nil, refuse(http.StatusForbidden, outcomeRejectedSignature, "subscribe_url_not_allowed",
				"SubscribeURL must be an https URL on a host matching the configured SNS host pattern")
		}
		d.confirm = func(ctx context.Context) error { return p.confirm(ctx, m.SubscribeURL) }
		d.note = "subscription confirmed"
	case snsUnsubscription:
		// Visiting SubscribeURL would subscribe the endpoint again; whoever
		// unsubscribed it meant to.
		d.note = "unsubscribe confirmation received; the endpoint no longer gets this topic"
	case snsNotification:
		d.optOuts, d.ignored = sesOptOuts(m.MessageID, m.Message)
	}
	return d, nil
}

// stringToSign is the canonical form AWS signs: for each field of the
// message type, in byte order, its name, a newline, its value, a newline.
// Subject is signed only when the message has one.
func stringToSign(m *snsMessage) []byte {
	var b strings.Builder
	add := func(name, value string) {
		b.WriteString(name)
		b.WriteByte('\n')
		b.WriteString(value)
		b.WriteByte('\n')
	}
	add("Message", m.Message)
	add("MessageId", m.MessageID)
	if m.Type == snsNotification {
		if m.Subject != nil {
			add("Subject", *m.Subject)
		}
		add("Timestamp", m.Timestamp)
		add("TopicArn", m.TopicArn)
		add("Type", m.Type)
		return []byte(b.String())
	}
	add("SubscribeURL", m.SubscribeURL)
	add("Timestamp", m.Timestamp)
	add("Token", m.Token)
	add("TopicArn", m.TopicArn)
	add("Type", m.Type)
	return []byte(b.String())
}

// allowedURL reports whether u is https on a host the pattern allows.
func (p *snsProvider) allowedURL(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "https" || u.User != nil || u.Hostname() == "" {
		return false
	}
	return p.host.MatchString(u.Hostname())
}

func mustPath(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return u.Path
}

// fetchCert downloads a signing certificate and returns its RSA key and
// when it expires. The host was checked before; the TLS connection to it
// (verified by the client's roots) is what makes the certificate AWS's.
func (p *snsProvider) fetchCert(ctx context.Context, certURL string) (*rsa.PublicKey, time.Time, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, certURL, nil)
	if err != nil {
		return nil, time.Time{}, err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("fetching the certificate: %w", redactURL(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, time.Time{}, fmt.Errorf("fetching the certificate: HTTP %d", resp.StatusCode)
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxCertBytes))
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("reading the certificate: %w", redactURL(err))
	}
	block, _ := pem.Decode(raw)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, time.Time{}, errors.New("the certificate is not PEM")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("parsing the certificate: %w", err)
	}
	now := p.certs.now()
	if now.Before(cert.NotBefore) || now.After(cert.NotAfter) {
		return nil, time.Time{}, errors.New("the certificate is not valid now")
	}
	key, ok := cert.PublicKey.(*rsa.PublicKey)
	if !ok {
		return nil, time.Time{}, errors.New("the certificate's key is not RSA")
	}
	return key, cert.NotAfter, nil
}

// confirm visits SubscribeURL, as AWS asks, to confirm the subscription.
func (p *snsProvider) confirm(ctx context.Context, subscribeURL string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, subscribeURL, nil)
	if err != nil {
		return unavailable("confirming the subscription failed").because(err)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return unavailable("confirming the subscription failed").because(redactURL(err))
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxCertBytes))
	if resp.StatusCode != http.StatusOK {
		return unavailable("confirming the subscription failed: HTTP %d", resp.StatusCode)
	}
	return nil
}

// redactURL drops the URL from a client error: a SubscribeURL carries the
// subscription's confirmation token.
func redactURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	return err
}

// certCache keeps signing certificates by URL, for a day or until they
// expire; a failed fetch is remembered briefly, so that a flood of messages
// naming a missing certificate does not become a flood of fetches.
type certCache struct {
	mu      sync.Mutex
	max     int
	now     func() time.Time
	fetch   func(ctx context.Context, url string) (*rsa.PublicKey, time.Time, error)
	entries map[string]certEntry
}

type certEntry struct {
	key   *rsa.PublicKey
	err   error
	until time.Time
}

func (c *certCache) get(ctx context.Context, certURL string) (*rsa.PublicKey, error) {
	c.mu.Lock()
	e, ok := c.entries[certURL]
	c.mu.Unlock()
	if ok && c.now().Before(e.until) {
		return e.key, e.err
	}
	key, notAfter, err := c.fetch(ctx, certURL)
	now := c.now()
	e = certEntry{key: key, err: err, until: now.Add(certFailureCacheFor)}
	if err == nil {
		e.until = now.Add(24 * time.Hour)
		if notAfter.Before(e.until) {
			e.until = notAfter
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= c.max {
		for u, old := range c.entries {
			if !now.Before(old.until) {
				delete(c.entries, u)
			}
		}
		for u := range c.entries {
			if len(c.entries) < c.max {
				break
			}
			delete(c.entries, u)
		}
	}
	c.entries[certURL] = e
	return key, err
}

// sesNotification is the Message of an SNS notification from Amazon SES:
// a feedback notification (notificationType) or an event publishing record
// (eventType), which share the bounce and complaint objects.
type sesNotification struct {
	NotificationType string `json:"notificationType"`
	EventType        string `json:"eventType"`
	Mail             struct {
		MessageID string `json:"messageId"`
	} `json:"mail"`
	Bounce *struct {
		BounceType        string         `json:"bounceType"`
		BouncedRecipients []sesRecipient `json:"bouncedRecipients"`
		Timestamp         string         `json:"timestamp"`
		FeedbackID        string         `json:"feedbackId"`
	} `json:"bounce"`
	Complaint *struct {
		ComplainedRecipients  []sesRecipient `json:"complainedRecipients"`
		Timestamp             string         `json:"timestamp"`
		FeedbackID            string         `json:"feedbackId"`
		ComplaintFeedbackType string         `json:"complaintFeedbackType"`
	} `json:"complaint"`
}

type sesRecipient struct {
	EmailAddress string `json:"emailAddress"`
}

// sesOptOuts reads an SES notification: each recipient of a Permanent
// bounce is a hard bounce, each recipient of a complaint a complaint (but
// not a "not-spam" feedback report, which says the opposite). Transient and
// Undetermined bounces, deliveries and every other event are ignored. One
// notification may name several recipients; each event's id is the SES
// feedback id (the SNS message id if there is none) and the recipient's
// position, which a retry of the same notification repeats.
func sesOptOuts(snsMessageID, message string) ([]optOut, int) {
	var n sesNotification
	if err := json.Unmarshal([]byte(message), &n); err != nil {
		return nil, 1 // authentic, but not from SES: nothing to act on
	}
	kind := n.NotificationType
	if kind == "" {
		kind = n.EventType
	}
	base := func(feedbackID string) string {
		if feedbackID != "" {
			return feedbackID
		}
		return snsMessageID
	}
	var out []optOut
	add := func(t suppression.EventType, id string, recipients []sesRecipient, at string) {
		when, _ := time.Parse(time.RFC3339Nano, at)
		for i, r := range recipients {
			out = append(out, optOut{id: id + "/" + strconv.Itoa(i), typ: t, email: r.EmailAddress, at: when, messageID: n.Mail.MessageID})
		}
	}
	switch {
	case kind == "Bounce" && n.Bounce != nil && n.Bounce.BounceType == "Permanent":
		add(suppression.EventHardBounce, base(n.Bounce.FeedbackID), n.Bounce.BouncedRecipients, n.Bounce.Timestamp)
	case kind == "Complaint" && n.Complaint != nil && n.Complaint.ComplaintFeedbackType != "not-spam":
		add(suppression.EventComplaint, base(n.Complaint.FeedbackID), n.Complaint.ComplainedRecipients, n.Complaint.Timestamp)
	}
	if len(out) == 0 {
		return nil, 1
	}
	return out, 0
}
