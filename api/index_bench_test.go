package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/suppressd/suppressd/consumer"
	"github.com/suppressd/suppressd/index"
	"github.com/suppressd/suppressd/internal/kafkaconn"
	"github.com/suppressd/suppressd/internal/testenv"
	"github.com/suppressd/suppressd/internal/testkafka"
	"github.com/suppressd/suppressd/internal/testredis"
	"github.com/suppressd/suppressd/internal/teststore"
	"github.com/suppressd/suppressd/store/redisstore"
	"github.com/suppressd/suppressd/suppression"
)

// The read index's API benchmarks: scripts/bench.sh 'CheckBatch|FilterIndexed'.
// Each starts a redis-server of its own (the snapshot scans the whole
// keyspace, and the baselines run on the same server), and follows a ledger
// topic of its own on the test command's Kafka.

// indexed returns store read through a read index that follows a new,
// empty ledger topic (the store's keys come from its snapshot), once the
// index serves.
func indexed(b *testing.B, store *redisstore.Store) *index.Store {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	brokers := testenv.KafkaBrokers(b)
	topic := testkafka.Unique("bench-ledger")
	testkafka.CreateTopic(ctx, b, brokers[0], topic, 1)
	feed := consumer.LedgerFeed{Kafka: kafkaconn.Config{Brokers: brokers, DialTimeout: 10 * time.Second}, Topic: topic, Group: topic + "-apply"}
	idx := index.New(store, feed, index.Options{}, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	rctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = idx.Run(rctx) }()
	b.Cleanup(func() { stop(); <-done })
	for idx.Status().State != "serving" {
		if ctx.Err() != nil {
			b.Fatalf("the index does not serve: %+v", idx.Status())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return index.NewStore(store, idx)
}

// suppressAll writes a global unsubscribe of every key into store.
func suppressAll(b *testing.B, store suppression.Store, keys []suppression.StorageKey) {
	b.Helper()
	var ws []suppression.Write
	for i, k := range keys {
		ws = append(ws, suppression.Write{Namespace: "default", Key: k, Scope: "*", Change: suppression.Change{
			Action: suppression.ActionSuppress, Reason: suppression.ReasonUnsubscribe,
			Stamp: suppression.Stamp{At: 1, Tag: uint64(i)}, Origin: suppression.OriginRecipient, Source: "/bench"}})
		if len(ws) == 5000 || i == len(keys)-1 {
			if _, err := store.Apply(context.Background(), ws); err != nil {
				b.Fatal(err)
			}
			ws = ws[:0]
		}
	}
}

// BenchmarkCheckBatch measures POST /v1/check/batch of 1,000 contacts (an
// address each, 1 % of them suppressed; the store holds
// SUPPRESSD_BENCH_KEYS, default 100,000, suppressed keys in all) read
// through the index, beside the same without it and beside the baseline:
// the store's own pipelined HMGET of the batch's 1,000 keys, called
// directly (no HTTP, no JSON), at the same concurrency (4).
func BenchmarkCheckBatch(b *testing.B) {
	const contacts = 1000
	srv := testredis.StartVolatile(b)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), PoolSize: 32})
	defer rdb.Close()
	keyer := suppression.NewKeyer([]byte("p"))
	store := teststore.Build(b, rdb, redisstore.Options{Prefix: teststore.Prefix(), Keying: keyer.Fingerprint()})

	type contact struct {
		Ref         string            `json:"ref"`
		Identifiers []json.RawMessage `json:"identifiers"`
	}
	req := struct {
		Channel  string    `json:"channel"`
		Purpose  string    `json:"purpose"`
		Contacts []contact `json:"contacts"`
	}{Channel: "email", Purpose: "marketing"}
	var keys []suppression.StorageKey
	for i := range contacts {
		email := fmt.Sprintf("reader-%d@example.org", i)
		req.Contacts = append(req.Contacts, contact{Ref: fmt.Sprint(i), Identifiers: []json.RawMessage{
			json.RawMessage(fmt.Sprintf(`{"type":"email","value":%q}`, email))}})
		ks, err := keysFor(keyer, email)
		if err != nil {
			b.Fatal(err)
		}
		keys = append(keys, ks...)
	}
	if len(keys) != contacts {
		b.Fatalf("%d keys for %d addresses", len(keys), contacts)
	}
	body, _ := json.Marshal(req)
	// 1 % of the batch, and more keys no batch asks about.
	var suppressed []suppression.StorageKey
	for i := 0; i < contacts; i += 100 {
		suppressed = append(suppressed, keys[i])
	}
	ks := 0
	for range benchEnv("SUPPRESSD_BENCH_KEYS", 100_000) - len(suppressed) {
		ks++
		suppressed = append(suppressed, keyer.StorageKey(suppression.MatchKey{Kind: suppression.KindEmail, Hash: lineHash(1<<50 + ks)}))
	}
	suppressAll(b, store, suppressed)

	plain := httptest.NewServer(New(store, Options{Keys: testKeys(b), Normalizer: norm, Keyer: keyer}, slog.New(slog.DiscardHandler), prometheus.NewRegistry()).Handler())
	defer plain.Close()
	withIndex := httptest.NewServer(New(indexed(b, store), Options{Keys: testKeys(b), Normalizer: norm, Keyer: keyer}, slog.New(slog.DiscardHandler), prometheus.NewRegistry()).Handler())
	defer withIndex.Close()

	wantSuppressed := contacts / 100
	batch := func(url string) func(c *http.Client) error {
		return func(c *http.Client) error {
			r, _ := http.NewRequest(http.MethodPost, url+"/v1/check/batch", strings.NewReader(string(body)))
			r.Header.Set("Authorization", "Bearer "+checkKey)
			r.Header.Set("Content-Type", "application/json")
			resp, err := c.Do(r)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			var out struct {
				Results []struct {
					Allowed bool `json:"allowed"`
				} `json:"results"`
			}
			if err := json.NewDecoder(bufio.NewReader(resp.Body)).Decode(&out); err != nil || resp.StatusCode != http.StatusOK {
				return fmt.Errorf("status %d, %v", resp.StatusCode, err)
			}
			n := 0
			for _, r := range out.Results {
				if !r.Allowed {
					n++
				}
			}
			if len(out.Results) != contacts || n != wantSuppressed {
				return fmt.Errorf("%d results, %d suppressed; want %d, %d", len(out.Results), n, contacts, wantSuppressed)
			}
			return nil
		}
	}
	const conc, d = 4, 5 * time.Second
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		baseRPS, _, baseP99 := load(b, conc, d, 0, func(*http.Client) error {
			recs, err := store.Get(ctx, "default", keys)
			if err == nil && len(recs) != len(keys) {
				err = fmt.Errorf("%d records for %d keys", len(recs), len(keys))
			}
			return err
		})
		rps, p50, p99 := load(b, conc, d, 0, batch(withIndex.URL))
		plainRPS, _, plainP99 := load(b, conc, d, 0, batch(plain.URL))
		b.ReportMetric(baseRPS, "hmget-pipelines/s")
		b.ReportMetric(baseP99, "hmget-p99-ms")
		b.ReportMetric(rps, "index-batches/s")
		b.ReportMetric(rps*contacts, "index-contacts/s")
		b.ReportMetric(p50, "index-p50-ms")
		b.ReportMetric(p99, "index-p99-ms")
		b.ReportMetric(rps/baseRPS, "index-x-hmget")
		b.ReportMetric(plainRPS, "noindex-batches/s")
		b.ReportMetric(plainP99, "noindex-p99-ms")
		b.ReportMetric(plainRPS/baseRPS, "noindex-x-hmget")
	}
}

