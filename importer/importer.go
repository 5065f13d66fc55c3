// Package importer reads the suppression exports of email providers
// (Amazon SES, SendGrid, Postmark, Mailgun) and plain CSV files, row by row in
// constant memory, and turns each row into a suppression event.
//
// A parser yields, in file order, either a Row (a normalised identifier with
// the reason and time the provider gave it) or a Rejection (the line and why
// it was refused). A rejection never carries the raw value: an import report
// is a file an operator mails around, and it must not become a list of
// addresses.
//
// The provider formats follow each provider's documented export or API
// shapes; where a provider documents no exact CSV header, the parser matches
// column names loosely (case, spaces, '_' and '-' are ignored). See the doc
// comment of each parser for what was verified.
package importer

import (
	"bufio"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/suppressd/suppressd/suppression"
)

// Format names an export format.
type Format string

// Formats the importer reads.
const (
	FormatSES      Format = "ses"      // Amazon SES account-level suppression list (JSON)
	FormatSendGrid Format = "sendgrid" // SendGrid suppression CSV exports
	FormatPostmark Format = "postmark" // Postmark suppressions dump (JSON) or CSV
	FormatMailgun  Format = "mailgun"  // Mailgun bounces, complaints or unsubscribes CSV
	FormatCSV      Format = "csv"      // plain CSV: email and/or phone columns, or one column of emails
)

// Formats lists every format.
var Formats = []Format{FormatSES, FormatSendGrid, FormatPostmark, FormatMailgun, FormatCSV}

// ParseFormat checks a format name.
func ParseFormat(s string) (Format, error) {
	for _, f := range Formats {
		if string(f) == strings.ToLower(strings.TrimSpace(s)) {
			return f, nil
		}
	}
	names := make([]string, len(Formats))
	for i, f := range Formats {
		names[i] = string(f)
	}
	return "", fmt.Errorf("unknown format %q (want one of %s)", s, strings.Join(names, ", "))
}

// Source is the CloudEvents source of the events imported from a format.
func (f Format) Source() string { return "/import/" + string(f) }

// Row is one accepted identifier of an export.
type Row struct {
	Line       int                    // 1-based line of the file where the row starts
	Identifier suppression.Identifier // normalised
	Reason     suppression.Reason
	// OccurredAt is the row's own time when it has one (Dated), else
	// Options.DefaultTime; never after Options.Now.
	OccurredAt time.Time
	Dated      bool
	// Stated is the row's own time as the file states it (zero when not
	// Dated), before any clamping: part of the event id, so a row dated in
	// the future keeps its id from one import to the next.
	Stated time.Time
}

// Rejection is a row that cannot be imported. Reason never quotes the
// row's values.
type Rejection struct {
	Line   int
	Reason string
}

// Options configure a parse. The zero value plus a Format is usable.
type Options struct {
	Format Format
	// Kind is the provider's list when the file alone cannot tell it:
	// SendGrid bounces, blocks, spam_reports, unsubscribes,
	// group_unsubscribes or invalid_emails; Mailgun bounces, complaints or
	// unsubscribes. Empty: detected from the columns (and KindFromName can
	// read it from a file name).
	Kind string
	// Normalizer checks phone numbers (its default region reads numbers
	// without a country code).
	Normalizer suppression.Normalizer
	// Now is the import time: no row is dated after it. Default time.Now().
	Now time.Time
	// DefaultTime dates rows that carry no time of their own. Default Now.
	DefaultTime time.Time
	// MaxRecord bounds one CSV row (its lines, when a quoted field spans
	// several) or one JSON record; MaxField one field or member of it. A
	// parse that meets a longer one stops with an error wrapping ErrLimit:
	// a line that never ends would otherwise be held whole. Defaults
	// DefaultMaxRecord and DefaultMaxField.
	MaxRecord, MaxField int
}

// Default limits of one row or record and of one field.
const (
	DefaultMaxRecord = 64 << 10
	DefaultMaxField  = 8 << 10
)

