package api

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/suppressd/suppressd/internal/testenv"
	"github.com/suppressd/suppressd/internal/teststore"
	"github.com/suppressd/suppressd/store/redisstore"
	"github.com/suppressd/suppressd/suppression"
)

// The API benchmarks need the test command's Redis: scripts/bench.sh Check|Filter

// load runs conc workers sending do() for d, or at a fixed total rate when
// rate > 0 (open loop), and returns requests/s and latency percentiles.
func load(b *testing.B, conc int, d time.Duration, rate float64, do func(c *http.Client) error) (rps, p50, p99 float64) {
	var (
		mu   sync.Mutex
		lats []time.Duration
		n    atomic.Int64
		wg   sync.WaitGroup
	)
	deadline := time.Now().Add(d)
	var tick <-chan time.Time
	if rate > 0 {
		t := time.NewTicker(time.Duration(float64(time.Second) / rate))
		defer t.Stop()
		tick = t.C
	}
	start := time.Now()
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conc}}
			local := make([]time.Duration, 0, 1<<16)
			for time.Now().Before(deadline) {
				if tick != nil {
					<-tick
				}
				t0 := time.Now()
				if err := do(c); err != nil {
					b.Error(err)
					return
				}
				local = append(local, time.Since(t0))
				n.Add(1)
			}
			mu.Lock()
			lats = append(lats, local...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	el := time.Since(start).Seconds()
	slices.Sort(lats)
	q := func(p float64) float64 { return float64(lats[int(p*float64(len(lats)-1))].Microseconds()) / 1000 }
	return float64(n.Load()) / el, q(0.5), q(0.99)
}

