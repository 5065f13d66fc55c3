package webhook

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/suppressd/suppressd/suppression"
)

// EnvPrefix is the prefix the binary gives Config's variables
// (SUPPRESSD + HOOKS): SUPPRESSD_HOOKS_SENDGRID_PUBLIC_KEY and so on.
const EnvPrefix = "SUPPRESSD_HOOKS"

// Config is the webhooks' part of the binary's configuration, read with
// envconfig under EnvPrefix. A provider is served once its credentials are
// set; docs/webhooks.md documents every variable.
type Config struct {
	// PublishedTTL is how long a published event id is remembered, so that
	// a provider's retry publishes nothing twice.
	PublishedTTL time.Duration `envconfig:"PUBLISHED_TTL" default:"72h" desc:"how long a published webhook event id is remembered, so a provider's retry publishes nothing twice"`

	SNS      SNSConfig      `envconfig:"SNS"`
	SendGrid SendGridConfig `envconfig:"SENDGRID"`
	Mailgun  MailgunConfig  `envconfig:"MAILGUN"`
	Postmark PostmarkConfig `envconfig:"POSTMARK"`
}

// ProviderConfig is what every provider's events share.
type ProviderConfig struct {
	// Scopes of the events published, comma-separated.
	Scopes []string `envconfig:"SCOPES" default:"email" desc:"scopes of the events this provider's webhook publishes, comma-separated"`
	// Namespace of the events published; empty is the default namespace.
	Namespace string `envconfig:"NAMESPACE" desc:"namespace of the events this provider's webhook publishes; empty is default"`
}

// SNSConfig configures /hooks/sns (Amazon SES through Amazon SNS).
type SNSConfig struct {
	ProviderConfig
	// TopicARNs are the SNS topics accepted, comma-separated; served when set.
	TopicARNs []string `envconfig:"TOPIC_ARNS" desc:"SNS topic ARNs accepted, comma-separated; /hooks/sns is served when set"`
	// CertHostPattern is the regular expression SigningCertURL's and
	// SubscribeURL's host must match. Empty: DefaultSNSCertHostPattern.
	CertHostPattern string `envconfig:"CERT_HOST_PATTERN" desc:"regular expression the host of SigningCertURL and SubscribeURL must match; empty is Amazon SNS's hosts"`
	// Tolerance is how far a message's Timestamp may be from the clock.
	Tolerance time.Duration `envconfig:"TOLERANCE" default:"5m" desc:"how far a message's Timestamp may be from the clock"`
	MaxBody   int64         `envconfig:"MAX_BODY" default:"1048576" desc:"largest body accepted, in bytes"`
}

// SendGridConfig configures /hooks/sendgrid.
type SendGridConfig struct {
	ProviderConfig
	// PublicKeys are the Signed Event Webhook verification keys as SendGrid
	// shows them, comma-separated; served when set.
	PublicKeys []string `envconfig:"PUBLIC_KEY" desc:"Signed Event Webhook verification keys as SendGrid shows them, comma-separated; /hooks/sendgrid is served when set"`
	// GroupTopics maps unsubscribe groups to topics: "42:newsletter,43:offers".
	GroupTopics map[string]string `envconfig:"GROUP_TOPICS" desc:"unsubscribe groups to topics, asm_group_id:topic, comma-separated"`
	Tolerance   time.Duration     `envconfig:"TOLERANCE" default:"5m" desc:"how far the signed timestamp may be from the clock"`
	MaxBody     int64             `envconfig:"MAX_BODY" default:"4194304" desc:"largest batch accepted, in bytes"`
}

// MailgunConfig configures /hooks/mailgun.
type MailgunConfig struct {
	ProviderConfig
	// SigningKeys are HTTP webhook signing keys, comma-separated; served
	// when set.
	SigningKeys []string      `envconfig:"SIGNING_KEY" secret:"true" desc:"webhook signing keys, comma-separated (an old and a new one while rotating); /hooks/mailgun is served when set"`
	Tolerance   time.Duration `envconfig:"TOLERANCE" default:"5m" desc:"how far the signed timestamp may be from the clock"`
	MaxBody     int64         `envconfig:"MAX_BODY" default:"1048576" desc:"largest body accepted, in bytes"`
}

// PostmarkConfig configures /hooks/postmark; served when the user name and
// password, or the path secret, are set.
type PostmarkConfig struct {
	ProviderConfig
	Username   string `envconfig:"USERNAME" desc:"basic authentication user name, set with the password"`
	Password   string `envconfig:"PASSWORD" secret:"true" desc:"basic authentication password, at least 16 characters"`
	PathSecret string `envconfig:"PATH_SECRET" secret:"true" desc:"the secret last path segment, at least 32 characters; /hooks/postmark is served when it or the user name and password are set"`
	MaxBody    int64  `envconfig:"MAX_BODY" default:"10485760" desc:"largest body accepted, in bytes"`
}

