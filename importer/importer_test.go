package importer

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/suppression"
)

var (
	now     = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	fileAge = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
)

type got struct {
	rows    []Row
	rejects []Rejection
}

func parse(t *testing.T, f Format, kind, in string) (got, error) {
	t.Helper()
	var g got
	n, err := suppression.NewNormalizer("US")
	require.NoError(t, err)
	err = Parse(strings.NewReader(in), Options{Format: f, Kind: kind, Normalizer: n, Now: now, DefaultTime: fileAge},
		func(r Row) error { g.rows = append(g.rows, r); return nil },
		func(r Rejection) error { g.rejects = append(g.rejects, r); return nil })
	return g, err
}

// brief is what a test compares: line, identifier, reason, time.
type brief struct {
	line   int
	value  string
	reason suppression.Reason
	at     string
}

func briefs(rows []Row) []brief {
	out := make([]brief, len(rows))
	for i, r := range rows {
		out[i] = brief{r.Line, r.Identifier.Value, r.Reason, r.OccurredAt.Format(time.RFC3339)}
	}
	return out
}

func lines(rs []Rejection) []int {
	out := make([]int, len(rs))
	for i, r := range rs {
		out[i] = r.Line
	}
	return out
}

// TestParsers reads each provider's documented shapes: the right rows with
// the right reasons and times, and the bad rows rejected by line.
func TestParsers(t *testing.T) {
	for _, tc := range []struct {
		name    string
		format  Format
		kind    string
		in      string
		want    []brief
		rejects []int
	}{
		{
			name: "ses cli document", format: FormatSES,
			in: `{
  "SuppressedDestinationSummaries": [
    {
      "EmailAddress": "Bounced@Example.org",
      "Reason": "BOUNCE",
      "LastUpdateTime": "2026-03-04T05:06:07.123000+00:00"
    },
    {
      "EmailAddress": "no-at-sign",
      "Reason": "BOUNCE",
      "LastUpdateTime": "2026-03-04T05:06:07+00:00"
    },
    {
      "EmailAddress": "complained@example.org",
      "Reason": "COMPLAINT",
      "LastUpdateTime": 1767225600
    }
  ],
  "NextToken": "abc"
}`,
			want: []brief{
				{3, "bounced@example.org", suppression.ReasonHardBounce, "2026-03-04T05:06:07Z"},
				{13, "complained@example.org", suppression.ReasonComplaint, "2026-01-01T00:00:00Z"},
			},
			rejects: []int{8},
		},
		{
			name: "ses one object per line", format: FormatSES,
			in: `{"EmailAddress":"a@example.org","Reason":"BOUNCE","LastUpdateTime":"2026-01-01T00:00:00Z"}
{"EmailAddress":"b@example.org","Reason":"COMPLAINT","LastUpdateTime":"yesterday"}
{"EmailAddress":"c@example.org","Reason":"COMPLAINT","LastUpdateTime":"2099-01-01T00:00:00Z"}
`,
			want: []brief{
				{1, "a@example.org", suppression.ReasonHardBounce, "2026-01-01T00:00:00Z"},
				{3, "c@example.org", suppression.ReasonComplaint, "2026-11-28T12:00:00Z"}, // never in the future
			},
			rejects: []int{2},
		},
		{
			name: "sendgrid bounces detected by status", format: FormatSendGrid,
			in:      "email,created,reason,status\r\nx@example.org,2026-02-03 04:05:06,550 5.1.1 no such user,5.1.1\r\n,2026-02-03 04:05:06,,\r\n",
			want:    []brief{{2, "x@example.org", suppression.ReasonHardBounce, "2026-02-03T04:05:06Z"}},
			rejects: []int{3},
		},
		{
			name: "sendgrid spam reports detected by ip", format: FormatSendGrid,
			in:   "email,created,ip\ns@example.org,1767225600,10.0.0.1\n",
			want: []brief{{2, "s@example.org", suppression.ReasonComplaint, "2026-01-01T00:00:00Z"}},
		},
		{
			name: "sendgrid unsubscribes by columns", format: FormatSendGrid,
			in:   "Email,Created\nu@example.org,\n",
			want: []brief{{2, "u@example.org", suppression.ReasonUnsubscribe, "2026-11-01T00:00:00Z"}}, // undated: the file's time
		},
		{
			name: "sendgrid blocks by kind", format: FormatSendGrid, kind: "blocks",
			in:   "email,created,reason,status\nb@example.org,1767225600,blocked,4.0.0\n",
			want: []brief{{2, "b@example.org", suppression.ReasonImport, "2026-01-01T00:00:00Z"}},
		},
		{
			name: "postmark dump", format: FormatPostmark,
			in: `{"Suppressions":[
{"EmailAddress":"hb@example.org","SuppressionReason":"HardBounce","Origin":"Recipient","CreatedAt":"2026-01-02T03:04:05-05:00"},
{"EmailAddress":"sc@example.org","SuppressionReason":"SpamComplaint","Origin":"Recipient","CreatedAt":"2026-01-02T03:04:05Z"},
{"EmailAddress":"un@example.org","SuppressionReason":"ManualSuppression","Origin":"Recipient","CreatedAt":"2026-01-02T03:04:05Z"},
{"EmailAddress":"ad@example.org","SuppressionReason":"ManualSuppression","Origin":"Customer","CreatedAt":"2026-01-02T03:04:05Z"},
{"EmailAddress":42,"SuppressionReason":"HardBounce","Origin":"Recipient","CreatedAt":"2026-01-02T03:04:05Z"},
"not an object"
]}`,
			want: []brief{
				{2, "hb@example.org", suppression.ReasonHardBounce, "2026-01-02T08:04:05Z"},
				{3, "sc@example.org", suppression.ReasonComplaint, "2026-01-02T03:04:05Z"},
				{4, "un@example.org", suppression.ReasonUnsubscribe, "2026-01-02T03:04:05Z"},
				{5, "ad@example.org", suppression.ReasonImport, "2026-01-02T03:04:05Z"},
			},
			rejects: []int{6, 7},
		},
		{
			name: "postmark csv", format: FormatPostmark,
			in:   "Email Address,Suppression Reason,Origin,Created At\nhb@example.org,HardBounce,Recipient,2026-01-02T03:04:05Z\n",
			want: []brief{{2, "hb@example.org", suppression.ReasonHardBounce, "2026-01-02T03:04:05Z"}},
		},
		{
			name: "mailgun bounces rfc 2822", format: FormatMailgun,
			in: "address,code,error,created_at\nmb@example.org,550,No such mailbox,\"Fri, 21 Oct 2011 11:02:55 GMT\"\nmc@example.org,550,x,\"Fri, 21 Oct 2011 11:02:55 +0200\"\nbad@,550,x,\n",
			want: []brief{
				{2, "mb@example.org", suppression.ReasonHardBounce, "2011-10-21T11:02:55Z"},
				{3, "mc@example.org", suppression.ReasonHardBounce, "2011-10-21T09:02:55Z"},
			},
			rejects: []int{4},
		},
		{
			name: "mailgun unsubscribes by tags", format: FormatMailgun,
			in:   "address,tags,created_at\nmu@example.org,*,\"Mon, 02 Jan 2026 15:04:05 UTC\"\n",
			want: []brief{{2, "mu@example.org", suppression.ReasonUnsubscribe, "2026-01-02T15:04:05Z"}},
		},
		{
			name: "mailgun complaints by kind", format: FormatMailgun, kind: "complaints",
			in:   "address,created_at\nmc@example.org,\n",
			want: []brief{{2, "mc@example.org", suppression.ReasonComplaint, "2026-11-01T00:00:00Z"}},
		},
		{
			name: "plain csv with header", format: FormatCSV,
			in: "Email,Phone,Reason,Occurred_At\n" +
				"p1@example.org,,unsubscribe,2026-05-06T07:08:09Z\n" +
				",+1 415 555 2671,bounce,\n" +
				"p2@example.org,(415) 555-2671,erasure,2026-05-06\n" +
				",,,\n" +
				"p3@example.org,,whatever,not a date\n",
			want: []brief{
				{2, "p1@example.org", suppression.ReasonUnsubscribe, "2026-05-06T07:08:09Z"},
				{3, "+14155552671", suppression.ReasonHardBounce, "2026-11-01T00:00:00Z"},
				{4, "p2@example.org", suppression.ReasonErasure, "2026-05-06T00:00:00Z"},
				{4, "+14155552671", suppression.ReasonErasure, "2026-05-06T00:00:00Z"},
			},
			rejects: []int{5, 6},
		},
		{
			name: "plain csv without header", format: FormatCSV,
			in: "one@example.org\n\nTWO@example.org\nnot-an-address\n",
			want: []brief{
				{1, "one@example.org", suppression.ReasonImport, "2026-11-01T00:00:00Z"},
				{3, "two@example.org", suppression.ReasonImport, "2026-11-01T00:00:00Z"},
			},
			rejects: []int{4},
		},
		{
			name: "plain csv with a byte order mark", format: FormatCSV,
			in:   "\uFEFFemail\nbom@example.org\n",
			want: []brief{{2, "bom@example.org", suppression.ReasonImport, "2026-11-01T00:00:00Z"}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, err := parse(t, tc.format, tc.kind, tc.in)
			require.NoError(t, err)
			require.Equal(t, tc.want, briefs(g.rows))
			require.Equal(t, append([]int{}, tc.rejects...), append([]int{}, lines(g.rejects)...))
			for _, r := range g.rejects {
				require.NotEmpty(t, r.Reason)
				for _, raw := range []string{"no-at-sign", "bad@", "not-an-address", "yesterday", "not a date", "42"} {
					require.NotContains(t, r.Reason, raw, "a rejection must not quote the row")
				}
			}
		})
	}
}

