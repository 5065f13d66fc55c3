package api

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/internal/openapitest"
	"github.com/suppressd/suppressd/internal/testenv"
	"github.com/suppressd/suppressd/internal/testkafka"
	"github.com/suppressd/suppressd/internal/teststore"
	"github.com/suppressd/suppressd/publish"
	"github.com/suppressd/suppressd/schemas"
	"github.com/suppressd/suppressd/store/redisstore"
)

// publishingServer is the API with a real publisher (Kafka, a topic of its
// own) and the given options: what /v1/import and /v1/events need.
func publishingServer(t *testing.T, opts Options) *httptest.Server {
	t.Helper()
	brokers := testenv.KafkaBrokers(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	topic := testkafka.Unique("limits")
	testkafka.CreateTopic(ctx, t, brokers[0], topic, 1)
	rdb := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t)})
	t.Cleanup(func() { _ = rdb.Close() })
	store := teststore.Build(t, rdb, redisstore.Options{Prefix: teststore.Prefix()})
	v, err := schemas.New()
	require.NoError(t, err)
	w := publish.NewWriter(brokers, nil)
	t.Cleanup(func() { _ = w.Close() })
	keys := testKeys(t)
	more, err := ParseKeys("publisher:publish:" + sha(publishKey))
	require.NoError(t, err)
	opts.Keys = append(keys, more...)
	opts.Normalizer = norm
	opts.Publisher = publish.New(w, publish.Topics{Unsubscribes: topic, Consent: topic, Erasure: topic}, norm, 2*time.Second, nil)
	opts.Validator = v
	opts.PublishLog = redisstore.NewPublishLog(rdb, store.Options().Prefix)
	s := New(store, opts, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return srv
}

func gzipped(t *testing.T, write func(w io.Writer)) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	require.NoError(t, err)
	write(gz)
	require.NoError(t, gz.Close())
	return buf.Bytes()
}

// TestBodyLimits: every body that is read is bounded by what it expands
// to, by the length of a row or record and by the length of a field, and
// a body over a limit is a 413 naming it. Before, a gzip import was bounded
// only by its compressed size (1 GB of zeros in 4.7 MB took the process to
// 7 GB), and a CSV line without an end or a JSON value without a close was
// held whole.
func TestBodyLimits(t *testing.T) {
	srv := publishingServer(t, Options{MaxImportBody: 1 << 20})
	spec := openapitest.New(t)
	// Rows that are each under the limits, 8 MiB of them in a few KiB.
	bomb := gzipped(t, func(w io.Writer) {
		_, _ = io.WriteString(w, "email,note\n")
		row := []byte("x," + strings.Repeat("b", 8000) + "\n")
		for range (8 << 20) / len(row) {
			_, _ = w.Write(row)
		}
	})
	require.Less(t, len(bomb), 64<<10, "8 MiB of rows compress to a few KiB")

	for _, tc := range []struct {
		name, path, contentType, encoding string
		body                              []byte
		status                            int
		message                           string
	}{
		{"a gzip import expanding past the limit", "/v1/import?format=csv", "text/csv", "gzip", bomb,
			413, "at most 1048576 bytes once decompressed"},
		{"a CSV line that never ends", "/v1/import?format=csv", "text/csv", "",
			append([]byte("email\n"), bytes.Repeat([]byte("a"), 300<<10)...), 413, "over the 65536-byte limit"},
		{"a quoted CSV field over many lines", "/v1/import?format=csv", "text/csv", "",
			append([]byte("email\n\""), bytes.Repeat([]byte("x@example.org\n"), 20<<10)...), 413, "over the 65536-byte limit"},
		{"a long CSV field", "/v1/import?format=csv", "text/csv", "",
			[]byte("email,reason\na@example.org," + strings.Repeat("r", 10<<10) + "\n"), 413, "line 2: a field is over the 8192-byte limit"},
		{"a JSON string that never ends", "/v1/import?format=ses", "application/json", "",
			append([]byte(`{"SuppressedDestinationSummaries":[{"EmailAddress":"`), bytes.Repeat([]byte("a"), 300<<10)...), 413, "over the 65536-byte limit"},
		{"a JSON record that never closes", "/v1/import?format=postmark", "application/json", "",
			append([]byte(`[{"EmailAddress":"a@example.org","Extra":[`), bytes.Repeat([]byte("1,"), 100<<10)...), 413, "over the 65536-byte limit"},
		{"a long JSON member", "/v1/import?format=ses", "application/json", "",
			[]byte(`[{"EmailAddress":"a@example.org","Reason":"` + strings.Repeat("r", 10<<10) + `"}]`), 413, "a field is over the 8192-byte limit"},
		{"a gzip JSON body", "/v1/check", "application/json", "gzip",
			gzipped(t, func(w io.Writer) { _, _ = w.Write([]byte(`{}`)) }), 415, "Content-Encoding gzip is not supported"},
		{"a gzip event", "/v1/events", "application/json", "gzip",
			gzipped(t, func(w io.Writer) { _, _ = w.Write([]byte(`{}`)) }), 415, "Content-Encoding gzip is not supported"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodPost, srv.URL+tc.path, bytes.NewReader(tc.body))
			require.NoError(t, err)
			key := adminKey
			switch tc.path {
			case "/v1/check":
				key = checkKey
			case "/v1/events":
				key = publishKey
			}
			req.Header.Set("Authorization", "Bearer "+key)
			req.Header.Set("Content-Type", tc.contentType)
			if tc.encoding != "" {
				req.Header.Set("Content-Encoding", tc.encoding)
			}
			resp, err := srv.Client().Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			require.Equal(t, tc.status, resp.StatusCode, string(b))
			spec.CheckResponse(t, req, tc.body, resp, b)
			var eb errorBody
			require.NoError(t, json.Unmarshal(b, &eb), string(b))
			require.Contains(t, eb.Error.Message, tc.message)
		})
	}
}

