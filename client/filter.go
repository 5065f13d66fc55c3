package client

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// maxFilterLine bounds one response line. Allowed lines are hashes of at
// most 64 characters, so anything this long means the peer is not a
// suppressd filter stream.
const maxFilterLine = 64 << 10

// Filter streams in, one SHA-256 per line (hex or base64, see docs/api.md),
// through /v1/filter and copies the lines that may be targeted to out,
// unchanged and in input order, as they arrive. It returns the server's
// summary; the summary line itself is not written to out.
//
// Memory use is constant whatever the size of in: the upload and the
// download are both streamed.
//
// IMPORTANT: if the error is non-nil, out holds at most a prefix of the
// allowed lines and must be discarded, never uploaded: uploading it would
// be harmless only by luck, and a truncated audience is wrong anyway. In
// particular a stream that ends without the summary line, or with
// "# error=...", is an error matching ErrIncomplete (and ErrUnavailable
// for "# error=unavailable"), as is a summary whose allowed count differs
// from the lines received.
//
// Filter has no timeout of its own; ctx bounds it. It is retried like
// Check only while in has not been read at all (a refused connection, say),
// because a stream cannot be replayed; once reading in has begun, a failure
// is returned as is and the caller should start over with a fresh in and
// out. Filter does not read in after it returns, except that when ctx ends
// while a Read on in is blocked, that Read is left to finish on its own.
func (c *Client) Filter(ctx context.Context, req FilterRequest, in io.Reader, out io.Writer) (FilterSummary, error) {
	switch {
	case req.Type == "":
		return FilterSummary{}, opError("filter", errors.New("Type is required"))
	case in == nil || out == nil:
		return FilterSummary{}, opError("filter", errors.New("in and out are required"))
	}
	u := c.filterURL(req)
	copyOut := func(ctx context.Context, body io.Reader, out io.Writer) (FilterSummary, error) {
		return copyAllowed(ctx, body, out, req.Checkpoint)
	}
	return c.stream(ctx, "filter", u, "text/plain", req.Gzip, in, out, copyOut)
}

// FilterRows streams in, a CSV audience with a header row (see
// docs/api.md), through /v1/filter/rows and copies the header row and the
// rows that may be targeted to out, byte for byte and in input order, as
// they arrive. It returns the server's summary, with the lines of the
// first malformed rows; the server's own lines are not written to out.
//
// Which columns hold identifiers is req.Template's (a platform's
// documented headers) or req.Columns'. A header row that does not fit is
// an *APIError (ErrInvalidRequest) naming the columns, returned before
// any row is sent back.
//
// As with Filter, memory use is constant whatever the size of in, the
// stream is retried only while in has not been read, and when the error
// is non-nil out holds at most a prefix of the answer and must be
// discarded, never uploaded (ErrIncomplete, and ErrUnavailable when the
// store failed mid-stream). The stream's completeness is checked against
// the server's checkpoints to the byte.
func (c *Client) FilterRows(ctx context.Context, req FilterRowsRequest, in io.Reader, out io.Writer) (FilterSummary, error) {
	switch {
	case (req.Template == "") == (len(req.Columns) == 0):
		return FilterSummary{}, opError("filter rows", errors.New("give Template or Columns, one of them"))
	case in == nil || out == nil:
		return FilterSummary{}, opError("filter rows", errors.New("in and out are required"))
	}
	var cols []string
	for _, col := range req.Columns {
		if col.Type == "" || col.Header == "" || strings.Contains(col.Header, ",") {
			return FilterSummary{}, opError("filter rows", fmt.Errorf("column %q: want a type and a header without commas", col.Header))
		}
		cols = append(cols, col.Type+":"+col.Header)
	}
	q := url.Values{}
	for k, v := range map[string]string{
		"template":  req.Template,
		"columns":   strings.Join(cols, ","),
		"platform":  req.Platform,
		"channel":   req.Channel,
		"purpose":   req.Purpose,
		"topic":     req.Topic,
		"namespace": req.Namespace,
	} {
		if v != "" {
			q.Set(k, v)
		}
	}
	// The checkpoints, and the summary, come on NUL-prefixed lines that
	// no row can be mistaken for.
	q.Set("progress", "true")
	u := c.endpoint("v1/filter/rows")
	u.RawQuery = q.Encode()
	copyOut := func(ctx context.Context, body io.Reader, out io.Writer) (FilterSummary, error) {
		return copyRows(ctx, body, out, req.Checkpoint)
	}
	return c.stream(ctx, "filter rows", u.String(), "text/csv", req.Gzip, in, out, copyOut)
}

