package helm

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	promengine "github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/template"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/util/annotations"
	"github.com/stretchr/testify/require"
)

// renderedRules returns the full scenario's alerting rules by name.
func renderedRules(t *testing.T) map[string]monitoringv1.Rule {
	t.Helper()
	r, err := render(chartDir, []string{filepath.Join(chartDir, "ci", "full-values.yaml")})
	require.NoError(t, err)
	out := map[string]monitoringv1.Rule{}
	for _, o := range r.objects {
		if pr, ok := o.obj.(*monitoringv1.PrometheusRule); ok {
			for _, g := range pr.Spec.Groups {
				for _, rule := range g.Rules {
					out[rule.Alert] = rule
				}
			}
		}
	}
	require.NotEmpty(t, out)
	return out
}

// firing evaluates an alerting rule as Prometheus's rule manager does,
// once a minute from the start of the series (given as `promtool test
// rules` takes them: one series a line, "name{labels} 0+10x40") to the
// last minute given, and returns the minutes at which it was firing: the
// expression returned the alert's series at every evaluation for at least
// its `for`. The engine is Prometheus's own; the series live in memory.
func firing(t *testing.T, rule monitoringv1.Rule, load string, minutes int) []int {
	t.Helper()
	var all []storage.Series
	for _, line := range strings.Split(strings.TrimSpace(load), "\n") {
		ls, values, err := promParser.ParseSeriesDesc(line)
		require.NoError(t, err, line)
		var samples []chunks.Sample
		for i, v := range values {
			if !v.Omitted {
				samples = append(samples, floatSample{t: int64(i) * time.Minute.Milliseconds(), f: v.Value})
			}
		}
		all = append(all, storage.NewListSeries(ls, samples))
	}
	queryable := storage.QueryableFunc(func(_, _ int64) (storage.Querier, error) {
		return &storage.MockQuerier{SelectMockFunction: func(_ bool, _ *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
			var out []storage.Series
		next:
			for _, s := range all {
				for _, m := range ms {
					if !m.Matches(s.Labels().Get(m.Name)) {
						continue next
					}
				}
				out = append(out, s)
			}
			return &seriesSet{series: out, i: -1}
		}}, nil
	})
	engine := promengine.NewEngine(promengine.EngineOpts{MaxSamples: 1_000_000, Timeout: time.Minute, LookbackDelta: 5 * time.Minute})
	var hold time.Duration
	if rule.For != nil {
		d, err := model.ParseDuration(string(*rule.For))
		require.NoError(t, err)
		hold = time.Duration(d)
	}
	activeSince := map[string]int{} // alert's labels: the first minute of its current run
	var out []int
	for m := 0; m <= minutes; m++ {
		q, err := engine.NewInstantQuery(context.Background(), queryable, nil, rule.Expr.String(), time.Unix(0, 0).Add(time.Duration(m)*time.Minute))
		require.NoError(t, err, "%s", rule.Expr.String())
		res := q.Exec(context.Background())
		require.NoError(t, res.Err, "%s at %dm", rule.Alert, m)
		vec, err := res.Vector()
		require.NoError(t, err)
		q.Close()
		now := map[string]int{}
		fires := false
		for _, s := range vec {
			k := s.Metric.String()
			since, ok := activeSince[k]
			if !ok {
				since = m
			}
			now[k] = since
			fires = fires || time.Duration(m-since)*time.Minute >= hold
		}
		activeSince = now
		if fires {
			out = append(out, m)
		}
	}
	return out
}

// floatSample is a float sample of a loaded series.
type floatSample struct {
	t int64
	f float64
}

func (s floatSample) T() int64                      { return s.t }
func (s floatSample) ST() int64                     { return 0 }
func (s floatSample) F() float64                    { return s.f }
func (s floatSample) H() *histogram.Histogram       { return nil }
func (s floatSample) FH() *histogram.FloatHistogram { return nil }
func (s floatSample) Type() chunkenc.ValueType      { return chunkenc.ValFloat }
func (s floatSample) Copy() chunks.Sample           { return s }

// seriesSet is a storage.SeriesSet of series in memory.
type seriesSet struct {
	series []storage.Series
	i      int
}

func (s *seriesSet) Next() bool                        { s.i++; return s.i < len(s.series) }
func (s *seriesSet) At() storage.Series                { return s.series[s.i] }
func (s *seriesSet) Err() error                        { return nil }
func (s *seriesSet) Warnings() annotations.Annotations { return nil }

// series names a series of this release's consumer (c) or API (a) pod,
// with more labels.
func series(role, name, more string) string {
	job := "sd-consumer"
	if role == "a" {
		job = "sd-api"
	}
	l := fmt.Sprintf(`namespace=%q,job=%q`, namespace, job)
	if more != "" {
		l += "," + more
	}
	return name + "{" + l + "}"
}

