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
	"syscall"
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

// audienceRows streams n rows of an audience CSV with two hashed
// identifiers each (the hashes hashLines would send for the emails, and
// phoneHash's), plus two columns that are not identifiers, as a Google
// Customer Match file; or, with only set, the hash lines of one column.
type audienceRows struct {
	i, n int
	only string // "", "email" or "phone"
	buf  []byte
}

func phoneHash(i int) [32]byte { return lineHash(i + 1<<40) }

func (a *audienceRows) Read(p []byte) (int, error) {
	if a.i == 0 && a.only == "" && len(a.buf) == 0 {
		a.buf = append(a.buf, "Email,Phone,Country,Zip\n"...)
	}
	for len(a.buf) < len(p) && a.i < a.n {
		e, ph := lineHash(a.i), phoneHash(a.i)
		switch a.only {
		case "email":
			a.buf = hex.AppendEncode(a.buf, e[:])
		case "phone":
			a.buf = hex.AppendEncode(a.buf, ph[:])
		default:
			a.buf = hex.AppendEncode(a.buf, e[:])
			a.buf = append(a.buf, ',')
			a.buf = hex.AppendEncode(a.buf, ph[:])
			a.buf = append(a.buf, ",US,94016"...)
		}
		a.buf = append(a.buf, '\n')
		a.i++
	}
	if len(a.buf) == 0 {
		return 0, io.EOF
	}
	c := copy(p, a.buf)
	a.buf = a.buf[c:]
	return c, nil
}

// heapSampler records the heap in use every 50 ms while a stream runs.
type heapSampler struct {
	stop    chan struct{}
	done    chan struct{}
	samples []uint64
}

func sampleHeap() *heapSampler {
	h := &heapSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(h.done)
		var ms runtime.MemStats
		for {
			select {
			case <-h.stop:
				return
			case <-time.After(50 * time.Millisecond):
				runtime.ReadMemStats(&ms)
				h.samples = append(h.samples, ms.HeapInuse)
			}
		}
	}()
	return h
}

// end stops sampling and returns the peak, and how much higher the peak
// of the second half of the stream is than the first's: about zero when
// the heap is flat, whatever the length of the stream.
func (h *heapSampler) end() (peakMiB, growthMiB float64) {
	close(h.stop)
	<-h.done
	peak := func(s []uint64) (m uint64) {
		for _, v := range s {
			m = max(m, v)
		}
		return m
	}
	half := len(h.samples) / 2
	first, second := peak(h.samples[:half]), peak(h.samples[half:])
	return float64(max(first, second)) / (1 << 20), (float64(second) - float64(first)) / (1 << 20)
}

