package api

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/suppressd/suppressd/suppression"
)

// maxFilterLine bounds one line of a filter stream; a SHA-256 is at most 64
// characters, so anything near this is malformed anyway.
const maxFilterLine = 1024

// Filter trailers, also repeated in the summary line.
const (
	trailerTotal      = "Suppressd-Total"
	trailerAllowed    = "Suppressd-Allowed"
	trailerSuppressed = "Suppressd-Suppressed"
	trailerMalformed  = "Suppressd-Malformed"
)

type filterParams struct {
	ns       string
	kind     suppression.KeyKind
	idType   suppression.IDType
	platform string
	send     suppression.Send
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
	p.platform = q.Get("platform")
	if p.platform != "" && !slices.Contains(suppression.Platforms, p.platform) {
		return p, badRequest("platform", "platform %q: want one of %s", p.platform, strings.Join(suppression.Platforms, ", "))
	}
	channel, purpose := q.Get("channel"), q.Get("purpose")
	if channel == "" {
		channel = string(suppression.ChannelAds)
	}
	if purpose == "" {
		purpose = string(suppression.PurposeAdvertising)
	}
	var err error
	if p.send, err = parseSend(channel, purpose, q.Get("topic")); err != nil {
		return p, err
	}
	p.ns, err = parseNamespace("namespace", q.Get("namespace"))
	return p, err
}

// filter streams a hashed list through the suppression list: every line
// that may be targeted comes back, in order, as it was sent. Memory is
// bounded by one chunk of lines, however long the list.
func (s *Server) filter(w http.ResponseWriter, r *http.Request) error {
	p, err := parseFilterParams(r)
	if err != nil {
		return err
	}
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "text/plain") && !strings.HasPrefix(ct, "application/octet-stream") {
		return &Error{Status: http.StatusUnsupportedMediaType, Code: "unsupported_media_type", Message: "send text/plain, one hash per line"}
	}
	body := io.Reader(r.Body)
	switch enc := strings.ToLower(r.Header.Get("Content-Encoding")); enc {
	case "", "identity":
	case "gzip":
		gz, err := gzip.NewReader(r.Body)
		if err != nil {
			return badRequest("", "the body is not gzip")
		}
		defer gz.Close()
		body = gz
	default:
		return &Error{Status: http.StatusUnsupportedMediaType, Code: "unsupported_media_type", Message: "Content-Encoding " + enc + " is not supported; use gzip or none"}
	}
	// Read the request while the response streams (HTTP/1.1 does not by
	// default once the response has started).
	rc := http.NewResponseController(w)
	_ = rc.EnableFullDuplex()

	in := bufio.NewReaderSize(body, 64<<10)
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()

	// Three stages: this goroutine reads and parses chunks of lines and
	// starts each chunk's store lookup at once; up to filterInFlight lookups
	// run while the handler writes finished chunks out, in input order.
	// Memory is bounded by the chunks in flight.
	ordered := make(chan *filterChunk, filterInFlight)
	var (
		total, malformed int   // set by the reader; read after ordered is closed
		readErr          error // likewise
	)
	go func() {
		defer close(ordered)
		c := newFilterChunk(s.opts.FilterChunk)
		for {
			line, tooLong, err := readLine(in)
			if len(line) > 0 || tooLong {
				total++
				if !c.add(line, tooLong, p, s.opts.Keyer) {
					malformed++
				}
			}
			if len(c.lines) == s.opts.FilterChunk || (err != nil && len(c.lines) > 0) {
				go c.lookup(ctx, s, p.ns)
				select {
				case ordered <- c:
				case <-ctx.Done():
					return
				}
				c = newFilterChunk(s.opts.FilterChunk)
			}
			if err == io.EOF {
				return
			}
			if err != nil {
				readErr = err
				return
			}
		}
	}()

	var (
		allowed, suppressed int
		started             bool
		out                 = bufio.NewWriterSize(w, 64<<10)
	)
	start := func() {
		h := w.Header()
		h.Set("Content-Type", "text/plain; charset=utf-8")
		h.Set("Trailer", strings.Join([]string{trailerTotal, trailerAllowed, trailerSuppressed, trailerMalformed}, ", "))
		h.Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(http.StatusOK)
		started = true
	}
	for c := range ordered {
		<-c.done
		if c.err != nil {
			cancel()
			if !started {
				return c.err // nothing sent yet: a clean 503
			}
			_, _ = out.WriteString("# error=unavailable\n")
			_ = out.Flush()
			return c.err
		}
		if !started {
			start()
		}
		ki := 0
		for i, line := range c.lines {
			if !c.valid[i] {
				continue
			}
			rec := c.recs[ki : ki+1]
			ki++
			if rec[0] != nil {
				if _, blocked := suppression.Decide(p.send, rec); blocked {
					suppressed++
					continue
				}
			}
			allowed++
			out.Write(line)
			out.WriteByte('\n')
		}
		if err := out.Flush(); err != nil {
			cancel()
			return err
		}
		_ = rc.Flush()
	}
	if readErr != nil {
		if started {
			_, _ = out.WriteString("# error=read\n")
			_ = out.Flush()
		}
		return badRequest("", "reading the body: %v", readErr)
	}
	if !started {
		start()
	}
	s.m.filtered.WithLabelValues(p.platform, "allowed").Add(float64(allowed))
	s.m.filtered.WithLabelValues(p.platform, "suppressed").Add(float64(suppressed))
	s.m.filtered.WithLabelValues(p.platform, "malformed").Add(float64(malformed))
	fmt.Fprintf(out, "# total=%d allowed=%d suppressed=%d malformed=%d\n", total, allowed, suppressed, malformed)
	if err := out.Flush(); err != nil {
		return err
	}
	h := w.Header()
	h.Set(trailerTotal, strconv.Itoa(total))
	h.Set(trailerAllowed, strconv.Itoa(allowed))
	h.Set(trailerSuppressed, strconv.Itoa(suppressed))
	h.Set(trailerMalformed, strconv.Itoa(malformed))
	return nil
}

