package client_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/client"
)

// fast keeps retries quick: tests must not sleep for real backoffs.
var fast = client.Options{BackoffBase: time.Millisecond, BackoffCap: 5 * time.Millisecond}

func newClient(t *testing.T, baseURL, key string, o client.Options) *client.Client {
	t.Helper()
	c, err := client.New(baseURL, key, o)
	require.NoError(t, err)
	return c
}

func emailCheck(value string) client.CheckRequest {
	return client.CheckRequest{
		Identifiers: []client.Identifier{{Type: client.TypeEmail, Value: value}},
		Channel:     client.ChannelEmail,
		Purpose:     client.PurposeMarketing,
		Topic:       "newsletter",
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		name    string
		url     string
		key     string
		opts    client.Options
		wantErr string
	}{
		{name: "zero options", url: "https://suppressd.internal", key: "sekret-api-key"},
		{name: "path prefix", url: "http://gw.internal/suppressd/", key: "sekret-api-key"},
		{name: "not a URL", url: "::", key: "k", wantErr: "base URL"},
		{name: "no scheme", url: "suppressd.internal", key: "k", wantErr: "want http(s)"},
		{name: "query", url: "https://suppressd.internal?x=1", key: "k", wantErr: "query"},
		{name: "empty key", url: "https://suppressd.internal", key: " ", wantErr: "empty API key"},
		{name: "negative timeout", url: "https://s", key: "k", opts: client.Options{Timeout: -1}, wantErr: "Timeout"},
		{name: "batch too big", url: "https://s", key: "k", opts: client.Options{BatchSize: 10001}, wantErr: "BatchSize"},
		{name: "links batch too big", url: "https://s", key: "k", opts: client.Options{LinksBatchSize: 10001}, wantErr: "LinksBatchSize"},
		{name: "negative attempts", url: "https://s", key: "k", opts: client.Options{MaxAttempts: -1}, wantErr: "MaxAttempts"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := client.New(tt.url, tt.key, tt.opts)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				require.Nil(t, c)
				return
			}
			require.NoError(t, err)
			require.NotContains(t, fmt.Sprintf("%v %+v %#v", c, c, c), tt.key, "printing a client must not show its key")
		})
	}
}

func TestNewKeepsPathPrefix(t *testing.T) {
	f := newFake(t)
	mux := http.NewServeMux()
	mux.Handle("/prefix/", http.StripPrefix("/prefix", f.srv.Config.Handler))
	srv := &http.Server{Handler: mux}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	c := newClient(t, "http://"+ln.Addr().String()+"/prefix", testKey, fast)
	res, err := c.Check(context.Background(), emailCheck("alice@example.org"))
	require.NoError(t, err)
	require.True(t, res.Allowed)
}

