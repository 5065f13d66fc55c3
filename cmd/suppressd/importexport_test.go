package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/importer"
	"github.com/suppressd/suppressd/internal/testenv"
	"github.com/suppressd/suppressd/internal/testkafka"
	"github.com/suppressd/suppressd/internal/teststore"
	"github.com/suppressd/suppressd/schemas"
	"github.com/suppressd/suppressd/store/redisstore"
	"github.com/suppressd/suppressd/suppression"
)

// importCase is a provider export made by the test, following the
// provider's documented columns: good rows of several kinds, and bad rows.
type importCase struct {
	format string
	file   string // its name: some formats read the list's kind from it
	body   string
	good   map[string]suppression.Reason // address -> reason
	bad    map[int]string                // line -> the raw value that must not appear in the report
}

var importCases = []importCase{
	{
		format: "ses", file: "ses-suppressed.json",
		body: `{
  "SuppressedDestinationSummaries": [
    {"EmailAddress": "ses.bounce@example.org", "Reason": "BOUNCE", "LastUpdateTime": "2026-01-02T03:04:05.678000+00:00"},
    {"EmailAddress": "ses-no-at.example.org", "Reason": "BOUNCE", "LastUpdateTime": "2026-01-02T03:04:05+00:00"},
    {"EmailAddress": "ses.complaint@example.org", "Reason": "COMPLAINT", "LastUpdateTime": 1767225600},
    {"EmailAddress": "Ses.Third@Example.org", "Reason": "BOUNCE", "LastUpdateTime": "2026-02-03T00:00:00Z"},
    {"EmailAddress": "ses.dateless@example.org", "Reason": "COMPLAINT", "LastUpdateTime": "last tuesday"}
  ],
  "NextToken": "token"
}`,
		good: map[string]suppression.Reason{
			"ses.bounce@example.org": suppression.ReasonHardBounce, "ses.complaint@example.org": suppression.ReasonComplaint,
			"ses.third@example.org": suppression.ReasonHardBounce,
		},
		bad: map[int]string{4: "ses-no-at.example.org", 7: "last tuesday"},
	},
	{
		format: "sendgrid", file: "sendgrid_bounces.csv",
		body: "email,created,reason,status\n" +
			"sg.one@example.org,2026-01-02 03:04:05,550 5.1.1 unknown user,5.1.1\n" +
			"sg.two@example.org,1767225600,550 mailbox unavailable,5.0.0\n" +
			"sg two@example.org,1767225600,550,5.0.0\n" +
			"sg.three@example.org,,550,5.1.1\n",
		good: map[string]suppression.Reason{
			"sg.one@example.org": suppression.ReasonHardBounce, "sg.two@example.org": suppression.ReasonHardBounce,
			"sg.three@example.org": suppression.ReasonHardBounce,
		},
		bad: map[int]string{4: "sg two@example.org"},
	},
	{
		format: "postmark", file: "postmark-dump.json",
		body: `{"Suppressions": [
  {"EmailAddress": "pm.bounce@example.org", "SuppressionReason": "HardBounce", "Origin": "Recipient", "CreatedAt": "2026-01-02T03:04:05-05:00"},
  {"EmailAddress": "pm.spam@example.org", "SuppressionReason": "SpamComplaint", "Origin": "Recipient", "CreatedAt": "2026-01-03T03:04:05-05:00"},
  {"EmailAddress": "pm.unsub@example.org", "SuppressionReason": "ManualSuppression", "Origin": "Recipient", "CreatedAt": "2026-01-04T03:04:05-05:00"},
  {"EmailAddress": "pm.manual@example.org", "SuppressionReason": "ManualSuppression", "Origin": "Customer", "CreatedAt": "2026-01-05T03:04:05-05:00"},
  {"EmailAddress": "pm bad@example.org", "SuppressionReason": "HardBounce", "Origin": "Recipient", "CreatedAt": "2026-01-05T03:04:05-05:00"}
]}`,
		good: map[string]suppression.Reason{
			"pm.bounce@example.org": suppression.ReasonHardBounce, "pm.spam@example.org": suppression.ReasonComplaint,
			"pm.unsub@example.org": suppression.ReasonUnsubscribe, "pm.manual@example.org": suppression.ReasonImport,
		},
		bad: map[int]string{6: "pm bad@example.org"},
	},
	{
		format: "mailgun", file: "mailgun-bounces.csv",
		body: "address,code,error,created_at\n" +
			"mg.one@example.org,550,No such mailbox,\"Fri, 02 Jan 2026 03:04:05 UTC\"\n" +
			"mg.two@example.org,550,Mailbox disabled,\"Sat, 03 Jan 2026 03:04:05 +0100\"\n" +
			"mg.three@example.org,550,,\n" +
			"mg.bad@,550,Bad domain,\"Sat, 03 Jan 2026 03:04:05 +0100\"\n" +
			"mg.four@example.org,550,x,\"the 3rd of January\"\n",
		good: map[string]suppression.Reason{
			"mg.one@example.org": suppression.ReasonHardBounce, "mg.two@example.org": suppression.ReasonHardBounce,
			"mg.three@example.org": suppression.ReasonHardBounce,
		},
		bad: map[int]string{5: "mg.bad@", 6: "the 3rd of January"},
	},
	{
		format: "csv", file: "list.csv",
		body: "Email,Reason,Occurred_At\n" +
			"plain.unsub@example.org,unsubscribe,2026-01-02T03:04:05Z\n" +
			"plain.bounce@example.org,bounce,2026-01-02\n" +
			"plain.none@example.org,,\n" +
			"plain.spam@example.org,spam,1767225600\n" +
			"not an address,unsubscribe,\n",
		good: map[string]suppression.Reason{
			"plain.unsub@example.org": suppression.ReasonUnsubscribe, "plain.bounce@example.org": suppression.ReasonHardBounce,
			"plain.none@example.org": suppression.ReasonImport, "plain.spam@example.org": suppression.ReasonComplaint,
		},
		bad: map[int]string{6: "not an address"},
	},
}

