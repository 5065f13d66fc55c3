package api

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/client"
	"github.com/suppressd/suppressd/internal/testenv"
	"github.com/suppressd/suppressd/internal/testredis"
	"github.com/suppressd/suppressd/suppression"
)

// row is one row of a test CSV and what the filter must do with it.
type row struct {
	raw  string // as sent, line end included
	want string // "keep", "suppressed" or "malformed"
}

func csvOf(header string, rows []row) (in, kept string) {
	var b, k strings.Builder
	b.WriteString(header)
	k.WriteString(header)
	for _, r := range rows {
		b.WriteString(r.raw)
		if r.want == "keep" {
			k.WriteString(r.raw)
		}
	}
	return b.String(), k.String()
}

func count(rows []row, want string) int {
	n := 0
	for _, r := range rows {
		if r.want == want {
			n++
		}
	}
	return n
}

// TestFilterRowsTemplates: for each platform, a file with the header as the
// platform documents it and identifiers hashed (or left raw) the platform's
// way. Exactly the rows of people who opted out for advertising go; every
// other row comes back byte for byte, quoting, CRLF and BOM included.
func TestFilterRowsTemplates(t *testing.T) {
	for name, rdb := range testenv.RedisClients(t) {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, rdb, Options{FilterChunk: 2}) // small chunks: the boundaries are exercised
			e.suppress(suppression.EventUnsubscribe, email("Cloudy.SanFrancisco+shopping@gmail.com"), "*")
			e.suppress(suppression.EventGPC, suppression.Identifier{Type: suppression.IDPhone, Value: "(800) 555-0100"})
			e.suppress(suppression.EventUnsubscribe, email("news.only@example.org"), "topic:newsletter")
			e.suppress(suppression.EventConsentWithdrawn, suppression.Identifier{Type: suppression.IDMAID, Value: "AECE52E7-03EE-455A-B3C4-E57283966239"}, "advertising")

			for _, tc := range []struct {
				template, header string
				rows             []row
			}{
				{
					// Google Customer Match: gmail dots removed, +tag kept
					// (the Ads API's form); phones E.164 with '+'. Several
					// Email columns; raw values are allowed too.
					template: "google", header: "\uFEFFEmail,Phone,First Name,Last Name,Country,Zip,Email\r\n",
					rows: []row{
						{sha("ann@example.org") + "," + sha("+16502530000") + ",Ann,Lee,US,94016,\r\n", "keep"},
						{sha("bo@example.org") + ",,Bo,Ek,SE,11122," + sha("cloudysanfrancisco+shopping@gmail.com") + "\r\n", "suppressed"},
						{"," + sha("+18005550100") + ",Cy,Fox,US,10001,\r\n", "suppressed"},
						{"\" Cloudy.SanFrancisco+Shopping@GMAIL.com \",,Raw,Value,US,94016,\r\n", "suppressed"},
						{sha("jo@example.org") + ",,\"Smith, \"\"Jo\"\"\r\nJr\",Smith,US,\"9 4\",\r\n", "keep"},
						{"\r\n", ""}, // a blank line: dropped, not counted
						{"not-an-address,,Bad,Row,US,94016,\r\n", "malformed"},
						{"news.only@example.org,,News,Only,US,94016,\r\n", "keep"}, // a topic opt-out does not cover ads
						{",,No,Identifier,US,94016,\r\n", "malformed"},
						{"ed@example.org,+1 650 253 0001,Ed,Ng,US,94016,", "keep"}, // the last row has no line end
					},
				},
				{
					// Meta: emails trimmed and lowercased, phones digits
					// only with the country code; raw values accepted.
					template: "meta", header: "email,email,phone,fn,ln,zip,ct,st,country,madid\n",
					rows: []row{
						{sha("ann@example.org") + ",," + sha("16502530000") + ",ann,lee,94016,mountainview,ca,us,\n", "keep"},
						{"," + sha("cloudy.sanfrancisco+shopping@gmail.com") + ",,c,s,94016,sf,ca,us,\n", "suppressed"},
						{",," + sha("18005550100") + ",c,f,10001,ny,ny,us,\n", "suppressed"},
						{",,1 (800) 555-0100,c,f,10001,ny,ny,us,\n", "suppressed"},
						{",,,m,a,1,x,y,us,AECE52E7-03EE-455A-B3C4-E57283966239\n", "suppressed"},
						{"a@example.org,b@example.org,,x,y,1,x,y,us\n", "malformed"}, // a field short
					},
				},
				{
					// TikTok: emails lowercased with the +tag removed on
					// every domain; phones E.164 (older guide) or digits
					// (newer); MAIDs raw.
					template: "tiktok", header: "Email_SHA256,Phone_SHA256,MAID\n",
					rows: []row{
						{sha("cloudy.sanfrancisco@gmail.com") + ",,\n", "suppressed"},
						{"," + sha("+18005550100") + ",\n", "suppressed"},
						{"," + strings.ToUpper(sha("18005550100")) + ",\n", "suppressed"},
						{sha("ann@example.org") + "," + sha("+16502530000") + ",\n", "keep"},
						{",,aece52e7-03ee-455a-b3c4-e57283966239\n", "suppressed"},
						{"ann@example.org,,\n", "malformed"}, // a raw address in a hash column
					},
				},
				{
					// LinkedIn: SHA-256 of the lowercased address, or raw.
					template: "linkedin", header: "email,firstname,lastname,jobtitle,employeecompany,country,googleaid\n",
					rows: []row{
						{sha("cloudy.sanfrancisco+shopping@gmail.com") + ",Cloudy,S,CEO,Acme,US,\n", "suppressed"},
						{"Ann@Example.org,Ann,Lee,CTO,Acme,US,\n", "keep"},
						{strings.Repeat("ab", 64) + ",Sha,FiveTwelve,,,US,\n", "malformed"}, // SHA-512 cannot be matched
					},
				},
			} {
				t.Run(tc.template, func(t *testing.T) {
					in, kept := csvOf(tc.header, tc.rows)
					status, h, body := e.do(http.MethodPost, "/v1/filter/rows?template="+tc.template, filterKey, "text/csv", []byte(in))
					require.Equal(t, http.StatusOK, status, string(body))
					require.Equal(t, "text/csv; charset=utf-8; header=present", h.Get("Content-Type"))
					require.Equal(t, kept, string(body), "the header and the kept rows, byte for byte, and no summary line")
					total := len(tc.rows) - count(tc.rows, "")
					require.Equal(t, fmt.Sprint(total), h.Get("Suppressd-Total"))
					require.Equal(t, fmt.Sprint(count(tc.rows, "keep")), h.Get("Suppressd-Allowed"))
					require.Equal(t, fmt.Sprint(count(tc.rows, "suppressed")), h.Get("Suppressd-Suppressed"))
					require.Equal(t, fmt.Sprint(count(tc.rows, "malformed")), h.Get("Suppressd-Malformed"))
				})
			}

			t.Run("malformed lines and the summary", func(t *testing.T) {
				in := "Email,Zip\n" +
					"\"ok@example.org\",\"1\n2\"\n" + // lines 2-3
					"bad,1\n" + // line 4: not an address
					"x@example.org,1,extra\n" + // line 5: a field too many
					"\"y@example.org\"z,1\n" + // line 6: text after a quote
					"z@example.org,1\x00\n" // line 7: a NUL
				status, h, body := e.do(http.MethodPost, "/v1/filter/rows?template=google&summary=true", filterKey, "text/csv", []byte(in))
				require.Equal(t, http.StatusOK, status)
				require.Equal(t, "Email,Zip\n\"ok@example.org\",\"1\n2\"\n# total=5 allowed=1 suppressed=0 malformed=4 malformed_lines=4,5,6,7\n", string(body))
				require.Equal(t, "4,5,6,7", h.Get("Suppressd-Malformed-Lines"), "the line each malformed row starts on, quoted line ends counted")
			})

			t.Run("scope of the send", func(t *testing.T) {
				in := "email,phone\nnews.only@example.org,\n,+18005550100\ncloudy.sanfrancisco+shopping@gmail.com,\nkeep.me@example.org,+18005550100\n"
				for _, tc := range []struct{ query, want string }{
					{"template=meta", "email,phone\nnews.only@example.org,\n"},
					{"template=meta&topic=newsletter", "email,phone\n"},
					// GPC covers advertising, not email marketing.
					{"template=meta&channel=email&purpose=marketing", "email,phone\nnews.only@example.org,\n,+18005550100\nkeep.me@example.org,+18005550100\n"},
					{"template=meta&namespace=brand-b", in},
					// Only the mapped column is checked: the phone-only row
					// has no identifier (malformed), the GPC phone of the
					// last row goes unseen.
					{"columns=email:email", "email,phone\nnews.only@example.org,\nkeep.me@example.org,+18005550100\n"},
					{"columns=email:email&columns=phone:PHONE&platform=meta&summary=false&progress=false", "email,phone\nnews.only@example.org,\n"},
				} {
					status, _, body := e.do(http.MethodPost, "/v1/filter/rows?"+tc.query, filterKey, "text/csv", []byte(in))
					require.Equal(t, http.StatusOK, status, "%s: %s", tc.query, body)
					require.Equal(t, tc.want, string(body), tc.query)
				}
			})

			t.Run("gzip, many rows", func(t *testing.T) {
				var raw, want bytes.Buffer
				raw.WriteString("Email,Phone\n")
				want.WriteString("Email,Phone\n")
				for i := range 5000 {
					line := fmt.Sprintf("%s,+1650253%04d\n", sha(fmt.Sprintf("person%d@example.org", i)), i)
					if i == 4321 {
						line = "cloudysanfrancisco+shopping@gmail.com,\n"
					} else {
						want.WriteString(line)
					}
					raw.WriteString(line)
				}
				var gz bytes.Buffer
				zw := gzip.NewWriter(&gz)
				_, _ = zw.Write(raw.Bytes())
				require.NoError(t, zw.Close())
				req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/v1/filter/rows?template=google", bytes.NewReader(gz.Bytes()))
				req.Header.Set("Authorization", "Bearer "+filterKey)
				req.Header.Set("Content-Type", "text/csv")
				req.Header.Set("Content-Encoding", "gzip")
				resp, err := e.srv.Client().Do(req)
				require.NoError(t, err)
				defer resp.Body.Close()
				b, err := io.ReadAll(resp.Body)
				require.NoError(t, err)
				e.spec.Check(t, req, gz.Bytes(), resp, b)
				require.Equal(t, want.String(), string(b))
				require.Equal(t, "1", resp.Trailer.Get("Suppressd-Suppressed"))
			})
		})
	}
}

