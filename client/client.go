package client

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Defaults applied by [New] to zero fields of [Options].
const (
	DefaultTimeout          = 2 * time.Second
	DefaultBatchTimeout     = 10 * time.Second
	DefaultMaxAttempts      = 3
	DefaultBackoffBase      = 100 * time.Millisecond
	DefaultBackoffCap       = 2 * time.Second
	DefaultBatchConcurrency = 1
	// MaxBatchSize is the server's limit of contacts per batch request.
	MaxBatchSize = 10000
	// DefaultBatchSize is the default Options.BatchSize: small enough that
	// a chunk stays under the server's match-key limit (50,000 by default)
	// unless its contacts carry dozens of Gmail addresses each, and then a
	// 413 is split anyway.
	DefaultBatchSize = 1000
)

// Response size limits: far above what the server sends, low enough that
// a broken peer cannot make the client buffer without bound.
const (
	maxCheckResponse = 1 << 20
	maxBatchResponse = 64 << 20
)

// Options configures a [Client]. The zero value is safe: every zero field
// takes the default documented on it.
type Options struct {
	// HTTPClient sends the requests. Default: a client of its own with a
	// clone of http.DefaultTransport allowing 64 idle connections per host
	// and no overall timeout (Filter streams for as long as it takes). A
	// Timeout set on a client passed here applies to Filter as well.
	HTTPClient *http.Client

	// Timeout bounds each attempt of Check: connecting, sending and
	// reading the answer. Default 2s. The ctx passed to Check bounds the
	// whole call, retries included.
	Timeout time.Duration
	// BatchTimeout bounds each attempt of each request CheckBatch and
	// Links send (up to BatchSize contacts or LinksBatchSize recipients).
	// Default 10s.
	BatchTimeout time.Duration

	// MaxAttempts is how many times Check, CheckBatch and Links send a
	// request before giving up; 1 disables retries. Default 3. Only a 503
	// and a failure to connect or to read the answer are retried; a 4xx
	// never is, since sending it again cannot change the answer. Filter
	// retries only when its input has not been read yet (see
	// Client.Filter).
	MaxAttempts int
	// BackoffBase is the first retry's maximum wait; each further retry
	// doubles it up to BackoffCap. The actual wait is drawn uniformly from
	// [0, that maximum] ("full jitter") so that many clients recovering
	// from the same outage do not retry in lockstep. Default 100ms.
	BackoffBase time.Duration
	// BackoffCap caps every wait between attempts, including a server's
	// Retry-After, which is otherwise honoured as sent. Default 2s.
	BackoffCap time.Duration

	// BatchSize is the largest number of contacts CheckBatch puts in one
	// request. Default DefaultBatchSize, at most MaxBatchSize (the
	// server's limit). A request the server finds too large (413: too many
	// match keys, or over its body limit) is split in halves and sent
	// again, down to single contacts.
	BatchSize int
	// LinksBatchSize is the largest number of recipients Links puts in one
	// request. Default and maximum MaxBatchSize (the server's limit):
	// minting reads no match keys, so a large request costs the server no
	// more than several small ones. A 413 (over the server's body limit)
	// is split in halves as for CheckBatch.
	LinksBatchSize int
	// BatchConcurrency is how many requests CheckBatch and Links have in
	// flight at once. Default 1 (sequential).
	BatchConcurrency int

	// FailOpen is DANGEROUS: it makes Check and CheckBatch answer
	// Allowed=true when the service is unavailable (see ErrUnavailable),
	// which means mailing or targeting people who opted out for as long
	// as an outage lasts — the very thing this service exists to prevent,
	// and a legal liability. Use it only where a missed send is worse than
	// an unwanted one, and never for marketing. Errors that are not
	// outages (400, 401, 403, 413, a cancelled ctx, a malformed response)
	// fail closed even with FailOpen; the ctx's deadline passing while
	// waiting for the server counts as an outage, so a bad key or a bug cannot turn
	// into "everyone may be mailed". Default false.
	FailOpen bool
}

