package api

import (
	"bufio"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/suppressd/suppressd/internal/httplimit"
	"github.com/suppressd/suppressd/suppression"
)

// The filters (/v1/filter, one hash per line, and /v1/filter/rows, CSV
// rows) share one pipeline:
//
//	body ─▶ itemReader ─▶ chunk ─┬─▶ lookup (store) ─┐
//	        (this goroutine)     ├─▶ lookup          ├─▶ writer: in input order,
//	                             └─▶ lookup          ┘   kept items' bytes as sent
//
// A reader goroutine parses items (a line or a row, with its storage keys)
// into chunks and starts each chunk's store lookup at once; up to
// filterInFlight lookups run while the handler writes finished chunks out
// in input order. Memory is bounded by the chunks in flight, each at most
// Options.FilterChunk items and about filterChunkBytes bytes, however
// long the stream.

// filterInFlight is how many chunks' lookups may run at once.
const filterInFlight = 3

// filterChunkBytes closes a chunk early when its items' bytes reach it, so
// that long rows cannot make a chunk large.
const filterChunkBytes = 1 << 20

// maxReportedLines is how many malformed rows' line numbers a row filter
// reports: enough to find what is wrong with a file, few enough for a
// trailer.
const maxReportedLines = 100

// Filter trailers, also repeated in the summary line.
const (
	trailerTotal          = "Suppressd-Total"
	trailerAllowed        = "Suppressd-Allowed"
	trailerSuppressed     = "Suppressd-Suppressed"
	trailerMalformed      = "Suppressd-Malformed"
	trailerMalformedLines = "Suppressd-Malformed-Lines"
)

// streamItem is one line or row of a filter stream.
type streamItem struct {
	off, end   int32 // its bytes as they are echoed, in the chunk's arena
	kFrom, kTo int32 // its storage keys, in the chunk's keys
	ok         bool  // false: malformed, never echoed
	line       int64 // the input line it starts on
}

// streamChunk is a run of items and what the store said of their keys.
type streamChunk struct {
	items []streamItem
	arena []byte
	keys  []suppression.StorageKey
	// inBytes and inLines are how far the input had been read once the
	// chunk's last item was: a checkpoint a client can resume from.
	inBytes, inLines int64

	recs []suppression.Record // set by lookup
	err  error                // set by lookup
	done chan struct{}        // closed by lookup
}

// newStreamChunk makes a chunk for n items, sized like the one before it
// (prev may be nil): a stream's items are much alike, and a chunk that
// grows its slices by doubling copies them over and over.
func newStreamChunk(n int, prev *streamChunk) *streamChunk {
	arena, keys := n*80, n
	if prev != nil {
		arena, keys = max(arena, min(len(prev.arena), filterChunkBytes)+len(prev.arena)/8), max(keys, len(prev.keys))
	}
	return &streamChunk{
		items: make([]streamItem, 0, n), arena: make([]byte, 0, arena),
		keys: make([]suppression.StorageKey, 0, keys), done: make(chan struct{}),
	}
}

// add appends an item: its keys (none for a malformed one) and, if it is
// well-formed, the bytes to echo should it be kept, given in parts.
func (c *streamChunk) add(ok bool, line int64, keys []suppression.StorageKey, echo ...[]byte) {
	it := streamItem{off: int32(len(c.arena)), kFrom: int32(len(c.keys)), ok: ok, line: line}
	if ok {
		for _, b := range echo {
			c.arena = append(c.arena, b...)
		}
		c.keys = append(c.keys, keys...)
	}
	it.end, it.kTo = int32(len(c.arena)), int32(len(c.keys))
	c.items = append(c.items, it)
}

func (c *streamChunk) full(maxItems int) bool {
	return len(c.items) >= maxItems || len(c.keys) >= maxItems || len(c.arena) >= filterChunkBytes
}

func (c *streamChunk) lookup(ctx context.Context, s *Server, ns string) {
	defer close(c.done)
	if len(c.keys) > 0 {
		c.recs, c.err = s.read(ctx, ns, c.keys)
	}
}

// itemReader parses a request body into items.
type itemReader interface {
	// next appends the next item to c, or returns io.EOF when there is
	// none, or the error reading the body.
	next(c *streamChunk) error
	// pos is how far the body has been read: bytes and line ends.
	pos() (bytes, lines int64)
}