// TestParseStops: files that are not the format asked for stop the import
// with ErrFormat instead of rejecting every row.
func TestParseStops(t *testing.T) {
	for _, tc := range []struct {
		name   string
		format Format
		kind   string
		in     string
	}{
		{"ses truncated json", FormatSES, "", `{"SuppressedDestinationSummaries":[{"EmailAddress":"a@example.org"`},
		{"ses not objects", FormatSES, "", `"just a string"`},
		{"sendgrid without email column", FormatSendGrid, "", "address,created\nx@example.org,1\n"},
		{"sendgrid unknown kind", FormatSendGrid, "soft_bounces", "email\nx@example.org\n"},
		{"mailgun ambiguous", FormatMailgun, "", "address,created_at\nx@example.org,\n"},
		{"csv without identifier column", FormatCSV, "", "name,city\nAda,London\n"},
		{"csv empty", FormatCSV, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parse(t, tc.format, tc.kind, tc.in)
			require.Error(t, err)
			require.True(t, errors.Is(err, ErrFormat), "%v", err)
			require.NotContains(t, err.Error(), "x@example.org")
		})
	}
}

func TestMapReason(t *testing.T) {
	for in, want := range map[string]suppression.Reason{
		"bounce": suppression.ReasonHardBounce, "Hard Bounce": suppression.ReasonHardBounce, "hard_bounce": suppression.ReasonHardBounce,
		"spam": suppression.ReasonComplaint, "complaint": suppression.ReasonComplaint, "Spam Report": suppression.ReasonComplaint,
		"unsubscribe": suppression.ReasonUnsubscribe, "Unsubscribed": suppression.ReasonUnsubscribe,
		"": suppression.ReasonImport, "soft bounce": suppression.ReasonImport, "manual": suppression.ReasonImport,
	} {
		require.Equal(t, want, MapReason(in), in)
	}
}

