package helm

import (
	"encoding/json"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	promql "github.com/prometheus/prometheus/promql/parser"
	"github.com/stretchr/testify/require"
)

// TestDashboardByRelease: the dashboard has a namespace and a release
// variable, the release's values come from the jobs of the namespace's
// suppressd series, and every query selects the chosen release's series:
// not another release's in the same namespace (suppressd-next of "Changing
// the key layout"), nor the same release name's in another namespace.
func TestDashboardByRelease(t *testing.T) {
	r, err := render(chartDir, []string{filepath.Join(chartDir, "ci", "full-values.yaml")})
	require.NoError(t, err)
	var dash struct {
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Type       string `json:"type"`
				Definition string `json:"definition"`
				Regex      string `json:"regex"`
				Multi      bool   `json:"multi"`
				IncludeAll bool   `json:"includeAll"`
			} `json:"list"`
		} `json:"templating"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	require.NoError(t, json.Unmarshal([]byte(configMap(t, r, "sd-dashboard").Data["suppressd.json"]), &dash))

	vars := map[string]int{}
	for i, v := range dash.Templating.List {
		vars[v.Name] = i
	}
	require.Contains(t, vars, "namespace")
	require.Contains(t, vars, "release")
	require.Less(t, vars["namespace"], vars["release"], "release is chosen within the namespace")
	rel := dash.Templating.List[vars["release"]]
	require.Equal(t, "query", rel.Type)
	require.False(t, rel.Multi || rel.IncludeAll, "one release at a time: the queries put its value in a regular expression as is")

	// The variable's query lists jobs of suppressd series in the namespace.
	m := regexp.MustCompile(`^label_values\((.*), job\)$`).FindStringSubmatch(rel.Definition)
	require.NotNil(t, m, "release: %q is not label_values(<selector>, job)", rel.Definition)
	sel, err := promParser.ParseMetricSelector(strings.ReplaceAll(m[1], "$namespace", namespace))
	require.NoError(t, err)
	require.True(t, matchesAll(sel, map[string]string{"__name__": "suppressd_api_requests_total", "namespace": namespace}))
	require.False(t, matchesAll(sel, map[string]string{"__name__": "suppressd_api_requests_total", "namespace": "elsewhere"}))

	// Its regex turns the jobs (the release's Service names, as the
	// ServiceMonitor labels them) into the release's prefix.
	require.True(t, strings.HasPrefix(rel.Regex, "/") && strings.HasSuffix(rel.Regex, "/"), "a Grafana regex is /.../")
	re := regexp.MustCompile(strings.Trim(rel.Regex, "/"))
	var jobs []string
	for _, o := range r.objects {
		if strings.HasSuffix(o.source, "service.yaml") {
			jobs = append(jobs, name(o)[len("Service/"):])
		}
	}
	require.ElementsMatch(t, []string{"sd-api", "sd-consumer"}, jobs)
	for _, job := range jobs {
		sm := re.FindStringSubmatch(job)
		require.Len(t, sm, 2, job)
		require.Equal(t, "sd", sm[1], job)
	}

	// Every query, with the variables as Grafana fills them in.
	fill := strings.NewReplacer("$namespace", namespace, "$release", "sd", "$__rate_interval", "5m", "${datasource}", "prometheus")
	this := []map[string]string{{"namespace": namespace, "job": "sd-api"}, {"namespace": namespace, "job": "sd-consumer"}}
	others := []map[string]string{
		{"namespace": namespace, "job": "sd-next-api"}, {"namespace": namespace, "job": "sd-next-consumer"},
		{"namespace": namespace, "job": "other-api"},
		{"namespace": "elsewhere", "job": "sd-api"}, {"namespace": "elsewhere", "job": "sd-consumer"},
	}
	queries := 0
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			queries++
			e, err := promParser.ParseExpr(fill.Replace(tg.Expr))
			require.NoError(t, err, "panel %q: %s", p.Title, tg.Expr)
			selectors := 0
			promql.Inspect(e, func(n promql.Node, _ []promql.Node) error {
				vs, ok := n.(*promql.VectorSelector)
				if !ok || !strings.HasPrefix(vs.Name, "suppressd_") {
					return nil
				}
				selectors++
				// Only which release's series: other matchers (a stage,
				// say) narrow within the release.
				var release []*labels.Matcher
				for _, m := range vs.LabelMatchers {
					if m.Name == "namespace" || m.Name == "job" || m.Name == "__name__" {
						release = append(release, m)
					}
				}
				hit := false
				for _, l := range this {
					hit = hit || matchesAll(release, withName(l, vs.Name))
				}
				require.True(t, hit, "panel %q: %s selects neither of the release's jobs", p.Title, vs)
				for _, l := range others {
					require.False(t, matchesAll(release, withName(l, vs.Name)), "panel %q: %s also selects %v", p.Title, vs, l)
				}
				return nil
			})
			require.Positive(t, selectors, "panel %q: %s", p.Title, tg.Expr)
		}
	}
	require.Greater(t, queries, 10)
}

func withName(l map[string]string, name string) map[string]string {
	out := map[string]string{"__name__": name}
	for k, v := range l {
		out[k] = v
	}
	return out
}

// matchesAll says whether a series with the labels l is selected by every
// matcher (a label it lacks is the empty string, as in Prometheus).
func matchesAll(ms []*labels.Matcher, l map[string]string) bool {
	for _, m := range ms {
		if !m.Matches(l[m.Name]) {
			return false
		}
	}
	return true
}
