package unsubscribe

import (
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/suppressd/suppressd/publish"
	"github.com/suppressd/suppressd/suppression"
)

// gathered reads a metric from reg: each series' value (a histogram's
// sample count) by its label values joined with "/", in the order given.
func gathered(t *testing.T, reg *prometheus.Registry, name string, labels ...string) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
				require.NotContains(t, l.GetValue(), "@", "no address in a label")
			}
			var key []string
			for _, l := range labels {
				key = append(key, got[l])
			}
			v := m.GetCounter().GetValue()
			if h := m.GetHistogram(); h != nil {
				v = float64(h.GetSampleCount())
			}
			out[strings.Join(key, "/")] = v
		}
	}
	return out
}

// TestPageMetrics follows links through the pages, publishing to the real
// broker with the publish log in the real Redis, and checks every request
// is counted by page and outcome, every publish by how the person asked
// and what became of it, and every refused token by why.
func TestPageMetrics(t *testing.T) {
	pub, plog, onTopic := realPublishing(t)
	reg := prometheus.NewRegistry()
	e := newEnv(t, func(o *Options) {
		o.Publisher, o.PublishLog, o.Registerer = pub, plog, reg
		o.TokenRate, o.ClientRate = -1, -1
	})
	path := "/u/" + e.token
	gpc := http.Header{"Sec-Gpc": {"1"}}
	for _, step := range []struct {
		name   string
		do     func() (*http.Response, string)
		status int
	}{
		{"the confirmation page", func() (*http.Response, string) { return e.do(http.MethodGet, path, "", nil, nil) }, 200},
		{"one click", func() (*http.Response, string) { return e.gmailPost(path) }, 200},
		{"the same click again", func() (*http.Response, string) { return e.rfcPost(path) }, 200},
		{"a POST that asks nothing", func() (*http.Response, string) { return e.form(path, url.Values{"x": {"1"}}, nil) }, 400},
		{"the preference page with GPC", func() (*http.Response, string) { return e.do(http.MethodGet, path+"/preferences", "", nil, gpc) }, 200},
		{"leaving everything", func() (*http.Response, string) { return e.form(path+"/preferences", url.Values{"scope": {"*"}}, nil) }, 200},
		{"a scope the link does not carry", func() (*http.Response, string) {
			return e.form(path+"/preferences", url.Values{"scope": {"ads"}}, nil)
		}, 400},
		{"garbage", func() (*http.Response, string) { return e.do(http.MethodGet, "/u/hello", "", nil, nil) }, 400},
		{"expired", func() (*http.Response, string) {
			return e.gmailPost("/u/" + mint(t, e.ring, e.claims, testNow.Add(-DefaultTTL-time.Hour)))
		}, 400},
		{"a key no longer configured", func() (*http.Response, string) {
			return e.do(http.MethodGet, "/u/"+mint(t, testRing(t, "k9", testKey("k9", "a")), e.claims, testNow), "", nil, nil)
		}, 400},
		{"below a page", func() (*http.Response, string) { return e.do(http.MethodGet, path+"/preferences/x", "", nil, nil) }, 404},
		{"another method", func() (*http.Response, string) { return e.do(http.MethodDelete, path, "", nil, nil) }, 405},
	} {
		resp, _ := step.do()
		require.Equal(t, step.status, resp.StatusCode, step.name)
	}
	require.ElementsMatch(t, []string{"io.suppressd.unsubscribe.v1", "io.suppressd.gpc.v1", "io.suppressd.unsubscribe.v1"}, onTopic(3))

	require.Equal(t, map[string]float64{
		"confirm/shown":                 1,
		"unsubscribe/unsubscribed":      2,
		"unsubscribe/bad_request":       1,
		"preferences/shown":             1,
		"save_preferences/unsubscribed": 1,
		"save_preferences/bad_request":  1,
		"confirm/invalid_token":         2,
		"unsubscribe/invalid_token":     1,
		"other/not_found":               1,
		"other/method_not_allowed":      1,
	}, gathered(t, reg, "suppressd_unsubscribe_requests_total", "page", "outcome"))
	require.Equal(t, map[string]float64{
		"one_click/published":   1,
		"one_click/repeat":      1,
		"gpc/published":         1,
		"preferences/published": 1,
	}, gathered(t, reg, "suppressd_unsubscribe_events_total", "via", "outcome"))
	require.Equal(t, map[string]float64{"malformed": 1, "expired": 1, "unknown_key": 1},
		gathered(t, reg, "suppressd_unsubscribe_token_rejections_total", "reason"))
	require.Equal(t, map[string]float64{"confirm": 3, "unsubscribe": 4, "preferences": 1, "save_preferences": 2, "other": 2},
		gathered(t, reg, "suppressd_unsubscribe_request_duration_seconds", "page"))
}

// TestPageMetricsKafkaDown: with Kafka not answering, the one-click POST
// is a 503 and counted as unavailable (the person was not unsubscribed),
// its publish as failed; a link over its rate is counted as rate limited.
func TestPageMetricsKafkaDown(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	gone := l.Addr().String()
	require.NoError(t, l.Close())
	w := publish.NewWriter([]string{gone}, nil)
	t.Cleanup(func() { _ = w.Close() })
	down := publish.New(w, publish.Topics{Unsubscribes: "t", Consent: "t", Erasure: "t"}, suppression.Normalizer{}, time.Second, nil)
	reg := prometheus.NewRegistry()
	e := newEnv(t, func(o *Options) {
		o.Publisher, o.Registerer, o.PublishTimeout = down, reg, time.Second
		o.TokenRate = 2
	})
	path := "/u/" + e.token
	resp, _ := e.gmailPost(path)
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	resp, _ = e.do(http.MethodGet, path, "", nil, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	resp, _ = e.do(http.MethodGet, path, "", nil, nil)
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)

	require.Equal(t, map[string]float64{"unsubscribe/unavailable": 1, "confirm/shown": 1, "confirm/rate_limited": 1},
		gathered(t, reg, "suppressd_unsubscribe_requests_total", "page", "outcome"))
	require.Equal(t, map[string]float64{"one_click/failed": 1},
		gathered(t, reg, "suppressd_unsubscribe_events_total", "via", "outcome"))
}