// copyFunc copies a filter answer to out and returns its summary.
type copyFunc func(ctx context.Context, body io.Reader, out io.Writer) (FilterSummary, error)

// stream sends in to u and copies the answer, retrying as Filter says.
func (c *Client) stream(ctx context.Context, op, u, contentType string, gz bool, in io.Reader, out io.Writer, copyOut copyFunc) (FilterSummary, error) {
	for attempt := 1; ; attempt++ {
		sum, retry, retryAfter, err := c.filterOnce(ctx, u, contentType, gz, in, out, copyOut)
		if err == nil {
			return sum, nil
		}
		if !retry || attempt >= c.opts.MaxAttempts {
			return FilterSummary{}, opError(op, err)
		}
		if werr := c.wait(ctx, attempt, retryAfter); werr != nil {
			return FilterSummary{}, opError(op, fmt.Errorf("after %d attempts, %w: %w", attempt, werr, err))
		}
	}
}

func (c *Client) filterURL(req FilterRequest) string {
	q := url.Values{}
	q.Set("type", req.Type)
	for k, v := range map[string]string{
		"platform":  req.Platform,
		"channel":   req.Channel,
		"purpose":   req.Purpose,
		"topic":     req.Topic,
		"namespace": req.Namespace,
	} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if req.Checkpoint != nil {
		q.Set("progress", "true")
	}
	u := c.endpoint("v1/filter")
	u.RawQuery = q.Encode()
	return u.String()
}

// filterOnce makes one attempt. It reports a failure as retryable only if
// in was never read.
func (c *Client) filterOnce(ctx context.Context, u, contentType string, gz bool, in io.Reader, out io.Writer, copyOut copyFunc) (_ FilterSummary, retry bool, retryAfter time.Duration, err error) {
	body := newInputBody(in, gz)
	defer func() {
		// Stop the upload before returning so that in is not read
		// behind the caller's back, and report a failure to read in
		// as the cause, since everything else follows from it.
		started, inErr := body.stop(ctx)
		if inErr != nil {
			err = fmt.Errorf("read input: %w", inErr)
		}
		if started {
			retry = false
		}
	}()

	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, body)
	if err != nil {
		return FilterSummary{}, false, 0, fmt.Errorf("build request: %w", err)
	}
	req.ContentLength = -1 // chunked: the size is not known up front
	c.setHeaders(req)
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Accept", contentType)
	if gz {
		req.Header.Set("Content-Encoding", "gzip")
	}

	resp, err := c.opts.HTTPClient.Do(req)
	if err != nil {
		retry, _, err = c.transportError(ctx, err)
		return FilterSummary{}, retry, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		apiErr := readAPIError(resp)
		return FilterSummary{}, resp.StatusCode == http.StatusServiceUnavailable, apiErr.RetryAfter, apiErr
	}
	sum, err := copyOut(ctx, resp.Body, out)
	return sum, false, 0, err
}

