package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/suppression"
	"github.com/suppressd/suppressd/unsubscribe"
)

// linkEnv configures link keys as an operator would, and returns the
// keyring the /u/ pages of that configuration verify with.
func linkEnv(t *testing.T) *unsubscribe.Keyring {
	secret := bytes.Repeat([]byte{7}, 32)
	t.Setenv("SUPPRESSD_LINK_KEYS", "k1:"+base64.StdEncoding.EncodeToString(secret))
	t.Setenv("SUPPRESSD_LINK_BASE_URL", "https://mail.example.org")
	t.Setenv("SUPPRESSD_LINK_MAILTO", "unsubscribe@example.org")
	t.Setenv("SUPPRESSD_LINK_TTL", "1000h")
	t.Setenv("SUPPRESSD_PHONE_REGION", "US")
	kr, err := unsubscribe.NewKeyring("k1", []unsubscribe.Key{{ID: "k1", Secret: secret}})
	require.NoError(t, err)
	return kr
}

// runLinkCmd runs `suppressd link` through run() with stdin, and returns
// the exit code, stdout and stderr.
func runLinkCmd(stdin string, args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(context.Background(), append([]string{"link"}, args...), stdio{in: strings.NewReader(stdin), out: &out, err: &errb})
	return code, out.String(), errb.String()
}

// bulkLines parses the NDJSON output of a bulk run.
func bulkLines(t *testing.T, out string) []linkLine {
	t.Helper()
	var lines []linkLine
	for l := range strings.Lines(out) {
		var ll linkLine
		require.NoError(t, json.Unmarshal([]byte(l), &ll), l)
		lines = append(lines, ll)
	}
	return lines
}

// verifyLine opens the token of a result line with the operator's keyring
// and checks that its three links agree.
func verifyLine(t *testing.T, kr *unsubscribe.Keyring, l linkLine) unsubscribe.Claims {
	t.Helper()
	require.Nil(t, l.Error)
	require.Equal(t, "List-Unsubscribe=One-Click", l.Headers.ListUnsubscribePost)
	require.Equal(t, "<"+l.URL+">, <"+l.Mailto+">", l.Headers.ListUnsubscribe)
	token, ok := strings.CutPrefix(l.URL, "https://mail.example.org/u/")
	require.True(t, ok, l.URL)
	c, err := kr.Verify(token, time.Now())
	require.NoError(t, err)
	u, err := url.Parse(l.Mailto)
	require.NoError(t, err)
	require.Equal(t, unsubscribe.MailtoSubject(token), u.Query().Get("subject"))
	exp, err := time.Parse(time.RFC3339, l.ExpiresAt)
	require.NoError(t, err)
	require.Equal(t, c.ExpiresAt, exp)
	require.WithinDuration(t, time.Now().Add(1000*time.Hour), exp, time.Minute, "SUPPRESSD_LINK_TTL")
	return c
}

