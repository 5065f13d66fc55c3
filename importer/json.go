package importer

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/suppressd/suppressd/suppression"
)

// sesReasons maps the SES suppression list's reasons (BOUNCE, COMPLAINT;
// the list only takes hard bounces) to the domain's.
func sesReason(s string) suppression.Reason {
	switch strings.ToUpper(strings.TrimSpace(s)) {
	case "BOUNCE":
		return suppression.ReasonHardBounce
	case "COMPLAINT":
		return suppression.ReasonComplaint
	}
	return MapReason(s)
}

// parseSES reads the Amazon SES account-level suppression list as
// `aws sesv2 list-suppressed-destinations` prints it:
//
//	{"SuppressedDestinationSummaries": [{"EmailAddress": "...", "Reason": "BOUNCE|COMPLAINT",
//	  "LastUpdateTime": "2026-01-02T03:04:05.678000+00:00"}], "NextToken": "..."}
//
// (the CLI prints LastUpdateTime in ISO 8601, the raw API as Unix seconds;
// both are read), several such pages one after the other, a bare array of
// summaries, or one summary object per line. Verified: the field names and
// reasons (SES API reference, SuppressedDestinationSummary). A CSV with
// the same columns (EmailAddress or EMAIL_ADDRESS, Reason, LastUpdateTime)
// is read too, for lists converted by hand; SES's own bulk export job
// format was not verified.
func parseSES(br *bufio.Reader, e *emitter) error {
	emit := func(line int, get func(names ...string) (string, error)) error {
		email, err := get("emailaddress")
		if err != nil {
			return e.rejectf(line, "EmailAddress: %v", err)
		}
		reason, err := get("reason")
		if err != nil {
			return e.rejectf(line, "Reason: %v", err)
		}
		at, err := get("lastupdatetime")
		if err != nil {
			return e.rejectf(line, "LastUpdateTime: %v", err)
		}
		return e.email(line, email, sesReason(reason), at, "LastUpdateTime")
	}
	if c := firstByte(br); c != '{' && c != '[' {
		return csvObjects(br, e, "ses", []string{"emailaddress", "email"}, emit)
	}
	return scanJSON(br, e, "SuppressedDestinationSummaries", func(line int, o jsonObject) error {
		return emit(line, o.str)
	})
}

// postmarkReason maps Postmark's SuppressionReason and Origin. A
// ManualSuppression whose origin is the recipient is the recipient's own
// unsubscribe (a Broadcast stream's unsubscribe link); one added by the
// customer or an admin is an import.
func postmarkReason(reason, origin string) suppression.Reason {
	switch normName(reason) {
	case "hardbounce":
		return suppression.ReasonHardBounce
	case "spamcomplaint":
		return suppression.ReasonComplaint
	case "manualsuppression":
		if normName(origin) == "recipient" {
			return suppression.ReasonUnsubscribe
		}
		return suppression.ReasonImport
	}
	return MapReason(reason)
}

// parsePostmark reads Postmark's suppressions: the JSON of
// GET /message-streams/{stream}/suppressions/dump,
//
//	{"Suppressions": [{"EmailAddress": "...", "SuppressionReason": "HardBounce|SpamComplaint|ManualSuppression",
//	  "Origin": "Recipient|Customer|Admin", "CreatedAt": "2019-12-10T08:58:33-05:00"}]}
//
// (also a bare array, or one object per line), or a CSV with those columns
// (EmailAddress or Email, SuppressionReason or Reason, Origin, CreatedAt or
// Date). Verified: the dump's JSON fields and values (Postmark API
// reference). Not verified: the header row of the web UI's CSV download,
// hence the loose column match.
func parsePostmark(br *bufio.Reader, e *emitter) error {
	emit := func(line int, get func(names ...string) (string, error)) error {
		email, err := get("emailaddress", "email")
		if err != nil {
			return e.rejectf(line, "EmailAddress: %v", err)
		}
		reason, err := get("suppressionreason", "reason")
		if err != nil {
			return e.rejectf(line, "SuppressionReason: %v", err)
		}
		origin, err := get("origin")
		if err != nil {
			return e.rejectf(line, "Origin: %v", err)
		}
		at, err := get("createdat", "date", "created")
		if err != nil {
			return e.rejectf(line, "CreatedAt: %v", err)
		}
		return e.email(line, email, postmarkReason(reason, origin), at, "CreatedAt")
	}
	if c := firstByte(br); c != '{' && c != '[' {
		return csvObjects(br, e, "postmark", []string{"emailaddress", "email"}, emit)
	}
	return scanJSON(br, e, "Suppressions", func(line int, o jsonObject) error {
		return emit(line, o.str)
	})
}

// csvObjects reads a CSV whose rows are looked up by column name, like the
// JSON objects of the same format.
func csvObjects(br *bufio.Reader, e *emitter, what string, required []string, emit func(line int, get func(names ...string) (string, error)) error) error {
	check := func(h header) error {
		if !h.has(required...) {
			return formatError("%s: neither JSON nor a CSV with an %s column", what, required[0])
		}
		return nil
	}
	return eachRow(br, e, what, check, func(h header, rec []string, line int) error {
		return emit(line, func(names ...string) (string, error) { return field(rec, h.col(names...)), nil })
	})
}

// firstByte returns the first byte that is not white space, without
// consuming anything, or 0.
func firstByte(br *bufio.Reader) byte {
	b, _ := br.Peek(4096)
	for _, c := range b {
		switch c {
		case ' ', '\t', '\r', '\n':
		default:
			return c
		}
	}
	return 0
}

