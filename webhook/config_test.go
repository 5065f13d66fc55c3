package webhook

import (
	"encoding/base64"
	"net/http"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kelseyhightower/envconfig"
	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/suppression"
)

// loadConfig reads the variables as the binary will (SUPPRESSD + HOOKS).
func loadConfig(t *testing.T) (Options, error) {
	t.Helper()
	var c Config
	require.NoError(t, envconfig.Process(EnvPrefix, &c))
	return c.Options()
}

func TestConfigFromEnvironment(t *testing.T) {
	side := newSendGridSide(t)
	t.Setenv("SUPPRESSD_HOOKS_SNS_TOPIC_ARNS", testTopic+", arn:aws-cn:sns:cn-north-1:123456789012:ses-feedback-cn")
	t.Setenv("SUPPRESSD_HOOKS_SENDGRID_PUBLIC_KEY", side.public)
	t.Setenv("SUPPRESSD_HOOKS_SENDGRID_GROUP_TOPICS", "42:newsletter,43:offers")
	t.Setenv("SUPPRESSD_HOOKS_SENDGRID_TOLERANCE", "10m")
	t.Setenv("SUPPRESSD_HOOKS_MAILGUN_SIGNING_KEY", testMailgunKey)
	t.Setenv("SUPPRESSD_HOOKS_MAILGUN_NAMESPACE", "brand-b")
	t.Setenv("SUPPRESSD_HOOKS_POSTMARK_PATH_SECRET", testPostmarkPath)
	t.Setenv("SUPPRESSD_HOOKS_POSTMARK_SCOPES", "email, marketing")
	o, err := loadConfig(t)
	require.NoError(t, err)

	require.Equal(t, []string{testTopic, "arn:aws-cn:sns:cn-north-1:123456789012:ses-feedback-cn"}, o.SNS.TopicARNs)
	require.Equal(t, 5*time.Minute, o.SNS.Tolerance)
	require.Equal(t, int64(DefaultMaxBody), o.SNS.MaxBody)
	require.Equal(t, []suppression.Scope{"email"}, o.SNS.Scopes)
	require.Equal(t, []string{side.public}, o.SendGrid.PublicKeys)
	require.Equal(t, map[int64]string{42: "newsletter", 43: "offers"}, o.SendGrid.GroupTopics)
	require.Equal(t, 10*time.Minute, o.SendGrid.Tolerance)
	require.Equal(t, int64(DefaultSendGridMaxBody), o.SendGrid.MaxBody)
	require.Equal(t, "brand-b", o.Mailgun.Namespace)
	require.Equal(t, []suppression.Scope{"email", "marketing"}, o.Postmark.Scopes)
	require.Equal(t, int64(DefaultPostmarkMaxBody), o.Postmark.MaxBody)
	require.Equal(t, DefaultPublishedTTL, o.PublishedTTL)

	// The one line of wiring serves what was configured.
	e := newEnv(t, func(opts *Options) {
		pub, logger, reg, now := opts.Publisher, opts.Logger, opts.Registerer, opts.Now
		*opts = o
		opts.Publisher, opts.Logger, opts.Registerer, opts.Now = pub, logger, reg, now
	})
	body := fixture(t, "sendgrid/batch.json")
	require.Equal(t, http.StatusOK, e.post("/hooks/sendgrid", body, side.headers(side.key, testNow, body)).status)
	require.Equal(t, http.StatusOK, postmarkPost(e, "/hooks/postmark/"+testPostmarkPath, "", "", fixture(t, "postmark/bounce_hard.json")).status)
	mg := mailgunBody(t, testMailgunKey, testNow, "config-token-01234567890123456789012345678901234567", fixture(t, "mailgun/complained.json"))
	require.Equal(t, http.StatusOK, e.post("/hooks/mailgun", mg, nil).status)
	require.Equal(t, "brand-b", e.pub.Events()[len(e.pub.Events())-1].Namespace)
}

func TestConfigNothingSet(t *testing.T) {
	o, err := loadConfig(t)
	require.NoError(t, err)
	e := newEnv(t, func(opts *Options) {
		opts.SNS, opts.SendGrid, opts.Mailgun, opts.Postmark = o.SNS, o.SendGrid, o.Mailgun, o.Postmark
	})
	for _, p := range Providers {
		require.Equal(t, http.StatusNotFound, e.post("/hooks/"+p, []byte("{}"), nil).status, p)
	}
}