func TestCheck(t *testing.T) {
	since := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name      string
		key       string
		req       client.CheckRequest
		opts      client.Options
		outage    func(path string, n int) (int, string)
		wantAllow bool
		wantSup   *client.Suppression
		wantCalls int
		// checkErr, when set, inspects the error; nil means no error.
		checkErr func(t *testing.T, err error)
	}{
		{
			name: "allowed", req: emailCheck("alice@example.org"),
			wantAllow: true, wantCalls: 1,
		},
		{
			name: "suppressed", req: emailCheck("suppressed@example.org"),
			wantSup: &client.Suppression{
				Scope: "*", Reason: "unsubscribe", Origin: "recipient",
				Source: "/unsubscribe-link", Since: since,
			},
			wantCalls: 1,
		},
		{
			name: "invalid identifier is a 400 naming the field, not retried",
			req: client.CheckRequest{
				Identifiers: []client.Identifier{
					{Type: client.TypeUserID, Value: "u-1"},
					{Type: client.TypeEmail, Value: "no-at-sign"},
				},
				Channel: client.ChannelEmail, Purpose: client.PurposeMarketing,
			},
			wantCalls: 1,
			checkErr: func(t *testing.T, err error) {
				var apiErr *client.APIError
				require.ErrorAs(t, err, &apiErr)
				require.Equal(t, http.StatusBadRequest, apiErr.Status)
				require.Equal(t, client.CodeInvalidRequest, apiErr.Code)
				require.Equal(t, "identifiers[1].value", apiErr.Field)
				require.ErrorIs(t, err, client.ErrInvalidRequest)
				require.False(t, client.IsUnavailable(err))
				require.NotContains(t, err.Error(), "no-at-sign", "errors must not repeat identifier values")
			},
		},
		{
			name: "missing channel is a 400", req: client.CheckRequest{
				Identifiers: []client.Identifier{{Type: client.TypeEmail, Value: "alice@example.org"}},
				Purpose:     client.PurposeMarketing,
			},
			wantCalls: 1,
			checkErr: func(t *testing.T, err error) {
				var apiErr *client.APIError
				require.ErrorAs(t, err, &apiErr)
				require.Equal(t, "channel", apiErr.Field)
			},
		},
		{
			name: "unknown key is a 401, not retried", key: "wrong-key", req: emailCheck("alice@example.org"),
			wantCalls: 1,
			checkErr: func(t *testing.T, err error) {
				var apiErr *client.APIError
				require.ErrorAs(t, err, &apiErr)
				require.Equal(t, http.StatusUnauthorized, apiErr.Status)
				require.ErrorIs(t, err, client.ErrUnauthorized)
				require.NotContains(t, err.Error(), "wrong-key")
			},
		},
		{
			name: "503 then 200 is retried", req: emailCheck("alice@example.org"),
			outage: func(_ string, n int) (int, string) {
				if n == 1 {
					return http.StatusServiceUnavailable, "0"
				}
				return 0, ""
			},
			wantAllow: true, wantCalls: 2,
		},
		{
			name: "503 forever fails closed", req: emailCheck("alice@example.org"),
			outage:    func(string, int) (int, string) { return http.StatusServiceUnavailable, "1" },
			wantCalls: 3,
			checkErr: func(t *testing.T, err error) {
				require.True(t, client.IsUnavailable(err))
				require.ErrorContains(t, err, "after 3 attempts")
				var apiErr *client.APIError
				require.ErrorAs(t, err, &apiErr)
				require.Equal(t, time.Second, apiErr.RetryAfter)
			},
		},
		{
			name: "FailOpen allows during an outage", req: emailCheck("suppressed@example.org"),
			opts:      client.Options{FailOpen: true},
			outage:    func(string, int) (int, string) { return http.StatusServiceUnavailable, "" },
			wantAllow: true, wantCalls: 3,
			checkErr: func(t *testing.T, err error) {
				require.True(t, client.IsUnavailable(err))
			},
		},
		{
			name: "FailOpen still fails closed on a 401", key: "wrong-key", req: emailCheck("alice@example.org"),
			opts:      client.Options{FailOpen: true},
			wantCalls: 1,
			checkErr: func(t *testing.T, err error) {
				require.ErrorIs(t, err, client.ErrUnauthorized)
			},
		},
		{
			name: "MaxAttempts 1 disables retries", req: emailCheck("alice@example.org"),
			opts:      client.Options{MaxAttempts: 1},
			outage:    func(string, int) (int, string) { return http.StatusServiceUnavailable, "" },
			wantCalls: 1,
			checkErr: func(t *testing.T, err error) {
				require.True(t, client.IsUnavailable(err))
			},
		},
		{
			name: "500 is an outage but not retried", req: emailCheck("alice@example.org"),
			outage:    func(string, int) (int, string) { return http.StatusInternalServerError, "" },
			wantCalls: 1,
			checkErr: func(t *testing.T, err error) {
				require.True(t, client.IsUnavailable(err))
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			f.outage = tt.outage
			opts := tt.opts
			opts.BackoffBase, opts.BackoffCap = fast.BackoffBase, fast.BackoffCap
			key := tt.key
			if key == "" {
				key = testKey
			}
			c := newClient(t, f.srv.URL, key, opts)

			res, err := c.Check(context.Background(), tt.req)

			require.Equal(t, tt.wantCalls, f.callCount("/v1/check"), "requests sent")
			require.Equal(t, tt.wantAllow, res.Allowed)
			if tt.checkErr == nil {
				require.NoError(t, err)
				require.NoError(t, res.Err)
				require.Equal(t, tt.wantSup, res.Suppression)
				return
			}
			require.Error(t, err)
			require.Same(t, err, res.Err, "the Result carries the same error")
			tt.checkErr(t, err)
		})
	}
}