// copyAllowed copies allowed lines from the response to out, reports its
// checkpoints, and parses the closing summary line.
func copyAllowed(ctx context.Context, body io.Reader, out io.Writer, checkpoint func(FilterCheckpoint)) (FilterSummary, error) {
	bw := bufio.NewWriterSize(out, 32<<10)
	// Flushing out just before each read from the network keeps writes
	// to out large while still handing every line on before we wait for
	// more: a caller can consume output while the upload goes on.
	fr := &flushingReader{r: body, w: bw}
	br := bufio.NewReaderSize(fr, maxFilterLine)
	var lines, written int64
	for {
		line, err := br.ReadSlice('\n')
		switch {
		case fr.werr != nil:
			return FilterSummary{}, fmt.Errorf("write output: %w", fr.werr)
		case errors.Is(err, bufio.ErrBufferFull):
			return FilterSummary{}, fmt.Errorf("response line longer than %d bytes", maxFilterLine)
		case errors.Is(err, io.EOF):
			// A last line without its newline is cut short; it is
			// not written, since it may be half a hash.
			_ = bw.Flush()
			return FilterSummary{}, fmt.Errorf("%w: stream ended after %d lines without a summary", ErrIncomplete, lines)
		case err != nil:
			_ = bw.Flush()
			if ctx.Err() != nil {
				return FilterSummary{}, fmt.Errorf("%w: %w", ErrIncomplete, err)
			}
			return FilterSummary{}, fmt.Errorf("%w: %w: read response: %w", ErrIncomplete, ErrUnavailable, err)
		}
		if line[0] != '#' {
			if _, err := bw.Write(line); err != nil {
				return FilterSummary{}, fmt.Errorf("write output: %w", err)
			}
			lines++
			written += int64(len(line))
			continue
		}
		if err := bw.Flush(); err != nil {
			return FilterSummary{}, fmt.Errorf("write output: %w", err)
		}
		if bytes.HasPrefix(line, checkpointPrefix) {
			cp, err := parseCheckpoint(line)
			if err != nil {
				return FilterSummary{}, err
			}
			if cp.Allowed != lines || cp.OutputBytes != written {
				return FilterSummary{}, fmt.Errorf("%w: checkpoint says allowed=%d out_bytes=%d but %d lines, %d bytes arrived", ErrIncomplete, cp.Allowed, cp.OutputBytes, lines, written)
			}
			if checkpoint != nil {
				checkpoint(cp)
			}
			continue
		}
		sum, err := parseSummary(line)
		if err != nil {
			return FilterSummary{}, err
		}
		if sum.Allowed != lines {
			return FilterSummary{}, fmt.Errorf("%w: summary says allowed=%d but %d lines arrived", ErrIncomplete, sum.Allowed, lines)
		}
		// The summary must be the last line; anything after it means
		// we misread the stream.
		if _, err := br.ReadByte(); err == nil {
			return FilterSummary{}, errors.New("data after the summary line")
		}
		return sum, nil
	}
}

// copyRows copies a /v1/filter/rows answer (progress=true) to out: the
// CSV bytes as they come, and the server's own lines, which start with a
// NUL byte, parsed. Every checkpoint says how many CSV bytes came before
// it, so a stream that lost or gained a byte is caught.
func copyRows(ctx context.Context, body io.Reader, out io.Writer, checkpoint func(FilterCheckpoint)) (FilterSummary, error) {
	bw := bufio.NewWriterSize(out, 32<<10)
	fr := &flushingReader{r: body, w: bw}
	br := bufio.NewReaderSize(fr, maxFilterLine)
	var (
		written int64
		last    *FilterCheckpoint
	)
	for {
		data, err := br.ReadSlice(0)
		control := len(data) > 0 && data[len(data)-1] == 0
		if control {
			data = data[:len(data)-1]
		}
		if len(data) > 0 {
			if _, werr := bw.Write(data); werr != nil {
				return FilterSummary{}, fmt.Errorf("write output: %w", werr)
			}
			written += int64(len(data))
		}
		if fr.werr != nil {
			return FilterSummary{}, fmt.Errorf("write output: %w", fr.werr)
		}
		if !control {
			switch {
			case errors.Is(err, bufio.ErrBufferFull):
				continue
			case errors.Is(err, io.EOF):
				_ = bw.Flush()
				return FilterSummary{}, fmt.Errorf("%w: stream ended after %d bytes without a summary", ErrIncomplete, written)
			case ctx.Err() != nil:
				_ = bw.Flush()
				return FilterSummary{}, fmt.Errorf("%w: %w", ErrIncomplete, err)
			default:
				_ = bw.Flush()
				return FilterSummary{}, fmt.Errorf("%w: %w: read response: %w", ErrIncomplete, ErrUnavailable, err)
			}
		}
		line, err := br.ReadSlice('\n')
		if err != nil {
			_ = bw.Flush()
			if errors.Is(err, bufio.ErrBufferFull) {
				return FilterSummary{}, fmt.Errorf("response line longer than %d bytes", maxFilterLine)
			}
			return FilterSummary{}, fmt.Errorf("%w: %w: the stream broke inside a line of the server's", ErrIncomplete, ErrUnavailable)
		}
		if err := bw.Flush(); err != nil {
			return FilterSummary{}, fmt.Errorf("write output: %w", err)
		}
		if bytes.HasPrefix(line, checkpointPrefix) {
			cp, err := parseCheckpoint(line)
			if err != nil {
				return FilterSummary{}, err
			}
			if cp.OutputBytes != written {
				return FilterSummary{}, fmt.Errorf("%w: checkpoint says out_bytes=%d but %d bytes arrived", ErrIncomplete, cp.OutputBytes, written)
			}
			last = &cp
			if checkpoint != nil {
				checkpoint(cp)
			}
			continue
		}
		sum, err := parseSummary(line)
		if err != nil {
			return FilterSummary{}, err
		}
		if last == nil || last.OutputBytes != written || last.Allowed != sum.Allowed || last.Total != sum.Total {
			return FilterSummary{}, fmt.Errorf("%w: the summary does not match the last checkpoint", ErrIncomplete)
		}
		if _, err := br.ReadByte(); err == nil {
			return FilterSummary{}, errors.New("data after the summary line")
		}
		return sum, nil
	}
}