// TestLinkBulkNDJSON: a file of recipients, as POST /v1/links takes them,
// becomes one result line per recipient in order; the flags are every
// recipient's defaults; a recipient that cannot have links gets an error
// naming the field, never the value, and the run exits 1 saying how many.
func TestLinkBulkNDJSON(t *testing.T) {
	kr := linkEnv(t)
	in := strings.Join([]string{
		`{"ref":"r-1","identifier":{"type":"email","value":"Ann.Bulk@example.org"}}`,
		`{"ref":"r-2","identifier":{"type":"phone","value":"(415) 555-0142"},"scopes":["sms"],"namespace":"acme-sms"}`,
		``,
		`{"ref":"r-4","identifier":{"type":"email","value":"ben.bulk-at-example.org"}}`,
		`{"ref":"r-5","identifier":{"type":"email","value":"cat.bulk@example.org"},"topic":"news"}`,
		`{"ref":"r-6","identifier":{"type":"email","value":"dan.bulk@example.org"`,
		`{"ref":"r-7","identifier":{"type":"user_id","value":"cust-4242"},"scopes":[]}`,
		`{"ref":"r-8","identifier":{"type":"email","value":"eve.bulk@example.org"},"scopes":["email","newsletter"]}`,
		`{"ref":"r-9","identifier":{"type":"email","value":"fay.bulk@example.org"},"campaign_id":"c-own"}`,
	}, "\n") + "\n"
	code, out, errOut := runLinkCmd(in, "--in", "-", "--namespace", "acme", "--scope", "topic:news", "--campaign", "c-1")
	require.Equal(t, 1, code, errOut)
	require.Contains(t, errOut, "minted the links of 4 recipients; 4 refused")

	lines := bulkLines(t, out)
	require.Len(t, lines, 8, "one line per recipient, blank lines skipped")
	for i, want := range []struct {
		line  int
		ref   string
		field string
	}{{1, "r-1", ""}, {2, "r-2", ""}, {4, "r-4", "identifier.value"}, {5, "", "topic"}, {6, "", ""}, {7, "r-7", ""}, {8, "r-8", "scopes[1]"}, {9, "r-9", ""}} {
		l := lines[i]
		require.Equal(t, want.line, l.Line)
		require.Equal(t, want.ref, l.Ref)
		if l.Error != nil {
			require.Equal(t, want.field, l.Error.Field, l.Error.Message)
			require.Equal(t, "invalid_request", l.Error.Code)
			require.Nil(t, l.Headers)
		}
	}
	require.Nil(t, lines[7].Error)
	require.NotNil(t, lines[4].Error, "malformed JSON")
	require.Contains(t, lines[4].Error.Message, "malformed JSON")

	ann := verifyLine(t, kr, lines[0])
	require.Equal(t, unsubscribe.Claims{Namespace: "acme", Identifier: suppression.Identifier{Type: "email", Value: "Ann.Bulk@example.org"},
		Scopes: []suppression.Scope{"topic:news"}, CampaignID: "c-1", IssuedAt: ann.IssuedAt, ExpiresAt: ann.ExpiresAt}, ann)
	phone := verifyLine(t, kr, lines[1])
	require.Equal(t, "acme-sms", phone.Namespace)
	require.Equal(t, []suppression.Scope{"sms"}, phone.Scopes)
	require.Equal(t, []suppression.Scope{"topic:news"}, verifyLine(t, kr, lines[5]).Scopes, "no scopes of its own: the flag's")
	require.Equal(t, "c-own", verifyLine(t, kr, lines[7]).CampaignID)

	for _, v := range []string{"Ann.Bulk", "555-0142", "ben.bulk", "cust-4242", "eve.bulk"} {
		require.NotContains(t, out+errOut, v, "no identifier in the output or on stderr")
	}

	// Without --scope, an address gets email; a customer id must say.
	code, out, errOut = runLinkCmd(`{"identifier":{"type":"email","value":"gil.bulk@example.org"}}`+"\n"+
		`{"identifier":{"type":"user_id","value":"cust-4243"}}`+"\n", "--in", "-")
	require.Equal(t, 1, code, errOut)
	lines = bulkLines(t, out)
	require.Len(t, lines, 2)
	require.Equal(t, []suppression.Scope{"email"}, verifyLine(t, kr, lines[0]).Scopes)
	require.Equal(t, "scopes", lines[1].Error.Field)
}

