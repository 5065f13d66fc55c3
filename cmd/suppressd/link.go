package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/suppressd/suppressd/client"
	"github.com/suppressd/suppressd/suppression"
	"github.com/suppressd/suppressd/unsubscribe"
)

// runLink mints the List-Unsubscribe headers of one recipient (--email or
// --phone), or of every recipient in a file (--in), with the link keys of
// SUPPRESSD_LINK_KEYS: the links POST /v1/links makes, without a server.
//
// In bulk, the input is NDJSON (one POST /v1/links recipient per line) or
// CSV with a header row naming an email or phone column; the output is
// NDJSON, one line per recipient in input order, each with the input line
// number and either the links or an error naming the field (never the
// value). Exit 1 when any recipient was refused.
func runLink(_ context.Context, args []string, std stdio) error {
	fs := flag.NewFlagSet("link", flag.ContinueOnError)
	fs.SetOutput(std.err)
	email := fs.String("email", "", "the recipient's address")
	phone := fs.String("phone", "", "or a phone number (SMS)")
	namespace := fs.String("namespace", "", "namespace (in bulk: of every recipient that names none)")
	var scopes multiFlag
	fs.Var(&scopes, "scope", "what the link unsubscribes from: email, sms, topic:<name>, * ... (repeatable; default: email for an address, sms for a phone number)")
	campaign := fs.String("campaign", "", "campaign id, for the audit trail")
	list := fs.String("list", "", "list id, for the audit trail")
	in := fs.String("in", "", "bulk: a file of recipients, NDJSON (as POST /v1/links takes them) or CSV with an email or phone column; - for stdin; gzip is read")
	out := fs.String("out", "-", "bulk: where the NDJSON results go, one line per recipient (- for stdout)")
	format := fs.String("format", "auto", "bulk input format: ndjson, csv, or auto (NDJSON when it starts with '{')")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q: recipients are named by --email, --phone or --in", fs.Arg(0))}
	}
	if *format != "auto" && *format != "ndjson" && *format != "csv" {
		return usageError{fmt.Errorf("--format %q: want ndjson, csv or auto", *format)}
	}
	s, err := load("")
	if err != nil {
		return err
	}
	switch {
	case s.keyring == nil:
		return configError{errors.New("SUPPRESSD_LINK_KEYS: no link keys configured (suppressd dev prints the ones it made)")}
	case s.minter == nil:
		return configError{errors.New("SUPPRESSD_LINK_BASE_URL: the public URL the links point at is required")}
	}
	shared := unsubscribe.Claims{Namespace: *namespace, CampaignID: *campaign, ListID: *list}
	for _, sc := range scopes {
		shared.Scopes = append(shared.Scopes, suppression.Scope(sc))
	}
	if *in == "" {
		return linkOne(s.minter, shared, *email, *phone, std)
	}
	if *email != "" || *phone != "" {
		return usageError{errors.New("--in names the recipients: leave out --email and --phone")}
	}
	// The flags' claims are every recipient's default: check them once,
	// on a made-up recipient, before reading anything.
	probe := unsubscribe.Claims{Identifier: suppression.Identifier{Type: suppression.IDEmail, Value: "probe@example.invalid"}}
	if _, err := s.minter.Links(shared, probe, time.Now()); err != nil {
		return flagError(err)
	}
	return linkMany(s.minter, shared, *in, *out, *format, std)
}

// flagError turns a refused shared claim into a usage error naming its
// flag.
func flagError(err error) error {
	var ce *unsubscribe.ClaimError
	if !errors.As(err, &ce) {
		return err
	}
	root, _, _ := strings.Cut(ce.Field, "[")
	name := map[string]string{"namespace": "--namespace", "scopes": "--scope", "campaign_id": "--campaign", "list_id": "--list",
		"identifier.value": "the recipient", "identifier.type": "the recipient"}[root]
	if name == "" {
		return usageError{errors.New(ce.Reason)}
	}
	return usageError{fmt.Errorf("%s: %s", name, ce.Reason)}
}

// linkOne prints the two headers of one recipient, as mail headers.
func linkOne(m *unsubscribe.Minter, shared unsubscribe.Claims, email, phone string, std stdio) error {
	var id suppression.Identifier
	switch {
	case email != "" && phone == "":
		id = suppression.Identifier{Type: suppression.IDEmail, Value: email}
	case phone != "" && email == "":
		id = suppression.Identifier{Type: suppression.IDPhone, Value: phone}
	default:
		return usageError{errors.New("name the recipient with --email or --phone, or give a file of them with --in")}
	}
	l, err := m.Links(shared, unsubscribe.Claims{Identifier: id}, time.Now())
	if err != nil {
		var ce *unsubscribe.ClaimError
		if errors.As(err, &ce) && strings.HasPrefix(ce.Field, "identifier.") {
			flag := "--email"
			if id.Type == suppression.IDPhone {
				flag = "--phone"
			}
			return usageError{fmt.Errorf("%s: %s", flag, ce.Reason)} // never the value
		}
		return flagError(err)
	}
	fmt.Fprintf(std.out, "List-Unsubscribe: %s\nList-Unsubscribe-Post: %s\n", l.ListUnsubscribe, l.ListUnsubscribePost)
	return nil
}