// filterInFlight is how many chunks' lookups may run at once.
const filterInFlight = 3

// filterChunk is a run of lines of a filter stream and what the store said
// of them.
type filterChunk struct {
	lines [][]byte // each line as sent, trimmed
	arena []byte   // the lines' bytes
	valid []bool
	keys  []suppression.StorageKey // of the valid lines, in order
	recs  []suppression.Record     // set by lookup
	err   error                    // set by lookup
	done  chan struct{}            // closed by lookup
}

func newFilterChunk(n int) *filterChunk {
	return &filterChunk{
		lines: make([][]byte, 0, n), arena: make([]byte, 0, n*72), valid: make([]bool, 0, n),
		keys: make([]suppression.StorageKey, 0, n), done: make(chan struct{}),
	}
}

// add parses one line; false if it is malformed.
func (c *filterChunk) add(line []byte, tooLong bool, p filterParams, keyer suppression.Keyer) bool {
	ok := false
	if !tooLong {
		if h, err := suppression.ParseSHA256(p.idType, string(line)); err == nil {
			c.keys = append(c.keys, keyer.StorageKey(suppression.MatchKey{Kind: p.kind, Hash: h}))
			ok = true
		}
	}
	off := len(c.arena)
	c.arena = append(c.arena, line...)
	c.lines = append(c.lines, c.arena[off:len(c.arena):len(c.arena)])
	c.valid = append(c.valid, ok)
	return ok
}

func (c *filterChunk) lookup(ctx context.Context, s *Server, ns string) {
	defer close(c.done)
	if len(c.keys) > 0 {
		c.recs, c.err = s.read(ctx, ns, c.keys)
	}
}

// readLine returns the next line without its end and surrounding spaces. A
// line longer than maxFilterLine is skipped and reported as tooLong (it is
// counted malformed, and never echoed).
func readLine(in *bufio.Reader) (line []byte, tooLong bool, err error) {
	line, err = in.ReadSlice('\n')
	if err == bufio.ErrBufferFull || len(line) > maxFilterLine {
		for err == bufio.ErrBufferFull {
			_, err = in.ReadSlice('\n')
		}
		return nil, true, err
	}
	return bytes.TrimSpace(line), false, err
}