// ErrLimit is wrapped by the error that stops a parse at a row, record or
// field over its limit (Options.MaxRecord, Options.MaxField).
var ErrLimit = errors.New("over a limit of the importer")

// LimitError names the limit a file went over.
type LimitError struct {
	What  string // "row or record", "field"
	Limit int    // bytes
	Line  int    // where, when known
}

func (e *LimitError) Error() string {
	where := ""
	if e.Line > 0 {
		where = fmt.Sprintf("line %d: ", e.Line)
	}
	return fmt.Sprintf("%sa %s is over the %d-byte limit", where, e.What, e.Limit)
}

// Is makes errors.Is(err, ErrLimit) true.
func (e *LimitError) Is(target error) bool { return target == ErrLimit }

// recordGuard sits under the parser's buffer and refuses to read on once
// the record being parsed holds more than limit bytes of what was read: the
// CSV reader keeps a line without a newline whole, and the JSON decoder a
// value without its end. Parsers mark where each record ends.
type recordGuard struct {
	r     io.Reader
	total int64 // bytes read from r
	base  int64 // offset of the parser's input in r (after a BOM)
	start int64 // offset in r where the current record starts
	limit int
}

func (g *recordGuard) Read(p []byte) (int, error) {
	if g.total-g.start > int64(g.limit) {
		return 0, &LimitError{What: "row or record", Limit: g.limit}
	}
	n, err := g.r.Read(p)
	g.total += int64(n)
	return n, err
}

// mark records that the parser's input offset off is a record boundary.
func (g *recordGuard) mark(off int64) { g.start = g.base + off }

// ErrFormat is wrapped by errors that stop a parse because the file is not
// in the format asked for (no header, not JSON, an undecidable kind).
var ErrFormat = errors.New("not a readable export")

func formatError(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrFormat, fmt.Sprintf(format, args...))
}

// Parse reads an export and calls row for each accepted identifier and
// reject for each refused row, in file order. It returns the first error of
// a callback, or an error that stops the parse (I/O, malformed JSON, a CSV
// without the columns of its format); bad rows are never errors.
func Parse(r io.Reader, o Options, row func(Row) error, reject func(Rejection) error) error {
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	if o.DefaultTime.IsZero() || o.DefaultTime.After(o.Now) {
		o.DefaultTime = o.Now
	}
	if o.MaxRecord <= 0 {
		o.MaxRecord = DefaultMaxRecord
	}
	if o.MaxField <= 0 {
		o.MaxField = DefaultMaxField
	}
	g := &recordGuard{r: r, limit: o.MaxRecord}
	e := &emitter{o: o, row: row, reject: reject, mark: g.mark}
	br := bufio.NewReaderSize(g, 64<<10)
	stripBOM(br)
	g.base = g.total - int64(br.Buffered())
	g.start = g.base
	switch o.Format {
	case FormatSES:
		return parseSES(br, e)
	case FormatSendGrid:
		return parseSendGrid(br, e)
	case FormatPostmark:
		return parsePostmark(br, e)
	case FormatMailgun:
		return parseMailgun(br, e)
	case FormatCSV:
		return parsePlainCSV(br, e)
	}
	_, err := ParseFormat(string(o.Format))
	return err
}

// KindFromName guesses a provider list kind from a file name
// ("bounces.csv", "spam_reports_2026.csv", ...), or returns "".
func KindFromName(f Format, name string) string {
	n := strings.ToLower(name)
	has := func(s ...string) bool {
		for _, x := range s {
			if strings.Contains(n, x) {
				return true
			}
		}
		return false
	}
	switch f {
	case FormatSendGrid:
		switch {
		case has("group"), has("asm"):
			return "group_unsubscribes"
		case has("unsub"):
			return "unsubscribes"
		case has("spam"):
			return "spam_reports"
		case has("invalid"):
			return "invalid_emails"
		case has("block"):
			return "blocks"
		case has("bounce"):
			return "bounces"
		}
	case FormatMailgun:
		switch {
		case has("unsub"):
			return "unsubscribes"
		case has("complaint", "spam"):
			return "complaints"
		case has("bounce"):
			return "bounces"
		}
	}
	return ""
}