// importEnv creates the topics of one import and points the configuration
// at them; it returns the unsubscribes topic, where every import goes.
func importEnv(ctx context.Context, t *testing.T) (brokers []string, topic string) {
	brokers = testenv.KafkaBrokers(t)
	topic = testkafka.Unique("import")
	testkafka.CreateTopic(ctx, t, brokers[0], topic, 1)
	for k, v := range map[string]string{
		"SUPPRESSD_KAFKA_BROKERS":      strings.Join(brokers, ","),
		"SUPPRESSD_TOPIC_UNSUBSCRIBES": topic,
		"SUPPRESSD_TOPIC_CONSENT":      testkafka.Unique("import-consent"),
		"SUPPRESSD_TOPIC_ERASURE":      testkafka.Unique("import-erasure"),
		"SUPPRESSD_PEPPER":             "",
		"SUPPRESSD_PHONE_REGION":       "US",
	} {
		t.Setenv(k, v)
	}
	return brokers, topic
}

// TestImportEachFormat imports a sample export of every format: one valid
// suppress event per good row with the row's reason, scope email and origin
// system; a report naming exactly the bad rows, by line, without their
// values; every good address suppressed once the events are applied to the
// store; and the same event ids when the file is imported again.
func TestImportEachFormat(t *testing.T) {
	redisAddr := testenv.RedisAddr(t)
	v, err := schemas.New()
	require.NoError(t, err)
	norm, err := suppression.NewNormalizer("US")
	require.NoError(t, err)
	for _, tc := range importCases {
		t.Run(tc.format, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			brokers, topic := importEnv(ctx, t)
			dir := t.TempDir()
			path, report := filepath.Join(dir, tc.file), filepath.Join(dir, "rejected.csv")
			require.NoError(t, os.WriteFile(path, []byte(tc.body), 0o600))

			var out, errb bytes.Buffer
			require.NoError(t, runCommand(ctx, &out, &errb, "import", "--format", tc.format, "--file", path, "--report", report), errb.String())
			require.Equal(t, fmt.Sprintf("imported %d rows: %d published, %d rejected (report: %s)\n",
				len(tc.good)+len(tc.bad), len(tc.good), len(tc.bad), report), out.String())

			// One valid event per good row.
			msgs := testkafka.ReadAll(ctx, t, brokers, topic, 1, len(tc.good)+1)
			require.Len(t, msgs, len(tc.good))
			ids := map[string]bool{}
			var writes []suppression.Write
			got := map[string]suppression.Reason{}
			for _, m := range msgs {
				d, err := v.Decode(m.Value, m.Time, norm)
				require.NoError(t, err)
				e := d.Event
				require.Equal(t, suppression.EventSuppress, e.Type)
				require.Equal(t, suppression.OriginSystem, e.Origin)
				require.Equal(t, "/import/"+tc.format, e.Source)
				require.Equal(t, []suppression.Scope{"email"}, e.Scopes)
				require.False(t, e.OccurredAt.After(time.Now()), "never in the future")
				require.Len(t, e.Identifiers, 1)
				got[e.Identifiers[0].Value] = e.Reason
				ids[e.ID] = true
				writes = suppression.AppendWrites(writes, &d.Event, testKeyer.StorageKeys(nil, d.Keys))
			}
			require.Equal(t, tc.good, got)

			// The report: exactly the bad lines, each with a reason, no value.
			f, err := os.Open(report)
			require.NoError(t, err)
			recs, err := csv.NewReader(f).ReadAll()
			f.Close()
			require.NoError(t, err)
			require.Equal(t, []string{"line", "reason"}, recs[0])
			lines := map[int]bool{}
			raw, _ := os.ReadFile(report)
			for _, r := range recs[1:] {
				var n int
				_, err := fmt.Sscan(r[0], &n)
				require.NoError(t, err)
				require.NotEmpty(t, r[1])
				lines[n] = true
			}
			want := map[int]bool{}
			for n, value := range tc.bad {
				want[n] = true
				require.NotContains(t, string(raw), value)
			}
			require.Equal(t, want, lines)

			// Applied to the store, every good address is suppressed.
			rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
			defer rdb.Close()
			store := teststore.Build(t, rdb, redisstore.Options{Prefix: teststore.Prefix(), Keying: testKeyer.Fingerprint()})
			_, err = store.Apply(ctx, writes)
			require.NoError(t, err)
			for email, reason := range tc.good {
				keys, err := norm.Expand(suppression.Identifier{Type: suppression.IDEmail, Value: email})
				require.NoError(t, err)
				recs, err := store.Get(ctx, suppression.DefaultNamespace, testKeyer.StorageKeys(nil, keys))
				require.NoError(t, err)
				for _, rec := range recs {
					require.True(t, rec["email"].Suppressed(), email)
					require.Equal(t, reason, rec["email"].Active()[0].Reason, email)
				}
			}

			// Importing the file again publishes the same events.
			out.Reset()
			require.NoError(t, runCommand(ctx, &out, &errb, "import", "--format", tc.format, "--file", path, "--report", report), errb.String())
			again := testkafka.ReadAll(ctx, t, brokers, topic, 1, 2*len(tc.good))
			require.Len(t, again, 2*len(tc.good))
			againIDs := map[string]bool{}
			for _, m := range again[len(tc.good):] {
				var env struct{ ID string }
				require.NoError(t, json.Unmarshal(m.Value, &env))
				againIDs[env.ID] = true
			}
			require.Equal(t, ids, againIDs)
		})
	}
}

