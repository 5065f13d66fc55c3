package audience

import (
	"fmt"
	"slices"
	"strings"

	"github.com/suppressd/suppressd/suppression"
)

// Template is an ad platform's customer-list file: the column headers its
// documentation names, and which identifier each one holds.
type Template struct {
	// Name is the template's name in the API (?template=) and the CLI.
	Name string
	// Platform is the ad platform (suppression.Platform*), for metrics.
	Platform string
	// Source is the platform's documentation the columns follow.
	Source string
	// Columns are every header the platform documents for the file.
	Columns []TemplateColumn
}

// TemplateColumn is one header of a template.
type TemplateColumn struct {
	// Header is the name as the platform documents it.
	Header string
	// Tolerated are other spellings taken for the same column. Case and
	// surrounding spaces never matter.
	Tolerated []string
	// Type is the identifier the column holds. Empty for a column that
	// is not an identifier suppressd keeps (a name, a postcode): it is
	// passed through unchecked.
	Type suppression.IDType
	// Refused, when set, names an identifier column suppressd cannot
	// check, and why: a file with it is refused rather than passed with
	// an identifier nobody looked at.
	Refused string
}

// Raw values are accepted in every template's email and phone columns:
// every platform below takes plain text and hashes it itself, as well as
// SHA-256 hashes (hex; base64 is accepted too). A raw value is normalised
// and expanded into every platform's form (suppression.Normalizer.Expand),
// so it matches however the opt-out was hashed. Phones must carry their
// country code in all four platforms' files, with or without '+' (see
// Layout.Keys).
var templates = []Template{
	{
		// Google Ads, "Format your customer data file" (Customer Match):
		// "use the exact names specified in English": Email, Phone,
		// First Name, Last Name, Country, Zip; several Email, Phone and
		// Zip columns are allowed; "Mobile Device ID" is the header of the
		// mobile-ID template. The en-AU edition of the same article
		// writes "Surname" for Last Name, so that is tolerated.
		Name: "google", Platform: suppression.PlatformGoogle,
		Source: "https://support.google.com/google-ads/answer/7659867",
		Columns: []TemplateColumn{
			{Header: "Email", Type: suppression.IDEmail},
			{Header: "Phone", Type: suppression.IDPhone},
			{Header: "Mobile Device ID", Type: suppression.IDMAID},
			{Header: "First Name"},
			{Header: "Last Name", Tolerated: []string{"Surname"}},
			{Header: "Country"},
			{Header: "Zip"},
		},
	},
	{
		// Meta Business Help Centre, "How to format a customer list when
		// creating a custom audience": column headers email, phone,
		// madid, fn, ln, zip, ct, st, country, dob, doby, gen, age, uid,
		// value; email and phone in up to three columns each. The
		// Marketing API's customer-file schema adds dobm, dobd and fi
		// (first initial), tolerated here. uid (a Facebook app user id)
		// is not an identifier suppressd keeps.
		Name: "meta", Platform: suppression.PlatformMeta,
		Source: "https://www.facebook.com/business/help/2082575038703844",
		Columns: []TemplateColumn{
			{Header: "email", Type: suppression.IDEmail},
			{Header: "phone", Type: suppression.IDPhone},
			{Header: "madid", Type: suppression.IDMAID},
			{Header: "fn"}, {Header: "ln"}, {Header: "zip"}, {Header: "ct"}, {Header: "st"},
			{Header: "country"}, {Header: "dob"}, {Header: "doby"}, {Header: "gen"}, {Header: "age"},
			{Header: "uid"}, {Header: "value"},
			{Header: "dobm"}, {Header: "dobd"}, {Header: "fi"},
		},
	},
	{
		// TikTok Ads Manager, "List of supported IDs and formats for a
		// customer file": required headers Email or Email_SHA256, Phone
		// or Phone_SHA256, MAID or MAID_MD5 or MAID_SHA256; each header
		// at most three times. Its newer edition writes "Email_SHA 256"
		// and "Phone_SHA 256", tolerated.
		Name: "tiktok", Platform: suppression.PlatformTikTok,
		Source: "https://ads.tiktok.com/help/article/list-of-supported-ids-and-formats-for-a-customer-file",
		Columns: []TemplateColumn{
			{Header: "Email", Type: suppression.IDEmail},
			{Header: "Email_SHA256", Tolerated: []string{"Email_SHA 256"}, Type: suppression.IDEmailSHA256},
			{Header: "Phone", Type: suppression.IDPhone},
			{Header: "Phone_SHA256", Tolerated: []string{"Phone_SHA 256"}, Type: suppression.IDPhoneSHA256},
			{Header: "MAID", Type: suppression.IDMAID},
			{Header: "MAID_MD5", Refused: "an MD5 of a mobile ad id cannot be matched against the suppression list; send the MAID column"},
			{Header: "MAID_SHA256", Tolerated: []string{"MAID_SHA 256"},
				Refused: "a SHA-256 of a mobile ad id cannot be matched reliably (TikTok lets either case be hashed); send the MAID column"},
		},
	},
	{
		// LinkedIn Campaign Manager, "Requirements for contact targeting
		// lists": the list uses Campaign Manager's CSV template, whose
		// headers must not be changed; email may be plain or SHA-256.
		// The template's headers are email, firstname, lastname,
		// jobtitle, employeecompany, country and googleaid; the help
		// pages spell out email, firstname, lastname, employeecompany
		// and country (the conversions template, answer a530615, uses
		// the same names and "title"), so jobtitle, title and googleaid
		// (a Google advertising id) are tolerated rather than exact. A
		// SHA-512 email, which LinkedIn also takes, cannot be matched:
		// such a row is malformed and dropped.
		Name: "linkedin", Platform: suppression.PlatformLinkedIn,
		Source: "https://www.linkedin.com/help/lms/answer/a1489764",
		Columns: []TemplateColumn{
			{Header: "email", Type: suppression.IDEmail},
			{Header: "firstname"}, {Header: "lastname"}, {Header: "employeecompany"}, {Header: "country"},
			{Header: "jobtitle", Tolerated: []string{"title"}},
			{Header: "googleaid", Type: suppression.IDMAID},
		},
	},
}

