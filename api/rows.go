package api

import (
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/suppressd/suppressd/audience"
	"github.com/suppressd/suppressd/suppression"
)

type rowsParams struct {
	ns       string
	send     suppression.Send
	platform string
	template *audience.Template
	mapping  audience.Mapping
	summary  bool
	progress bool
}

func parseRowsParams(r *http.Request) (rowsParams, error) {
	q := r.URL.Query()
	var p rowsParams
	name, specs := q.Get("template"), q["columns"]
	switch {
	case name != "" && len(specs) > 0:
		return p, badRequest("template", "give a template or columns, not both")
	case name != "":
		t, ok := audience.LookupTemplate(name)
		if !ok {
			return p, badRequest("template", "template %q: want one of %s", name, strings.Join(audience.TemplateNames(), ", "))
		}
		p.template, p.platform = &t, t.Platform
	case len(specs) > 0:
		m, err := audience.ParseColumns(specs...)
		if err != nil {
			return p, badRequest("columns", "columns: %v", err)
		}
		p.mapping = m
	default:
		return p, badRequest("template", "say which columns hold identifiers: template=%s, or columns=type:Header,...", strings.Join(audience.TemplateNames(), "|"))
	}
	platform, err := parsePlatform(q)
	if err != nil {
		return p, err
	}
	if platform != "" {
		p.platform = platform
	}
	if p.ns, p.send, err = parseSendQuery(q); err != nil {
		return p, err
	}
	if p.summary, err = parseBool(q, "summary"); err != nil {
		return p, err
	}
	p.progress, err = parseBool(q, "progress")
	return p, err
}

// filterRows streams an audience CSV through the suppression list: the
// header row, then every row that may be targeted, byte for byte and in
// order. A row is dropped when any match key of any of its identifiers is
// suppressed for the send, and when it cannot be read (counted malformed,
// with its line). The columns are known from the header before any row
// is read.
func (s *Server) filterRows(w http.ResponseWriter, r *http.Request) error {
	p, err := parseRowsParams(r)
	if err != nil {
		return err
	}
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "text/csv") &&
		!strings.HasPrefix(ct, "text/plain") && !strings.HasPrefix(ct, "application/octet-stream") {
		return &Error{Status: http.StatusUnsupportedMediaType, Code: "unsupported_media_type", Message: "send text/csv with a header row"}
	}
	// Answer at once, before reading further, when the header decides
	// (a 400): without full duplex net/http first tries to read up to
	// 256 KiB more of the body, so a client streaming its upload would
	// wait for the error until it had sent that much.
	_ = http.NewResponseController(w).EnableFullDuplex()
	body, closeBody, err := decodedBody(r)
	if err != nil {
		return err
	}
	defer closeBody()

	sc := audience.NewScanner(body, audience.DefaultMaxRecord)
	header, err := readHeader(sc)
	if err != nil {
		return err
	}
	names := make([]string, header.NumFields())
	for i := range names {
		names[i] = string(header.Field(i))
	}
	var layout *audience.Layout
	if p.template != nil {
		layout, err = p.template.Resolve(names)
		if err != nil {
			return badRequest("template", "%v", err)
		}
	} else if layout, err = p.mapping.Resolve(names); err != nil {
		return badRequest("columns", "columns: %v", err)
	}

	sp := &streamSpec{
		reader: &rowReader{sc: sc, layout: layout, norm: s.opts.Normalizer, keyer: s.opts.Keyer},
		ns:     p.ns, send: p.send,
		header:      func(h http.Header) { h.Set("Content-Type", "text/csv; charset=utf-8; header=present") },
		preamble:    append([]byte(nil), header.Raw...),
		summary:     p.summary || p.progress,
		progress:    p.progress,
		lineNumbers: true,
		trailers:    []string{trailerTotal, trailerAllowed, trailerSuppressed, trailerMalformed, trailerMalformedLines},
		metric:      s.m.rows, platform: p.platform,
	}
	if p.progress {
		// Rows may start with '#': a NUL, which no row that is echoed
		// holds (the scanner calls such a row malformed), marks the
		// lines the server adds.
		sp.control = "\x00"
	}
	_, err = s.stream(w, r, sp)
	return err
}

// readHeader reads the first record that is not blank.
func readHeader(sc *audience.Scanner) (*audience.Record, error) {
	for {
		rec, err := sc.Next()
		switch {
		case errors.Is(err, io.EOF):
			return nil, badRequest("", "the body is empty: send the CSV with its header row")
		case err != nil:
			return nil, badRequest("", "reading the body: %v", err)
		case rec.Blank():
			continue
		case rec.Problem != "":
			return nil, badRequest("", "the header row (line %d) is not valid CSV: %s", rec.Line, rec.Problem)
		}
		return rec, nil
	}
}

// rowReader reads the rows of an audience CSV after its header: blank
// lines are skipped, every other record is an item.
type rowReader struct {
	sc     *audience.Scanner
	layout *audience.Layout
	norm   suppression.Normalizer
	keyer  suppression.Keyer
	mks    []suppression.MatchKey
	sks    []suppression.StorageKey
}

func (rr *rowReader) pos() (int64, int64) { return rr.sc.Offset(), rr.sc.Lines() }

func (rr *rowReader) next(c *streamChunk) error {
	for {
		rec, err := rr.sc.Next()
		if err != nil {
			return err
		}
		if rec.Blank() {
			continue
		}
		var problem string
		rr.mks, problem = rr.layout.Keys(rr.norm, rec, rr.mks[:0])
		if problem != "" {
			c.add(false, rec.Line, nil)
			return nil
		}
		rr.sks = rr.keyer.StorageKeys(rr.sks[:0], rr.mks)
		c.add(true, rec.Line, rr.sks, rec.Raw)
		return nil
	}
}