// envNames maps the option at fault to its variable.
var envNames = map[string]string{
	"PublishedTTL":         "PUBLISHED_TTL",
	"SNS.TopicARNs":        "SNS_TOPIC_ARNS",
	"SNS.CertHostPattern":  "SNS_CERT_HOST_PATTERN",
	"SNS.Tolerance":        "SNS_TOLERANCE",
	"SNS.Scopes":           "SNS_SCOPES",
	"SNS.Namespace":        "SNS_NAMESPACE",
	"SNS.MaxBody":          "SNS_MAX_BODY",
	"SendGrid.PublicKeys":  "SENDGRID_PUBLIC_KEY",
	"SendGrid.GroupTopics": "SENDGRID_GROUP_TOPICS",
	"SendGrid.Tolerance":   "SENDGRID_TOLERANCE",
	"SendGrid.Scopes":      "SENDGRID_SCOPES",
	"SendGrid.Namespace":   "SENDGRID_NAMESPACE",
	"SendGrid.MaxBody":     "SENDGRID_MAX_BODY",
	"Mailgun.SigningKeys":  "MAILGUN_SIGNING_KEY",
	"Mailgun.Tolerance":    "MAILGUN_TOLERANCE",
	"Mailgun.Scopes":       "MAILGUN_SCOPES",
	"Mailgun.Namespace":    "MAILGUN_NAMESPACE",
	"Mailgun.MaxBody":      "MAILGUN_MAX_BODY",
	"Postmark.Username":    "POSTMARK_USERNAME",
	"Postmark.Password":    "POSTMARK_PASSWORD",
	"Postmark.PathSecret":  "POSTMARK_PATH_SECRET",
	"Postmark.Scopes":      "POSTMARK_SCOPES",
	"Postmark.Namespace":   "POSTMARK_NAMESPACE",
	"Postmark.MaxBody":     "POSTMARK_MAX_BODY",
}

// Options turns the configuration into Options, checked as NewHandler
// checks them; an error names the variable at fault and never quotes a
// secret. The caller adds what configuration cannot say:
//
//	o, err := cfg.Hooks.Options()
//	o.Publisher, o.PublishLog, o.Logger, o.Registerer = pub, store, log, reg
//	mux.Handle("/hooks/", webhook.NewHandler(o))
func (c Config) Options() (Options, error) {
	o := Options{
		PublishedTTL: c.PublishedTTL,
		SNS: SNSOptions{
			ProviderOptions: c.SNS.options(c.SNS.MaxBody),
			TopicARNs:       trimAll(c.SNS.TopicARNs),
			CertHostPattern: c.SNS.CertHostPattern,
			Tolerance:       c.SNS.Tolerance,
		},
		SendGrid: SendGridOptions{
			ProviderOptions: c.SendGrid.options(c.SendGrid.MaxBody),
			PublicKeys:      trimAll(c.SendGrid.PublicKeys),
			Tolerance:       c.SendGrid.Tolerance,
		},
		Mailgun: MailgunOptions{
			ProviderOptions: c.Mailgun.options(c.Mailgun.MaxBody),
			SigningKeys:     trimAll(c.Mailgun.SigningKeys),
			Tolerance:       c.Mailgun.Tolerance,
		},
		Postmark: PostmarkOptions{
			ProviderOptions: c.Postmark.options(c.Postmark.MaxBody),
			Username:        c.Postmark.Username,
			Password:        c.Postmark.Password,
			PathSecret:      c.Postmark.PathSecret,
		},
	}
	if len(c.SendGrid.GroupTopics) > 0 {
		o.SendGrid.GroupTopics = map[int64]string{}
		for k, v := range c.SendGrid.GroupTopics {
			id, err := strconv.ParseInt(strings.TrimSpace(k), 10, 64)
			if err != nil {
				return Options{}, fmt.Errorf("%s_SENDGRID_GROUP_TOPICS: %q is not a group id (want id:topic,...)", EnvPrefix, k)
			}
			o.SendGrid.GroupTopics[id] = strings.TrimSpace(v)
		}
	}
	for _, t := range []struct {
		name string
		v    time.Duration
	}{{"SNS_TOLERANCE", c.SNS.Tolerance}, {"SENDGRID_TOLERANCE", c.SendGrid.Tolerance}, {"MAILGUN_TOLERANCE", c.Mailgun.Tolerance}, {"PUBLISHED_TTL", c.PublishedTTL}} {
		if t.v <= 0 {
			return Options{}, fmt.Errorf("%s_%s: must be positive", EnvPrefix, t.name)
		}
	}
	if err := o.validateConfig(); err != nil {
		var fe *fieldError
		if errors.As(err, &fe) && envNames[fe.field] != "" {
			return Options{}, fmt.Errorf("%s_%s: %s", EnvPrefix, envNames[fe.field], fe.msg)
		}
		return Options{}, err
	}
	return o, nil
}

func (p ProviderConfig) options(maxBody int64) ProviderOptions {
	o := ProviderOptions{Namespace: strings.TrimSpace(p.Namespace), MaxBody: maxBody}
	for _, s := range trimAll(p.Scopes) {
		o.Scopes = append(o.Scopes, suppression.Scope(s))
	}
	return o
}

// trimAll trims each entry of a comma-separated list and drops empty ones.
func trimAll(xs []string) []string {
	var out []string
	for _, x := range xs {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

// Served lists the providers these options serve, in the order of
// Providers: those whose credentials are set.
func (o Options) Served() []string {
	on := map[string]bool{
		ProviderSNS:      len(o.SNS.TopicARNs) > 0,
		ProviderSendGrid: len(o.SendGrid.PublicKeys) > 0,
		ProviderMailgun:  len(o.Mailgun.SigningKeys) > 0,
		ProviderPostmark: o.Postmark.configured(),
	}
	var out []string
	for _, p := range Providers {
		if on[p] {
			out = append(out, p)
		}
	}
	return out
}