// withDefaults validates o and fills in its zero fields.
func (o Options) withDefaults() (Options, error) {
	switch {
	case o.Timeout < 0:
		return o, fmt.Errorf("Timeout %s: must not be negative", o.Timeout)
	case o.BatchTimeout < 0:
		return o, fmt.Errorf("BatchTimeout %s: must not be negative", o.BatchTimeout)
	case o.MaxAttempts < 0:
		return o, fmt.Errorf("MaxAttempts %d: must not be negative", o.MaxAttempts)
	case o.BackoffBase < 0:
		return o, fmt.Errorf("BackoffBase %s: must not be negative", o.BackoffBase)
	case o.BackoffCap < 0:
		return o, fmt.Errorf("BackoffCap %s: must not be negative", o.BackoffCap)
	case o.BatchSize < 0 || o.BatchSize > MaxBatchSize:
		return o, fmt.Errorf("BatchSize %d: must be between 1 and %d (0 for the default)", o.BatchSize, MaxBatchSize)
	case o.LinksBatchSize < 0 || o.LinksBatchSize > MaxBatchSize:
		return o, fmt.Errorf("LinksBatchSize %d: must be between 1 and %d (0 for the default)", o.LinksBatchSize, MaxBatchSize)
	case o.BatchConcurrency < 0:
		return o, fmt.Errorf("BatchConcurrency %d: must not be negative", o.BatchConcurrency)
	}
	if o.HTTPClient == nil {
		o.HTTPClient = defaultHTTPClient()
	}
	o.Timeout = cmp.Or(o.Timeout, DefaultTimeout)
	o.BatchTimeout = cmp.Or(o.BatchTimeout, DefaultBatchTimeout)
	o.MaxAttempts = cmp.Or(o.MaxAttempts, DefaultMaxAttempts)
	o.BackoffBase = cmp.Or(o.BackoffBase, DefaultBackoffBase)
	o.BackoffCap = cmp.Or(o.BackoffCap, DefaultBackoffCap)
	o.BatchSize = cmp.Or(o.BatchSize, DefaultBatchSize)
	o.LinksBatchSize = cmp.Or(o.LinksBatchSize, MaxBatchSize)
	o.BatchConcurrency = cmp.Or(o.BatchConcurrency, DefaultBatchConcurrency)
	return o, nil
}

func defaultHTTPClient() *http.Client {
	var t *http.Transport
	if dt, ok := http.DefaultTransport.(*http.Transport); ok {
		t = dt.Clone()
	} else {
		t = &http.Transport{Proxy: http.ProxyFromEnvironment, ForceAttemptHTTP2: true}
	}
	// The sending service checks every message; the default of 2 idle
	// connections per host would make it reconnect under load.
	t.MaxIdleConns = 128
	t.MaxIdleConnsPerHost = 64
	return &http.Client{Transport: t}
}

// Client talks to one suppressd deployment. It is safe for concurrent use.
type Client struct {
	base *url.URL
	// cred sits behind a pointer so that printing a Client with %v shows
	// an address, not the API key.
	cred *credential
	opts Options
}

type credential struct{ authorization string }

// New returns a Client for the server at baseURL (e.g.
// "https://suppressd.internal"; a path prefix is kept) authenticating with
// apiKey. It fails on a malformed URL, an empty key or an invalid option.
func New(baseURL, apiKey string, opts Options) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, opError("client", fmt.Errorf("base URL: %w", err))
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, opError("client", fmt.Errorf("base URL %q: want http(s)://host[/prefix]", baseURL))
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, opError("client", fmt.Errorf("base URL %q: must not have a query or fragment", baseURL))
	}
	if strings.TrimSpace(apiKey) == "" {
		return nil, opError("client", errors.New("empty API key"))
	}
	o, err := opts.withDefaults()
	if err != nil {
		return nil, opError("client", fmt.Errorf("options: %w", err))
	}
	return &Client{
		base: u,
		cred: &credential{authorization: "Bearer " + apiKey},
		opts: o,
	}, nil
}

// endpoint returns the URL of an API path such as "v1/check".
func (c *Client) endpoint(path string) *url.URL {
	return c.base.JoinPath(path)
}

// failed is the Result given when no verdict could be had.
func (c *Client) failed(err error) Result {
	return Result{Allowed: c.opts.FailOpen && IsUnavailable(err), Err: err}
}

