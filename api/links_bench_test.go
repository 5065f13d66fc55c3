package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/suppressd/suppressd/store/memstore"
	"github.com/suppressd/suppressd/suppression"
)

// BenchmarkLinks measures POST /v1/links over HTTP: the server and the
// load (16 connections, each posting the same request body) share this
// process and its cores. Minting asks neither Redis nor Kafka, so the
// store is never touched. Recipients are email addresses of about 25
// characters with a shared topic, campaign id and a mailto address, as a
// newsletter send has; per batch size it reports links/s, links per
// CPU-second of the process (load included: what two idle cores would
// reach) and the latency of one request, and for one recipient a request
// a bare handler's rate beside it.
//
//	go test -run '^$' -bench Links ./api/    (or scripts/bench.sh Links)
func BenchmarkLinks(b *testing.B) {
	kr := testLinkKeys(b)
	s := New(memstore.New(), Options{Keys: testKeys(b), Normalizer: norm, Links: testMinter(b, kr, "unsubscribe@example.org")},
		slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	for _, size := range []int{1, 100, 1000, 10_000} {
		b.Run(fmt.Sprintf("recipients=%d", size), func(b *testing.B) {
			rs := make([]map[string]any, size)
			for i := range rs {
				rs[i] = map[string]any{"ref": fmt.Sprintf("r-%d", i), "identifier": suppression.Identifier{Type: suppression.IDEmail, Value: fmt.Sprintf("subscriber%06d@example.org", i)}}
			}
			body := mustJSON(b, map[string]any{"namespace": "acme", "scopes": []string{"topic:newsletter"}, "campaign_id": "c-2026-11", "recipients": rs})
			// One answer checked in full before the load.
			req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/links", bytes.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+linksKey)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			answer, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			var ans struct{ Results []linkResult }
			if err == nil {
				err = json.Unmarshal(answer, &ans)
			}
			if err != nil || len(ans.Results) != size || ans.Results[size-1].URL == "" {
				b.Fatalf("answer: %v, %d results", err, len(ans.Results))
			}
			const conc, d = 16, 5 * time.Second
			for i := 0; i < b.N; i++ {
				cpu0 := cpuTime()
				// post reads each answer to its end without decoding it, so
				// the load's share of the cores stays small.
				rps, p50, p99 := load(b, conc, d, 0, func(c *http.Client) error {
					return post(c, srv.URL+"/v1/links", linksKey, body)
				})
				// CPU time is what the machine's other tenants cannot
				// take away: links per CPU-second, load included, is the
				// rate the process would reach on cores of its own.
				cpu := (cpuTime() - cpu0).Seconds()
				links := rps * float64(size) * d.Seconds()
				b.ReportMetric(rps*float64(size), "links/s")
				b.ReportMetric(links/cpu, "links/cpu-s")
				b.ReportMetric(rps, "req/s")
				b.ReportMetric(p50, "p50-ms")
				b.ReportMetric(p99, "p99-ms")
				if size == 1 {
					// One recipient a request is net/http's cost more than
					// minting's: a bare handler answering as much, beside.
					bare := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
						_, _ = io.Copy(io.Discard, r.Body)
						w.Header().Set("Content-Type", "application/json")
						_, _ = w.Write(answer)
					}))
					brps, _, _ := load(b, conc, d, 0, func(c *http.Client) error { return post(c, bare.URL, linksKey, body) })
					bare.Close()
					b.ReportMetric(brps, "bare-req/s")
					b.ReportMetric(100*rps/brps, "%-of-bare")
				}
			}
		})
	}
}

// cpuTime is the CPU time this process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