// TestFilterRowsRefusesBadHeaders: a file whose columns do not fit is a 400
// that names them, answered from the header alone, before any row is read.
func TestFilterRowsRefusesBadHeaders(t *testing.T) {
	e := newEnv(t, testenv.RedisClients(t)["standalone"], Options{})
	tests := []struct {
		name, query, contentType, body string
		status                         int
		field, message                 string
	}{
		{"no template or columns", "", "text/csv", "Email\n", 400, "template", "say which columns hold identifiers"},
		{"both", "template=google&columns=email:Email", "text/csv", "Email\n", 400, "template", "not both"},
		{"unknown template", "template=myspace", "text/csv", "Email\n", 400, "template", `template "myspace": want one of google, meta, tiktok, linkedin`},
		{"unknown type", "columns=fax:Fax", "text/csv", "Fax\n", 400, "columns", `unknown identifier type "fax"`},
		{"missing columns", "columns=email_sha256:Email,phone_sha256:Mobile,email:Alt", "text/csv", "Email,Phone\n", 400, "columns", `the header row has no column "Mobile", "Alt"`},
		{"unknown template column", "template=google", "text/csv", "Email,Customer ID,Phone,Loyalty\n", 400, "template", `the google template has no column "Customer ID", "Loyalty"`},
		{"a column that cannot be checked", "template=tiktok", "text/csv", "Email,MAID_MD5\n", 400, "template", `column "MAID_MD5": an MD5 of a mobile ad id cannot be matched`},
		{"no identifier column", "template=google", "text/csv", "First Name,Last Name,Country,Zip\n", 400, "template", "no identifier column: a google file needs at least one of Email, Phone, Mobile Device ID"},
		{"no header row", "template=linkedin", "text/csv", "alice.smith@example.org,Alice,Smith,CEO,Acme,US,\nbob.jones@example.org,Bob,Jones,CTO,Acme,US,\n", 400, "template",
			"no column 1 (its name looks like a value, not a header: is the header row missing?)"},
		{"empty body", "template=google", "text/csv", "", 400, "", "the body is empty"},
		{"a bad summary flag", "template=google&summary=maybe", "text/csv", "Email\n", 400, "summary", `summary "maybe": want true or false`},
		{"json", "template=google", "application/json", `{"email":"a@example.org"}`, 415, "", "send text/csv"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, h, b := e.do(http.MethodPost, "/v1/filter/rows?"+tc.query, filterKey, tc.contentType, []byte(tc.body))
			require.Equal(t, tc.status, status, string(b))
			require.Equal(t, "application/json", h.Get("Content-Type"))
			var body errorBody
			require.NoError(t, json.Unmarshal(b, &body))
			require.Equal(t, tc.field, body.Error.Field)
			require.Contains(t, body.Error.Message, tc.message)
			require.NotContains(t, body.Error.Message, "alice", "an error never repeats a value")
		})
	}
	status, _, _ := e.do(http.MethodPost, "/v1/filter/rows?template=google", checkKey, "text/csv", []byte("Email\n"))
	require.Equal(t, http.StatusForbidden, status, "the filter scope is needed")

	// The answer comes from the header alone: the rest of the body is
	// still being written when it arrives.
	pr, pw := io.Pipe()
	defer pw.Close()
	go func() { _, _ = io.WriteString(pw, "Email,Customer ID\n"+sha("a@example.org")+",1\n") }()
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/v1/filter/rows?template=google", pr)
	req.Header.Set("Authorization", "Bearer "+filterKey)
	req.Header.Set("Content-Type", "text/csv")
	done := make(chan *http.Response, 1)
	go func() {
		resp, err := e.srv.Client().Do(req)
		if err == nil {
			done <- resp
		}
	}()
	select {
	case resp := <-done:
		defer resp.Body.Close()
		require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	case <-time.After(10 * time.Second):
		t.Fatal("no answer before the body ended: the header alone should decide")
	}
}