func TestCheckRetryAfterHonouredButCapped(t *testing.T) {
	tests := []struct {
		name       string
		retryAfter string
		capWait    time.Duration
		minGap     time.Duration
		maxGap     time.Duration
	}{
		// Jitter alone would wait at most BackoffBase (1ms); Retry-After
		// of 1s is honoured up to the 80ms cap.
		{name: "capped", retryAfter: "1", capWait: 80 * time.Millisecond, minGap: 75 * time.Millisecond, maxGap: 900 * time.Millisecond},
		// Without Retry-After the wait is jitter within BackoffBase.
		{name: "absent", retryAfter: "", capWait: 80 * time.Millisecond, minGap: 0, maxGap: 60 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			f.outage = func(_ string, n int) (int, string) {
				if n == 1 {
					return http.StatusServiceUnavailable, tt.retryAfter
				}
				return 0, ""
			}
			c := newClient(t, f.srv.URL, testKey, client.Options{BackoffBase: time.Millisecond, BackoffCap: tt.capWait})

			res, err := c.Check(context.Background(), emailCheck("alice@example.org"))
			require.NoError(t, err)
			require.True(t, res.Allowed)

			times := f.callTimes("/v1/check")
			require.Len(t, times, 2)
			gap := times[1].Sub(times[0])
			require.GreaterOrEqual(t, gap, tt.minGap)
			require.Less(t, gap, tt.maxGap)
		})
	}
}

