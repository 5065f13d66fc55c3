// Package audience reads the customer-list files ad platforms take: CSV with
// a header row, several identifier columns per person. It knows each
// platform's documented column headers (Template), reads a caller's own
// mapping of columns to identifier types (ParseColumns), turns a row's
// identifiers into match keys (Columns.Keys, through the domain's
// Normalizer), and reads CSV records while keeping every record's bytes
// exactly as they came (Scanner), so that a filter can hand back the rows
// it keeps byte for byte. It does no I/O of its own beyond reading the
// io.Reader it is given.
package audience

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
)

// DefaultMaxRecord is the longest record a Scanner keeps, in bytes. A
// customer-list row is a few hundred bytes; a record this long is a broken
// file (an unclosed quote swallowing the lines after it, say).
const DefaultMaxRecord = 64 << 10

// utf8BOM is the byte order mark spreadsheet exports start with.
var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// Scanner reads the records of a CSV stream as RFC 4180 writes them:
// fields separated by commas, optionally in double quotes, a doubled quote
// standing for a quote inside a quoted field, and quoted fields free to
// hold commas and line ends. Records end with LF or CRLF; the last may end
// with the stream. A UTF-8 byte order mark before the first record is kept
// in that record's bytes but is not part of its first field.
//
// Unlike encoding/csv it hands back each record's bytes as they came (Raw),
// and it never fails on a malformed record: the record is returned with a
// Problem and reading goes on, so a filter can drop the row, count it and
// carry on. Memory is bounded by the longest record kept (MaxRecord): the
// bytes of a longer one are read and dropped.
type Scanner struct {
	br     *bufio.Reader
	max    int
	rec    Record
	offset int64
	lines  int64
	first  bool
}

// NewScanner reads CSV records from r, keeping records of at most
// maxRecord bytes (0 means DefaultMaxRecord).
func NewScanner(r io.Reader, maxRecord int) *Scanner {
	if maxRecord <= 0 {
		maxRecord = DefaultMaxRecord
	}
	return &Scanner{br: bufio.NewReaderSize(r, 64<<10), max: maxRecord, first: true}
}

// Offset is how many bytes of the stream the records read so far span,
// from its start: where the next record begins.
func (s *Scanner) Offset() int64 { return s.offset }

// Lines is how many line ends (LF) the records read so far hold, quoted
// ones included: the next record begins on line Lines()+1.
func (s *Scanner) Lines() int64 { return s.lines }

// Record is one CSV record as read. Its slices are valid until the next
// call to Next.
type Record struct {
	// Raw is the record exactly as it came, its line end included.
	Raw []byte
	// Line is the line of the stream the record starts on, 1-based,
	// counting every line end (so a quoted field holding a line end moves
	// the next record's line on by two).
	Line int64
	// Problem says why the record is not well-formed CSV; empty when it
	// is. A record with a problem has unreliable fields.
	Problem string

	fields  []field
	content int // bytes of Raw before the line end
	bom     int // bytes of Raw that are a byte order mark

	unquoted []byte // Field's scratch space
}

type field struct {
	start, end int // in Raw; a quoted field's span includes its quotes
	quoted     bool
	escaped    bool // holds a doubled quote
}

// Clone returns a copy of the record that stays valid after Next.
func (r *Record) Clone() Record {
	c := *r
	c.Raw, c.fields, c.unquoted = bytes.Clone(r.Raw), slices.Clone(r.fields), nil
	return c
}

// NumFields is the number of fields of the record.
func (r *Record) NumFields() int { return len(r.fields) }

// Blank reports whether the record is an empty line, or one of spaces and
// tabs only: a line that holds nothing.
func (r *Record) Blank() bool {
	if r.Problem != "" {
		return false
	}
	for _, c := range r.Raw[r.bom:r.content] {
		if c != ' ' && c != '\t' {
			return false
		}
	}
	return true
}

// Field returns field i without its quotes, a doubled quote read as one.
// It is valid until the next call to Field or Next, and must not be
// modified: it may be part of Raw.
func (r *Record) Field(i int) []byte {
	f := r.fields[i]
	if !f.quoted {
		return r.Raw[f.start:f.end]
	}
	inner := r.Raw[f.start+1 : f.end-1]
	if !f.escaped {
		return inner
	}
	out := r.unquoted[:0]
	for len(inner) > 0 {
		j := bytes.IndexByte(inner, '"')
		if j < 0 {
			out = append(out, inner...)
			break
		}
		out = append(out, inner[:j+1]...)
		inner = inner[j+2:] // past the doubling quote
	}
	r.unquoted = out
	return out
}

// Scanner states, per byte.
const (
	atFieldStart = iota
	inUnquoted
	inQuoted
	afterQuote   // a quote inside a quoted field: its end, or the first of a doubled pair
	afterQuoteCR // a CR after a closing quote: the record's end if LF follows
)

// parse is the state of the record being read.
type parse struct {
	r        *Record
	state    int
	start    int  // where the current field starts, in the record
	p        int  // position of the next byte, in the record
	overflow bool // over the limit: bytes are no longer kept
	ended    bool
	f        field
}

func (ps *parse) problem(msg string) {
	if ps.r.Problem == "" {
		ps.r.Problem = msg
	}
}