// BenchmarkFilterRows streams SUPPRESSD_BENCH_ROWS (default 5,000,000)
// rows of a Google Customer Match CSV, each with a hashed email and a
// hashed phone (1 % of each suppressed), through /v1/filter/rows, and the
// same data through /v1/filter as two single-column lists (every email
// hash, then every phone hash: two lines per row). A row should cost no
// more than its two lines: row-cpu-in-lines compares the CPU both take
// (suppressd's and Redis's), row-time-in-lines the wall time. The heap is
// sampled while the rows stream and must not grow with their number.
func BenchmarkFilterRows(b *testing.B) {
	n := 5_000_000
	if v, err := strconv.Atoi(getenvDefault("SUPPRESSD_BENCH_ROWS", "")); err == nil && v > 0 {
		n = v
	}
	addr := testenv.RedisAddr(b)
	rdb := redis.NewClient(&redis.Options{Addr: addr, PoolSize: 16})
	defer rdb.Close()
	keyer := suppression.NewKeyer([]byte("p"))
	store := teststore.Build(b, rdb, redisstore.Options{Prefix: teststore.Prefix(), Keying: keyer.Fingerprint()})
	ctx := context.Background()
	var ws []suppression.Write
	write := func(kind suppression.KeyKind, h [32]byte, tag int) {
		ws = append(ws, suppression.Write{Namespace: "default", Key: keyer.StorageKey(suppression.MatchKey{Kind: kind, Hash: h}),
			Scope: "*", Change: suppression.Change{Action: suppression.ActionSuppress, Reason: suppression.ReasonUnsubscribe,
				Stamp: suppression.Stamp{At: 1, Tag: uint64(tag)}, Origin: suppression.OriginRecipient, Source: "/bench"}})
		if len(ws) == 5000 {
			if _, err := store.Apply(ctx, ws); err != nil {
				b.Fatal(err)
			}
			ws = ws[:0]
		}
	}
	for i := 0; i < n; i += 100 { // 1 % of the emails, 1 % of the phones, never the same row
		write(suppression.KindEmail, lineHash(i), i)
		if i+50 < n {
			write(suppression.KindPhone, phoneHash(i+50), i+50)
		}
	}
	if _, err := store.Apply(ctx, ws); err != nil {
		b.Fatal(err)
	}
	suppressed := (n+99)/100 + (n+49)/100
	s := New(store, Options{Keys: testKeys(b), Normalizer: norm, Keyer: keyer}, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()

	stream := func(path, contentType string, body io.Reader) (lines int, trailer http.Header) {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+path, body)
		req.Header.Set("Authorization", "Bearer "+filterKey)
		req.Header.Set("Content-Type", contentType)
		resp, err := srv.Client().Do(req)
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("%s: status %d", path, resp.StatusCode)
		}
		br := bufio.NewReaderSize(resp.Body, 64<<10)
		for {
			_, err := br.ReadSlice('\n')
			if err == io.EOF {
				break
			}
			if err != nil && err != bufio.ErrBufferFull {
				b.Fatal(err)
			}
			lines++
		}
		return lines, resp.Trailer
	}
	// The cost of a stream is the CPU it takes: this process's (the API
	// and its client) and Redis's. Wall time on a shared machine says as
	// much about the neighbours as about the filter.
	cpu := func() float64 {
		var ru syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		own := time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
		info, err := rdb.Info(ctx, "cpu").Result()
		if err != nil {
			b.Fatal(err)
		}
		for _, l := range strings.Split(info, "\r\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && (k == "used_cpu_user" || k == "used_cpu_sys") {
				f, _ := strconv.ParseFloat(v, 64)
				own += f
			}
		}
		return own
	}
	for i := 0; i < b.N; i++ {
		heap := sampleHeap()
		start, cpu0 := time.Now(), cpu()
		lines, tr := stream("/v1/filter/rows?template=google", "text/csv", &audienceRows{n: n})
		rowsTook, rowsCPU := time.Since(start), cpu()-cpu0
		peak, growth := heap.end()
		want := fmt.Sprint(n - suppressed)
		if lines != n-suppressed+1 || tr.Get("Suppressd-Allowed") != want || tr.Get("Suppressd-Malformed") != "0" {
			b.Fatalf("%d lines back, trailers %v; want the header and %s rows", lines, tr, want)
		}

		lineHeap := sampleHeap() // sampled too, so both halves pay for ReadMemStats
		start, cpu0 = time.Now(), cpu()
		emails, _ := stream("/v1/filter?type=email_sha256&platform=google", "text/plain", &audienceRows{n: n, only: "email"})
		phones, _ := stream("/v1/filter?type=phone_sha256&platform=google", "text/plain", &audienceRows{n: n, only: "phone"})
		linesTook, linesCPU := time.Since(start), cpu()-cpu0
		lineHeap.end()
		if emails+phones != 2*n-suppressed+2 { // each ends with its summary line
			b.Fatalf("%d + %d lines back from the single-column filter", emails, phones)
		}
		b.ReportMetric(float64(n)/rowsTook.Seconds(), "rows/s")
		b.ReportMetric(float64(2*n)/linesTook.Seconds(), "lines/s")
		b.ReportMetric(rowsCPU/linesCPU*2, "row-cpu-in-lines")
		b.ReportMetric(rowsTook.Seconds()/linesTook.Seconds()*2, "row-time-in-lines")
		b.ReportMetric(peak, "peak-heap-MiB")
		b.ReportMetric(growth, "heap-growth-MiB")
	}
}