// TestImportDryRunAndScopes: --dry-run publishes nothing and needs no
// Kafka; --scope and --namespace reach the events.
func TestImportDryRunAndScopes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	brokers, topic := importEnv(ctx, t)
	dir := t.TempDir()
	path := filepath.Join(dir, "emails.csv")
	require.NoError(t, os.WriteFile(path, []byte("a@example.org\nb@example.org\nnope\n"), 0o600))

	t.Setenv("SUPPRESSD_KAFKA_BROKERS", "127.0.0.1:1") // nothing listens: a dry run must not care
	var out, errb bytes.Buffer
	require.NoError(t, runCommand(ctx, &out, &errb, "import", "--format", "csv", "--file", path, "--dry-run"))
	require.Equal(t, fmt.Sprintf("checked 3 rows: 2 valid, 1 rejected (report: %s.rejected.csv); nothing published (--dry-run)\n", path), out.String())

	t.Setenv("SUPPRESSD_KAFKA_BROKERS", strings.Join(brokers, ","))
	out.Reset()
	require.NoError(t, runCommand(ctx, &out, &errb, "import", "--format", "csv", "--file", path, "--scope", "marketing,topic:news", "--scope", "sms", "--namespace", "brand-a"))
	msgs := testkafka.ReadAll(ctx, t, brokers, topic, 1, 2)
	require.Len(t, msgs, 2)
	v, err := schemas.New()
	require.NoError(t, err)
	for _, m := range msgs {
		d, err := v.Decode(m.Value, m.Time, suppression.Normalizer{})
		require.NoError(t, err)
		require.Equal(t, "brand-a", d.Event.Namespace)
		require.Equal(t, []suppression.Scope{"marketing", "topic:news", "sms"}, d.Event.Scopes)
		require.Equal(t, suppression.ReasonImport, d.Event.Reason)
	}
}