// A bad value is an error naming its variable, and never quoting a secret.
func TestConfigErrors(t *testing.T) {
	rsaDER := base64.StdEncoding.EncodeToString([]byte("not a DER key at all"))
	for _, c := range []struct {
		name   string
		env    map[string]string
		want   string
		secret string
	}{
		{"SendGrid key not base64", map[string]string{"SENDGRID_PUBLIC_KEY": "not-a-key!"}, "SUPPRESSD_HOOKS_SENDGRID_PUBLIC_KEY: key 0: not base64", ""},
		{"SendGrid key not a key", map[string]string{"SENDGRID_PUBLIC_KEY": rsaDER}, "SUPPRESSD_HOOKS_SENDGRID_PUBLIC_KEY: key 0: not a DER public key", ""},
		{"SendGrid group id", map[string]string{"SENDGRID_PUBLIC_KEY": newSendGridSide(t).public, "SENDGRID_GROUP_TOPICS": "news:letter"}, "SUPPRESSD_HOOKS_SENDGRID_GROUP_TOPICS", ""},
		{"SendGrid group topic", map[string]string{"SENDGRID_PUBLIC_KEY": newSendGridSide(t).public, "SENDGRID_GROUP_TOPICS": "42:News Letter"}, "SUPPRESSD_HOOKS_SENDGRID_GROUP_TOPICS: group 42: topic", ""},
		{"SendGrid namespace", map[string]string{"SENDGRID_NAMESPACE": "Brand B"}, "SUPPRESSD_HOOKS_SENDGRID_NAMESPACE", ""},
		{"SNS topic ARN", map[string]string{"SNS_TOPIC_ARNS": "ses-feedback"}, "SUPPRESSD_HOOKS_SNS_TOPIC_ARNS: entry 0 is not an SNS topic ARN", ""},
		{"SNS host pattern", map[string]string{"SNS_TOPIC_ARNS": testTopic, "SNS_CERT_HOST_PATTERN": "(sns"}, "SUPPRESSD_HOOKS_SNS_CERT_HOST_PATTERN: not a regular expression", ""},
		{"SNS tolerance", map[string]string{"SNS_TOLERANCE": "0s"}, "SUPPRESSD_HOOKS_SNS_TOLERANCE: must be positive", ""},
		{"Mailgun scope", map[string]string{"MAILGUN_SIGNING_KEY": testMailgunKey, "MAILGUN_SCOPES": "email,newsletter"}, "SUPPRESSD_HOOKS_MAILGUN_SCOPES: scope 1", testMailgunKey},
		{"Mailgun max body", map[string]string{"MAILGUN_MAX_BODY": "-1"}, "SUPPRESSD_HOOKS_MAILGUN_MAX_BODY: must not be negative", ""},
		{"Postmark short password", map[string]string{"POSTMARK_USERNAME": "postmark", "POSTMARK_PASSWORD": "hunter2hunter2"}, "SUPPRESSD_HOOKS_POSTMARK_PASSWORD: at least 16 characters", "hunter2hunter2"},
		{"Postmark user without password", map[string]string{"POSTMARK_USERNAME": "postmark"}, "SUPPRESSD_HOOKS_POSTMARK_USERNAME: username and password are set together", ""},
		{"Postmark password without user", map[string]string{"POSTMARK_PASSWORD": testPostmarkPassword, "POSTMARK_PATH_SECRET": testPostmarkPath}, "SUPPRESSD_HOOKS_POSTMARK_USERNAME", testPostmarkPassword},
		{"Postmark short path secret", map[string]string{"POSTMARK_PATH_SECRET": "s3cr3t-path"}, "SUPPRESSD_HOOKS_POSTMARK_PATH_SECRET: at least 32 characters", "s3cr3t-path"},
		{"Postmark path secret needing escapes", map[string]string{"POSTMARK_PATH_SECRET": strings.Repeat("a/b?", 10)}, "SUPPRESSD_HOOKS_POSTMARK_PATH_SECRET: only", strings.Repeat("a/b?", 10)},
		{"published TTL", map[string]string{"PUBLISHED_TTL": "0s"}, "SUPPRESSD_HOOKS_PUBLISHED_TTL: must be positive", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			for k, v := range c.env {
				t.Setenv(EnvPrefix+"_"+k, v)
			}
			_, err := loadConfig(t)
			require.Error(t, err)
			require.Contains(t, err.Error(), c.want)
			if c.secret != "" {
				require.NotContains(t, err.Error(), c.secret)
			}
		})
	}
}

// envVars lists Config's variables with their defaults, as envconfig reads
// them.
func envVars(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	var walk func(prefix string, typ reflect.Type)
	walk = func(prefix string, typ reflect.Type) {
		for i := range typ.NumField() {
			f := typ.Field(i)
			if f.Anonymous {
				walk(prefix, f.Type)
				continue
			}
			name := prefix + "_" + f.Tag.Get("envconfig")
			if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeOf(time.Duration(0)) {
				walk(name, f.Type)
				continue
			}
			out[name] = f.Tag.Get("default")
		}
	}
	walk(EnvPrefix, reflect.TypeOf(Config{}))
	return out
}

// docs/webhooks.md documents every variable, with its default, and no
// other: the table and the struct cannot drift apart.
func TestConfigDocumented(t *testing.T) {
	raw, err := os.ReadFile("../docs/webhooks.md")
	require.NoError(t, err)
	row := regexp.MustCompile("(?m)^\\| `(SUPPRESSD_HOOKS_[A-Z_]+)` \\| ([^|]*) \\|")
	documented := map[string]string{}
	for _, m := range row.FindAllStringSubmatch(string(raw), -1) {
		_, dup := documented[m[1]]
		require.False(t, dup, "%s is documented twice", m[1])
		documented[m[1]] = strings.Trim(strings.TrimSpace(m[2]), "`")
	}
	vars := envVars(t)
	names := make([]string, 0, len(vars))
	for name := range vars {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		def, ok := documented[name]
		require.True(t, ok, "%s is not documented in docs/webhooks.md", name)
		want := vars[name]
		if want == "" {
			want = "none"
		}
		require.Equal(t, want, def, "the documented default of %s", name)
		delete(documented, name)
	}
	require.Empty(t, documented, "documented variables that Config does not read")
}

func TestServed(t *testing.T) {
	require.Empty(t, Options{}.Served())
	o := Options{Mailgun: MailgunOptions{SigningKeys: []string{"k"}}, SNS: SNSOptions{TopicARNs: []string{"arn:aws:sns:eu-west-1:123456789012:ses"}}}
	require.Equal(t, []string{ProviderSNS, ProviderMailgun}, o.Served())
	o.Postmark.PathSecret = strings.Repeat("s", 32)
	require.Equal(t, []string{ProviderSNS, ProviderMailgun, ProviderPostmark}, o.Served())
}
