package main

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/suppressd/suppressd/internal/testenv"
	"github.com/suppressd/suppressd/internal/testkafka"
	"github.com/suppressd/suppressd/internal/testredis"
	"github.com/suppressd/suppressd/internal/teststore"
	"github.com/suppressd/suppressd/store/redisstore"
	"github.com/suppressd/suppressd/suppression"
)

// BenchmarkCheckHTTP loads `suppressd serve --role api` (a process of its
// own, on a redis-server of the benchmark's own holding
// SUPPRESSD_BENCH_KEYS, default 100,000, suppressed keys) with wrk (another
// process): once with the read index (on by default; it follows a ledger
// topic of its own on the test command's Kafka and loads the keys from the
// store), once with SUPPRESSD_INDEX_ENABLED=false, beside a bare net/http
// handler doing one HMGET per request on the same server, at 16
// connections (peak) and at 2 (about half of the peak):
// scripts/bench.sh CheckHTTP.
func BenchmarkCheckHTTP(b *testing.B) {
	if _, err := exec.LookPath("wrk"); err != nil {
		b.Fatal("wrk is needed: apt-get install wrk (scripts/bench.sh installs it)")
	}
	redisSrv := testredis.StartVolatile(b)
	redisAddr := redisSrv.Addr()
	bin, err := buildPlainBinary()
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer rdb.Close()
	pepper := []byte("check-http-bench-pepper")
	prefix := teststore.Prefix()
	store := teststore.Build(b, rdb, redisstore.Options{Prefix: prefix, Keying: suppression.NewKeyer(pepper).Fingerprint()})
	keyer := suppression.NewKeyer(pepper)
	var ws []suppression.Write
	keys := 100_000
	if v, err := strconv.Atoi(os.Getenv("SUPPRESSD_BENCH_KEYS")); err == nil && v > 0 {
		keys = v
	}
	for i := range keys {
		ws = append(ws, suppression.Write{Namespace: "default", Key: keyer.StorageKey(suppression.MatchKey{Kind: suppression.KindEmail, Hash: sha256.Sum256([]byte(strconv.Itoa(i)))}),
			Scope: "*", Change: suppression.Change{Action: suppression.ActionSuppress, Reason: suppression.ReasonUnsubscribe,
				Stamp: suppression.Stamp{At: 1, Tag: uint64(i)}, Origin: suppression.OriginRecipient, Source: "/bench"}})
		if len(ws) == 5000 || i == keys-1 {
			if _, err := store.Apply(ctx, ws); err != nil {
				b.Fatal(err)
			}
			ws = ws[:0]
		}
	}
	brokers := testenv.KafkaBrokers(b)
	ledgerTopic := testkafka.Unique("bench-ledger")
	testkafka.CreateTopic(ctx, b, brokers[0], ledgerTopic, 2)

	h := sha256.Sum256([]byte("sdk_bench"))
	start := func(indexOn bool) string {
		addr := freePort(b)
		cmd := exec.Command(bin, "serve", "--role", "api")
		cmd.Env = append(os.Environ(), "SUPPRESSD_API_ADDR="+addr, "SUPPRESSD_API_KEYS=b:check:"+hex.EncodeToString(h[:]),
			"SUPPRESSD_REDIS_ADDRS="+redisAddr, "SUPPRESSD_LOG_LEVEL=warn", "SUPPRESSD_KAFKA_BROKERS="+strings.Join(brokers, ","),
			"SUPPRESSD_STORE_PREFIX="+prefix, "SUPPRESSD_PEPPER="+base64.StdEncoding.EncodeToString(pepper),
			"SUPPRESSD_TOPIC_LEDGER="+ledgerTopic, "SUPPRESSD_CONSUMER_GROUP="+ledgerTopic,
			"SUPPRESSD_INDEX_ENABLED="+strconv.FormatBool(indexOn))
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		want := `"state":"off"`
		if indexOn {
			want = `"state":"serving"`
		}
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
			if resp, err := http.Get("http://" + addr + "/readyz"); err == nil {
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK && strings.Contains(string(body), want) {
					break
				}
			}
			if time.Now().After(deadline) {
				b.Fatalf("suppressd serve (index %v) did not become ready with %s", indexOn, want)
			}
		}
		return addr
	}
	apiAddr, plainAddr := start(true), start(false)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	bare := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if err := rdb.HMGet(r.Context(), "bench:bare", "f").Err(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"allowed":true}`)
	})}
	go func() { _ = bare.Serve(ln) }()
	defer bare.Close()

	script := filepath.Join(b.TempDir(), "post.lua")
	if err := os.WriteFile(script, []byte(`wrk.method = "POST"
wrk.body = '{"identifiers":[{"type":"email","value":"someone@example.org"}],"channel":"email","purpose":"marketing"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer sdk_bench"
`), 0o600); err != nil {
		b.Fatal(err)
	}
	wrk := func(url string, conns int) (rps, p50, p99 float64) {
		out, err := exec.Command("wrk", "-t1", "-c"+strconv.Itoa(conns), "-d8s", "--latency", "-s", script, url).CombinedOutput()
		if err != nil {
			b.Fatalf("wrk: %v\n%s", err, out)
		}
		if strings.Contains(string(out), "Non-2xx") || strings.Contains(string(out), "Socket errors") {
			b.Fatalf("wrk saw failed requests at %s:\n%s", url, out)
		}
		num := func(re string) float64 {
			m := regexp.MustCompile(re).FindSubmatch(out)
			if m == nil {
				b.Fatalf("wrk output lacks %s:\n%s", re, out)
			}
			v, _ := strconv.ParseFloat(string(m[1]), 64)
			switch string(m[2]) {
			case "us":
				v /= 1000
			case "s":
				v *= 1000
			}
			return v
		}
		return num(`Requests/sec:\s+([0-9.]+)()`), num(`50%\s+([0-9.]+)(us|ms|s)`), num(`99%\s+([0-9.]+)(us|ms|s)`)
	}
	for i := 0; i < b.N; i++ {
		baseRPS, _, baseP99 := wrk("http://"+ln.Addr().String()+"/", 16)
		rps, p50, p99 := wrk("http://"+apiAddr+"/v1/check", 16)
		plainRPS, _, plainP99 := wrk("http://"+plainAddr+"/v1/check", 16)
		halfRPS, halfP50, halfP99 := wrk("http://"+apiAddr+"/v1/check", 2)
		_, _, plainHalfP99 := wrk("http://"+plainAddr+"/v1/check", 2)
		_, _, baseHalfP99 := wrk("http://"+ln.Addr().String()+"/", 2)
		b.ReportMetric(baseRPS, "baseline-req/s")
		b.ReportMetric(rps, "check-req/s")
		b.ReportMetric(rps/baseRPS, "x-baseline")
		b.ReportMetric(plainRPS, "noindex-req/s")
		b.ReportMetric(plainRPS/baseRPS, "noindex-x-baseline")
		b.ReportMetric(p50, "peak-p50-ms")
		b.ReportMetric(p99, "peak-p99-ms")
		b.ReportMetric(plainP99, "noindex-peak-p99-ms")
		b.ReportMetric(baseP99, "baseline-peak-p99-ms")
		b.ReportMetric(100*halfRPS/rps, "low-load-%-of-peak")
		b.ReportMetric(halfP50, "low-load-p50-ms")
		b.ReportMetric(halfP99, "low-load-p99-ms")
		b.ReportMetric(plainHalfP99, "noindex-low-load-p99-ms")
		b.ReportMetric(baseHalfP99, "baseline-low-load-p99-ms")
	}
}
