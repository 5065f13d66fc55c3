package unsubscribe

import (
	"context"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// PublishLog remembers which events were published, by source and id
// (redisstore.PublishLog is one). With it, the same token and action
// publish once within Options.DedupWindow however often the page is
// posted or viewed: every request publishes the same event id, and an
// event on a topic kept for ever is not free to repeat 300 times.
type PublishLog interface {
	Published(ctx context.Context, source, id string) (bool, error)
	RecordPublished(ctx context.Context, source, id string, ttl time.Duration) error
}

// Default limits of the public pages.
const (
	DefaultDedupWindow = 24 * time.Hour
	DefaultTokenRate   = 10 // requests per minute per token
	DefaultClientRate  = 60 // requests per minute per client address
)

// rateWindow is the window the rates are counted over.
const rateWindow = time.Minute

// maxRateKeys bounds the memory of a limiter: past it, keys not yet seen
// in the window are let through (the dedup still holds the topics; a
// limiter that refused every new address would let a flood from many
// addresses lock everyone out).
const maxRateKeys = 100_000

// limiter counts requests per key in fixed one-minute windows, in memory:
// each replica counts its own (behind N replicas a client gets up to N
// times the rate). Safe for concurrent use.
type limiter struct {
	mu     sync.Mutex
	limit  int
	now    func() time.Time
	window time.Time
	counts map[string]int
}

func newLimiter(limit int, now func() time.Time) *limiter {
	if limit <= 0 {
		return nil
	}
	return &limiter{limit: limit, now: now, counts: map[string]int{}}
}

// allow counts a request of key and reports whether it is within the
// limit, and if not, how long until the window turns.
func (l *limiter) allow(key string) (bool, time.Duration) {
	if l == nil {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if now.Sub(l.window) >= rateWindow || now.Before(l.window) {
		l.window = now.Truncate(rateWindow)
		clear(l.counts)
	}
	n, seen := l.counts[key]
	if !seen && len(l.counts) >= maxRateKeys {
		return true, 0
	}
	if n >= l.limit {
		return false, l.window.Add(rateWindow).Sub(now)
	}
	l.counts[key] = n + 1
	return true, 0
}

// clientKey is the address a request's rate is counted under: the
// connection's peer, or the last address of the header a trusted proxy
// sets (the last one is the proxy's own entry: the earlier ones are
// whatever the client wrote). IPv6 addresses count by /64, which one
// client usually has whole.
func clientKey(r *http.Request, header string) string {
	addr := ""
	if header != "" {
		if v := r.Header.Values(header); len(v) > 0 {
			parts := strings.Split(v[len(v)-1], ",")
			addr = strings.TrimSpace(parts[len(parts)-1])
		}
	}
	if addr == "" {
		addr = r.RemoteAddr
	}
	if host, _, err := net.SplitHostPort(addr); err == nil {
		addr = host
	}
	ip := net.ParseIP(addr)
	if ip == nil {
		return addr
	}
	if ip.To4() == nil {
		return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
	}
	return ip.String()
}

// inflight lets one request at a time publish an event id: a burst of the
// same click waits for the first one's outcome instead of publishing
// alongside it before the log has recorded it.
type inflight struct {
	mu    sync.Mutex
	calls map[string]*flight
}

type flight struct {
	done chan struct{}
	err  error
}

// do runs fn for id unless a call for id is running, in which case it
// waits for that call and returns its error.
func (f *inflight) do(id string, fn func() error) error {
	f.mu.Lock()
	if f.calls == nil {
		f.calls = map[string]*flight{}
	}
	if c, ok := f.calls[id]; ok {
		f.mu.Unlock()
		<-c.done
		return c.err
	}
	c := &flight{done: make(chan struct{})}
	f.calls[id] = c
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		delete(f.calls, id)
		f.mu.Unlock()
		close(c.done)
	}()
	c.err = fn()
	return c.err
}
