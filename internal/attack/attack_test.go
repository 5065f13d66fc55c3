package attack

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// maxRSS bounds the service's resident memory, peak included, through the
// whole suite. It idles near 30 MiB; 10 GiB of gzip, 300 slow connections
// and the floods must not take it anywhere near what a container limit
// would kill (the 1 GB bomb this suite replays once took it to 7 GB).
const maxRSS = 128 << 20

// TestAttacks runs the attacks against one service, each case asserting
// what a client is answered and that memory stayed under maxRSS, and ends
// by reading the topics: they hold exactly what the legitimate requests
// published.
func TestAttacks(t *testing.T) {
	started := time.Now()
	s := start(t)
	t.Logf("suppressd ready in %s", time.Since(started).Round(time.Millisecond))
	idle, _ := s.memory(t)
	t.Logf("idle: VmRSS %d MiB", idle>>20)
	checkMemory := func(t *testing.T) {
		t.Helper()
		s.alive(t)
		rss, hwm := s.memory(t)
		t.Logf("VmRSS %d MiB, VmHWM %d MiB", rss>>20, hwm>>20)
		require.Less(t, hwm, int64(maxRSS), "peak resident memory over the bound")
	}

	// What the legitimate requests publish, read back from the topics at
	// the end: one event through the API, one one-click unsubscribe and
	// one GPC signal however often they are requested.
	legit := event("attack-legit-1", "io.suppressd.unsubscribe.v1", "legit@example.org", "email")
	r := s.do(t, request{method: "POST", path: "/v1/events", key: publishKey, body: legit, header: json_()})
	require.Equal(t, http.StatusAccepted, r.status, r.body)

	t.Run("bombs and oversized bodies", func(t *testing.T) {
		defer checkMemory(t)
		zeros := gzipBomb(t, 10<<30)
		t.Logf("10 GiB of zeros in %d KiB of gzip", len(zeros)>>10)
		start := time.Now()
		r := s.do(t, request{method: "POST", path: "/v1/filter?type=email_sha256", key: filterKey, body: zeros,
			header: http.Header{"Content-Type": {"text/plain"}, "Content-Encoding": {"gzip"}}})
		require.Equal(t, http.StatusOK, r.status, r.body)
		require.Equal(t, "# total=1 allowed=0 suppressed=0 malformed=1\n", r.body, "one endless line, dropped as malformed, in constant memory")
		t.Logf("filter streamed the 10 GiB bomb in %s", time.Since(start).Round(time.Millisecond))
		checkMemory(t)

		for _, tc := range []struct {
			name   string
			req    request
			status int
			says   string
		}{
			{"import gzip bomb", request{method: "POST", path: "/v1/import?format=csv", key: adminKey, body: zeros,
				header: http.Header{"Content-Type": {"text/csv"}, "Content-Encoding": {"gzip"}}}, 413, "65536-byte limit"},
			{"import JSON bomb", request{method: "POST", path: "/v1/import?format=ses", key: adminKey,
				body:   gzipOf(t, `{"SuppressedDestinationSummaries":[{"EmailAddress":"`, strings.Repeat("a", 64<<20)),
				header: http.Header{"Content-Type": {"application/json"}, "Content-Encoding": {"gzip"}}}, 413, "65536-byte limit"},
			{"import over 256 MiB", request{method: "POST", path: "/v1/import?format=csv", key: adminKey,
				bodyReader: io.MultiReader(strings.NewReader("email\n"), repeat("x,"+strings.Repeat("x", 4000)+"\n", 300<<20)),
				header:     http.Header{"Content-Type": {"text/csv"}}}, 413, "at most 268435456 bytes"},
			{"check of 2 MiB", request{method: "POST", path: "/v1/check", key: checkKey, body: bigJSON(2 << 20), header: json_()}, 413, "1048576-byte limit"},
			{"batch of 17 MiB", request{method: "POST", path: "/v1/check/batch", key: checkKey, body: bigJSON(17 << 20), header: json_()}, 413, "16777216-byte limit"},
			{"lookup of 2 MiB", request{method: "POST", path: "/v1/subjects/lookup", key: adminKey, body: bigJSON(2 << 20), header: json_()}, 413, "1048576-byte limit"},
			{"event of 1 MiB", request{method: "POST", path: "/v1/events", key: publishKey, body: bigJSON(1 << 20), header: json_()}, 413, "at most 65536 bytes"},
			{"gzip JSON", request{method: "POST", path: "/v1/check/batch", key: checkKey, body: zeros,
				header: http.Header{"Content-Type": {"application/json"}, "Content-Encoding": {"gzip"}}}, 415, "Content-Encoding gzip"},
			{"deep JSON", request{method: "POST", path: "/v1/check", key: checkKey, body: []byte(strings.Repeat("[", 500_000)), header: json_()}, 400, "invalid_request"},
			{"unsubscribe form of 1 MiB", request{method: "POST", path: s.link(t, "form@example.org", "email"),
				body: bytes.Repeat([]byte("a=b&"), 256<<10), header: form("192.0.2.1")}, 400, "Unsubscribe"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := s.do(t, tc.req)
				require.Equal(t, tc.status, r.status, r.body)
				require.Contains(t, r.body, tc.says)
			})
		}
	})

	t.Run("slow clients", func(t *testing.T) {
		defer checkMemory(t)
		type slow struct {
			name, write string
			status      int // 0: only closed
			within      time.Duration
		}
		head := func(path, key string) string {
			ctype := "application/json"
			switch {
			case strings.HasPrefix(path, "/v1/filter"):
				ctype = "text/plain"
			case strings.HasPrefix(path, "/u/"):
				ctype = "application/x-www-form-urlencoded"
			}
			h := "POST " + path + " HTTP/1.1\r\nHost: suppressd\r\nContent-Type: " + ctype + "\r\nContent-Length: 1000\r\n"
			if key != "" {
				h += "Authorization: Bearer " + key + "\r\n"
			}
			return h + "\r\n{"
		}
		cases := []slow{
			{"one byte of a body, no key", head("/v1/check", ""), 401, time.Second},
			{"one byte of a body, wrong scope", head("/v1/import?format=csv", checkKey), 403, time.Second},
			{"one byte of a check", head("/v1/check", checkKey), 408, bodyTimeout + time.Second},
			{"one byte of a filter", head("/v1/filter?type=email_sha256", filterKey), 408, bodyTimeout + time.Second},
			{"one byte of a form", head(s.link(t, "slow@example.org", "email"), ""), 0, bodyTimeout + time.Second},
			{"headers that never end", "POST /v1/check HTTP/1.1\r\nHost: suppressd\r\nX-Slow: a", 0, bodyTimeout + time.Second},
		}
		const each = 30 // 180 slow connections at once, under the cap: room is left for the sender
		var wg sync.WaitGroup
		errs := make(chan error, len(cases)*each)
		began := time.Now()
		for _, tc := range cases {
			for range each {
				wg.Add(1)
				go func() {
					defer wg.Done()
					errs <- slowClient(s, tc.write, tc.status, tc.within)
				}()
			}
		}
		// Meanwhile a sender's check is answered at once.
		time.Sleep(200 * time.Millisecond)
		r := s.do(t, request{method: "POST", path: "/v1/check", key: checkKey, header: json_(),
			body: []byte(`{"identifiers":[{"type":"email","value":"sender@example.org"}],"channel":"email","purpose":"marketing"}`)})
		require.Equal(t, http.StatusOK, r.status, r.body)
		require.Less(t, time.Since(began), bodyTimeout, "the check was answered while the slow clients held their connections")
		wg.Wait()
		close(errs)
		refused := 0
		for err := range errs {
			if err == errRefused {
				refused++
				continue
			}
			require.NoError(t, err)
		}
		t.Logf("%d slow connections answered and closed in %s; %d refused at the cap of %d", len(cases)*each-refused, time.Since(began).Round(time.Millisecond), refused, maxConns)
		require.Less(t, time.Since(began), bodyTimeout+2*time.Second, "every slow client was let go")
	})

	t.Run("connection cap", func(t *testing.T) {
		defer checkMemory(t)
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				_ = c.Close()
			}
		}()
		began := time.Now()
		for range maxConns + 20 {
			c, err := net.Dial("tcp", s.addr)
			require.NoError(t, err)
			conns = append(conns, c)
		}
		// Read each for a moment, all at once, well before the header
		// timeout would close the ones under the cap.
		var closed atomic.Int32
		var wg sync.WaitGroup
		for _, c := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
				if _, err := c.Read(make([]byte, 1)); err != nil && !isTimeout(err) {
					closed.Add(1)
				}
			}()
		}
		wg.Wait()
		require.Less(t, time.Since(began), bodyTimeout, "measured before the header timeout")
		require.GreaterOrEqual(t, int(closed.Load()), 20, "the connections over the cap are closed on arrival")
		require.Less(t, int(closed.Load()), 60, "and not the ones under it")
		for _, c := range conns {
			_ = c.Close()
		}
		conns = nil
		require.Eventually(t, func() bool {
			r := s.do(t, request{method: "GET", path: "/metrics"})
			return r.status == http.StatusOK && metric(r.body, "suppressd_http_connections_refused_total") >= 20
		}, 5*time.Second, 50*time.Millisecond, "refusals are counted, and the service answers again once they are gone")
	})

	t.Run("floods of the public pages", func(t *testing.T) {
		defer checkMemory(t)
		flood := func(n int, req func(i int) request) map[int]int {
			statuses := map[int]int{}
			var mu sync.Mutex
			var wg sync.WaitGroup
			sem := make(chan struct{}, 32)
			for i := range n {
				wg.Add(1)
				sem <- struct{}{}
				go func() {
					defer wg.Done()
					defer func() { <-sem }()
					r := s.do(t, req(i))
					mu.Lock()
					statuses[r.status]++
					mu.Unlock()
				}()
			}
			wg.Wait()
			return statuses
		}
		click := s.link(t, "flood@example.org", "topic:news")
		st := flood(300, func(i int) request {
			return request{method: "POST", path: click, body: []byte("List-Unsubscribe=One-Click"), header: form(fmt.Sprintf("198.51.100.%d", i%250))}
		})
		t.Logf("300 one-click POSTs of one link: %v", st)
		requireRate(t, st, 300, tokenRate, "the link's rate: the first clicks are answered done, the rest 429")

		views := s.link(t, "gpc@example.org", "email")
		st = flood(300, func(i int) request {
			h := form(fmt.Sprintf("203.0.113.%d", i%250))
			h.Set("Sec-GPC", "1")
			return request{method: "GET", path: views, header: h}
		})
		t.Logf("300 views with Sec-GPC: %v", st)
		requireRate(t, st, 300, tokenRate, "the link's rate")

		// One address with many links: its own rate.
		st = flood(150, func(i int) request {
			return request{method: "GET", path: s.link(t, fmt.Sprintf("many%d@example.org", i), "email"), header: form("192.0.2.200")}
		})
		t.Logf("150 links from one address: %v", st)
		requireRate(t, st, 150, clientRate, "the address's rate")
	})

	t.Run("malformed JSON and UTF-8", func(t *testing.T) {
		defer checkMemory(t)
		id := func(v string) string {
			return `{"identifiers":[{"type":"email","value":"` + v + `"}],"channel":"email","purpose":"marketing"}`
		}
		for _, tc := range []struct {
			name string
			req  request
			want int
		}{
			{"truncated", request{method: "POST", path: "/v1/check", key: checkKey, body: []byte(`{"identifiers":[{"type":"em`)}, 400},
			{"invalid UTF-8 in a value", request{method: "POST", path: "/v1/check", key: checkKey, body: []byte(id("a\xff\xfe@example.org"))}, 400},
			{"a NUL in a value", request{method: "POST", path: "/v1/check", key: checkKey, body: []byte(id(`a\u0000@example.org`))}, 400},
			{"null members", request{method: "POST", path: "/v1/check/batch", key: checkKey, body: []byte(`{"channel":null,"purpose":"marketing","contacts":null}`)}, 400},
			{"a number for a string", request{method: "POST", path: "/v1/check", key: checkKey, body: []byte(`{"identifiers":[{"type":"email","value":7}],"channel":"email","purpose":"marketing"}`)}, 400},
			{"two objects", request{method: "POST", path: "/v1/check", key: checkKey, body: []byte(id("a@example.org") + id("b@example.org"))}, 400},
			{"an event with invalid UTF-8", request{method: "POST", path: "/v1/events", key: publishKey,
				body: bytes.Replace(event("attack-utf8", "io.suppressd.unsubscribe.v1", "u@example.org", "email"), []byte("u@example"), []byte("u\xff@example"), 1)}, 400},
			{"an event that is an array", request{method: "POST", path: "/v1/events", key: publishKey, body: []byte(`[1,2,3]`)}, 400},
			{"an event with a bad time", request{method: "POST", path: "/v1/events", key: publishKey,
				body: bytes.Replace(event("attack-time", "io.suppressd.unsubscribe.v1", "t@example.org", "email"), []byte(`"time":"`), []byte(`"time":"yesterday`), 1)}, 400},
			{"an import of binary", request{method: "POST", path: "/v1/import?format=postmark", key: adminKey, body: []byte("\x00\x01\x02{\xff\xfe")}, 400},
			{"an import with invalid UTF-8 rows", request{method: "POST", path: "/v1/import?format=csv", key: adminKey, body: []byte("email\n\xff\xfe@example.org\n"),
				header: http.Header{"Content-Type": {"text/csv"}}}, 200},
			{"a filter of invalid UTF-8", request{method: "POST", path: "/v1/filter?type=email_sha256", key: filterKey, body: []byte("\xff\xfe\xfd\n\x00\x00\n"),
				header: http.Header{"Content-Type": {"text/plain"}}}, 200},
		} {
			t.Run(tc.name, func(t *testing.T) {
				if tc.req.header == nil {
					tc.req.header = json_()
				}
				r := s.do(t, tc.req)
				require.Equal(t, tc.want, r.status, r.body)
				if tc.want == 200 && strings.Contains(tc.req.path, "import") {
					require.Contains(t, r.body, `"published":0`, "no row was published")
				}
				if tc.want == 200 && strings.Contains(tc.req.path, "filter") {
					require.Contains(t, r.body, "malformed=2")
				}
			})
		}
	})

	t.Run("keys", func(t *testing.T) {
		defer checkMemory(t)
		routes := []struct{ path, scopeKey string }{
			{"/v1/check", checkKey}, {"/v1/check/batch", checkKey}, {"/v1/filter?type=email_sha256", filterKey},
			{"/v1/subjects/lookup", adminKey}, {"/v1/events", publishKey}, {"/v1/import?format=csv", adminKey},
		}
		for _, rt := range routes {
			body := event("attack-keys", "io.suppressd.unsubscribe.v1", "keys@example.org", "email")
			for _, tc := range []struct {
				name   string
				header http.Header
				want   int
			}{
				{"no key", nil, 401},
				{"a wrong key", http.Header{"Authorization": {"Bearer sdk_attack_wrong"}}, 401},
				{"a key in the query", nil, 401},
				{"basic auth", http.Header{"Authorization": {"Basic " + publishKey}}, 401},
				{"an empty bearer", http.Header{"Authorization": {"Bearer "}}, 401},
				{"another scope's key", http.Header{"Authorization": {"Bearer " + otherKey(rt.scopeKey)}}, 403},
			} {
				t.Run(rt.path+" "+tc.name, func(t *testing.T) {
					path := rt.path
					if tc.name == "a key in the query" {
						path += map[bool]string{true: "&", false: "?"}[strings.Contains(path, "?")] + "key=" + rt.scopeKey
					}
					r := s.do(t, request{method: "POST", path: path, header: tc.header, body: body})
					require.Equal(t, tc.want, r.status, r.body)
				})
			}
		}
		// An admin lift needs admin, not publish.
		lift := event("attack-lift", "io.suppressd.unsuppress.v1", "legit@example.org", "email")
		var ev map[string]any
		require.NoError(t, json.Unmarshal(lift, &ev))
		ev["data"].(map[string]any)["overrides"] = "unsubscribe"
		ev["data"].(map[string]any)["justification"] = "attack suite"
		lift, _ = json.Marshal(ev)
		r := s.do(t, request{method: "POST", path: "/v1/events", key: publishKey, body: lift, header: json_()})
		require.Contains(t, []int{400, 403}, r.status, r.body)
	})

	t.Run("nothing published, nothing lost", func(t *testing.T) {
		defer checkMemory(t)
		types := func(role string) []string {
			out := []string{}
			for _, m := range s.topic(t, role) {
				var ev struct{ Type, ID, Source string }
				require.NoError(t, json.Unmarshal(m.Value, &ev), string(m.Value))
				out = append(out, ev.Source+" "+ev.Type)
			}
			return out
		}
		require.ElementsMatch(t, []string{
			"/attack-suite io.suppressd.unsubscribe.v1",
			"/unsubscribe-link io.suppressd.unsubscribe.v1",
		}, types("unsubscribes"), "the API's event and one one-click unsubscribe for 300 clicks")
		require.ElementsMatch(t, []string{"/unsubscribe-link io.suppressd.gpc.v1"}, types("consent"), "one gpc for 300 views")
		require.Empty(t, types("erasure"))
		require.Empty(t, s.topic(t, "dlq"), "no event was invalid")
		require.Eventually(t, func() bool {
			r := s.do(t, request{method: "POST", path: "/v1/check", key: checkKey, header: json_(),
				body: []byte(`{"identifiers":[{"type":"email","value":"legit@example.org"}],"channel":"email","purpose":"marketing"}`)})
			return r.status == http.StatusOK && strings.Contains(r.body, `"allowed":false`)
		}, 20*time.Second, 50*time.Millisecond, "the event published before the attacks was applied")
	})
	_, hwm := s.memory(t)
	t.Logf("attack suite: %s, peak VmHWM %d MiB (idle %d MiB)", time.Since(started).Round(time.Millisecond), hwm>>20, idle>>20)
}

