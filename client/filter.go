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
	for attempt := 1; ; attempt++ {
		sum, retry, retryAfter, err := c.filterOnce(ctx, u, req.Gzip, in, out)
		if err == nil {
			return sum, nil
		}
		if !retry || attempt >= c.opts.MaxAttempts {
			return FilterSummary{}, opError("filter", err)
		}
		if werr := c.wait(ctx, attempt, retryAfter); werr != nil {
			return FilterSummary{}, opError("filter", fmt.Errorf("after %d attempts, %w: %w", attempt, werr, err))
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
	u := c.endpoint("v1/filter")
	u.RawQuery = q.Encode()
	return u.String()
}

// filterOnce makes one attempt. It reports a failure as retryable only if
// in was never read.
func (c *Client) filterOnce(ctx context.Context, u string, gz bool, in io.Reader, out io.Writer) (_ FilterSummary, retry bool, retryAfter time.Duration, err error) {
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
	req.Header.Set("Content-Type", "text/plain")
	req.Header.Set("Accept", "text/plain")
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
	sum, err := copyAllowed(ctx, resp.Body, out)
	return sum, false, 0, err
}

// copyAllowed copies allowed lines from the response to out and parses the
// closing summary line.
func copyAllowed(ctx context.Context, body io.Reader, out io.Writer) (FilterSummary, error) {
	bw := bufio.NewWriterSize(out, 32<<10)
	// Flushing out just before each read from the network keeps writes
	// to out large while still handing every line on before we wait for
	// more: a caller can consume output while the upload goes on.
	fr := &flushingReader{r: body, w: bw}
	br := bufio.NewReaderSize(fr, maxFilterLine)
	var lines int64
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
			continue
		}
		if err := bw.Flush(); err != nil {
			return FilterSummary{}, fmt.Errorf("write output: %w", err)
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

// parseSummary reads "# total=.. allowed=.. suppressed=.. malformed=.."
// or "# error=<code>".
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
	seen := 0
	for _, f := range fields {
		k, v, _ := strings.Cut(f, "=")
		dst, ok := want[k]
		if !ok {
			continue // a count added by a newer server
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return FilterSummary{}, fmt.Errorf("%w: summary line: bad %s", ErrIncomplete, k)
		}
		*dst = n
		seen++
	}
	if seen != len(want) {
		return FilterSummary{}, fmt.Errorf("%w: summary line %q lacks a count", ErrIncomplete, truncate(string(bytes.TrimSpace(line)), 128))
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