// streamSpec is what one filter makes of the pipeline.
type streamSpec struct {
	reader   itemReader
	ns       string
	send     suppression.Send
	header   func(http.Header) // sets the Content-Type
	preamble []byte            // written before any item: the CSV's header row
	// summary ends the body with the summary line.
	summary bool
	// progress writes a checkpoint line after each chunk (see
	// writeCheckpoint).
	progress bool
	// control prefixes every line the server adds to the items' bytes
	// (summary, checkpoints, errors): "" for /v1/filter, whose items never
	// start with '#'; a NUL byte for rows, which may.
	control string
	// lineNumbers reports the lines of malformed items.
	lineNumbers bool
	trailers    []string
	metric      *prometheus.CounterVec
	platform    string
}

// streamCounts are what a filter stream did.
type streamCounts struct {
	total, allowed, suppressed, malformed int64
	malformedLines                        []int64
}

// decodedBody is the request body, gunzipped when Content-Encoding says so.
func decodedBody(r *http.Request) (io.Reader, func(), error) {
	switch enc := strings.ToLower(r.Header.Get("Content-Encoding")); enc {
	case "", "identity":
		return r.Body, func() {}, nil
	case "gzip":
		gz, err := gzip.NewReader(r.Body)
		if err != nil {
			return nil, nil, badRequest("", "the body is not gzip")
		}
		return gz, func() { _ = gz.Close() }, nil
	default:
		return nil, nil, &Error{Status: http.StatusUnsupportedMediaType, Code: "unsupported_media_type", Message: "Content-Encoding " + enc + " is not supported; use gzip or none"}
	}
}