// linkLine is one line of the bulk output: POST /v1/links's result for a
// recipient, with the input line it came from.
type linkLine struct {
	Line      int          `json:"line"`
	Ref       string       `json:"ref,omitempty"`
	Headers   *linkHeaders `json:"headers,omitempty"`
	URL       string       `json:"url,omitempty"`
	Mailto    string       `json:"mailto,omitempty"`
	ExpiresAt string       `json:"expires_at,omitempty"`
	Error     *lineError   `json:"error,omitempty"`
}

type linkHeaders struct {
	ListUnsubscribe     string `json:"List-Unsubscribe"`
	ListUnsubscribePost string `json:"List-Unsubscribe-Post"`
}

// lineError is the API's error object: what is wrong with a recipient,
// never its value.
type lineError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

func invalidLine(field, format string, args ...any) *lineError {
	msg := fmt.Sprintf(format, args...)
	if field != "" {
		msg = field + ": " + msg
	}
	return &lineError{Code: "invalid_request", Message: msg, Field: field}
}

// recipientReader reads the recipients of a bulk input, one at a time.
// next returns io.EOF at the end; a recipient it cannot read is a problem
// of its line, and an error is fatal (the file cannot be read on).
type recipientReader interface {
	next() (line int, r client.LinkRecipient, problem *lineError, err error)
	// field names a claim's field ("identifier.value") as the input
	// spells it.
	field(claim string, r client.LinkRecipient) string
}

func linkMany(m *unsubscribe.Minter, shared unsubscribe.Claims, in, out, format string, std stdio) error {
	src, _, closeIn, err := openInput(in, std.in)
	if err != nil {
		return err
	}
	defer closeIn()
	br := bufio.NewReaderSize(src, 64<<10)
	if format == "auto" {
		format = sniffFormat(br)
	}
	var rr recipientReader
	if format == "csv" {
		if rr, err = newCSVRecipients(br); err != nil {
			return fmt.Errorf("%s: %w", in, err)
		}
	} else {
		rr = newNDJSONRecipients(br)
	}
	dst, closeOut, err := openOutput(out, std.out)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(dst)
	enc.SetEscapeHTML(false)
	minted, refused := 0, 0
	for {
		line, r, problem, err := rr.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			_ = closeOut()
			return fmt.Errorf("%s: line %d: %w (the output is incomplete)", in, line, err)
		}
		res := linkLine{Line: line, Ref: r.Ref, Error: problem}
		if problem == nil {
			l, err := m.Links(shared, recipientClaims(r), time.Now())
			var ce *unsubscribe.ClaimError
			switch {
			case errors.As(err, &ce):
				res.Error = invalidLine(rr.field(ce.Field, r), "%s", ce.Reason)
			case err != nil:
				_ = closeOut()
				return err
			default:
				res.Headers = &linkHeaders{ListUnsubscribe: l.ListUnsubscribe, ListUnsubscribePost: l.ListUnsubscribePost}
				res.URL, res.Mailto, res.ExpiresAt = l.URL, l.Mailto, l.ExpiresAt.Format(time.RFC3339)
			}
		}
		if res.Error != nil {
			refused++
		} else {
			minted++
		}
		if err := enc.Encode(res); err != nil {
			_ = closeOut()
			return err
		}
	}
	if err := closeOut(); err != nil {
		return err
	}
	fmt.Fprintf(std.err, "minted the links of %d recipients", minted)
	if refused > 0 {
		fmt.Fprintf(std.err, "; %d refused (their lines hold the error)\n", refused)
		return exitCode(1)
	}
	fmt.Fprintln(std.err)
	return nil
}

func recipientClaims(r client.LinkRecipient) unsubscribe.Claims {
	c := unsubscribe.Claims{Identifier: suppression.Identifier{Type: suppression.IDType(r.Identifier.Type), Value: r.Identifier.Value},
		Namespace: r.Namespace, CampaignID: r.CampaignID, ListID: r.ListID}
	for _, s := range r.Scopes {
		c.Scopes = append(c.Scopes, suppression.Scope(s))
	}
	return c
}

// sniffFormat takes input that starts with '{' (after a byte-order mark
// and blank space) for NDJSON, anything else for CSV.
func sniffFormat(br *bufio.Reader) string {
	b, _ := br.Peek(4096)
	b = bytes.TrimLeft(bytes.TrimPrefix(b, []byte("\xef\xbb\xbf")), " \t\r\n")
	if len(b) > 0 && b[0] == '{' {
		return "ndjson"
	}
	return "csv"
}

// maxNDJSONLine bounds one recipient's line.
const maxNDJSONLine = 1 << 20

type ndjsonRecipients struct {
	sc   *bufio.Scanner
	line int
}