// jsonObject is one record, its keys folded by normName.
type jsonObject map[string]json.RawMessage

// str returns the first of the named fields as text: a string, a number as
// written, or "" when absent or null.
func (o jsonObject) str(names ...string) (string, error) {
	for _, n := range names {
		raw, ok := o[n]
		if !ok {
			continue
		}
		raw = bytes.TrimSpace(raw)
		switch {
		case len(raw) == 0, bytes.Equal(raw, []byte("null")):
			return "", nil
		case raw[0] == '"':
			var s string
			if err := json.Unmarshal(raw, &s); err != nil {
				return "", errors.New("not a string")
			}
			return s, nil
		case raw[0] == '-' || raw[0] >= '0' && raw[0] <= '9':
			return string(raw), nil
		}
		return "", errors.New("not a string")
	}
	return "", nil
}

// scanJSON streams the records of a JSON export, one at a time: the
// elements of the array under arrayKey of a top-level object (other keys,
// such as a page token, are skipped), the elements of a top-level array, or
// top-level objects that are records themselves (one per line, or
// concatenated). A malformed document stops the parse: JSON cannot be
// resynchronised after a syntax error.
func scanJSON(br *bufio.Reader, e *emitter, arrayKey string, fn func(line int, o jsonObject) error) error {
	lc := &lineCounter{r: br}
	dec := json.NewDecoder(lc)
	wantKey := normName(arrayKey)
	// start is the line where the next value begins.
	start := func() int {
		off := dec.InputOffset()
		if b, err := io.ReadAll(io.LimitReader(dec.Buffered(), 4096)); err == nil {
			for _, c := range b {
				if c != ' ' && c != '\t' && c != '\r' && c != '\n' && c != ',' && c != ':' {
					break
				}
				off++
			}
		}
		return lc.lineAt(off)
	}
	syntax := func(err error) error {
		var le *LimitError
		if errors.As(err, &le) {
			if le.Line == 0 {
				le.Line = start()
			}
			return le
		}
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return formatError("malformed JSON at line %d", lc.lineAt(se.Offset))
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return formatError("the JSON ends in the middle of a value")
		}
		return err
	}
	elements := func() error {
		for dec.More() {
			line := start()
			var raw map[string]json.RawMessage
			err := dec.Decode(&raw)
			e.mark(dec.InputOffset())
			if err != nil {
				var te *json.UnmarshalTypeError
				if errors.As(err, &te) {
					if err := e.rejectf(line, "not a JSON object"); err != nil {
						return err
					}
					continue
				}
				return syntax(err)
			}
			if err := checkMembers(e, line, raw); err != nil {
				return err
			}
			if err := fn(line, fold(raw)); err != nil {
				return err
			}
		}
		_, err := dec.Token() // ']'
		return syntax(err)
	}
	for {
		line := start()
		tok, err := dec.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return syntax(err)
		}
		switch tok {
		case json.Delim('['):
			if err := elements(); err != nil {
				return err
			}
		case json.Delim('{'):
			obj := jsonObject{}
			wrapper := false
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return syntax(err)
				}
				key, _ := kt.(string)
				if normName(key) == wantKey {
					t, err := dec.Token()
					if err != nil {
						return syntax(err)
					}
					wrapper = true
					if t == nil {
						continue // "Suppressions": null, an empty page
					}
					if t != json.Delim('[') {
						return formatError("line %d: %s is not an array", line, arrayKey)
					}
					if err := elements(); err != nil {
						return err
					}
					continue
				}
				var v json.RawMessage
				if err := dec.Decode(&v); err != nil {
					return syntax(err)
				}
				obj[normName(key)] = v
			}
			if _, err := dec.Token(); err != nil { // '}'
				return syntax(err)
			}
			e.mark(dec.InputOffset())
			if err := checkMembers(e, line, obj); err != nil {
				return err
			}
			if !wrapper {
				if err := fn(line, obj); err != nil {
					return err
				}
			}
		default:
			return formatError("line %d: expected JSON objects, found %s", line, describe(tok))
		}
	}
}

// checkMembers stops the parse at a member over Options.MaxField.
func checkMembers[M ~map[string]json.RawMessage](e *emitter, line int, m M) error {
	for _, v := range m {
		if len(v) > e.o.MaxField {
			return &LimitError{What: "field", Limit: e.o.MaxField, Line: line}
		}
	}
	return nil
}

func describe(tok json.Token) string {
	switch tok.(type) {
	case string:
		return "a string"
	case float64, json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%v", tok)
}

func fold(raw map[string]json.RawMessage) jsonObject {
	o := make(jsonObject, len(raw))
	for k, v := range raw {
		if _, dup := o[normName(k)]; !dup {
			o[normName(k)] = v
		}
	}
	return o
}

// lineCounter tells the line of a byte offset of what it has read, for
// offsets that only grow: it keeps the offsets of the newlines it has read
// but not yet passed, so its memory is bounded by the decoder's read-ahead.
type lineCounter struct {
	r      io.Reader
	read   int64
	nl     []int64
	passed int
}

func (c *lineCounter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	for i, b := range p[:n] {
		if b == '\n' {
			c.nl = append(c.nl, c.read+int64(i))
		}
	}
	c.read += int64(n)
	return n, err
}

// lineAt returns the 1-based line of byte offset off.
func (c *lineCounter) lineAt(off int64) int {
	i := 0
	for i < len(c.nl) && c.nl[i] < off {
		i++
	}
	c.passed += i
	c.nl = c.nl[i:]
	return c.passed + 1
}