// keysFor returns the storage keys of an address, as the API makes them.
func keysFor(keyer suppression.Keyer, email string) ([]suppression.StorageKey, error) {
	mks, err := norm.Expand(suppression.Identifier{Type: suppression.IDEmail, Value: email})
	if err != nil {
		return nil, err
	}
	return keyer.StorageKeys(nil, mks), nil
}

func benchEnv(name string, def int) int {
	var v int
	if _, err := fmt.Sscan(getenvDefault(name, ""), &v); err == nil && v > 0 {
		return v
	}
	return def
}

// BenchmarkFilterIndexed streams SUPPRESSD_BENCH_LINES (default 2,000,000)
// hashes, 1 % of them suppressed, through /v1/filter read through the
// index, then without it, beside `redis-benchmark -P 64` EXISTS of as many
// keys on the same server; the heap is sampled while the indexed stream
// runs (peak, and the second half's peak over the first's: flat is about
// zero).
func BenchmarkFilterIndexed(b *testing.B) {
	n := benchEnv("SUPPRESSD_BENCH_LINES", 2_000_000)
	srv := testredis.StartVolatile(b)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), PoolSize: 16})
	defer rdb.Close()
	keyer := suppression.NewKeyer([]byte("p"))
	store := teststore.Build(b, rdb, redisstore.Options{Prefix: teststore.Prefix(), Keying: keyer.Fingerprint()})
	var suppressed []suppression.StorageKey
	for i := 0; i < n; i += 100 { // every 100th line: 1 %
		suppressed = append(suppressed, keyer.StorageKey(suppression.MatchKey{Kind: suppression.KindEmail, Hash: lineHash(i)}))
	}
	suppressAll(b, store, suppressed)
	opts := Options{Keys: testKeys(b), Normalizer: norm, Keyer: keyer}
	plain := httptest.NewServer(New(store, opts, slog.New(slog.DiscardHandler), prometheus.NewRegistry()).Handler())
	defer plain.Close()
	withIndex := httptest.NewServer(New(indexed(b, store), opts, slog.New(slog.DiscardHandler), prometheus.NewRegistry()).Handler())
	defer withIndex.Close()

	stream := func(srv *httptest.Server) float64 {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/filter?type=email_sha256&platform=google", &hashLines{n: n})
		req.Header.Set("Authorization", "Bearer "+filterKey)
		req.Header.Set("Content-Type", "text/plain")
		start := time.Now()
		resp, err := srv.Client().Do(req)
		if err != nil {
			b.Fatal(err)
		}
		br := bufio.NewReaderSize(resp.Body, 64<<10)
		allowed := 0
		var summary string
		for {
			line, err := br.ReadSlice('\n')
			if err != nil {
				break
			}
			if line[0] == '#' {
				summary = strings.TrimSpace(string(line))
				continue
			}
			allowed++
		}
		resp.Body.Close()
		took := time.Since(start)
		want := fmt.Sprintf("# total=%d allowed=%d suppressed=%d malformed=0", n, n-len(suppressed), len(suppressed))
		if summary != want || allowed != n-len(suppressed) {
			b.Fatalf("summary %q, %d allowed lines; want %q", summary, allowed, want)
		}
		return float64(n) / took.Seconds()
	}
	for i := 0; i < b.N; i++ {
		heap := sampleHeap()
		rate := stream(withIndex)
		peak, growth := heap.end()
		plainRate := stream(plain)
		ceiling := testenv.RedisBenchmark(b, srv.Addr(), n, "exists", "benchfilter:__rand_int__")
		b.ReportMetric(rate, "index-lines/s")
		b.ReportMetric(plainRate, "noindex-lines/s")
		b.ReportMetric(ceiling, "redis-benchmark-exists/s")
		b.ReportMetric(rate/ceiling, "index-x-exists")
		b.ReportMetric(peak, "index-peak-heap-MiB")
		b.ReportMetric(growth, "index-heap-growth-MiB")
	}
}