// TestFilterRowsStoreFailsMidStream: when Redis stops in the middle of a
// stream the body ends with "# error=unavailable" and the connection is
// cut, so no client can take the shorter file for a whole one; the Go
// client says so (ErrIncomplete, ErrUnavailable). Before the first byte it
// is a clean 503.
func TestFilterRowsStoreFailsMidStream(t *testing.T) {
	srv := testredis.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), DialTimeout: 100 * time.Millisecond,
		ReadTimeout: 100 * time.Millisecond, WriteTimeout: 100 * time.Millisecond, MaxRetries: -1})
	defer rdb.Close()
	e := newEnv(t, rdb, Options{StoreTimeout: 300 * time.Millisecond, FilterChunk: 10})
	e.suppress(suppression.EventUnsubscribe, email("gone@example.org"), "*")

	pr, pw := io.Pipe()
	defer pw.Close()
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/v1/filter/rows?template=google", pr)
	req.Header.Set("Authorization", "Bearer "+filterKey)
	req.Header.Set("Content-Type", "text/csv")
	respc := make(chan *http.Response, 1)
	go func() {
		resp, err := e.srv.Client().Do(req)
		if err == nil {
			respc <- resp
		}
	}()
	rows := func(from, n int) {
		var b strings.Builder
		for i := from; i < from+n; i++ {
			fmt.Fprintf(&b, "%s,+1650253%04d\n", sha(fmt.Sprintf("p%d@example.org", i)), i)
		}
		_, err := io.WriteString(pw, b.String())
		require.NoError(t, err)
	}
	_, err := io.WriteString(pw, "Email,Phone\n")
	require.NoError(t, err)
	rows(0, 20)
	resp := <-respc
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	br := bufio.NewReader(resp.Body)
	for range 21 { // the header and 20 rows
		_, err := br.ReadString('\n')
		require.NoError(t, err)
	}
	srv.Stop()
	go func() {
		for i := 20; ; i += 10 { // rows keep coming; the server stops reading them
			var b strings.Builder
			for j := i; j < i+10; j++ {
				fmt.Fprintf(&b, "%s,\n", sha(fmt.Sprintf("p%d@example.org", j)))
			}
			if _, err := io.WriteString(pw, b.String()); err != nil {
				return
			}
		}
	}()
	rest, err := io.ReadAll(br)
	require.Error(t, err, "the connection is cut, not ended: the shorter file cannot pass for a whole one")
	// The server writes the error line before it cuts the connection, but
	// a client whose upload fails on the cut connection first may drop it.
	if len(rest) > 0 {
		require.True(t, strings.HasSuffix(string(rest), "# error=unavailable\n"), "%q", rest)
	}
	require.Empty(t, resp.Trailer.Get("Suppressd-Total"), "no counts after a failure")

	// Before the first byte: a 503, nothing streamed.
	status, h, body := e.do(http.MethodPost, "/v1/filter/rows?template=google", filterKey, "text/csv", []byte("Email\n"+sha("a@example.org")+"\n"))
	require.Equal(t, http.StatusServiceUnavailable, status, string(body))
	require.NotEmpty(t, h.Get("Retry-After"))

	// /metrics: the stream cut midway is no 200, and says why.
	m := e.metrics()
	require.Equal(t, 1.0, m[`suppressd_api_requests_total{code="aborted",route="filter_rows"}`], "%v", m)
	require.Equal(t, 1.0, m[`suppressd_api_stream_aborts_total{reason="unavailable",route="filter_rows"}`], "%v", m)
	require.Equal(t, 1.0, m[`suppressd_api_requests_total{code="503",route="filter_rows"}`], "%v", m)
	require.NotContains(t, m, `suppressd_api_requests_total{code="200",route="filter_rows"}`)

	// The Go client reports the failure midway as incomplete and an outage.
	srv.Start()
	require.Eventually(t, func() bool { return rdb.Ping(context.Background()).Err() == nil }, 10*time.Second, 50*time.Millisecond)
	c, err := client.New(e.srv.URL, filterKey, client.Options{MaxAttempts: 1})
	require.NoError(t, err)
	in, inw := io.Pipe()
	defer inw.Close()
	go func() {
		_, _ = io.WriteString(inw, "Email\n")
		for i := 0; ; i++ {
			if _, err := fmt.Fprintf(inw, "%s\n", sha(fmt.Sprintf("q%d@example.org", i))); err != nil {
				return
			}
		}
	}()
	answered := make(chan struct{})
	var once sync.Once
	errc := make(chan error, 1)
	var out bytes.Buffer
	go func() {
		_, err := c.FilterRows(context.Background(), client.FilterRowsRequest{Template: client.TemplateGoogle,
			Checkpoint: func(client.FilterCheckpoint) { once.Do(func() { close(answered) }) }}, in, &out)
		errc <- err
	}()
	<-answered
	srv.Stop()
	err = <-errc
	require.ErrorIs(t, err, client.ErrIncomplete)
	require.True(t, client.IsUnavailable(err), "%v", err)
	require.True(t, strings.HasPrefix(out.String(), "Email\n"+sha("q0@example.org")+"\n"), "what was answered is passed on, for the caller to discard")
}
