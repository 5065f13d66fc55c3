package importer

import (
	"bufio"
	"encoding/csv"
	"errors"
	"io"
	"strings"

	"github.com/suppressd/suppressd/suppression"
)

// csvFile reads CSV records one at a time, leniently: rows may have any
// number of fields, stray quotes are kept, and a malformed row is a
// rejection, not the end of the import.
type csvFile struct {
	r    *csv.Reader
	e    *emitter
	line int // of the last record read
}

func newCSV(br *bufio.Reader, e *emitter) *csvFile {
	r := csv.NewReader(br)
	r.FieldsPerRecord = -1
	r.LazyQuotes = true
	r.ReuseRecord = true
	return &csvFile{r: r, e: e}
}

// next returns the next record and its line, io.EOF at the end, or a
// non-nil bad when the row cannot be read as CSV (its line is then the
// rejection's). A row or field over the limits is an error (ErrLimit).
func (c *csvFile) next() (rec []string, line int, bad bool, err error) {
	for {
		rec, err = c.r.Read()
		c.e.mark(c.r.InputOffset())
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				return nil, pe.StartLine, true, nil
			}
			var le *LimitError
			if errors.As(err, &le) {
				le.Line = c.line + 1 // where the row over the limit starts, at best
				return nil, 0, false, le
			}
			return nil, 0, false, err
		}
		line, _ = c.r.FieldPos(0)
		c.line = line
		if err := c.e.checkFields(line, len(rec), func(i int) int { return len(rec[i]) }); err != nil {
			return nil, 0, false, err
		}
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
			continue // a blank line inside the file
		}
		return rec, line, false, nil
	}
}

// header indexes a header row by folded column name.
type header map[string]int

func newHeader(rec []string) header {
	h := header{}
	for i, name := range rec {
		n := normName(name)
		if _, dup := h[n]; !dup && n != "" {
			h[n] = i
		}
	}
	return h
}

// col returns the index of the first of names present, or -1.
func (h header) col(names ...string) int {
	for _, n := range names {
		if i, ok := h[n]; ok {
			return i
		}
	}
	return -1
}

func (h header) has(names ...string) bool { return h.col(names...) >= 0 }

// field returns rec[i], or "" when the column is absent or the row short.
func field(rec []string, i int) string {
	if i < 0 || i >= len(rec) {
		return ""
	}
	return rec[i]
}

// eachRow reads the header, checks it, and then calls fn for every data
// row; malformed rows are rejected.
func eachRow(br *bufio.Reader, e *emitter, what string, check func(h header) error, fn func(h header, rec []string, line int) error) error {
	c := newCSV(br, e)
	var h header
	for {
		rec, line, bad, err := c.next()
		if err == io.EOF {
			if h == nil {
				return formatError("%s: the file is empty", what)
			}
			return nil
		}
		if err != nil {
			return err
		}
		if bad {
			if h == nil {
				return formatError("%s: the header row is not valid CSV", what)
			}
			if err := e.rejectf(line, "malformed CSV row"); err != nil {
				return err
			}
			continue
		}
		if h == nil {
			h = newHeader(rec)
			if err := check(h); err != nil {
				return err
			}
			continue
		}
		if err := fn(h, rec, line); err != nil {
			return err
		}
	}
}

// Column names, folded (see normName).
var (
	emailColumns = []string{"email", "emailaddress", "address", "recipient", "mail"}
	phoneColumns = []string{"phone", "phonenumber", "mobile", "mobilenumber", "msisdn", "sms"}
	timeColumns  = []string{"occurredat", "date", "created", "createdat", "timestamp", "time", "lastupdatetime", "updatedat"}
)