// TestLinkBulkCSV: a contact export (a byte-order mark, other columns, an
// email column, gzip) works as it is; a row's own scopes win; a row without
// an address says so.
func TestLinkBulkCSV(t *testing.T) {
	kr := linkEnv(t)
	dir := t.TempDir()
	name := filepath.Join(dir, "recipients.csv.gz")
	f, err := os.Create(name)
	require.NoError(t, err)
	gz := gzip.NewWriter(f)
	_, err = gz.Write([]byte("\ufeffName,Email,Ref,Scopes\r\n" +
		"Gus,gus.csv@example.org,c-1,\r\n" +
		"\"Hal, Jr\",hal.csv@example.org,c-2,topic:offers email\r\n" +
		"Ida,,c-3,\r\n" +
		"Jon,jon.csv@,c-4,\r\n"))
	require.NoError(t, err)
	require.NoError(t, gz.Close())
	require.NoError(t, f.Close())
	outFile := filepath.Join(dir, "links.ndjson")

	code, stdout, errOut := runLinkCmd("", "--in", name, "--out", outFile, "--scope", "topic:news")
	require.Equal(t, 1, code, errOut)
	require.Empty(t, stdout)
	b, err := os.ReadFile(outFile)
	require.NoError(t, err)
	lines := bulkLines(t, string(b))
	require.Len(t, lines, 4)
	require.Equal(t, []int{2, 3, 4, 5}, []int{lines[0].Line, lines[1].Line, lines[2].Line, lines[3].Line}, "lines of the file, header first")
	require.Equal(t, "c-1", lines[0].Ref)
	require.Equal(t, []suppression.Scope{"topic:news"}, verifyLine(t, kr, lines[0]).Scopes)
	require.Equal(t, []suppression.Scope{"topic:offers", "email"}, verifyLine(t, kr, lines[1]).Scopes)
	require.Equal(t, "email", lines[2].Error.Field)
	require.Contains(t, lines[2].Error.Message, "names no recipient")
	require.Equal(t, "email", lines[3].Error.Field, "the column, as the input spells it")
	require.NotContains(t, string(b), "jon.csv")

	// A file that is no recipient list at all.
	bad := filepath.Join(dir, "plain.txt")
	require.NoError(t, os.WriteFile(bad, []byte("kim@example.org\nlee@example.org\n"), 0o600))
	code, _, errOut = runLinkCmd("", "--in", bad)
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "no email or phone column")
	require.NotContains(t, errOut, "kim@")
}

// TestLinkOne: today's single-recipient flags still print the two headers,
// and say what is wrong without repeating the value.
func TestLinkOne(t *testing.T) {
	kr := linkEnv(t)
	code, out, errOut := runLinkCmd("", "--phone", "(415) 555-0177", "--campaign", "c-9")
	require.Equal(t, 0, code, errOut)
	lu, rest, ok := strings.Cut(strings.TrimPrefix(out, "List-Unsubscribe: "), "\n")
	require.True(t, ok)
	require.Equal(t, "List-Unsubscribe-Post: List-Unsubscribe=One-Click\n", rest)
	token := strings.TrimSuffix(strings.TrimPrefix(strings.SplitN(lu, ", ", 2)[0], "<https://mail.example.org/u/"), ">")
	require.Equal(t, "<https://mail.example.org/u/"+token+">, <mailto:unsubscribe@example.org?subject=unsubscribe%20"+token+">", lu)
	c, err := kr.Verify(token, time.Now())
	require.NoError(t, err)
	require.Equal(t, []suppression.Scope{"sms"}, c.Scopes, "a phone number's link unsubscribes from SMS by default")
	require.Equal(t, "c-9", c.CampaignID)

	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--email", "not-an-address.example.org"}, 2, "--email: invalid email: no @"},
		{[]string{"--phone", "555-01"}, 2, "--phone: invalid phone"},
		{[]string{"--email", "a@example.org", "--scope", "newsletter"}, 2, "--scope: "},
		{[]string{"--in", "-", "--scope", "newsletter"}, 2, "--scope: "},
		{[]string{"--in", "-", "--email", "a@example.org"}, 2, "leave out --email"},
		{[]string{}, 2, "name the recipient"},
		{[]string{"--in", "-", "--format", "xml"}, 2, "want ndjson, csv or auto"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, out, errOut := runLinkCmd("", tc.args...)
			require.Equal(t, tc.code, code, errOut)
			require.Empty(t, out)
			require.Contains(t, errOut, tc.want)
			require.NotContains(t, errOut, "not-an-address")
		})
	}

	// Configuration problems are the invocation's: exit 2.
	t.Setenv("SUPPRESSD_LINK_BASE_URL", "http://mail.example.org")
	code, _, errOut = runLinkCmd("", "--email", "a@example.org")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "SUPPRESSD_LINK_BASE_URL: unsubscribe base URL: must be https")
	t.Setenv("SUPPRESSD_LINK_BASE_URL", "")
	code, _, errOut = runLinkCmd("", "--email", "a@example.org")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "SUPPRESSD_LINK_BASE_URL: the public URL the links point at is required")
	t.Setenv("SUPPRESSD_LINK_KEYS", "")
	code, _, errOut = runLinkCmd("", "--email", "a@example.org")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "SUPPRESSD_LINK_KEYS: no link keys configured")
}