func post(c *http.Client, url, key string, body []byte) error {
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

// BenchmarkCheck measures /v1/check against real Redis beside a bare
// net/http handler doing one go-redis call per request (the floor of Go plus
// Redis here), then the latency at half of the API's peak.
func BenchmarkCheck(b *testing.B) {
	addr := testenv.RedisAddr(b)
	rdb := redis.NewClient(&redis.Options{Addr: addr, PoolSize: 64})
	defer rdb.Close()
	keyer := suppression.NewKeyer([]byte("p"))
	store := teststore.Build(b, rdb, redisstore.Options{Prefix: teststore.Prefix(), Keying: keyer.Fingerprint()})
	s := New(store, Options{Keys: testKeys(b), Normalizer: norm, Keyer: keyer}, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	api := httptest.NewServer(s.Handler())
	defer api.Close()
	bare := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if err := rdb.HMGet(r.Context(), "benchcheck:bare", "f").Err(); err != nil {
			http.Error(w, err.Error(), 503)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"allowed":true}`)
	}))
	defer bare.Close()
	body := []byte(`{"identifiers":[{"type":"email","value":"someone@example.org"}],"channel":"email","purpose":"marketing"}`)
	const conc, d = 16, 5 * time.Second
	for i := 0; i < b.N; i++ {
		baseRPS, baseP50, baseP99 := load(b, conc, d, 0, func(c *http.Client) error { return post(c, bare.URL, checkKey, body) })
		rps, p50, p99 := load(b, conc, d, 0, func(c *http.Client) error { return post(c, api.URL+"/v1/check", checkKey, body) })
		_, halfP50, halfP99 := load(b, conc, d, rps/2, func(c *http.Client) error { return post(c, api.URL+"/v1/check", checkKey, body) })
		b.ReportMetric(baseRPS, "baseline-req/s")
		b.ReportMetric(baseP50, "baseline-p50-ms")
		b.ReportMetric(baseP99, "baseline-p99-ms")
		b.ReportMetric(rps, "check-req/s")
		b.ReportMetric(100*rps/baseRPS, "%-of-baseline")
		b.ReportMetric(p50, "peak-p50-ms")
		b.ReportMetric(p99, "peak-p99-ms")
		b.ReportMetric(halfP50, "half-load-p50-ms")
		b.ReportMetric(halfP99, "half-load-p99-ms")
	}
}

// hashLines streams n hex SHA-256 lines, deterministic, without holding them.
type hashLines struct {
	i, n int
	buf  []byte
}

func (h *hashLines) Read(p []byte) (int, error) {
	for len(h.buf) < len(p) && h.i < h.n {
		d := lineHash(h.i)
		h.buf = append(h.buf, hex.EncodeToString(d[:])...)
		h.buf = append(h.buf, '\n')
		h.i++
	}
	if len(h.buf) == 0 {
		return 0, io.EOF
	}
	c := copy(p, h.buf)
	h.buf = h.buf[c:]
	return c, nil
}

func lineHash(i int) [32]byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(i))
	return sha256.Sum256(b[:])
}

// BenchmarkFilter streams SUPPRESSD_BENCH_LINES (default 2,000,000) hashes,
// 1 % of them suppressed, through /v1/filter, beside redis-benchmark's
// pipelined EXISTS of as many keys, and samples the heap while it streams.
func BenchmarkFilter(b *testing.B) {
	n := 2_000_000
	if v, err := strconv.Atoi(getenvDefault("SUPPRESSD_BENCH_LINES", "")); err == nil && v > 0 {
		n = v
	}
	addr := testenv.RedisAddr(b)
	rdb := redis.NewClient(&redis.Options{Addr: addr, PoolSize: 16})
	defer rdb.Close()
	keyer := suppression.NewKeyer([]byte("p"))
	store := teststore.Build(b, rdb, redisstore.Options{Prefix: teststore.Prefix(), Keying: keyer.Fingerprint()})
	ctx := context.Background()
	var ws []suppression.Write
	for i := 0; i < n; i += 100 { // every 100th line: 1 %
		ws = append(ws, suppression.Write{Namespace: "default", Key: keyer.StorageKey(suppression.MatchKey{Kind: suppression.KindEmail, Hash: lineHash(i)}),
			Scope: "*", Change: suppression.Change{Action: suppression.ActionSuppress, Reason: suppression.ReasonUnsubscribe,
				Stamp: suppression.Stamp{At: 1, Tag: uint64(i)}, Origin: suppression.OriginRecipient, Source: "/bench"}})
		if len(ws) == 5000 {
			if _, err := store.Apply(ctx, ws); err != nil {
				b.Fatal(err)
			}
			ws = ws[:0]
		}
	}
	if _, err := store.Apply(ctx, ws); err != nil {
		b.Fatal(err)
	}
	s := New(store, Options{Keys: testKeys(b), Normalizer: norm, Keyer: keyer}, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	for i := 0; i < b.N; i++ {
		var peak atomic.Uint64
		stop := make(chan struct{})
		go func() {
			var ms runtime.MemStats
			for {
				select {
				case <-stop:
					return
				case <-time.After(50 * time.Millisecond):
					runtime.ReadMemStats(&ms)
					if ms.HeapInuse > peak.Load() {
						peak.Store(ms.HeapInuse)
					}
				}
			}
		}()
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/filter?type=email_sha256&platform=google", &hashLines{n: n})
		req.Header.Set("Authorization", "Bearer "+filterKey)
		req.Header.Set("Content-Type", "text/plain")
		start := time.Now()
		resp, err := srv.Client().Do(req)
		if err != nil {
			b.Fatal(err)
		}
		sc := bufio.NewScanner(resp.Body)
		allowed := 0
		var summary string
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "#") {
				summary = sc.Text()
				continue
			}
			allowed++
		}
		resp.Body.Close()
		el := time.Since(start)
		close(stop)
		want := fmt.Sprintf("# total=%d allowed=%d suppressed=%d malformed=0", n, n-(n+99)/100, (n+99)/100)
		if summary != want || allowed != n-(n+99)/100 {
			b.Fatalf("summary %q, %d allowed lines; want %q", summary, allowed, want)
		}
		rate := float64(n) / el.Seconds()
		b.ReportMetric(rate, "lines/s")
		b.ReportMetric(float64(peak.Load())/(1<<20), "peak-heap-MiB")
		ceiling := testenv.RedisBenchmark(b, addr, n, "exists", "benchfilter:__rand_int__")
		b.ReportMetric(ceiling, "redis-benchmark-exists/s")
		b.ReportMetric(100*rate/ceiling, "%-of-ceiling")
	}
}
