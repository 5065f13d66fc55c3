// Package httplimit bounds what one client can hold of an HTTP server: how
// many connections are open at once, how long a request body may take to
// arrive, how slowly a streamed body may trickle, and how much a body may
// expand once decompressed.
//
// net/http's own ReadTimeout covers the whole body, which a streamed upload
// of millions of lines cannot meet; without it a client that sends the
// headers and one byte of a declared body is never answered and never let
// go. These pieces put a deadline on every body instead: a total one for
// the small ones (BodyDeadline), a minimum transfer rate for the streamed
// ones (MinRate), and a way to refuse a request without reading its body at
// all (CloseUnread).
package httplimit

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"time"
)

// ErrTooSlow is wrapped by the error a body read returns when the client
// sent its body slower than its deadline or minimum rate allowed.
var ErrTooSlow = errors.New("the request body arrived too slowly")

// IsTimeout reports whether err is a body read that ran out of time: a
// deadline set here, or the connection's.
func IsTimeout(err error) bool {
	if errors.Is(err, ErrTooSlow) || errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TooLargeError is returned by a LimitReader whose limit was passed.
type TooLargeError struct{ Limit int64 }

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("more than %d bytes", e.Limit)
}

// LimitReader returns a reader of at most n bytes of r; reading past them
// is a *TooLargeError (not the silent EOF of io.LimitReader, which would
// turn a truncated upload into a smaller one). For what a body expands to
// once decompressed: http.MaxBytesReader bounds only what crosses the wire.
func LimitReader(r io.Reader, n int64) io.Reader { return &limitReader{r: r, left: n, limit: n} }

type limitReader struct {
	r           io.Reader
	left, limit int64
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.left <= 0 {
		// One byte more tells a body of exactly the limit from a longer one.
		var one [1]byte
		n, err := l.r.Read(one[:])
		if n > 0 {
			return 0, &TooLargeError{Limit: l.limit}
		}
		return 0, err
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	return n, err
}

// BodyDeadline gives the body of every request that has one timeout to
// arrive, whole; once it has, the deadline is lifted, so a slow handler is
// not cut off by it. A handler that reads its body as a stream replaces
// this with MinRate. Zero timeout: no deadline.
func BodyDeadline(next http.Handler, timeout time.Duration) http.Handler {
	if timeout <= 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		SetBodyDeadline(w, r, timeout)
		next.ServeHTTP(w, r)
	})
}

// SetBodyDeadline is BodyDeadline for one request.
func SetBodyDeadline(w http.ResponseWriter, r *http.Request, timeout time.Duration) {
	if r.ContentLength == 0 || r.Body == nil || r.Body == http.NoBody || timeout <= 0 {
		return
	}
	rc := http.NewResponseController(w)
	if rc.SetReadDeadline(time.Now().Add(timeout)) != nil {
		return // not a connection (a recorder): nothing to bound
	}
	r.Body = &deadlineBody{ReadCloser: r.Body, rc: rc}
}

// deadlineBody lifts the read deadline at the end of the body: the server
// then reads the connection in the background to notice a client that goes
// away, and a deadline still set would cancel the request.
type deadlineBody struct {
	io.ReadCloser
	rc   *http.ResponseController
	done bool
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF && !b.done {
		b.done = true
		_ = b.rc.SetReadDeadline(time.Time{})
	}
	if err != nil && err != io.EOF && IsTimeout(err) {
		err = fmt.Errorf("%w: %w", ErrTooSlow, err)
	}
	return n, err
}

// MinRate makes r's body a stream that must keep up rate bytes per second
// of the time spent waiting for it, after grace: a client may pause, and
// earns pauses by sending fast, but one that trickles a byte at a time
// runs out of time. Only the time the handler spends waiting in Read
// counts, so a handler that stops reading while it works (a slow store,
// a client slow to read the answer) costs the client nothing. The
// deadline is lifted at the end of the body.
func MinRate(w http.ResponseWriter, r *http.Request, rate int64, grace time.Duration) {
	if r.Body == nil || r.Body == http.NoBody || rate <= 0 {
		return
	}
	body := r.Body
	if d, ok := body.(*deadlineBody); ok {
		body = d.ReadCloser // this deadline replaces that one
	}
	r.Body = &rateBody{ReadCloser: body, rc: http.NewResponseController(w), rate: float64(rate), grace: grace}
}

type rateBody struct {
	io.ReadCloser
	rc     *http.ResponseController
	rate   float64
	grace  time.Duration
	waited time.Duration
	read   int64
	done   bool
	mu     sync.Mutex // Read is not called concurrently, but the race detector cannot know
}

func (b *rateBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done {
		return b.ReadCloser.Read(p)
	}
	earned := b.grace + time.Duration(float64(b.read)/b.rate*float64(time.Second))
	left := earned - b.waited
	if left <= 0 {
		return 0, fmt.Errorf("%w: under %.0f bytes/s", ErrTooSlow, b.rate)
	}
	start := time.Now()
	if err := b.rc.SetReadDeadline(start.Add(left)); err != nil {
		b.done = true // not a connection: nothing to bound
	}
	n, err := b.ReadCloser.Read(p)
	b.waited += time.Since(start)
	b.read += int64(n)
	switch {
	case err == io.EOF:
		b.done = true
		_ = b.rc.SetReadDeadline(time.Time{})
	case err != nil && IsTimeout(err):
		err = fmt.Errorf("%w: under %.0f bytes/s: %w", ErrTooSlow, b.rate, err)
	}
	return n, err
}

// CloseUnread makes the answer to r the last on its connection and stops
// reading r's body at once: the server would otherwise read what is left
// of it (up to 256 KiB) before and after answering, and a client that
// declared a body and sends none would hold the connection. For requests
// refused before their body is read (no key, wrong key, wrong scope).
func CloseUnread(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Connection", "close")
	if r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody {
		_ = http.NewResponseController(w).SetReadDeadline(time.Now())
	}
}

// Listener caps the connections open at once on a listener. A connection
// over the cap is accepted and closed at once (OnReject is told), rather
// than left in the kernel's queue where its client cannot tell a full
// server from a slow one.
type Listener struct {
	net.Listener
	// OnReject, if set, is called for every connection refused.
	OnReject func()

	sem chan struct{}
}

// LimitListener returns l capped at max connections; max <= 0 is no cap.
func LimitListener(l net.Listener, max int, onReject func()) net.Listener {
	if max <= 0 {
		return l
	}
	return &Listener{Listener: l, OnReject: onReject, sem: make(chan struct{}, max)}
}

// Accept returns the next connection that fits under the cap.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		select {
		case l.sem <- struct{}{}:
			return &limitedConn{Conn: c, release: func() { <-l.sem }}, nil
		default:
			_ = c.Close()
			if l.OnReject != nil {
				l.OnReject()
			}
		}
	}
}

type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