// TestImportFatal: an unreadable file and a broker that never answers are
// errors; bad rows are not.
func TestImportFatal(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	importEnv(ctx, t)
	dir := t.TempDir()
	var out, errb bytes.Buffer
	require.Error(t, runCommand(ctx, &out, &errb, "import", "--format", "ses", "--file", filepath.Join(dir, "missing.json")))

	path := filepath.Join(dir, "broken.json")
	require.NoError(t, os.WriteFile(path, []byte(`{"SuppressedDestinationSummaries": [{"EmailAddress": "a@example.org"`), 0o600))
	err := runCommand(ctx, &out, &errb, "import", "--format", "ses", "--file", path, "--dry-run")
	require.ErrorContains(t, err, "JSON")

	good := filepath.Join(dir, "good.csv")
	require.NoError(t, os.WriteFile(good, []byte("email\na@example.org\n"), 0o600))
	t.Setenv("SUPPRESSD_KAFKA_BROKERS", "127.0.0.1:1")
	t.Setenv("SUPPRESSD_KAFKA_DIAL_TIMEOUT", "200ms")
	err = runCommand(ctx, &out, &errb, "import", "--format", "csv", "--file", good)
	require.ErrorContains(t, err, "publish")
}

// TestExportCommand streams the store as NDJSON after an import's events
// are applied: one line per (key, scope), with the reason, and no address.
func TestExportCommand(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	redisAddr := testenv.RedisAddr(t)
	prefix := strings.ReplaceAll(testkafka.Unique("exp"), "-", "")
	t.Setenv("SUPPRESSD_REDIS_ADDRS", redisAddr)
	t.Setenv("SUPPRESSD_STORE_PREFIX", prefix)
	t.Setenv("SUPPRESSD_PEPPER", "ZXhwb3J0LXRlc3QtcGVwcGVyLTE2Yg==")
	s, err := load("")
	require.NoError(t, err)
	d, err := openStore(s)
	require.NoError(t, err)
	defer d.close()
	buildStore(t, d)

	emails := map[string]suppression.Reason{
		"export.a@example.org": suppression.ReasonHardBounce, "export.b@gmail.com": suppression.ReasonComplaint,
		"export.c@example.org": suppression.ReasonUnsubscribe,
	}
	wantKeys := map[string]suppression.Reason{}
	for email, reason := range emails {
		e := suppression.Event{
			ID: "x-" + email, Source: "/import/csv", Type: suppression.EventSuppress, OccurredAt: time.Now().Add(-time.Hour),
			Identifiers: []suppression.Identifier{{Type: suppression.IDEmail, Value: email}}, Scopes: []suppression.Scope{"email"},
			Reason: reason, Origin: suppression.OriginSystem,
		}
		require.NoError(t, e.Normalize(time.Now()))
		keys, err := s.normalizer.Expand(e.Identifiers...)
		require.NoError(t, err)
		sks := s.keyer.StorageKeys(nil, keys)
		_, err = d.store.Apply(ctx, suppression.AppendWrites(nil, &e, sks))
		require.NoError(t, err)
		for _, k := range sks {
			wantKeys[s.storeOpts.KeyText(k)] = reason
		}
	}

	out := filepath.Join(t.TempDir(), "export.ndjson")
	var stdout, stderr bytes.Buffer
	require.NoError(t, runCommand(ctx, &stdout, &stderr, "export", "--out", out))
	require.Contains(t, stderr.String(), fmt.Sprintf("exported %d keys, %d lines", len(wantKeys), len(wantKeys)))
	raw, err := os.ReadFile(out)
	require.NoError(t, err)
	for email := range emails {
		require.NotContains(t, string(raw), strings.Split(email, "@")[0])
	}
	got := map[string]suppression.Reason{}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		var l exportLine
		require.NoError(t, json.Unmarshal(sc.Bytes(), &l))
		require.Equal(t, "default", l.Namespace)
		require.Equal(t, "email", l.Scope)
		require.True(t, l.Suppressed)
		require.Len(t, l.Registers, 1)
		require.Equal(t, "suppress", l.Registers[0].Action)
		require.Equal(t, "system", l.Registers[0].Origin)
		require.Equal(t, "/import/csv", l.Registers[0].Source)
		got[l.Key] = suppression.Reason(l.Registers[0].Reason)
	}
	require.Equal(t, wantKeys, got)

	// Another namespace exports nothing.
	stderr.Reset()
	require.NoError(t, runCommand(ctx, &stdout, &stderr, "export", "--namespace", "nobody", "--out", filepath.Join(t.TempDir(), "empty")))
	require.Contains(t, stderr.String(), "exported 0 keys")

	// --json: the same records, then a summary line to know the output
	// complete by; nothing on stderr to parse.
	stdout.Reset()
	stderr.Reset()
	require.NoError(t, runCommand(ctx, &stdout, &stderr, "export", "--json"))
	require.Empty(t, stderr.String())
	lines := strings.Split(strings.TrimSuffix(stdout.String(), "\n"), "\n")
	require.Len(t, lines, len(wantKeys)+1)
	require.ElementsMatch(t, strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n"), lines[:len(wantKeys)])
	require.JSONEq(t, fmt.Sprintf(`{"summary":{"namespace":"default","generation":"g1","keys":%d,"lines":%d}}`, len(wantKeys), len(wantKeys)), lines[len(wantKeys)])
}

