package api

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/suppressd/suppressd/suppression"
)

// maxFilterLine bounds one line of a filter stream; a SHA-256 is at most 64
// characters, so anything near this is malformed anyway.
const maxFilterLine = 1024

var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

type filterParams struct {
	ns       string
	kind     suppression.KeyKind
	idType   suppression.IDType
	platform string
	send     suppression.Send
	progress bool
}

// parseSendQuery reads what both filters share: the send (channel and
// purpose default to ads and advertising, as an audience upload is) and
// the namespace.
func parseSendQuery(q url.Values) (string, suppression.Send, error) {
	channel, purpose := q.Get("channel"), q.Get("purpose")
	if channel == "" {
		channel = string(suppression.ChannelAds)
	}
	if purpose == "" {
		purpose = string(suppression.PurposeAdvertising)
	}
	send, err := parseSend(channel, purpose, q.Get("topic"))
	if err != nil {
		return "", send, err
	}
	ns, err := parseNamespace("namespace", q.Get("namespace"))
	return ns, send, err
}

func parsePlatform(q url.Values) (string, error) {
	p := q.Get("platform")
	if p != "" && !slices.Contains(suppression.Platforms, p) {
		return "", badRequest("platform", "platform %q: want one of %s", p, strings.Join(suppression.Platforms, ", "))
	}
	return p, nil
}

func parseFilterParams(r *http.Request) (filterParams, error) {
	q := r.URL.Query()
	var p filterParams
	switch t := suppression.IDType(q.Get("type")); t {
	case suppression.IDEmailSHA256, suppression.IDPhoneSHA256:
		p.idType, p.kind = t, t.Kind()
	case "":
		return p, badRequest("type", "type is required: email_sha256 or phone_sha256")
	default:
		return p, badRequest("type", "type %q: want email_sha256 or phone_sha256", string(t))
	}
	var err error
	if p.platform, err = parsePlatform(q); err != nil {
		return p, err
	}
	if p.ns, p.send, err = parseSendQuery(q); err != nil {
		return p, err
	}
	p.progress, err = parseBool(q, "progress")
	return p, err
}

// filter streams a hashed list through the suppression list: every line
// that may be targeted comes back, in order, as it was sent. Memory is
// bounded by the chunks in flight, however long the list (see stream).
func (s *Server) filter(w http.ResponseWriter, r *http.Request) error {
	p, err := parseFilterParams(r)
	if err != nil {
		return err
	}
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "text/plain") && !strings.HasPrefix(ct, "application/octet-stream") {
		return &Error{Status: http.StatusUnsupportedMediaType, Code: "unsupported_media_type", Message: "send text/plain, one hash per line"}
	}
	body, closeBody, err := decodedBody(r)
	if err != nil {
		return err
	}
	defer closeBody()
	in := bufio.NewReaderSize(body, 64<<10)
	// A list saved by a spreadsheet starts with a UTF-8 byte order mark,
	// which would make its first line malformed; the importer drops it too.
	skipped := 0
	if b, err := in.Peek(3); err == nil && bytes.Equal(b, utf8BOM) {
		skipped, _ = in.Discard(3)
	}
	_, err = s.stream(w, r, &streamSpec{
		reader: &lineReader{in: in, p: p, keyer: s.opts.Keyer, bytes: int64(skipped)},
		ns:     p.ns, send: p.send,
		header:   func(h http.Header) { h.Set("Content-Type", "text/plain; charset=utf-8") },
		summary:  true,
		progress: p.progress,
		trailers: []string{trailerTotal, trailerAllowed, trailerSuppressed, trailerMalformed},
		metric:   s.m.filtered, platform: p.platform,
	})
	return err
}

// lineReader reads a filter stream's lines: a SHA-256 each, blank lines
// skipped.
type lineReader struct {
	in           *bufio.Reader
	p            filterParams
	keyer        suppression.Keyer
	bytes, lines int64
	eof          bool
}

func (lr *lineReader) pos() (int64, int64) { return lr.bytes, lr.lines }

func (lr *lineReader) next(c *streamChunk) error {
	for !lr.eof {
		line, tooLong, n, err := readLine(lr.in)
		lr.bytes += int64(n.bytes)
		if n.lineEnd {
			lr.lines++
		}
		if errors.Is(err, io.EOF) {
			lr.eof = true
		} else if err != nil {
			return err
		}
		if len(line) == 0 && !tooLong {
			continue
		}
		if !tooLong {
			if h, err := suppression.ParseSHA256(lr.p.idType, string(line)); err == nil {
				k := lr.keyer.StorageKey(suppression.MatchKey{Kind: lr.p.kind, Hash: h})
				c.add(true, lr.lines, []suppression.StorageKey{k}, line, newline)
				return nil
			}
		}
		c.add(false, lr.lines, nil)
		return nil
	}
	return io.EOF
}

var newline = []byte{'\n'}

// consumed is what readLine took from the input.
type consumed struct {
	bytes   int
	lineEnd bool
}

// readLine returns the next line without its end and surrounding spaces,
// and what it took. A line longer than maxFilterLine is skipped and
// reported as tooLong (it is counted malformed, and never echoed).
func readLine(in *bufio.Reader) (line []byte, tooLong bool, n consumed, err error) {
	line, err = in.ReadSlice('\n')
	n.bytes = len(line)
	if err == bufio.ErrBufferFull || len(line) > maxFilterLine {
		for err == bufio.ErrBufferFull {
			line, err = in.ReadSlice('\n')
			n.bytes += len(line)
		}
		n.lineEnd = err == nil
		return nil, true, n, err
	}
	n.lineEnd = err == nil
	return bytes.TrimSpace(line), false, n, err
}