// requireRate checks a flood of n requests was let through at rate per
// minute: the rest 429. The windows are whole minutes, so a flood that
// straddles one gets the rate twice.
func requireRate(t *testing.T, st map[int]int, n, rate int, msg string) {
	t.Helper()
	require.Equal(t, n, st[http.StatusOK]+st[http.StatusTooManyRequests], "only 200 and 429: %v", st)
	require.GreaterOrEqual(t, st[http.StatusOK], rate, msg)
	require.LessOrEqual(t, st[http.StatusOK], 2*rate, msg)
}

var errRefused = fmt.Errorf("refused at the connection cap")

// slowClient writes what a slow client writes, then nothing, and checks it
// is answered status (0: whatever) and let go within d.
func slowClient(s *service, write string, status int, d time.Duration) error {
	c, err := net.Dial("tcp", s.addr)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(d))
	if _, err := io.WriteString(c, write); err != nil {
		return errRefused
	}
	got, err := io.ReadAll(c)
	switch {
	case err != nil && isTimeout(err):
		return fmt.Errorf("%q: still open after %s (read %q)", write[:min(len(write), 60)], d, got)
	case len(got) == 0 && status != 0:
		return errRefused // closed on arrival: over the cap
	case status != 0 && !bytes.HasPrefix(got, []byte(fmt.Sprintf("HTTP/1.1 %d ", status))):
		return fmt.Errorf("%q: answered %q, want %d", write[:min(len(write), 60)], got[:min(len(got), 80)], status)
	}
	return nil
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