var checkpointPrefix = []byte("# at ")

// parseCheckpoint reads "# at total=.. allowed=.. suppressed=..
// malformed=.. in_bytes=.. in_lines=.. out_bytes=..".
func parseCheckpoint(line []byte) (FilterCheckpoint, error) {
	var cp FilterCheckpoint
	want := map[string]*int64{
		"total": &cp.Total, "allowed": &cp.Allowed, "suppressed": &cp.Suppressed, "malformed": &cp.Malformed,
		"in_bytes": &cp.InputBytes, "in_lines": &cp.InputLines, "out_bytes": &cp.OutputBytes,
	}
	rest := bytes.TrimPrefix(line, checkpointPrefix)
	if err := parseCounts(rest, want); err != nil {
		return FilterCheckpoint{}, fmt.Errorf("%w: checkpoint line: %w", ErrIncomplete, err)
	}
	var err error
	if cp.MalformedLines, err = parseLines(rest); err != nil {
		return FilterCheckpoint{}, fmt.Errorf("%w: checkpoint line: %w", ErrIncomplete, err)
	}
	return cp, nil
}

// parseLines reads the optional malformed_lines=3,17 field.
func parseLines(line []byte) ([]int64, error) {
	var out []int64
	for _, f := range strings.Fields(string(line)) {
		v, ok := strings.CutPrefix(f, "malformed_lines=")
		if !ok {
			continue
		}
		for _, n := range strings.Split(v, ",") {
			l, err := strconv.ParseInt(n, 10, 64)
			if err != nil || l <= 0 {
				return nil, errors.New("bad malformed_lines")
			}
			out = append(out, l)
		}
	}
	return out, nil
}

// parseCounts reads name=value fields into want; every one must be there.
// Names it does not know are skipped: counts added by a newer server.
func parseCounts(line []byte, want map[string]*int64) error {
	seen := 0
	for _, f := range strings.Fields(string(line)) {
		k, v, _ := strings.Cut(f, "=")
		dst, ok := want[k]
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return fmt.Errorf("bad %s", k)
		}
		*dst = n
		seen++
	}
	if seen != len(want) {
		return fmt.Errorf("%q lacks a count", truncate(string(bytes.TrimSpace(line)), 128))
	}
	return nil
}