// TemplateNames lists the templates, in documentation order.
func TemplateNames() []string {
	out := make([]string, len(templates))
	for i, t := range templates {
		out[i] = t.Name
	}
	return out
}

// LookupTemplate returns the template of that name.
func LookupTemplate(name string) (Template, bool) {
	for _, t := range templates {
		if t.Name == name {
			return t, true
		}
	}
	return Template{}, false
}

// fold is how header names compare: case and surrounding spaces never
// matter.
func fold(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

func (c TemplateColumn) matches(name string) bool {
	if fold(c.Header) == name {
		return true
	}
	for _, t := range c.Tolerated {
		if fold(t) == name {
			return true
		}
	}
	return false
}

// Resolve reads a header row against the template. Every column must be
// one the template documents (a misspelt identifier column would go
// unchecked, and the platform would reject the file anyway), at least one
// must hold an identifier suppressd checks, and none may be one it cannot
// check. The error names the columns at fault.
func (t Template) Resolve(header []string) (*Layout, error) {
	l := &Layout{Fields: len(header)}
	var unknown, refused []string
	for i, name := range header {
		n := fold(name)
		j := slices.IndexFunc(t.Columns, func(c TemplateColumn) bool { return c.matches(n) })
		switch {
		case j < 0:
			unknown = append(unknown, describeHeader(i, name))
		case t.Columns[j].Refused != "":
			refused = append(refused, fmt.Sprintf("%q: %s", strings.TrimSpace(name), t.Columns[j].Refused))
		case t.Columns[j].Type != "":
			l.Columns = append(l.Columns, Column{Index: i, Name: strings.TrimSpace(name), Type: t.Columns[j].Type})
		}
	}
	switch {
	case len(unknown) > 0:
		return nil, fmt.Errorf("the %s template has no column %s (its columns: %s)", t.Name, strings.Join(unknown, ", "), t.headers(false))
	case len(refused) > 0:
		return nil, fmt.Errorf("column %s", strings.Join(refused, "; column "))
	case len(l.Columns) == 0:
		return nil, fmt.Errorf("no identifier column: a %s file needs at least one of %s", t.Name, t.headers(true))
	}
	return l, nil
}

// headers lists the documented headers, or only those suppressd checks.
func (t Template) headers(checked bool) string {
	var out []string
	for _, c := range t.Columns {
		if !checked || (c.Type != "" && c.Refused == "") {
			out = append(out, c.Header)
		}
	}
	return strings.Join(out, ", ")
}

// describeHeader names a header for an error message. The first row of a
// file that lacks its header row is a person's data, and an error message
// must never repeat an identifier: a name that looks like a value is
// referred to by its position only.
func describeHeader(i int, name string) string {
	n := strings.TrimSpace(name)
	switch {
	case n == "":
		return fmt.Sprintf("%d (no name)", i+1)
	case looksLikeValue(n):
		return fmt.Sprintf("%d (its name looks like a value, not a header: is the header row missing?)", i+1)
	}
	return fmt.Sprintf("%q", n)
}

func looksLikeValue(s string) bool {
	if len(s) > 64 || strings.ContainsAny(s, "@+") {
		return true
	}
	if _, err := suppression.ParseSHA256(suppression.IDEmailSHA256, s); err == nil {
		return true
	}
	digits := 0
	for _, c := range s {
		if c >= '0' && c <= '9' {
			digits++
		}
	}
	return digits >= 5
}