// TestImportCLIAndAPIAgree: the same SES export imported with `suppressd
// import` and with POST /v1/import of a running api role publishes the same
// event ids, each keyed with the pepper (an unkeyed id could be tested
// against guessed addresses).
func TestImportCLIAndAPIAgree(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	brokers, topic := importEnv(ctx, t)
	pepper := "aW1wb3J0LWFncmVlLXBlcHBlci0xNmI="
	t.Setenv("SUPPRESSD_PEPPER", pepper)
	t.Setenv("SUPPRESSD_REDIS_ADDRS", testenv.RedisAddr(t))
	t.Setenv("SUPPRESSD_STORE_PREFIX", teststore.Prefix())
	t.Setenv("SUPPRESSD_API_ADDR", "127.0.0.1:0")
	t.Setenv("SUPPRESSD_API_KEYS", "ops:admin:"+sha256hex("sdk_import_admin"))
	var ses importCase
	for _, c := range importCases {
		if c.format == "ses" {
			ses = c
		}
	}
	require.NotEmpty(t, ses.good)
	path := filepath.Join(t.TempDir(), ses.file)
	require.NoError(t, os.WriteFile(path, []byte(ses.body), 0o600))
	ids := func(msgs []kafka.Message) []string {
		var out []string
		for _, m := range msgs {
			var env struct{ ID string }
			require.NoError(t, json.Unmarshal(m.Value, &env))
			out = append(out, env.ID)
		}
		slices.Sort(out)
		return out
	}

	var out, errb bytes.Buffer
	require.NoError(t, runCommand(ctx, &out, &errb, "import", "--format", "ses", "--file", path, "--report", path+".rej"))
	cli := ids(testkafka.ReadAll(ctx, t, brokers, topic, 1, len(ses.good)))
	require.Len(t, cli, len(ses.good))

	s, err := load("api")
	require.NoError(t, err)
	addr := make(chan string, 1)
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- serve(sctx, s, s.logger(io.Discard), func(a string) { addr <- a }) }()
	defer func() { stop(); require.NoError(t, <-done) }()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+<-addr+"/v1/import?format=ses", strings.NewReader(ses.body))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer sdk_import_admin")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	both := testkafka.ReadAll(ctx, t, brokers, topic, 1, 2*len(ses.good))
	require.Len(t, both, 2*len(ses.good))
	api := ids(both[len(ses.good):])
	require.Equal(t, cli, api, "the CLI and the API publish the same event ids for the same file")

	// Keyed with the pepper: not the ids an unkeyed hash gives.
	keyed, err := base64.StdEncoding.DecodeString(pepper)
	require.NoError(t, err)
	var want, unkeyed []string
	require.NoError(t, importer.Parse(strings.NewReader(ses.body), importer.Options{Format: importer.FormatSES, Normalizer: s.normalizer},
		func(r importer.Row) error {
			want = append(want, importer.EventID(importer.FormatSES, r, suppression.NewKeyer(keyed)))
			unkeyed = append(unkeyed, importer.EventID(importer.FormatSES, r, suppression.NewKeyer(nil)))
			return nil
		}, func(importer.Rejection) error { return nil }))
	slices.Sort(want)
	require.Equal(t, want, cli)
	for _, id := range unkeyed {
		require.NotContains(t, cli, id)
	}
}

func sha256hex(s string) string {
	d := sha256.Sum256([]byte(s))
	return hex.EncodeToString(d[:])
}