// emitter validates a row's fields and hands the result on.
type emitter struct {
	o      Options
	row    func(Row) error
	reject func(Rejection) error
	mark   func(off int64) // a record ends at this offset of the parser's input
}

// checkFields stops the parse at a field over Options.MaxField.
func (e *emitter) checkFields(line int, n int, field func(i int) int) error {
	for i := range n {
		if field(i) > e.o.MaxField {
			return &LimitError{What: "field", Limit: e.o.MaxField, Line: line}
		}
	}
	return nil
}

func (e *emitter) rejectf(line int, format string, args ...any) error {
	return e.reject(Rejection{Line: line, Reason: fmt.Sprintf(format, args...)})
}

// email checks a raw address and a raw time and emits the row or its
// rejection. timeField names the time column in a rejection.
func (e *emitter) email(line int, raw string, reason suppression.Reason, rawTime, timeField string) error {
	return e.identifier(line, suppression.IDEmail, raw, reason, rawTime, timeField)
}

func (e *emitter) identifier(line int, typ suppression.IDType, raw string, reason suppression.Reason, rawTime, timeField string) error {
	if strings.TrimSpace(raw) == "" {
		return e.rejectf(line, "missing %s", typ)
	}
	var value string
	switch typ {
	case suppression.IDEmail:
		em, err := suppression.NormalizeEmail(raw)
		if err != nil {
			return e.reject(Rejection{Line: line, Reason: err.Error()}) // IdentifierError never quotes the value
		}
		value = em.String()
	case suppression.IDPhone:
		p, err := e.o.Normalizer.NormalizePhone(raw)
		if err != nil {
			return e.reject(Rejection{Line: line, Reason: err.Error()})
		}
		value = p
	default:
		return fmt.Errorf("identifier type %s is not imported", typ)
	}
	at, dated, err := parseTime(rawTime)
	if err != nil {
		return e.rejectf(line, "%s: %v", timeField, err)
	}
	var stated time.Time
	if dated {
		stated = at.UTC()
	} else {
		at = e.o.DefaultTime
	}
	if at.After(e.o.Now) {
		at = e.o.Now // a clock ahead, or a time zone misread: never in the future
	}
	return e.row(Row{Line: line, Identifier: suppression.Identifier{Type: typ, Value: value}, Reason: reason, OccurredAt: at.UTC(), Dated: dated, Stated: stated})
}

// MapReason maps a provider's word for why an address is suppressed to the
// domain's reason: bounces are hard bounces, spam reports complaints,
// unsubscribes unsubscribes, and anything else an import.
func MapReason(s string) suppression.Reason {
	n := normName(s)
	switch {
	case n == "":
		return suppression.ReasonImport
	case n == "bounce", n == "bounces", n == "bounced", n == "hardbounce", n == "hardbounces", n == "permanentbounce":
		return suppression.ReasonHardBounce
	case n == "complaint", n == "complaints", n == "complained", n == "spam", n == "spamreport", n == "spamreports",
		n == "spamcomplaint", n == "abuse":
		return suppression.ReasonComplaint
	case n == "unsubscribe", n == "unsubscribes", n == "unsubscribed", n == "optout", n == "optedout",
		n == "globalunsubscribe", n == "groupunsubscribe":
		return suppression.ReasonUnsubscribe
	}
	return suppression.ReasonImport
}

// normName folds a column or key name: lowercase, without spaces, '_', '-'
// or '.', so "Email Address", "email_address" and "EmailAddress" agree.
func normName(s string) string {
	var b strings.Builder
	for _, r := range strings.TrimSpace(s) {
		switch {
		case r == ' ' || r == '_' || r == '-' || r == '.' || r == '\t':
		default:
			b.WriteRune(unicode.ToLower(r))
		}
	}
	return b.String()
}