// sendGridKinds maps the SendGrid suppression lists to reasons. Blocks are
// temporary rejections and invalid emails malformed addresses: neither is
// a hard bounce, so they import as plain imports.
var sendGridKinds = map[string]suppression.Reason{
	"bounces":            suppression.ReasonHardBounce,
	"blocks":             suppression.ReasonImport,
	"spam_reports":       suppression.ReasonComplaint,
	"unsubscribes":       suppression.ReasonUnsubscribe,
	"group_unsubscribes": suppression.ReasonUnsubscribe,
	"invalid_emails":     suppression.ReasonImport,
}

// parseSendGrid reads the CSV exports of SendGrid's suppression lists. Their
// columns are the fields of the v3 suppression API
// (/v3/suppression/bounces: created, email, reason, status; blocks and
// invalid_emails: created, email, reason; spam_reports: created, email, ip;
// unsubscribes and group suppressions: created, email), "created" as Unix
// seconds in the API and as a date-time in the UI's CSV. The list is
// Options.Kind, else it is guessed from the columns: ip means spam reports,
// status bounces, reason alone invalid emails, a group column group
// unsubscribes, email and created alone global unsubscribes. Blocks cannot
// be told from bounces by columns: pass the kind.
//
// Verified: the API field names (SendGrid v3 reference). Not verified: the
// exact header row of the UI's "Export CSV", hence the loose column match.
func parseSendGrid(br *bufio.Reader, e *emitter) error {
	var reason suppression.Reason
	kind := normKind(e.o.Kind)
	if kind != "" {
		r, ok := sendGridKinds[kind]
		if !ok {
			return formatError("sendgrid: unknown kind %q (want bounces, blocks, spam_reports, unsubscribes, group_unsubscribes or invalid_emails)", e.o.Kind)
		}
		reason = r
	}
	var emailCol, timeCol int
	check := func(h header) error {
		if emailCol = h.col("email", "emailaddress"); emailCol < 0 {
			return formatError("sendgrid: no email column in the header")
		}
		timeCol = h.col("created", "createdat")
		if reason == "" {
			switch {
			case h.has("ip"):
				reason = sendGridKinds["spam_reports"]
			case h.has("status"):
				reason = sendGridKinds["bounces"]
			case h.has("groupid", "groupname", "group"):
				reason = sendGridKinds["group_unsubscribes"]
			case h.has("reason"):
				reason = sendGridKinds["invalid_emails"]
			default:
				reason = sendGridKinds["unsubscribes"]
			}
		}
		return nil
	}
	return eachRow(br, e, "sendgrid", check, func(h header, rec []string, line int) error {
		return e.email(line, field(rec, emailCol), reason, field(rec, timeCol), "created")
	})
}

// mailgunKinds maps Mailgun's suppression lists to reasons. Mailgun's
// bounce list holds only permanent failures.
var mailgunKinds = map[string]suppression.Reason{
	"bounces":      suppression.ReasonHardBounce,
	"complaints":   suppression.ReasonComplaint,
	"unsubscribes": suppression.ReasonUnsubscribe,
}

// parseMailgun reads Mailgun's suppression CSV files, whose documented
// columns (the /v3/{domain}/bounces|complaints|unsubscribes/import
// endpoints, the same shape the lists export) are address, code, error,
// created_at for bounces; address, created_at for complaints; and
// address, tags, created_at for unsubscribes; created_at in RFC 2822.
// Without Options.Kind, code or error mean bounces and tags unsubscribes;
// address and created_at alone could be complaints or unsubscribes, and the
// parse stops asking for the kind rather than guess a sticky complaint.
//
// An unsubscribe from one tag is imported as an unsubscribe in the scopes
// of the import: wider than Mailgun's, never narrower.
func parseMailgun(br *bufio.Reader, e *emitter) error {
	kind := normKind(e.o.Kind)
	var reason suppression.Reason
	if kind != "" {
		r, ok := mailgunKinds[kind]
		if !ok {
			return formatError("mailgun: unknown kind %q (want bounces, complaints or unsubscribes)", e.o.Kind)
		}
		reason = r
	}
	var emailCol, timeCol int
	check := func(h header) error {
		if emailCol = h.col("address", "email"); emailCol < 0 {
			return formatError("mailgun: no address column in the header")
		}
		timeCol = h.col("createdat", "created")
		if reason == "" {
			switch {
			case h.has("code", "error"):
				reason = mailgunKinds["bounces"]
			case h.has("tags", "tag"):
				reason = mailgunKinds["unsubscribes"]
			default:
				return formatError("mailgun: address and created_at columns alone could be complaints or unsubscribes: pass the kind")
			}
		}
		return nil
	}
	return eachRow(br, e, "mailgun", check, func(h header, rec []string, line int) error {
		return e.email(line, field(rec, emailCol), reason, field(rec, timeCol), "created_at")
	})
}