// stream runs the pipeline and writes the answer. Until the first chunk is
// answered nothing is written, so a store failure then is a clean 503.
func (s *Server) stream(w http.ResponseWriter, r *http.Request, sp *streamSpec) (streamCounts, error) {
	// Read the request while the response streams (HTTP/1.1 does not by
	// default once the response has started).
	rc := http.NewResponseController(w)
	_ = rc.EnableFullDuplex()
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()

	ordered := make(chan *streamChunk, filterInFlight)
	var readErr error // set by the reader; read after ordered is closed
	go func() {
		defer close(ordered)
		c := newStreamChunk(s.opts.FilterChunk, nil)
		for {
			err := sp.reader.next(c)
			if err == nil {
				c.inBytes, c.inLines = sp.reader.pos()
			}
			// At the end of the body the last chunk is looked up; after a
			// failed read it is dropped: the upload broke, and a stream
			// that has not started yet can still be a clean 4xx.
			if len(c.items) > 0 && (errors.Is(err, io.EOF) || c.full(s.opts.FilterChunk)) {
				go c.lookup(ctx, s, sp.ns)
				select {
				case ordered <- c:
				case <-ctx.Done():
					return
				}
				c = newStreamChunk(s.opts.FilterChunk, c)
			}
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil {
				readErr = err
				return
			}
		}
	}()

	var (
		n       streamCounts
		started bool
		written int64 // bytes of the items' and preamble's, not the lines added
		endsNL  = true
		out     = bufio.NewWriterSize(w, 64<<10)
	)
	data := func(b []byte) {
		if len(b) > 0 {
			out.Write(b)
			written += int64(len(b))
			endsNL = b[len(b)-1] == '\n'
		}
	}
	start := func() {
		h := w.Header()
		sp.header(h)
		h.Set("Trailer", strings.Join(sp.trailers, ", "))
		h.Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(http.StatusOK)
		started = true
		data(sp.preamble)
	}
	fail := func(code string, err error) error {
		cancel()
		if !started {
			return err
		}
		fmt.Fprintf(out, "%s# error=%s\n", sp.control, code)
		_ = out.Flush()
		_ = rc.Flush()
		// The handler's instrument then cuts the connection: no last
		// chunk and no trailers, so that even a client that never looks
		// at the body's last line sees a broken transfer (curl exits
		// non-zero) rather than a shorter list that looks whole.
		return &streamAbort{reason: code, err: err}
	}
	reported := 0 // malformed lines already in a checkpoint
	checkpoint := func(inBytes, inLines int64) {
		fmt.Fprintf(out, "%s# at total=%d allowed=%d suppressed=%d malformed=%d in_bytes=%d in_lines=%d out_bytes=%d",
			sp.control, n.total, n.allowed, n.suppressed, n.malformed, inBytes, inLines, written)
		if len(n.malformedLines) > reported {
			fmt.Fprintf(out, " malformed_lines=%s", joinInts(n.malformedLines[reported:]))
			reported = len(n.malformedLines)
		}
		out.WriteByte('\n')
	}
	for c := range ordered {
		<-c.done
		if c.err != nil {
			if errors.Is(c.err, errClientGone) && started {
				// Nobody to tell: the client went away (and its read was
				// canceled), the store did not fail.
				cancel()
				return n, &streamAbort{reason: abortCanceled, err: c.err}
			}
			return n, fail(abortUnavailable, c.err) // nothing sent yet: a clean 503 (or 499)
		}
		if !started {
			start()
		}
		for _, it := range c.items {
			n.total++
			switch {
			case !it.ok:
				n.malformed++
				if sp.lineNumbers && len(n.malformedLines) < maxReportedLines {
					n.malformedLines = append(n.malformedLines, it.line)
				}
			case blocked(sp.send, c.recs[it.kFrom:it.kTo]):
				n.suppressed++
			default:
				n.allowed++
				data(c.arena[it.off:it.end])
			}
		}
		if sp.progress {
			checkpoint(c.inBytes, c.inLines)
		}
		if err := out.Flush(); err != nil {
			cancel()
			return n, &streamAbort{reason: abortWrite, err: err}
		}
		_ = rc.Flush()
	}
	if readErr != nil {
		err := badRequest("", "reading the body failed (a broken upload, or not gzip)")
		if httplimit.IsTimeout(readErr) {
			err = tooSlow(readErr)
		}
		if started {
			return n, fail(abortRead, err)
		}
		return n, err
	}
	if !started {
		start()
	}
	if sp.progress {
		checkpoint(sp.reader.pos())
	}
	if sp.metric != nil {
		sp.metric.WithLabelValues(sp.platform, "allowed").Add(float64(n.allowed))
		sp.metric.WithLabelValues(sp.platform, "suppressed").Add(float64(n.suppressed))
		sp.metric.WithLabelValues(sp.platform, "malformed").Add(float64(n.malformed))
	}
	lines := joinInts(n.malformedLines)
	if sp.summary {
		if !endsNL && sp.control == "" {
			out.WriteByte('\n') // the last row had no line end; the summary needs a line of its own
		}
		fmt.Fprintf(out, "%s# total=%d allowed=%d suppressed=%d malformed=%d", sp.control, n.total, n.allowed, n.suppressed, n.malformed)
		if lines != "" {
			fmt.Fprintf(out, " malformed_lines=%s", lines)
		}
		out.WriteByte('\n')
	}
	if err := out.Flush(); err != nil {
		return n, &streamAbort{reason: abortWrite, err: err}
	}
	h := w.Header()
	h.Set(trailerTotal, strconv.FormatInt(n.total, 10))
	h.Set(trailerAllowed, strconv.FormatInt(n.allowed, 10))
	h.Set(trailerSuppressed, strconv.FormatInt(n.suppressed, 10))
	h.Set(trailerMalformed, strconv.FormatInt(n.malformed, 10))
	if sp.lineNumbers && lines != "" {
		h.Set(trailerMalformedLines, lines)
	}
	return n, nil
}

// Reasons a stream was cut after its 200 went out, the reason label of
// suppressd_api_stream_aborts_total.
const (
	abortUnavailable = "unavailable" // the store failed mid-stream
	abortRead        = "read"        // the upload broke, or came too slowly
	abortWrite       = "write"       // the client stopped taking the answer
	abortCanceled    = "canceled"    // the client went away while the store was read
)

// streamAbort is a failure after the answer's status went out: the stream
// can only be cut (the handler's instrument does it and counts why).
type streamAbort struct {
	reason string
	err    error
}

func (e *streamAbort) Error() string { return "stream cut (" + e.reason + "): " + e.err.Error() }
func (e *streamAbort) Unwrap() error { return e.err }

// blocked applies the check rule to one item's records.
func blocked(send suppression.Send, recs []suppression.Record) bool {
	for _, rec := range recs {
		if rec != nil {
			_, b := suppression.Decide(send, recs)
			return b
		}
	}
	return false
}

func joinInts(ns []int64) string {
	var b strings.Builder
	for i, n := range ns {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatInt(n, 10))
	}
	return b.String()
}

// parseBool reads an optional boolean query parameter.
func parseBool(q map[string][]string, name string) (bool, error) {
	v := ""
	if vs := q[name]; len(vs) > 0 {
		v = vs[0]
	}
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, badRequest(name, "%s %q: want true or false", name, v)
	}
	return b, nil
}