// timeLayouts are the shapes of time the providers write: RFC 3339 (SES via
// the AWS CLI, Postmark), RFC 2822 (Mailgun), "YYYY-MM-DD HH:MM:SS"
// (SendGrid's exports), and a bare date. A time without a zone is UTC.
var timeLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05.999999999",
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999 -0700",
	"2006-01-02 15:04:05.999999999 -0700 MST",
	"2006-01-02 15:04:05.999999999 MST",
	"2006-01-02 15:04:05.999999999",
	"Mon, 2 Jan 2006 15:04:05 -0700",
	"Mon, 2 Jan 2006 15:04:05 MST",
	"Mon, 2 Jan 2006 15:04:05 -0700 (MST)",
	"Mon, 2 Jan 2006 15:04 -0700",
	"2 Jan 2006 15:04:05 -0700",
	"2 Jan 2006 15:04:05 MST",
	time.RFC850,
	time.ANSIC,
	time.UnixDate,
	"2006-01-02",
}

// parseTime reads a provider's time: one of timeLayouts, or Unix seconds
// (milliseconds when 13 digits or more), possibly fractional. Empty is no
// time (dated false). Errors never quote the value.
func parseTime(raw string) (t time.Time, dated bool, err error) {
	s := strings.TrimSpace(raw)
	if s == "" {
		return time.Time{}, false, nil
	}
	if f, perr := strconv.ParseFloat(s, 64); perr == nil && !strings.ContainsAny(s, "eEnN") {
		intPart, _, _ := strings.Cut(strings.TrimPrefix(s, "-"), ".")
		if len(intPart) >= 13 {
			f /= 1000
		}
		sec := int64(f)
		t = time.Unix(sec, int64((f-float64(sec))*1e9)).UTC()
	} else {
		ok := false
		for _, l := range timeLayouts {
			if t, perr = time.Parse(l, s); perr == nil {
				ok = true
				break
			}
		}
		if !ok {
			return time.Time{}, false, errors.New("unparseable date")
		}
	}
	if t.Before(time.Unix(0, 0)) {
		return time.Time{}, false, errors.New("date before 1970")
	}
	return t, true, nil
}

// stripBOM drops a UTF-8 byte order mark (spreadsheet exports start with
// one), which would otherwise be part of the first column's name.
func stripBOM(br *bufio.Reader) {
	if b, err := br.Peek(3); err == nil && b[0] == 0xEF && b[1] == 0xBB && b[2] == 0xBF {
		_, _ = br.Discard(3)
	}
}

// EventOptions say what every imported event covers.
type EventOptions struct {
	Namespace string              // empty: the default namespace
	Scopes    []suppression.Scope // default ["email"]
	// Keyer keys the event ids (see EventID): the store's, so an event id,
	// which may be logged, cannot be tested against guessed addresses.
	Keyer suppression.Keyer
}

// Event returns the suppression event of a row: a system suppress with the
// row's reason, from source "/import/<format>", with an id derived from the
// format and the row's content only, so importing the same file twice
// publishes the same events.
func Event(f Format, r Row, o EventOptions) suppression.Event {
	scopes := o.Scopes
	if len(scopes) == 0 {
		scopes = []suppression.Scope{suppression.ChannelScope(suppression.ChannelEmail)}
	}
	return suppression.Event{
		ID: EventID(f, r, o.Keyer), Source: f.Source(), Type: suppression.EventSuppress,
		OccurredAt: r.OccurredAt, Namespace: o.Namespace,
		Identifiers: []suppression.Identifier{r.Identifier},
		Scopes:      append([]suppression.Scope(nil), scopes...),
		Reason:      r.Reason, Origin: suppression.OriginSystem,
	}
}

// EventID is the id of a row's event: 32 hex digits of the keyer's tag
// (HMAC-SHA256 under the pepper) of the format, identifier, reason, and the
// row's own time as stated when it has one. A row keeps its id when
// imported again later, by the CLI or the API.
func EventID(f Format, r Row, k suppression.Keyer) string {
	at := ""
	if r.Dated {
		at = strconv.FormatInt(r.Stated.UnixMilli(), 10)
	}
	tag := k.Tag(string(f), string(r.Identifier.Type), r.Identifier.Value, string(r.Reason), at)
	return "imp-" + hex.EncodeToString(tag[:16])
}