// parsePlainCSV reads a CSV with a header naming an email and/or a phone
// column (email, email_address, phone, phone_number, mobile, ...; any case)
// and optionally reason and a time (occurred_at, date, created_at, ...); or,
// when the first row names no such column, a single column of emails without
// a header. A row with both an email and a phone yields one row for each. A
// reason is one of the domain's reasons (unsubscribe, erasure, ...) or a
// provider's word for one (bounce, spam, ...); anything else, or none, is
// an import.
func parsePlainCSV(br *bufio.Reader, e *emitter) error {
	c := newCSV(br, e)
	var (
		h                                      header
		emailCol, phoneCol, reasonCol, timeCol = -1, -1, -1, -1
		first                                  = true
		headerless                             bool
		timeName                               = "date"
	)
	for {
		rec, line, bad, err := c.next()
		if err == io.EOF {
			if first {
				return formatError("csv: the file is empty")
			}
			return nil
		}
		if err != nil {
			return err
		}
		if bad {
			if err := e.rejectf(line, "malformed CSV row"); err != nil {
				return err
			}
			continue
		}
		if first {
			first = false
			h = newHeader(rec)
			emailCol, phoneCol = h.col(emailColumns...), h.col(phoneColumns...)
			if emailCol < 0 && phoneCol < 0 {
				if len(rec) != 1 {
					return formatError("csv: the header names no email or phone column (email, email_address, phone, phone_number, ...)")
				}
				headerless, emailCol = true, 0 // a bare list of emails: this row is data
			} else {
				reasonCol, timeCol = h.col("reason", "type", "suppressionreason"), h.col(timeColumns...)
				if timeCol >= 0 {
					timeName = strings.TrimSpace(rec[timeCol])
				}
				continue
			}
		}
		reason := plainReason(field(rec, reasonCol))
		rawTime := field(rec, timeCol)
		if headerless && len(rec) > 1 {
			if err := e.rejectf(line, "%d columns in a single-column list", len(rec)); err != nil {
				return err
			}
			continue
		}
		email, phone := strings.TrimSpace(field(rec, emailCol)), strings.TrimSpace(field(rec, phoneCol))
		if email == "" && phone == "" {
			what := "email"
			if emailCol < 0 {
				what = "phone"
			} else if phoneCol >= 0 {
				what = "email and phone"
			}
			if err := e.rejectf(line, "missing %s", what); err != nil {
				return err
			}
			continue
		}
		if email != "" {
			if err := e.identifier(line, suppression.IDEmail, email, reason, rawTime, timeName); err != nil {
				return err
			}
		}
		if phone != "" {
			if err := e.identifier(line, suppression.IDPhone, phone, reason, rawTime, timeName); err != nil {
				return err
			}
		}
	}
}

// plainReason accepts the domain's own reason names as they are, and maps
// anything else like a provider's word.
func plainReason(s string) suppression.Reason {
	if r, err := suppression.ParseReason(strings.ToLower(strings.TrimSpace(s))); err == nil {
		return r
	}
	return MapReason(s)
}

func normKind(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(strings.ToLower(strings.TrimSpace(s)), "-", "_"), " ", "_")
}