// BenchmarkCheckHandler is what the /v1/check handler itself costs, read
// through the index, without a connection: authentication, the body, the
// expansion and HMACs, the read and the answer. Beside BenchmarkCheckHTTP
// it says how much of a request is suppressd's and how much net/http's
// and the kernel's.
func BenchmarkCheckHandler(b *testing.B) {
	rdb := redis.NewClient(&redis.Options{Addr: testredis.StartVolatile(b).Addr()})
	defer rdb.Close()
	keyer := suppression.NewKeyer([]byte("p"))
	store := teststore.Build(b, rdb, redisstore.Options{Prefix: teststore.Prefix(), Keying: keyer.Fingerprint()})
	h := New(indexed(b, store), Options{Keys: testKeys(b), Normalizer: norm, Keyer: keyer}, slog.New(slog.DiscardHandler), prometheus.NewRegistry()).Handler()
	body := []byte(`{"identifiers":[{"type":"email","value":"someone@example.org"}],"channel":"email","purpose":"marketing"}`)
	req := func() *http.Request {
		r := httptest.NewRequest(http.MethodPost, "/v1/check", bytes.NewReader(body))
		r.Header.Set("Authorization", "Bearer "+checkKey)
		r.Header.Set("Content-Type", "application/json")
		return r
	}
	// The requests are made outside the timer's count: what is measured
	// is the handler.
	reqs := make([]*http.Request, 0, 1024)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if len(reqs) == 0 {
			b.StopTimer()
			for range cap(reqs) {
				reqs = append(reqs, req())
			}
			b.StartTimer()
		}
		r := reqs[len(reqs)-1]
		reqs = reqs[:len(reqs)-1]
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"allowed":true`) {
			b.Fatal(w.Code, w.Body.String())
		}
	}
}

// BenchmarkCheckBatchHandler is BenchmarkCheckHandler for a
// /v1/check/batch of 1,000 addresses: the handler without a connection.
func BenchmarkCheckBatchHandler(b *testing.B) {
	rdb := redis.NewClient(&redis.Options{Addr: testredis.StartVolatile(b).Addr()})
	defer rdb.Close()
	keyer := suppression.NewKeyer([]byte("p"))
	store := teststore.Build(b, rdb, redisstore.Options{Prefix: teststore.Prefix(), Keying: keyer.Fingerprint()})
	h := New(indexed(b, store), Options{Keys: testKeys(b), Normalizer: norm, Keyer: keyer}, slog.New(slog.DiscardHandler), prometheus.NewRegistry()).Handler()
	var body bytes.Buffer
	body.WriteString(`{"channel":"email","purpose":"marketing","contacts":[`)
	for i := range 1000 {
		if i > 0 {
			body.WriteByte(',')
		}
		fmt.Fprintf(&body, `{"ref":"%d","identifiers":[{"type":"email","value":"reader-%d@example.org"}]}`, i, i)
	}
	body.WriteString(`]}`)
	raw := body.Bytes()
	b.ReportAllocs()
	for b.Loop() {
		r := httptest.NewRequest(http.MethodPost, "/v1/check/batch", bytes.NewReader(raw))
		r.Header.Set("Authorization", "Bearer "+checkKey)
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			b.Fatal(w.Code, w.Body.String())
		}
	}
}