func TestKindFromName(t *testing.T) {
	require.Equal(t, "spam_reports", KindFromName(FormatSendGrid, "/tmp/spam_reports_2026.csv"))
	require.Equal(t, "blocks", KindFromName(FormatSendGrid, "Blocks.csv"))
	require.Equal(t, "complaints", KindFromName(FormatMailgun, "mailgun-complaints.csv"))
	require.Equal(t, "", KindFromName(FormatMailgun, "export.csv"))
}

// TestEventID: the id depends on the row's content, not on when it is
// imported, so a second import publishes the same events; a pepper changes
// every id.
func TestEventID(t *testing.T) {
	r := Row{Identifier: suppression.Identifier{Type: suppression.IDEmail, Value: "a@example.org"}, Reason: suppression.ReasonHardBounce, OccurredAt: fileAge}
	later := r
	later.OccurredAt = now // an undated row imported again later
	plain := suppression.NewKeyer(nil)
	require.Equal(t, EventID(FormatSES, r, plain), EventID(FormatSES, later, plain))
	require.NotEqual(t, EventID(FormatSES, r, plain), EventID(FormatSendGrid, r, plain))
	require.NotEqual(t, EventID(FormatSES, r, plain), EventID(FormatSES, r, suppression.NewKeyer([]byte("pepper"))))
	dated := r
	dated.Dated, dated.Stated = true, fileAge
	require.NotEqual(t, EventID(FormatSES, r, plain), EventID(FormatSES, dated, plain))

	e := Event(FormatSES, r, EventOptions{})
	require.NoError(t, e.Normalize(now))
	require.Equal(t, "/import/ses", e.Source)
	require.Equal(t, []suppression.Scope{"email"}, e.Scopes)
	require.Equal(t, suppression.OriginSystem, e.Origin)
	require.Equal(t, suppression.ReasonHardBounce, e.Reason)
}
