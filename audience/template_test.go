package audience

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/suppression"
)

func cols(l *Layout) []string {
	var out []string
	for _, c := range l.Columns {
		out = append(out, c.Name+"="+string(c.Type))
	}
	return out
}

// TestTemplatesReadTheDocumentedHeaders: each platform's header row, as its
// documentation writes it, resolves to the identifier columns to check;
// anything else is refused with the columns named.
func TestTemplatesReadTheDocumentedHeaders(t *testing.T) {
	for _, tc := range []struct {
		template, header string
		want             []string
		err              string
	}{
		{"google", "Email,First Name,Last Name,Country,Zip,Email,Zip,Phone,Phone", []string{"Email=email", "Email=email", "Phone=phone", "Phone=phone"}, ""},
		{"google", "email , SURNAME,Mobile Device ID", []string{"email=email", "Mobile Device ID=maid"}, ""},
		{"google", "Email,Customer ID", nil, `the google template has no column "Customer ID" (its columns: Email, Phone, Mobile Device ID, First Name, Last Name, Country, Zip)`},
		{"google", "First Name,Last Name,Country,Zip", nil, "no identifier column: a google file needs at least one of Email, Phone, Mobile Device ID"},
		{"meta", "email,email,email,phone,fn,ln,zip,ct,st,country,dob,doby,gen,age,uid,value,madid", []string{"email=email", "email=email", "email=email", "phone=phone", "madid=maid"}, ""},
		{"meta", "Email,E-mail", nil, `the meta template has no column "E-mail"`},
		{"tiktok", "Email_SHA256,Phone_SHA 256,MAID", []string{"Email_SHA256=email_sha256", "Phone_SHA 256=phone_sha256", "MAID=maid"}, ""},
		{"tiktok", "Email,MAID_MD5", nil, `column "MAID_MD5": an MD5 of a mobile ad id cannot be matched`},
		{"linkedin", "email,firstname,lastname,jobtitle,employeecompany,country,googleaid", []string{"email=email", "googleaid=maid"}, ""},
		// A file without its header row: the "header" is a person.
		{"linkedin", "alice.smith@example.org,Alice,Smith,,,US,", nil, "1 (its name looks like a value, not a header: is the header row missing?)"},
		{"google", "Email,,Phone", nil, "2 (no name)"},
	} {
		t.Run(tc.template+" "+tc.header, func(t *testing.T) {
			tpl, ok := LookupTemplate(tc.template)
			require.True(t, ok)
			l, err := tpl.Resolve(strings.Split(tc.header, ","))
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				require.NotContains(t, err.Error(), "alice", "an error never repeats a value")
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, cols(l))
			require.Equal(t, strings.Count(tc.header, ",")+1, l.Fields)
		})
	}
	require.Equal(t, []string{"google", "meta", "tiktok", "linkedin"}, TemplateNames())
}

func TestColumnMappings(t *testing.T) {
	m, err := ParseColumns("email_sha256:Email, phone:Mobile", "email_sha256:Email2,email_sha256:Email")
	require.NoError(t, err)
	l, err := m.Resolve([]string{"id", "Email", "mobile", "Email2", "email"})
	require.NoError(t, err)
	require.Equal(t, []string{"Email=email_sha256", "mobile=phone", "Email2=email_sha256", "email=email_sha256"}, cols(l),
		"every column of a mapped name is checked, in header order; others pass unchecked")

	_, err = m.Resolve([]string{"id", "Email"})
	require.EqualError(t, err, `the header row has no column "Mobile", "Email2"`)
	for spec, want := range map[string]string{
		"":                         "no column named",
		"fax:Fax":                  `"fax:Fax": unknown identifier type "fax"`,
		"email":                    `"email": want type:Header`,
		"email:Email,phone:Email":  "", // conflict shows at Resolve
		"email:Email, maid :  M  ": "",
	} {
		m, err := ParseColumns(spec)
		if want != "" {
			require.ErrorContains(t, err, want, spec)
			continue
		}
		require.NoError(t, err, spec)
		if spec == "email:Email,phone:Email" {
			_, err = m.Resolve([]string{"Email"})
			require.EqualError(t, err, `column "Email" is mapped to both email and phone`)
		}
	}
}

func hexSum(s string) string { d := sha256.Sum256([]byte(s)); return hex.EncodeToString(d[:]) }

// TestRowKeys: a platform's own hash of a person's identifier is one of the
// keys the raw identifier expands to, so an opt-out recorded from the raw
// address suppresses the row however the platform hashed it.
func TestRowKeys(t *testing.T) {
	n := suppression.Normalizer{DefaultRegion: "US"}
	expand := func(typ suppression.IDType, v string) []suppression.MatchKey {
		k, err := n.Expand(suppression.Identifier{Type: typ, Value: v})
		require.NoError(t, err)
		return k
	}
	gmail := expand(suppression.IDEmail, "Cloudy.SanFrancisco+shopping@gmail.com")
	phone := expand(suppression.IDPhone, "+1 800 555 0100")
	d := sha256.Sum256([]byte("cloudysanfrancisco@gmail.com"))
	layout := &Layout{Fields: 3, Columns: []Column{{Index: 0, Type: suppression.IDEmail}, {Index: 2, Type: suppression.IDPhone}}}
	for _, tc := range []struct {
		name, row string
		want      [][]suppression.MatchKey // each must be among the keys
		problem   string
	}{
		{"Google's form, hex", hexSum("cloudysanfrancisco@gmail.com") + ",x,", [][]suppression.MatchKey{gmail}, ""},
		{"Google's form, base64", base64.StdEncoding.EncodeToString(d[:]) + ",x,", [][]suppression.MatchKey{gmail}, ""},
		{"TikTok's form, upper-case hex", strings.ToUpper(hexSum("cloudy.sanfrancisco@gmail.com")) + ",x,", [][]suppression.MatchKey{gmail}, ""},
		{"raw address expands to every form", " Cloudy.SanFrancisco+shopping@GMAIL.com ,x,", [][]suppression.MatchKey{gmail}, ""},
		{"Meta's phone: digits, no +", ",x," + hexSum("18005550100"), [][]suppression.MatchKey{phone}, ""},
		{"raw phone with country code, no +", `,x,"1 (800) 555-0100"`, [][]suppression.MatchKey{phone}, ""},
		{"raw phone, national", ",x,(800) 555-0100", [][]suppression.MatchKey{phone}, ""},
		{"both columns", "someone@example.org,x,+18005550100", [][]suppression.MatchKey{expand(suppression.IDEmail, "someone@example.org"), phone}, ""},
		{"no identifier", ",x,", nil, "no identifier"},
		{"a bad address", "not-an-address,x,", nil, "column 1 (email): invalid email: no @"},
		{"a hash one digit short", hexSum("a")[:63] + ",x,", nil, "column 1 (email): invalid email: no @"},
		{"shifted columns", "a@x.org,x", nil, "2 fields, the header has 3"},
		{"broken quoting", `"a@x.org"x,x,`, nil, "not valid CSV: text after a closing quote"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := NewScanner(strings.NewReader(tc.row+"\n"), 0)
			rec, err := s.Next()
			require.NoError(t, err)
			got, problem := layout.Keys(n, rec, nil)
			require.Equal(t, tc.problem, problem)
			if problem != "" {
				return
			}
			for _, want := range tc.want {
				found := false
				for _, k := range got {
					for _, w := range want {
						found = found || k == w
					}
				}
				require.True(t, found, "the row's keys include one of the person's keys")
			}
		})
	}
}