// parseSummary reads "# total=.. allowed=.. suppressed=.. malformed=.."
// (and, for rows, " malformed_lines=3,17") or "# error=<code>".
func parseSummary(line []byte) (FilterSummary, error) {
	fields := strings.Fields(string(bytes.TrimPrefix(line, []byte("#"))))
	if len(fields) > 0 {
		if code, ok := strings.CutPrefix(fields[0], "error="); ok {
			code = truncate(code, 64)
			if code == CodeUnavailable {
				return FilterSummary{}, fmt.Errorf("%w: %w: server reported error=%s", ErrIncomplete, ErrUnavailable, code)
			}
			return FilterSummary{}, fmt.Errorf("%w: server reported error=%s", ErrIncomplete, code)
		}
	}
	var sum FilterSummary
	want := map[string]*int64{
		"total":      &sum.Total,
		"allowed":    &sum.Allowed,
		"suppressed": &sum.Suppressed,
		"malformed":  &sum.Malformed,
	}
	if err := parseCounts(line, want); err != nil {
		return FilterSummary{}, fmt.Errorf("%w: summary line: %w", ErrIncomplete, err)
	}
	var err error
	if sum.MalformedLines, err = parseLines(line); err != nil {
		return FilterSummary{}, fmt.Errorf("%w: summary line: %w", ErrIncomplete, err)
	}
	return sum, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// flushingReader flushes w before every read from r, that is before we
// may block waiting for the network.
type flushingReader struct {
	r    io.Reader
	w    *bufio.Writer
	werr error
}

func (f *flushingReader) Read(p []byte) (int, error) {
	if f.w.Buffered() > 0 {
		if err := f.w.Flush(); err != nil {
			f.werr = err
			return 0, err
		}
	}
	return f.r.Read(p)
}

// inputBody is the request body of a filter upload: in, optionally
// gzipped, pumped through a pipe by a goroutine. The goroutine starts on
// the transport's first Read, so that a request that fails before sending
// anything (a refused connection) leaves in untouched and can be retried.
type inputBody struct {
	src io.Reader
	gz  bool
	pr  *io.PipeReader
	pw  *io.PipeWriter

	mu      sync.Mutex
	started bool
	stopped bool

	done  chan struct{} // closed when pump returns
	inErr error         // a failure reading src; written before done closes
}

func newInputBody(src io.Reader, gz bool) *inputBody {
	pr, pw := io.Pipe()
	return &inputBody{src: src, gz: gz, pr: pr, pw: pw, done: make(chan struct{})}
}

func (b *inputBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	if !b.started && !b.stopped {
		b.started = true
		go b.pump()
	}
	b.mu.Unlock()
	return b.pr.Read(p)
}

// Close is called by the transport; it unblocks pump.
func (b *inputBody) Close() error {
	return b.pr.Close()
}

// errUploadStopped is what pump sees when the request is over before in
// was fully sent.
var errUploadStopped = errors.New("filter request finished")

// stop ends the upload and waits for pump, unless ctx ends first (pump
// may be blocked in src.Read, which nothing can interrupt). It reports
// whether src was ever read and any error reading it.
func (b *inputBody) stop(ctx context.Context) (started bool, inErr error) {
	b.mu.Lock()
	b.stopped = true
	started = b.started
	b.mu.Unlock()
	b.pr.CloseWithError(errUploadStopped)
	if !started {
		return false, nil
	}
	select {
	case <-b.done:
		return true, b.inErr
	case <-ctx.Done():
		return true, nil
	}
}

func (b *inputBody) pump() {
	defer close(b.done)
	src := &errRecorder{r: b.src}
	var err error
	if b.gz {
		// Hashes are random: there are no repeated strings for LZ77 to
		// find, so Huffman coding alone compresses as well as the default
		// level (about half, for hex) at a tenth of the CPU.
		zw, _ := gzip.NewWriterLevel(b.pw, gzip.HuffmanOnly) // the level is valid
		_, err = io.Copy(zw, src)
		if cerr := zw.Close(); err == nil {
			err = cerr
		}
	} else {
		_, err = io.Copy(b.pw, src)
	}
	b.inErr = src.err
	b.pw.CloseWithError(err) // nil: the server sees the end of the body
}

// errRecorder remembers a failure of r, to tell it apart from a failure
// to send. It also hides any WriterTo of r so io.Copy reads in chunks.
type errRecorder struct {
	r   io.Reader
	err error
}

func (e *errRecorder) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		e.err = err
	}
	return n, err
}