func newNDJSONRecipients(r io.Reader) *ndjsonRecipients {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxNDJSONLine)
	return &ndjsonRecipients{sc: sc}
}

func (n *ndjsonRecipients) next() (int, client.LinkRecipient, *lineError, error) {
	for n.sc.Scan() {
		n.line++
		text := bytes.TrimSpace(n.sc.Bytes())
		if n.line == 1 {
			text = bytes.TrimPrefix(text, []byte("\xef\xbb\xbf"))
		}
		if len(text) == 0 {
			continue
		}
		var r client.LinkRecipient
		dec := json.NewDecoder(bytes.NewReader(text))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&r); err != nil {
			return n.line, client.LinkRecipient{}, jsonProblem(err), nil
		}
		if dec.More() {
			return n.line, client.LinkRecipient{}, invalidLine("", "one recipient per line: trailing data after the JSON object"), nil
		}
		return n.line, r, nil, nil
	}
	if err := n.sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			err = fmt.Errorf("longer than %d bytes", maxNDJSONLine)
		}
		return n.line + 1, client.LinkRecipient{}, nil, err
	}
	return n.line, client.LinkRecipient{}, nil, io.EOF
}

func (*ndjsonRecipients) field(claim string, _ client.LinkRecipient) string { return claim }

// jsonProblem says what is wrong with a line's JSON without quoting it.
func jsonProblem(err error) *lineError {
	var (
		syntaxErr *json.SyntaxError
		typeErr   *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &syntaxErr):
		return invalidLine("", "malformed JSON at byte %d", syntaxErr.Offset)
	case errors.As(err, &typeErr):
		return invalidLine(typeErr.Field, "must be %s, not %s", typeErr.Type, typeErr.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		f := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return invalidLine(f, "unknown field (want ref, identifier, namespace, scopes, campaign_id, list_id)")
	}
	return invalidLine("", "malformed JSON")
}

// csvRecipients reads a CSV whose header row names the columns: email
// and/or phone (a row's identifier is its email, or its phone when it has
// no email), and optionally ref, namespace, scopes (space-separated),
// campaign_id and list_id. Other columns (names, preferences) are ignored.
type csvRecipients struct {
	r    *csv.Reader
	cols map[string]int
}

var csvColumns = []string{"email", "phone", "ref", "namespace", "scopes", "campaign_id", "list_id"}

func newCSVRecipients(r io.Reader) (*csvRecipients, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return &csvRecipients{r: cr, cols: map[string]int{"email": 0}}, nil // no rows either
	}
	if err != nil {
		return nil, fmt.Errorf("CSV header: %w", err)
	}
	c := &csvRecipients{r: cr, cols: map[string]int{}}
	for i, h := range header {
		h = strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")))
		for _, name := range csvColumns {
			if h == name {
				if _, dup := c.cols[name]; dup {
					return nil, fmt.Errorf("CSV header: column %s appears twice", name)
				}
				c.cols[name] = i
			}
		}
	}
	if _, ok := c.cols["email"]; !ok {
		if _, ok := c.cols["phone"]; !ok {
			return nil, errors.New("CSV header: no email or phone column (the first row names the columns: email, phone, ref, namespace, scopes, campaign_id, list_id)")
		}
	}
	return c, nil
}

func (c *csvRecipients) cell(row []string, name string) string {
	if i, ok := c.cols[name]; ok && i < len(row) {
		return strings.TrimSpace(row[i])
	}
	return ""
}

func (c *csvRecipients) next() (int, client.LinkRecipient, *lineError, error) {
	row, err := c.r.Read()
	line, _ := c.r.FieldPos(0)
	if err != nil {
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			return pe.Line, client.LinkRecipient{}, nil, pe.Err // its text names no value
		}
		return line, client.LinkRecipient{}, nil, err
	}
	r := client.LinkRecipient{Ref: c.cell(row, "ref"), Namespace: c.cell(row, "namespace"),
		Scopes: strings.Fields(c.cell(row, "scopes")), CampaignID: c.cell(row, "campaign_id"), ListID: c.cell(row, "list_id")}
	switch {
	case c.cell(row, "email") != "":
		r.Identifier = client.Identifier{Type: client.TypeEmail, Value: c.cell(row, "email")}
	case c.cell(row, "phone") != "":
		r.Identifier = client.Identifier{Type: client.TypePhone, Value: c.cell(row, "phone")}
	default:
		col := "email"
		if _, ok := c.cols["email"]; !ok {
			col = "phone"
		}
		return line, r, invalidLine(col, "empty: the row names no recipient"), nil
	}
	return line, r, nil, nil
}

// field names a claim by its column.
func (c *csvRecipients) field(claim string, r client.LinkRecipient) string {
	root, _, _ := strings.Cut(claim, "[")
	switch root {
	case "identifier.value", "identifier.type":
		return r.Identifier.Type
	case "scopes":
		return "scopes"
	}
	return claim
}