// TestAlertsFire evaluates the chart's new and changed alerts against
// series shaped like what suppressd exports, with Prometheus's own rule
// engine (what `promtool test rules` runs): each fires where it should,
// after its `for`, and stays quiet in the healthy shapes next to it.
func TestAlertsFire(t *testing.T) {
	all := renderedRules(t)
	lag := func(pod, stage, partition, values string) string {
		return series("c", "suppressd_consumer_lag", fmt.Sprintf(`pod=%q,stage=%q,topic="t",partition=%q`, pod, stage, partition)) + " " + values
	}
	offset := func(pod, stage, partition, values string) string {
		return series("c", "suppressd_consumer_committed_offset", fmt.Sprintf(`pod=%q,stage=%q,topic="t",partition=%q`, pod, stage, partition)) + " " + values
	}
	lines := func(ls ...string) string { return strings.Join(ls, "\n") }
	for _, tc := range []struct {
		alert, name, load string
		minutes           int
		// from is the first minute it fires (it then fires to the end);
		// -1: never.
		from int
	}{
		// Two pods report the same group: one alert per partition, not per pod.
		{"SuppressdConsumerLagHigh", "a stage far behind for 15 minutes", lines(
			lag("a", "apply", "0", "200000x40"), lag("b", "apply", "0", "200000x40"), lag("a", "apply", "1", "0x40")), 40, 15},
		{"SuppressdConsumerLagHigh", "behind, but under the threshold", lag("a", "ingest", "0", "99999x40"), 40, -1},
		{"SuppressdConsumerLagHigh", "a burst worked off in 10 minutes", lag("a", "apply", "0", "500000-50000x10 0x30"), 40, -1},
		{"SuppressdConsumerLagGrowing", "growing past the threshold", lag("a", "ingest", "0", "5000+1000x60"), 60, 21},
		{"SuppressdConsumerLagGrowing", "high but steady", lag("a", "ingest", "0", "50000x60"), 60, -1},
		// A quiet partition: a few messages, nothing committed.
		{"SuppressdConsumerStalled", "a stuck member with 3 messages waiting", lines(
			lag("a", "apply", "0", "3x40"), offset("a", "apply", "0", "100x40")), 40, 5},
		{"SuppressdConsumerStalled", "busy but committing", lines(
			lag("a", "apply", "0", "3 0 5 2 4 1 3 0 2x33"), offset("a", "apply", "0", "100+20x40")), 40, -1},
		{"SuppressdConsumerStalled", "idle and caught up", lines(
			lag("a", "apply", "0", "0x40"), offset("a", "apply", "0", "100x40")), 40, -1},
		{"SuppressdConsumerStalled", "stuck after working", lines(
			lag("a", "ingest", "0", "0x10 4x30"), offset("a", "ingest", "0", "0+10x10 100x30")), 40, 30},
		// 10 minutes short of 7 days, a minute older each minute: past 7
		// days (604,800 s) at 11m, then 15 minutes of for.
		{"SuppressdDeadLetterAging", "a dead letter ages past the threshold",
			series("c", "suppressd_dead_letter_oldest_seconds", `pod="a"`) + " 604200+60x40", 40, 11 + 15},
		{"SuppressdDeadLetterAging", "a dead letter repaired and deleted in time",
			series("c", "suppressd_dead_letter_oldest_seconds", `pod="a"`) + " 604200+60x20 0x20", 40, -1},
		{"SuppressdStoreNotReady", "not built for good", series("c", "suppressd_store_ready", `pod="a"`) + " 0x20", 20, 5},
		{"SuppressdStoreNotReady", "a pod whose layout differs", lines(
			series("c", "suppressd_store_ready", `pod="a"`)+" 1x20", series("c", "suppressd_store_ready", `pod="b"`)+" 0x20"), 20, 5},
		{"SuppressdStoreNotReady", "a blip", series("c", "suppressd_store_ready", `pod="a"`) + " 1 0 0 0 1x16", 20, -1},
		{"SuppressdIndexNotServing", "a feed that never catches up", series("a", "suppressd_index_serving", `pod="a"`) + " 0x30", 30, 15},
		{"SuppressdIndexNotServing", "a warm-up, then serving", series("a", "suppressd_index_serving", `pod="a"`) + " 0 0 0 1x27", 30, -1},
		{"SuppressdIndexNotServing", "one replica of two without it", lines(
			series("a", "suppressd_index_serving", `pod="a"`)+" 1x30", series("a", "suppressd_index_serving", `pod="b"`)+" 0x30"), 30, 15},
		// Of 100 filter requests a minute, 5 cut by the store midway: no 5xx
		// series at all, and still an error ratio.
		{"SuppressdAPIErrors", "streams cut by the store", lines(
			series("a", "suppressd_api_requests_total", `pod="a",route="filter",code="200"`)+" 0+95x20",
			series("a", "suppressd_api_requests_total", `pod="a",route="filter",code="aborted"`)+" 0+5x20",
			series("a", "suppressd_api_stream_aborts_total", `pod="a",route="filter",reason="unavailable"`)+" 0+5x20"), 20, 6},
		{"SuppressdAPIErrors", "streams cut by clients that hung up", lines(
			series("a", "suppressd_api_requests_total", `pod="a",route="filter",code="200"`)+" 0+95x20",
			series("a", "suppressd_api_requests_total", `pod="a",route="filter",code="aborted"`)+" 0+5x20",
			series("a", "suppressd_api_stream_aborts_total", `pod="a",route="filter",reason="canceled"`)+" 0+5x20"), 20, -1},
		{"SuppressdAPIErrors", "503s", lines(
			series("a", "suppressd_api_requests_total", `pod="a",route="check",code="200"`)+" 0+95x20",
			series("a", "suppressd_api_requests_total", `pod="a",route="check",code="503"`)+" 0+5x20"), 20, 6},
		{"SuppressdPublishFailures", "Kafka refuses", lines(
			series("a", "suppressd_publish_events_total", `pod="a",type="unsubscribe",outcome="published"`)+" 0+90x20",
			series("a", "suppressd_publish_events_total", `pod="a",type="unsubscribe",outcome="failed"`)+" 0+10x20"), 20, 6},
		{"SuppressdPublishFailures", "invalid events are the caller's", lines(
			series("a", "suppressd_publish_events_total", `pod="a",type="unsubscribe",outcome="published"`)+" 0+90x20",
			series("a", "suppressd_publish_events_total", `pod="a",type="unsubscribe",outcome="invalid"`)+" 0+10x20"), 20, -1},
		{"SuppressdUnsubscribeErrors", "people shown 'try again'", lines(
			series("a", "suppressd_unsubscribe_requests_total", `pod="a",page="unsubscribe",outcome="unsubscribed"`)+" 0+50x20",
			series("a", "suppressd_unsubscribe_requests_total", `pod="a",page="unsubscribe",outcome="unavailable"`)+" 0+2x20"), 20, 6},
		{"SuppressdUnsubscribeErrors", "forged links are no error", lines(
			series("a", "suppressd_unsubscribe_requests_total", `pod="a",page="unsubscribe",outcome="unsubscribed"`)+" 0+50x20",
			series("a", "suppressd_unsubscribe_requests_total", `pod="a",page="confirm",outcome="invalid_token"`)+" 0+50x20"), 20, -1},
		{"SuppressdWebhookErrors", "one provider failing", lines(
			series("a", "suppressd_webhook_requests_total", `pod="a",provider="sendgrid",outcome="accepted"`)+" 0+10x30",
			series("a", "suppressd_webhook_requests_total", `pod="a",provider="sendgrid",outcome="publish_failed"`)+" 0+5x30",
			series("a", "suppressd_webhook_requests_total", `pod="a",provider="sns",outcome="accepted"`)+" 0+100x30"), 30, 11},
		{"SuppressdWebhookErrors", "bad signatures are the sender's", lines(
			series("a", "suppressd_webhook_requests_total", `pod="a",provider="sendgrid",outcome="accepted"`)+" 0+10x30",
			series("a", "suppressd_webhook_requests_total", `pod="a",provider="sendgrid",outcome="rejected_signature"`)+" 0+10x30"), 30, -1},
	} {
		t.Run(tc.alert+"/"+tc.name, func(t *testing.T) {
			rule, ok := all[tc.alert]
			require.True(t, ok, "the chart has no alert %s", tc.alert)
			got := firing(t, rule, tc.load, tc.minutes)
			if tc.from < 0 {
				require.Empty(t, got, "fired at these minutes")
				return
			}
			require.NotEmpty(t, got, "never fired")
			require.Equal(t, tc.from, got[0], "first minute firing (firing at %v)", got)
			require.Equal(t, tc.minutes, got[len(got)-1], "still firing at the end")
		})
	}
}

// TestAlertAnnotationsExpand expands every alert's annotations as
// Prometheus's rule manager does (its template engine, $labels and $value
// set): a misspelt function or a template the chart left half-rendered
// would otherwise show up only in a firing alert.
func TestAlertAnnotationsExpand(t *testing.T) {
	defs := "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}"
	ls := map[string]string{"stage": "apply", "topic": "suppressd.ledger", "partition": "3", "pod": "sd-consumer-0", "provider": "sendgrid"}
	data := template.AlertTemplateData(ls, nil, "", promengine.Sample{F: 0.0625})
	for name, rule := range renderedRules(t) {
		for key, text := range rule.Annotations {
			out, err := template.NewTemplateExpander(context.Background(), defs+text, "__alert_"+name, data, 0, nil, nil, nil).Expand()
			require.NoError(t, err, "%s: %s", name, key)
			require.NotContains(t, out, "<no value>", "%s: %s", name, key)
			require.NotContains(t, out, "{{", "%s: %s", name, key)
			require.NotContains(t, out, "__", "%s: %s", name, key)
		}
	}
}