func json_() http.Header { return http.Header{"Content-Type": {"application/json"}} }

func form(client string) http.Header {
	return http.Header{"Content-Type": {"application/x-www-form-urlencoded"}, "X-Forwarded-For": {client}}
}

func otherKey(k string) string {
	if k == checkKey {
		return filterKey
	}
	return checkKey
}

// gzipBomb is n bytes of zeros (a multiple of 1 MiB) in gzip: one member
// of 1 MiB (about 1 KiB), repeated, which a gzip reader reads as one
// stream. Compressing 10 GiB would take the test longer than the server.
func gzipBomb(t *testing.T, n int64) []byte {
	t.Helper()
	var member bytes.Buffer
	gz, err := gzip.NewWriterLevel(&member, gzip.BestCompression)
	require.NoError(t, err)
	_, _ = gz.Write(make([]byte, 1<<20))
	require.NoError(t, gz.Close())
	return bytes.Repeat(member.Bytes(), int(n>>20))
}

func gzipOf(t *testing.T, parts ...string) []byte {
	t.Helper()
	var b bytes.Buffer
	gz, err := gzip.NewWriterLevel(&b, gzip.BestSpeed)
	require.NoError(t, err)
	for _, p := range parts {
		_, _ = io.WriteString(gz, p)
	}
	require.NoError(t, gz.Close())
	return b.Bytes()
}

// repeat is a reader of line repeated until n bytes.
func repeat(line string, n int) io.Reader {
	return io.LimitReader(&cycle{s: line}, int64(n))
}

type cycle struct {
	s string
	i int
}

func (c *cycle) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		k := copy(p[n:], c.s[c.i:])
		n += k
		c.i = (c.i + k) % len(c.s)
	}
	return n, nil
}

// bigJSON is a JSON object of n bytes that is valid up to its size.
func bigJSON(n int) []byte {
	return []byte(`{"identifiers":[{"type":"email","value":"` + strings.Repeat("a", n) + `@example.org"}],"channel":"email","purpose":"marketing"}`)
}

// metric returns the value of a counter without labels in an exposition.
func metric(exposition, name string) float64 {
	for _, line := range strings.Split(exposition, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			var f float64
			_, _ = fmt.Sscan(v, &f)
			return f
		}
	}
	return -1
}