func (ps *parse) endField(end int) {
	if !ps.overflow {
		ps.f.start, ps.f.end = ps.start, end
		ps.r.fields = append(ps.r.fields, ps.f)
	}
	ps.f = field{}
}

// feed runs the state machine over the next bytes of the record. Only the
// last byte of b can be a line end that ends the record (b comes from
// ReadSlice('\n')).
func (ps *parse) feed(b []byte) (lineEnds int) {
	r := ps.r
	for _, c := range b {
		if c == 0 {
			ps.problem("a NUL byte")
		}
		switch ps.state {
		case atFieldStart:
			ps.start = ps.p
			switch c {
			case '"':
				ps.f.quoted = true
				ps.state = inQuoted
			case ',':
				ps.endField(ps.p)
			case '\n': // an empty last field (before CRLF, the CR started an unquoted one)
				ps.endField(ps.p)
				r.content, ps.ended = ps.p, true
			default:
				ps.state = inUnquoted
			}
		case inUnquoted:
			switch c {
			case ',':
				ps.endField(ps.p)
				ps.state = atFieldStart
			case '\n':
				end := ps.p
				if !ps.overflow && end > ps.start && r.Raw[end-1] == '\r' {
					end--
				}
				ps.endField(end)
				r.content, ps.ended = end, true
			case '"':
				ps.problem("a quote inside an unquoted field")
			}
		case inQuoted:
			if c == '"' {
				ps.state = afterQuote
			}
		case afterQuote:
			switch c {
			case '"':
				ps.f.escaped = true
				ps.state = inQuoted
			case ',':
				ps.endField(ps.p)
				ps.state = atFieldStart
			case '\n':
				ps.endField(ps.p)
				r.content, ps.ended = ps.p, true
			case '\r':
				ps.state = afterQuoteCR
			default:
				ps.problem("text after a closing quote")
				ps.state = inUnquoted
			}
		case afterQuoteCR:
			if c == '\n' {
				ps.endField(ps.p - 1)
				r.content, ps.ended = ps.p-1, true
			} else {
				ps.problem("a carriage return after a closing quote")
				ps.state = inUnquoted
			}
		}
		if c == '\n' {
			lineEnds++
		}
		ps.p++
	}
	return lineEnds
}

// feedPlain is feed for the common case, a line without quotes or NULs
// that ends the record, read field by field with IndexByte instead of byte
// by byte. It reports false, having done nothing, for any other line.
func (ps *parse) feedPlain(b []byte) bool {
	if ps.state != atFieldStart || len(b) == 0 || b[len(b)-1] != '\n' ||
		bytes.IndexByte(b, '"') >= 0 || bytes.IndexByte(b, 0) >= 0 {
		return false
	}
	line := b[:len(b)-1]
	content := len(line)
	if content > 0 && line[content-1] == '\r' {
		content-- // the CR of CRLF ends the last field, which holds it
	}
	for i := 0; ; {
		ps.start = ps.p + i
		j := bytes.IndexByte(line[i:], ',')
		if j < 0 {
			ps.endField(ps.p + content)
			break
		}
		ps.endField(ps.p + i + j)
		i += j + 1
	}
	ps.r.content = ps.p + content
	ps.p += len(b)
	ps.ended = true
	return true
}

// eof ends a record that the stream ends inside of: it has no line end.
func (ps *parse) eof() {
	switch ps.state {
	case inQuoted:
		ps.problem("a quoted field is not closed")
	case afterQuoteCR:
		ps.problem("a carriage return after a closing quote")
	}
	if ps.state == atFieldStart {
		ps.start = ps.p
	}
	ps.endField(ps.p)
	ps.r.content = ps.p
}

// Next reads the next record. It returns io.EOF when the stream ends
// before any byte of a record, and any error of the underlying reader; a
// malformed record is not an error (see Record.Problem).
func (s *Scanner) Next() (*Record, error) {
	r := &s.rec
	r.Raw, r.fields, r.Problem, r.content, r.bom = r.Raw[:0], r.fields[:0], "", 0, 0
	r.Line = s.lines + 1
	if s.first {
		s.first = false
		if b, _ := s.br.Peek(len(utf8BOM)); bytes.Equal(b, utf8BOM) {
			_, _ = s.br.Discard(len(utf8BOM))
			r.Raw = append(r.Raw, utf8BOM...)
			r.bom = len(utf8BOM)
			s.offset += int64(len(utf8BOM))
		}
	}
	ps := parse{r: r, start: len(r.Raw), p: len(r.Raw)}
	for {
		chunk, err := s.br.ReadSlice('\n')
		if len(chunk) > 0 {
			s.offset += int64(len(chunk))
			if !ps.overflow && len(r.Raw)+len(chunk) > s.max {
				ps.overflow = true
				ps.problem(fmt.Sprintf("longer than %d bytes", s.max))
			}
			if !ps.overflow {
				r.Raw = append(r.Raw, chunk...)
			}
			if ps.feedPlain(chunk) {
				s.lines++
			} else {
				s.lines += int64(ps.feed(chunk))
			}
			if ps.ended {
				break
			}
		}
		if err == nil || errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != io.EOF {
			return nil, err
		}
		if ps.p == 0 {
			return nil, io.EOF
		}
		ps.eof()
		break
	}
	if ps.overflow {
		r.fields = r.fields[:0]
	}
	return r, nil
}