// postJSON sends body to path, retrying as Options describe, and decodes
// a 200 (or 202) answer into out. Each attempt gets its own timeout.
func (c *Client) postJSON(ctx context.Context, path string, timeout time.Duration, body []byte, limit int64, out any) error {
	u := c.endpoint(path).String()
	for attempt := 1; ; attempt++ {
		retry, retryAfter, err := c.attemptJSON(ctx, u, timeout, body, limit, out)
		if err == nil {
			return nil
		}
		if !retry || attempt >= c.opts.MaxAttempts {
			if attempt > 1 {
				return fmt.Errorf("after %d attempts: %w", attempt, err)
			}
			return err
		}
		if werr := c.wait(ctx, attempt, retryAfter); werr != nil {
			return fmt.Errorf("after %d attempts, %w: %w", attempt, werr, err)
		}
	}
}

// attemptJSON makes one attempt and reports whether a failure is worth
// retrying, and how long the server asked to wait.
func (c *Client) attemptJSON(ctx context.Context, u string, timeout time.Duration, body []byte, limit int64, out any) (retry bool, retryAfter time.Duration, err error) {
	actx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return false, 0, fmt.Errorf("build request: %w", err)
	}
	c.setHeaders(req)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")

	resp, err := c.opts.HTTPClient.Do(req)
	if err != nil {
		return c.transportError(ctx, err)
	}
	defer func() {
		// Drain a little so the connection can be reused.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		resp.Body.Close()
	}()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusAccepted {
		apiErr := readAPIError(resp)
		return resp.StatusCode == http.StatusServiceUnavailable, apiErr.RetryAfter, apiErr
	}
	if err := json.NewDecoder(&cappedReader{r: resp.Body, n: limit}).Decode(out); err != nil {
		var syntaxErr *json.SyntaxError
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &syntaxErr) || errors.As(err, &typeErr) || errors.Is(err, errResponseTooLarge) {
			return false, 0, fmt.Errorf("decode response: %w", err)
		}
		// Anything else is the answer being cut short: a broken
		// connection or the attempt's timeout.
		return c.transportError(ctx, fmt.Errorf("read response: %w", err))
	}
	return false, 0, nil
}

// transportError classifies a failure to exchange a request. The caller
// cancelling is final and not an outage. The caller's deadline passing is
// final too, but the service did fail to answer in the time allowed, so
// it counts as unavailable. Anything else (refused, reset, the attempt's
// own timeout) is the service being unreachable, worth another attempt.
func (c *Client) transportError(ctx context.Context, err error) (bool, time.Duration, error) {
	switch {
	case errors.Is(ctx.Err(), context.Canceled):
		return false, 0, err
	case ctx.Err() != nil:
		return false, 0, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return true, 0, fmt.Errorf("%w: %w", ErrUnavailable, err)
}

func (c *Client) setHeaders(req *http.Request) {
	req.Header.Set("Authorization", c.cred.authorization)
	req.Header.Set("User-Agent", "suppressd-go-client/1")
}

// wait sleeps before the next attempt, or returns ctx's error. It gives
// up at once when ctx would expire during the wait, since the attempt
// after it could not finish anyway.
func (c *Client) wait(ctx context.Context, attempt int, retryAfter time.Duration) error {
	d := c.backoff(attempt, retryAfter)
	if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) <= d {
		return fmt.Errorf("no time left to retry: %w", context.DeadlineExceeded)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// backoff is the wait after failed attempt number attempt (1-based): the
// server's Retry-After when it gave one, else full jitter over a doubling
// window; both capped by BackoffCap.
func (c *Client) backoff(attempt int, retryAfter time.Duration) time.Duration {
	maxWait := c.opts.BackoffCap
	if retryAfter > 0 {
		return min(retryAfter, maxWait)
	}
	if shift := attempt - 1; shift < 32 {
		if w := c.opts.BackoffBase << shift; w > 0 && w < maxWait {
			maxWait = w
		}
	}
	return rand.N(maxWait + 1)
}

// errResponseTooLarge tells a response over its limit apart from one cut
// short by the network: retrying the first would not help.
var errResponseTooLarge = errors.New("response too large")

// cappedReader reads at most n bytes of r, then fails.
type cappedReader struct {
	r io.Reader
	n int64
}

func (c *cappedReader) Read(p []byte) (int, error) {
	if c.n <= 0 {
		return 0, errResponseTooLarge
	}
	if int64(len(p)) > c.n {
		p = p[:c.n]
	}
	n, err := c.r.Read(p)
	c.n -= int64(n)
	return n, err
}