// rawRequest opens a connection, writes head and then body, and returns
// the connection and a reader of the answer.
func rawRequest(t *testing.T, srv *httptest.Server, head string, body []byte) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	_, err = io.WriteString(c, head+"\r\n")
	require.NoError(t, err)
	_, err = c.Write(body)
	require.NoError(t, err)
	return c, bufio.NewReader(c)
}

// answered reads the answer within d and reports its status, then that the
// server closed the connection.
func answered(t *testing.T, c net.Conn, br *bufio.Reader, d time.Duration) (int, string) {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(d)))
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err, "no answer within %s", d)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	_, err = br.ReadByte()
	var ne net.Error
	require.False(t, errors.As(err, &ne) && ne.Timeout(), "the server closes the connection rather than wait for the rest of the body")
	require.Error(t, err, "EOF, or a reset: the server closed with our bytes unread")
	return resp.StatusCode, string(b)
}

// TestSlowBodies: a client that declares a body and sends one byte of it
// is answered, and let go. Before, not even a request without a key was
// answered: the server read what was left of the body before writing its
// 401, and had no deadline for it.
func TestSlowBodies(t *testing.T) {
	srv := publishingServer(t, Options{BodyTimeout: 300 * time.Millisecond, MinBodyRate: 4096})
	// A declared body under 256 KiB is one net/http would read to its end
	// before answering, if nothing stopped it.
	head := func(path, key, extra string) string {
		h := "POST " + path + " HTTP/1.1\r\nHost: suppressd\r\nContent-Length: 1000\r\n" + extra
		if key != "" {
			h += "Authorization: Bearer " + key + "\r\n"
		}
		return h
	}
	for _, tc := range []struct {
		name, head string
		status     int
		within     time.Duration
	}{
		{"no key", head("/v1/check", "", "Content-Type: application/json\r\n"), 401, time.Second},
		{"a wrong key", head("/v1/filter?type=email_sha256", "sdk_wrong", ""), 401, time.Second},
		{"a key without the scope", head("/v1/import?format=csv", checkKey, ""), 403, time.Second},
		{"a check that stops after one byte", head("/v1/check", checkKey, "Content-Type: application/json\r\n"), 408, 2 * time.Second},
		{"an event that stops after one byte", head("/v1/events", publishKey, "Content-Type: application/json\r\n"), 408, 2 * time.Second},
		{"a lookup that stops after one byte", head("/v1/subjects/lookup", adminKey, "Content-Type: application/json\r\n"), 408, 2 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			c, br := rawRequest(t, srv, tc.head, []byte("{"))
			status, body := answered(t, c, br, tc.within)
			require.Equal(t, tc.status, status, body)
			require.Less(t, time.Since(start), tc.within)
		})
	}

	// The streamed bodies: a byte every 50ms is 20 bytes/s, far under the
	// 4 KiB/s asked for, so once the 300ms of grace are spent the upload
	// is refused, whatever it declared.
	for _, tc := range []struct{ name, head string }{
		{"a trickled filter", head("/v1/filter?type=email_sha256", filterKey, "Content-Type: text/plain\r\n")},
		{"a trickled import", head("/v1/import?format=csv", adminKey, "Content-Type: text/csv\r\n")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			c, br := rawRequest(t, srv, tc.head, []byte("e"))
			stop := make(chan struct{})
			defer close(stop)
			go func() {
				for {
					select {
					case <-stop:
						return
					case <-time.After(50 * time.Millisecond):
						if _, err := c.Write([]byte("a")); err != nil {
							return
						}
					}
				}
			}()
			status, body := answered(t, c, br, 3*time.Second)
			require.Equal(t, http.StatusRequestTimeout, status, body)
			require.Contains(t, body, "request_timeout")
			require.Less(t, time.Since(start), 3*time.Second)
		})
	}

	// A fast streamed body is not cut off by the grace: it earns its time.
	t.Run("a fast filter of 2 MiB", func(t *testing.T) {
		line := sha("fast@example.org") + "\n"
		body := strings.Repeat(line, (2<<20)/len(line))
		req, err := http.NewRequest(http.MethodPost, srv.URL+"/v1/filter?type=email_sha256", strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+filterKey)
		resp, err := srv.Client().Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.True(t, strings.HasSuffix(string(b), "malformed=0\n"), "the summary line ends the stream: %s", b[max(0, len(b)-100):])
	})
}