func TestCheckGivesUpWhenCtxDeadlineIsTooClose(t *testing.T) {
	f := newFake(t)
	f.outage = func(string, int) (int, string) { return http.StatusServiceUnavailable, "1" }
	c := newClient(t, f.srv.URL, testKey, client.Options{BackoffCap: 10 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()

	start := time.Now()
	res, err := c.Check(ctx, emailCheck("alice@example.org"))

	require.Less(t, time.Since(start), 250*time.Millisecond, "must not sleep 1s past the deadline")
	require.Equal(t, 1, f.callCount("/v1/check"))
	require.False(t, res.Allowed)
	require.True(t, client.IsUnavailable(err))
}

func TestCheckUnreachable(t *testing.T) {
	// A port nothing listens on: connection refused.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())

	for _, failOpen := range []bool{false, true} {
		t.Run(fmt.Sprintf("FailOpen=%v", failOpen), func(t *testing.T) {
			opts := fast
			opts.MaxAttempts = 2
			opts.FailOpen = failOpen
			c := newClient(t, "http://"+addr, testKey, opts)

			res, err := c.Check(context.Background(), emailCheck("alice@example.org"))

			require.Error(t, err)
			require.True(t, client.IsUnavailable(err))
			require.ErrorContains(t, err, "after 2 attempts")
			require.Equal(t, failOpen, res.Allowed)
		})
	}
}

func TestCheckAttemptTimeout(t *testing.T) {
	f := newFake(t)
	f.hang = true
	opts := fast
	opts.Timeout = 30 * time.Millisecond
	opts.MaxAttempts = 2
	c := newClient(t, f.srv.URL, testKey, opts)

	start := time.Now()
	res, err := c.Check(context.Background(), emailCheck("alice@example.org"))

	require.Less(t, time.Since(start), time.Second)
	require.False(t, res.Allowed)
	require.True(t, client.IsUnavailable(err))
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Eventually(t, func() bool { return f.callCount("/v1/check") == 2 }, time.Second, 5*time.Millisecond)
}

func TestCheckCancelledIsNotAnOutage(t *testing.T) {
	f := newFake(t)
	c := newClient(t, f.srv.URL, testKey, client.Options{FailOpen: true})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()

	res, err := c.Check(ctx, emailCheck("alice@example.org"))

	require.ErrorIs(t, err, context.Canceled)
	require.False(t, client.IsUnavailable(err))
	require.False(t, res.Allowed, "a cancelled check fails closed even with FailOpen")
}

func batchOf(values ...string) client.BatchRequest {
	req := client.BatchRequest{Channel: client.ChannelEmail, Purpose: client.PurposeMarketing, Topic: "newsletter"}
	for i, v := range values {
		req.Contacts = append(req.Contacts, client.Contact{
			Ref:         fmt.Sprintf("r-%d", i),
			Identifiers: []client.Identifier{{Type: client.TypeEmail, Value: v}},
		})
	}
	return req
}

func TestCheckBatchChunksInOrder(t *testing.T) {
	values := []string{
		"a@example.org", "suppressed-b@example.org", "c@example.org",
		"d@example.org", "bad-e", "f@example.org",
		"suppressed-g@example.org",
	}
	f := newFake(t)
	opts := fast
	opts.BatchSize = 3
	c := newClient(t, f.srv.URL, testKey, opts)

	results, err := c.CheckBatch(context.Background(), batchOf(values...))

	require.NoError(t, err)
	require.Equal(t, []int{3, 3, 1}, f.batchSizes)
	require.Len(t, results, len(values))
	for i, res := range results {
		require.Equal(t, fmt.Sprintf("r-%d", i), res.Ref)
		switch {
		case strings.HasPrefix(values[i], "suppressed"):
			require.False(t, res.Allowed, i)
			require.NotNil(t, res.Suppression, i)
			require.Equal(t, "unsubscribe", res.Suppression.Reason)
			require.NoError(t, res.Err)
		case values[i] == "bad-e":
			require.False(t, res.Allowed)
			var apiErr *client.APIError
			require.ErrorAs(t, res.Err, &apiErr)
			require.Equal(t, client.CodeInvalidRequest, apiErr.Code)
			require.Equal(t, "contacts[4].identifiers[0].value", apiErr.Field, "index relative to the caller's request")
			require.ErrorIs(t, res.Err, client.ErrInvalidRequest)
		default:
			require.True(t, res.Allowed, i)
			require.Nil(t, res.Suppression)
			require.NoError(t, res.Err)
		}
	}
}

func TestCheckBatchDefaultSize(t *testing.T) {
	values := make([]string, 2001)
	for i := range values {
		values[i] = fmt.Sprintf("u%d@example.org", i)
	}
	f := newFake(t)
	c := newClient(t, f.srv.URL, testKey, client.Options{})

	results, err := c.CheckBatch(context.Background(), batchOf(values...))

	require.NoError(t, err)
	require.Equal(t, []int{client.DefaultBatchSize, client.DefaultBatchSize, 1}, f.batchSizes)
	require.Len(t, results, 2001)
	require.Equal(t, "r-2000", results[2000].Ref)
	require.True(t, results[2000].Allowed)
}

// TestCheckBatchSplitsA413: a chunk the server finds too large (its
// contacts expand into too many match keys) is sent again in halves, and
// every contact is answered in order.
func TestCheckBatchSplitsA413(t *testing.T) {
	values := make([]string, 10)
	for i := range values {
		values[i] = fmt.Sprintf("u%d@example.org", i)
		if i == 6 {
			values[i] = "suppressed-6@example.org"
		}
	}
	f := newFake(t)
	f.maxContacts = 3
	opts := fast
	opts.BatchSize = 10
	c := newClient(t, f.srv.URL, testKey, opts)

	results, err := c.CheckBatch(context.Background(), batchOf(values...))

	require.NoError(t, err)
	require.Equal(t, []int{-10, -5, 2, 3, -5, 2, 3}, f.batchSizes, "10 refused, then halves until they fit")
	for i, r := range results {
		require.Equal(t, fmt.Sprintf("r-%d", i), r.Ref)
		require.Equal(t, i != 6, r.Allowed, "contact %d", i)
	}
}

func TestCheckBatchConcurrentKeepsOrder(t *testing.T) {
	values := make([]string, 25)
	for i := range values {
		values[i] = fmt.Sprintf("u%d@example.org", i)
		if i%4 == 0 {
			values[i] = fmt.Sprintf("suppressed-%d@example.org", i)
		}
	}
	f := newFake(t)
	// Random delays make chunks finish out of order.
	f.checkDelay = func() time.Duration { return time.Duration(rand.IntN(10)) * time.Millisecond }
	opts := fast
	opts.BatchSize = 2
	opts.BatchConcurrency = 4
	c := newClient(t, f.srv.URL, testKey, opts)

	results, err := c.CheckBatch(context.Background(), batchOf(values...))

	require.NoError(t, err)
	require.Equal(t, 13, f.callCount("/v1/check/batch"))
	for i, res := range results {
		require.Equal(t, fmt.Sprintf("r-%d", i), res.Ref)
		require.Equal(t, i%4 != 0, res.Allowed, i)
	}
}

func TestCheckBatchFailedChunkFailsClosed(t *testing.T) {
	values := []string{
		"a@example.org", "b@example.org", "c@example.org",
		"d@example.org", "e@example.org", "f@example.org",
		"g@example.org",
	}
	for _, failOpen := range []bool{false, true} {
		t.Run(fmt.Sprintf("FailOpen=%v", failOpen), func(t *testing.T) {
			f := newFake(t)
			// The second chunk never gets through (requests 2 and 3 are
			// its two attempts).
			f.outage = func(_ string, n int) (int, string) {
				if n > 1 {
					return http.StatusServiceUnavailable, ""
				}
				return 0, ""
			}
			opts := fast
			opts.BatchSize = 3
			opts.MaxAttempts = 2
			opts.FailOpen = failOpen
			c := newClient(t, f.srv.URL, testKey, opts)

			results, err := c.CheckBatch(context.Background(), batchOf(values...))

			require.Error(t, err)
			require.True(t, client.IsUnavailable(err))
			require.ErrorContains(t, err, "contacts 3 to 5")
			require.Equal(t, 3, f.callCount("/v1/check/batch"), "no request after the failed chunk")
			require.Len(t, results, len(values))
			for i, res := range results {
				require.Equal(t, fmt.Sprintf("r-%d", i), res.Ref)
				if i < 3 {
					require.True(t, res.Allowed, "answered contacts keep their answer")
					require.NoError(t, res.Err)
					continue
				}
				require.Equal(t, failOpen, res.Allowed, i)
				require.Error(t, res.Err, i)
			}
		})
	}
}

func TestCheckBatchEmpty(t *testing.T) {
	f := newFake(t)
	c := newClient(t, f.srv.URL, testKey, fast)

	results, err := c.CheckBatch(context.Background(), batchOf())

	require.NoError(t, err)
	require.Empty(t, results)
	require.Zero(t, f.callCount("/v1/check/batch"))
}

func TestCheckBatchRejectsMisalignedAnswer(t *testing.T) {
	tests := []struct {
		name string
		body string
	}{
		{name: "too few results", body: `{"results":[{"ref":"r-0","allowed":true}]}`},
		{name: "refs out of order", body: `{"results":[{"ref":"r-1","allowed":true},{"ref":"r-0","allowed":true}]}`},
		{name: "no allowed", body: `{"results":[{"ref":"r-0"},{"ref":"r-1","allowed":true}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newRawServer(t, func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.WriteString(w, tt.body)
			})
			c := newClient(t, srv, testKey, fast)

			results, err := c.CheckBatch(context.Background(), batchOf("a@example.org", "b@example.org"))

			require.Error(t, err)
			require.Len(t, results, 2)
			for _, res := range results {
				require.False(t, res.Allowed)
				require.Error(t, res.Err)
			}
		})
	}
}

func newRawServer(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: h}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String()
}

// hashLine is the i-th line of a generated audience: a hex SHA-256.
func hashLine(i int) string {
	sum := sha256.Sum256([]byte(fmt.Sprintf("user-%d@example.org", i)))
	return hex.EncodeToString(sum[:])
}

func TestFilter(t *testing.T) {
	var allowed, suppressed []string
	for i := 0; len(allowed) < 5 || len(suppressed) < 3; i++ {
		if h := hashLine(i); strings.HasPrefix(h, "0") {
			suppressed = append(suppressed, h)
		} else {
			allowed = append(allowed, h)
		}
	}
	// Input mixes cases, blank lines and a malformed line, as callers'
	// files do; allowed lines must come back exactly as sent.
	input := strings.Join([]string{
		allowed[0], suppressed[0], strings.ToUpper(allowed[1]), "", allowed[2],
		"not-a-hash", suppressed[1], allowed[3], suppressed[2], allowed[4],
	}, "\n") + "\n"
	wantOut := strings.Join([]string{allowed[0], strings.ToUpper(allowed[1]), allowed[2], allowed[3], allowed[4]}, "\n") + "\n"

	for _, gz := range []bool{false, true} {
		t.Run(fmt.Sprintf("gzip=%v", gz), func(t *testing.T) {
			f := newFake(t)
			c := newClient(t, f.srv.URL, testKey, fast)
			var out bytes.Buffer

			sum, err := c.Filter(context.Background(), client.FilterRequest{
				Type: client.TypeEmailSHA256, Platform: client.PlatformMeta,
				Channel: client.ChannelAds, Purpose: client.PurposeAdvertising,
				Topic: "spring-sale", Namespace: "shop-eu", Gzip: gz,
			}, strings.NewReader(input), &out)

			require.NoError(t, err)
			require.Equal(t, wantOut, out.String())
			require.NotContains(t, out.String(), "#", "the summary line is not output")
			require.Equal(t, client.FilterSummary{Total: 9, Allowed: 5, Suppressed: 3, Malformed: 1}, sum)
			wantEncoding := ""
			if gz {
				wantEncoding = "gzip"
			}
			require.Equal(t, wantEncoding, f.filterEncoding)
			q := f.filterQuery
			require.Equal(t, "email_sha256", q.Get("type"))
			require.Equal(t, "meta", q.Get("platform"))
			require.Equal(t, "ads", q.Get("channel"))
			require.Equal(t, "advertising", q.Get("purpose"))
			require.Equal(t, "spring-sale", q.Get("topic"))
			require.Equal(t, "shop-eu", q.Get("namespace"))
		})
	}
}

func TestFilterIncomplete(t *testing.T) {
	a, b := hashLine(1), hashLine(2) // both allowed: they do not start with "0"
	require.False(t, strings.HasPrefix(a, "0") || strings.HasPrefix(b, "0"))
	tests := []struct {
		name            string
		end             func(w http.ResponseWriter, total, allowed, suppressed, malformed int)
		wantUnavailable bool
	}{
		{
			name: "no summary",
			end:  func(http.ResponseWriter, int, int, int, int) {},
		},
		{
			name: "store failed mid-stream",
			end: func(w http.ResponseWriter, _, _, _, _ int) {
				_, _ = io.WriteString(w, "# error=unavailable\n")
			},
			wantUnavailable: true,
		},
		{
			name: "summary disagrees with lines received",
			end: func(w http.ResponseWriter, total, allowed, suppressed, malformed int) {
				fmt.Fprintf(w, "# total=%d allowed=%d suppressed=%d malformed=%d\n", total, allowed+1, suppressed, malformed)
			},
		},
		{
			name: "summary lacks a count",
			end: func(w http.ResponseWriter, total, allowed, _, _ int) {
				fmt.Fprintf(w, "# total=%d allowed=%d\n", total, allowed)
			},
		},
		{
			name: "half a line and no summary",
			end: func(w http.ResponseWriter, _, _, _, _ int) {
				_, _ = io.WriteString(w, "abc")
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			f.filterEnd = tt.end
			c := newClient(t, f.srv.URL, testKey, fast)
			var out bytes.Buffer

			sum, err := c.Filter(context.Background(), client.FilterRequest{Type: client.TypeEmailSHA256},
				strings.NewReader(a+"\n"+b+"\n"), &out)

			require.ErrorIs(t, err, client.ErrIncomplete)
			require.Equal(t, tt.wantUnavailable, client.IsUnavailable(err))
			require.Zero(t, sum)
			require.Equal(t, 1, f.callCount("/v1/filter"), "a filter stream is never retried once read")
			require.Equal(t, a+"\n"+b+"\n", out.String(), "complete lines seen so far are passed on, nothing else")
		})
	}
}

func TestFilterAPIErrors(t *testing.T) {
	tests := []struct {
		name    string
		key     string
		req     client.FilterRequest
		wantIs  error
		wantFld string
	}{
		{name: "key without filter scope", key: checkOnlyKey, req: client.FilterRequest{Type: client.TypeEmailSHA256}, wantIs: client.ErrForbidden},
		{name: "unknown key", key: "nope", req: client.FilterRequest{Type: client.TypeEmailSHA256}, wantIs: client.ErrUnauthorized},
		{name: "bad type", key: testKey, req: client.FilterRequest{Type: client.TypeEmail}, wantIs: client.ErrInvalidRequest, wantFld: "type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			c := newClient(t, f.srv.URL, tt.key, fast)
			var out bytes.Buffer

			_, err := c.Filter(context.Background(), tt.req, strings.NewReader(hashLine(1)+"\n"), &out)

			require.ErrorIs(t, err, tt.wantIs)
			var apiErr *client.APIError
			require.ErrorAs(t, err, &apiErr)
			require.Equal(t, tt.wantFld, apiErr.Field)
			require.Empty(t, out.String())
			require.Equal(t, 1, f.callCount("/v1/filter"))
		})
	}

	t.Run("type required", func(t *testing.T) {
		c := newClient(t, "http://127.0.0.1:1", testKey, fast)
		_, err := c.Filter(context.Background(), client.FilterRequest{}, strings.NewReader(""), io.Discard)
		require.ErrorContains(t, err, "Type is required")
	})
}

// flakyTransport fails the first fails round trips, after reading read
// bytes of the body, then behaves.
type flakyTransport struct {
	fails int32
	read  int
	n     atomic.Int32
}

func (ft *flakyTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if ft.n.Add(1) <= ft.fails {
		if ft.read > 0 {
			_, _ = io.ReadFull(req.Body, make([]byte, ft.read))
		}
		_ = req.Body.Close()
		return nil, errors.New("simulated connection failure")
	}
	return http.DefaultTransport.RoundTrip(req)
}

func TestFilterRetriesOnlyUnreadInput(t *testing.T) {
	lines := hashLine(1) + "\n" + hashLine(2) + "\n"
	tests := []struct {
		name      string
		read      int
		wantErr   bool
		wantTrips int32
	}{
		{name: "input untouched: retried", read: 0, wantTrips: 2},
		{name: "input read: not retried", read: 10, wantErr: true, wantTrips: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			ft := &flakyTransport{fails: 1, read: tt.read}
			opts := fast
			opts.HTTPClient = &http.Client{Transport: ft}
			c := newClient(t, f.srv.URL, testKey, opts)
			var out bytes.Buffer

			sum, err := c.Filter(context.Background(), client.FilterRequest{Type: client.TypeEmailSHA256}, strings.NewReader(lines), &out)

			require.Equal(t, tt.wantTrips, ft.n.Load())
			if tt.wantErr {
				require.True(t, client.IsUnavailable(err))
				require.Empty(t, out.String())
				return
			}
			require.NoError(t, err)
			require.Equal(t, lines, out.String())
			require.Equal(t, int64(2), sum.Allowed)
		})
	}
}

// failingReader yields data, then an error.
type failingReader struct {
	r   io.Reader
	err error
}

func (fr *failingReader) Read(p []byte) (int, error) {
	n, err := fr.r.Read(p)
	if errors.Is(err, io.EOF) {
		return n, fr.err
	}
	return n, err
}

func TestFilterInputError(t *testing.T) {
	f := newFake(t)
	c := newClient(t, f.srv.URL, testKey, fast)
	diskErr := errors.New("disk on fire")
	in := &failingReader{r: strings.NewReader(hashLine(1) + "\n"), err: diskErr}

	_, err := c.Filter(context.Background(), client.FilterRequest{Type: client.TypeEmailSHA256}, in, io.Discard)

	require.ErrorIs(t, err, diskErr)
	require.ErrorContains(t, err, "read input")
}

func TestFilterCancelWhileInputBlocks(t *testing.T) {
	f := newFake(t)
	c := newClient(t, f.srv.URL, testKey, fast)
	in, inW := io.Pipe()
	defer inW.Close()
	go func() { _, _ = io.WriteString(inW, hashLine(1)+"\n") }() // then nothing, ever

	ctx, cancel := context.WithCancel(context.Background())
	out := newWatchWriter()
	errc := make(chan error, 1)
	go func() {
		_, err := c.Filter(ctx, client.FilterRequest{Type: client.TypeEmailSHA256}, in, out)
		errc <- err
	}()
	select {
	case <-out.first:
	case <-time.After(5 * time.Second):
		t.Fatal("no output while the input is still open")
	}
	cancel()
	select {
	case err := <-errc:
		require.ErrorIs(t, err, context.Canceled)
		require.ErrorIs(t, err, client.ErrIncomplete)
	case <-time.After(5 * time.Second):
		t.Fatal("Filter did not return after ctx was cancelled")
	}
}

// watchWriter hashes and counts what it is given and signals the first
// write.
type watchWriter struct {
	mu    sync.Mutex
	h     io.Writer
	sum   func() []byte
	lines int
	once  sync.Once
	first chan struct{}
}

func newWatchWriter() *watchWriter {
	h := sha256.New()
	return &watchWriter{h: h, sum: func() []byte { return h.Sum(nil) }, first: make(chan struct{})}
}

func (w *watchWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.lines += bytes.Count(p, []byte("\n"))
	w.once.Do(func() { close(w.first) })
	return w.h.Write(p)
}

func TestFilterStreamsLargeInput(t *testing.T) {
	const n = 200_000
	for _, gz := range []bool{false, true} {
		t.Run(fmt.Sprintf("gzip=%v", gz), func(t *testing.T) {
			f := newFake(t)
			c := newClient(t, f.srv.URL, testKey, fast)
			out := newWatchWriter()

			// The input is generated on the fly and, after its first
			// allowed line, waits until output has arrived: a client that
			// read all input (or buffered all output) before passing
			// lines on would never get past this point.
			in, inW := io.Pipe()
			go func() {
				bw := bufio.NewWriter(inW)
				waited := false
				for i := range n {
					line := hashLine(i)
					_, _ = bw.WriteString(line + "\n")
					if !waited && !fakeSuppressedHash(line) {
						waited = true
						_ = bw.Flush()
						if gz {
							// The gzip writer holds data until its
							// block fills; without more input the first
							// line never leaves. Only check streaming
							// in the plain case.
							continue
						}
						select {
						case <-out.first:
						case <-time.After(10 * time.Second):
							inW.CloseWithError(errors.New("no output before the input ended: the client buffers"))
							return
						}
					}
				}
				inW.CloseWithError(bw.Flush())
			}()

			sum, err := c.Filter(context.Background(), client.FilterRequest{Type: client.TypePhoneSHA256, Gzip: gz}, in, out)
			require.NoError(t, err)

			want := sha256.New()
			var wantAllowed int64
			for i := range n {
				if line := hashLine(i); !fakeSuppressedHash(line) {
					_, _ = io.WriteString(want, line+"\n")
					wantAllowed++
				}
			}
			require.Equal(t, int64(n), sum.Total)
			require.Equal(t, wantAllowed, sum.Allowed)
			require.Equal(t, int64(n)-wantAllowed, sum.Suppressed)
			require.Equal(t, int64(wantAllowed), int64(out.lines))
			require.Equal(t, want.Sum(nil), out.sum(), "allowed lines, in input order, unchanged")
		})
	}
}

func TestCheckOversizedAnswerIsNotRetried(t *testing.T) {
	var calls atomic.Int32
	srv := newRawServer(t, func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		_, _ = io.WriteString(w, `{"allowed": true, "padding": "`+strings.Repeat("x", 2<<20)+`"}`)
	})
	c := newClient(t, srv, testKey, fast)

	res, err := c.Check(context.Background(), emailCheck("alice@example.org"))

	require.ErrorContains(t, err, "too large")
	require.False(t, client.IsUnavailable(err))
	require.False(t, res.Allowed)
	require.Equal(t, int32(1), calls.Load())
}

// TestErrorsNameTheClientOnce: whatever fails, the message a caller logs
// starts "suppressd <op>: " and says "suppressd" nowhere else (before, a
// refused check read "suppressd check: suppressd: HTTP 401 ..."), and
// the operation and the cause stay reachable.
func TestErrorsNameTheClientOnce(t *testing.T) {
	refuse := newRawServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"error":{"code":"unauthorized","message":"a valid API key is required"}}`)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closed := "http://" + ln.Addr().String()
	require.NoError(t, ln.Close())
	opts := fast
	opts.MaxAttempts = 2
	ctx := context.Background()
	calls := map[string]func(c *client.Client) error{
		"check": func(c *client.Client) error { _, err := c.Check(ctx, emailCheck("alice@example.org")); return err },
		"check batch": func(c *client.Client) error {
			_, err := c.CheckBatch(ctx, batchOf("alice@example.org"))
			return err
		},
		"filter": func(c *client.Client) error {
			_, err := c.Filter(ctx, client.FilterRequest{Type: client.TypeEmailSHA256}, strings.NewReader(hashLine(1)+"\n"), io.Discard)
			return err
		},
		"publish": func(c *client.Client) error { _, err := c.Publish(ctx, []byte(`{"id":"x"}`)); return err },
	}
	for op, call := range calls {
		for server, want := range map[string]error{refuse: client.ErrUnauthorized, closed: client.ErrUnavailable} {
			t.Run(op+" "+want.Error(), func(t *testing.T) {
				err := call(newClient(t, server, testKey, opts))
				require.Error(t, err)
				require.True(t, strings.HasPrefix(err.Error(), "suppressd "+op+": "), err.Error())
				require.Equal(t, 1, strings.Count(err.Error(), "suppressd"), err.Error())
				require.ErrorIs(t, err, want)
				var opErr *client.OpError
				require.ErrorAs(t, err, &opErr)
				require.Equal(t, op, opErr.Op)
			})
		}
	}
	_, err = client.New("ftp://x", testKey, client.Options{})
	require.EqualError(t, err, `suppressd client: base URL "ftp://x": want http(s)://host[/prefix]`)
}
