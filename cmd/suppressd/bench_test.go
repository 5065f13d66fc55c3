package main

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/suppressd/suppressd/internal/testenv"
)

// BenchmarkCheckHTTP loads `suppressd serve --role api` (a process of its
// own, on real Redis) with wrk (another process), beside a bare net/http
// handler doing one HMGET per request, at 16 connections (peak) and at 2
// (about half of the peak): scripts/bench.sh CheckHTTP.
func BenchmarkCheckHTTP(b *testing.B) {
	if _, err := exec.LookPath("wrk"); err != nil {
		b.Fatal("wrk is needed: apt-get install wrk (scripts/bench.sh installs it)")
	}
	redisAddr := testenv.RedisAddr(b)
	bin, err := buildPlainBinary()
	if err != nil {
		b.Fatal(err)
	}
	apiAddr := freePort(b)
	h := sha256.Sum256([]byte("sdk_bench"))
	cmd := exec.Command(bin, "serve", "--role", "api")
	cmd.Env = append(os.Environ(), "SUPPRESSD_API_ADDR="+apiAddr, "SUPPRESSD_API_KEYS=b:check:"+hex.EncodeToString(h[:]),
		"SUPPRESSD_REDIS_ADDRS="+redisAddr, "SUPPRESSD_LOG_LEVEL=warn", "SUPPRESSD_KAFKA_BROKERS=127.0.0.1:1")
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()

	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer rdb.Close()
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
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if resp, err := http.Get("http://" + apiAddr + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			b.Fatal("suppressd serve did not become ready")
		}
	}
	wrk := func(url string, conns int) (rps, p50, p99 float64) {
		out, err := exec.Command("wrk", "-t1", "-c"+strconv.Itoa(conns), "-d8s", "--latency", "-s", script, url).CombinedOutput()
		if err != nil {
			b.Fatalf("wrk: %v\n%s", err, out)
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
		halfRPS, halfP50, halfP99 := wrk("http://"+apiAddr+"/v1/check", 2)
		_, _, baseHalfP99 := wrk("http://"+ln.Addr().String()+"/", 2)
		b.ReportMetric(baseRPS, "baseline-req/s")
		b.ReportMetric(rps, "check-req/s")
		b.ReportMetric(100*rps/baseRPS, "%-of-baseline")
		b.ReportMetric(p50, "peak-p50-ms")
		b.ReportMetric(p99, "peak-p99-ms")
		b.ReportMetric(baseP99, "baseline-peak-p99-ms")
		b.ReportMetric(100*halfRPS/rps, "low-load-%-of-peak")
		b.ReportMetric(halfP50, "low-load-p50-ms")
		b.ReportMetric(halfP99, "low-load-p99-ms")
		b.ReportMetric(baseHalfP99, "baseline-low-load-p99-ms")
	}
}
