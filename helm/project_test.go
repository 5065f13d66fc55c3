package helm

// What the chart must agree with, read from the service's own sources: the
// configuration struct, the README's configuration table and the metrics.

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	promql "github.com/prometheus/prometheus/promql/parser"
	"github.com/stretchr/testify/require"
)

// repoRoot is the service's module, which holds this one.
const repoRoot = ".."

// configVariables returns every variable the binary reads: the envconfig
// tags of cmd/suppressd's Config, nested structs prefixed by their own tag,
// as envconfig.Process("SUPPRESSD", &cfg) names them.
func configVariables(t testing.TB) []string {
	t.Helper()
	structs := map[string]*ast.StructType{} // "main.Config", "kafkaconn.Config", ...
	for _, dir := range []string{"cmd/suppressd", "internal/kafkaconn", "internal/redisconn", "webhook"} {
		fset := token.NewFileSet()
		files, err := filepath.Glob(filepath.Join(repoRoot, dir, "*.go"))
		require.NoError(t, err)
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			file, err := parser.ParseFile(fset, f, nil, parser.SkipObjectResolution)
			require.NoError(t, err)
			ast.Inspect(file, func(n ast.Node) bool {
				if ts, ok := n.(*ast.TypeSpec); ok {
					if st, ok := ts.Type.(*ast.StructType); ok {
						structs[file.Name.Name+"."+ts.Name.Name] = st
					}
				}
				return true
			})
		}
	}
	var out []string
	var walk func(pkg, typ, prefix string)
	walk = func(pkg, typ, prefix string) {
		st := structs[pkg+"."+typ]
		require.NotNil(t, st, "struct %s.%s not found", pkg, typ)
		for _, f := range st.Fields.List {
			if len(f.Names) == 0 {
				// An embedded struct's fields are the outer struct's, as
				// envconfig reads them.
				if id, ok := f.Type.(*ast.Ident); ok && structs[pkg+"."+id.Name] != nil {
					walk(pkg, id.Name, prefix)
					continue
				}
			}
			if f.Tag == nil {
				continue
			}
			tag, err := strconv.Unquote(f.Tag.Value)
			require.NoError(t, err)
			name, ok := reflect.StructTag(tag).Lookup("envconfig")
			if !ok {
				continue
			}
			switch ft := f.Type.(type) {
			case *ast.Ident:
				if _, nested := structs[pkg+"."+ft.Name]; nested {
					walk(pkg, ft.Name, prefix+name+"_")
					continue
				}
			case *ast.SelectorExpr:
				if p, ok := ft.X.(*ast.Ident); ok {
					if _, nested := structs[p.Name+"."+ft.Sel.Name]; nested {
						walk(p.Name, ft.Sel.Name, prefix+name+"_")
						continue
					}
				}
			}
			out = append(out, prefix+name)
		}
	}
	walk("main", "Config", "SUPPRESSD_")
	sort.Strings(out)
	require.Greater(t, len(out), 30, "the Config struct was not read")
	return out
}

// readmeVariables returns the variables of the README's configuration
// table, expanding its shorthand: "`SUPPRESSD_REDIS_DIAL_TIMEOUT` /
// `_READ_TIMEOUT`" is SUPPRESSD_REDIS_READ_TIMEOUT.
func readmeVariables(t testing.TB) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	require.NoError(t, err)
	code := regexp.MustCompile("`(SUPPRESSD_[A-Z0-9_]+|_[A-Z0-9_]+)`")
	seen := map[string]bool{}
	inTable := false
	for _, line := range strings.Split(string(b), "\n") {
		// The configuration table is the one headed "| variable | default | meaning |".
		if strings.HasPrefix(line, "| variable |") {
			inTable = true
			continue
		}
		if inTable && !strings.HasPrefix(line, "|") {
			inTable = false
		}
		if !inTable || !strings.HasPrefix(line, "| `SUPPRESSD_") {
			continue
		}
		section := ""
		for _, m := range code.FindAllStringSubmatch(line, -1) {
			v := m[1]
			if strings.HasPrefix(v, "SUPPRESSD_") {
				if section == "" {
					section = "SUPPRESSD_" + strings.SplitN(strings.TrimPrefix(v, "SUPPRESSD_"), "_", 2)[0]
				}
			} else {
				v = section + v
			}
			if !strings.HasPrefix(v, "SUPPRESSD_TEST_") {
				seen[v] = true
			}
		}
	}
	out := make([]string, 0, len(seen))
	for v := range seen {
		out = append(out, v)
	}
	sort.Strings(out)
	require.Greater(t, len(out), 30, "the README's configuration table was not found")
	return out
}

// metricKind is a metric the service registers: its type and labels.
type metricKind struct {
	histogram bool
	labels    []string
}

// projectMetrics reads every metric the service's sources define
// (prometheus.*Opts{Name: ...} and the label names passed with them).
func projectMetrics(t testing.TB) map[string]metricKind {
	t.Helper()
	out := map[string]metricKind{}
	err := filepath.WalkDir(repoRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != repoRoot && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "helm") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		file, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		ast.Inspect(file, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) == 0 {
				return true
			}
			lit, ok := call.Args[0].(*ast.CompositeLit)
			if !ok {
				return true
			}
			sel, ok := lit.Type.(*ast.SelectorExpr)
			if !ok || !strings.HasSuffix(sel.Sel.Name, "Opts") {
				return true
			}
			var m metricKind
			var name string
			m.histogram = sel.Sel.Name == "HistogramOpts"
			for _, el := range lit.Elts {
				kv, ok := el.(*ast.KeyValueExpr)
				if !ok {
					continue
				}
				k, ok := kv.Key.(*ast.Ident)
				if !ok {
					continue
				}
				switch k.Name {
				case "Name":
					if s, ok := kv.Value.(*ast.BasicLit); ok {
						name, _ = strconv.Unquote(s.Value)
					}
				case "ConstLabels":
					// The consumer's stages label every series with their
					// stage (prometheus.Labels{"stage": stage}).
					if id, ok := kv.Value.(*ast.Ident); ok && id.Name == "cl" {
						m.labels = append(m.labels, "stage")
					}
				}
			}
			if len(call.Args) > 1 {
				if ls, ok := call.Args[1].(*ast.CompositeLit); ok {
					for _, el := range ls.Elts {
						if s, ok := el.(*ast.BasicLit); ok {
							l, _ := strconv.Unquote(s.Value)
							m.labels = append(m.labels, l)
						}
					}
				}
			}
			if strings.HasPrefix(name, "suppressd_") {
				out[name] = m
			}
			return true
		})
		return nil
	})
	require.NoError(t, err)
	for _, want := range []string{"suppressd_consumer_lag", "suppressd_checks_total", "suppressd_optout_freshness_seconds", "suppressd_api_request_duration_seconds"} {
		require.Contains(t, out, want, "metrics not found in the service's sources")
	}
	return out
}

// targetLabels are the labels Prometheus adds to every scraped series
// (with the ServiceMonitor's service discovery).
var targetLabels = []string{"job", "instance", "namespace", "service", "pod", "container", "endpoint"}

var grafanaVar = regexp.MustCompile(`\$__(rate_interval|interval|range)|\$\{?[A-Za-z_]+\}?`)

var promParser = promql.NewParser(promql.Options{})

// checkPromQL parses a query and checks every suppressd metric it names
// exists, with the labels it matches on and groups by.
func checkPromQL(expr string, metrics map[string]metricKind) error {
	expr = grafanaVar.ReplaceAllStringFunc(expr, func(s string) string {
		if strings.HasPrefix(s, "$__") {
			return "5m"
		}
		return "x"
	})
	e, err := promParser.ParseExpr(expr)
	if err != nil {
		return fmt.Errorf("%q: %w", expr, err)
	}
	var errs []string
	lookup := func(name string) (metricKind, []string, bool) {
		if m, ok := metrics[name]; ok {
			return m, append(slices.Clone(m.labels), targetLabels...), true
		}
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if m, ok := metrics[strings.TrimSuffix(name, suffix)]; ok && m.histogram && strings.HasSuffix(name, suffix) {
				ls := append(slices.Clone(m.labels), targetLabels...)
				if suffix == "_bucket" {
					ls = append(ls, "le")
				}
				return m, ls, true
			}
		}
		return metricKind{}, nil, false
	}
	selectors := 0
	promql.Inspect(e, func(n promql.Node, _ []promql.Node) error {
		switch x := n.(type) {
		case *promql.VectorSelector:
			selectors++
			if x.Name == "up" {
				return nil
			}
			_, ls, ok := lookup(x.Name)
			if !ok {
				errs = append(errs, fmt.Sprintf("unknown metric %s", x.Name))
				return nil
			}
			for _, m := range x.LabelMatchers {
				if m.Name != labels.MetricName && !slices.Contains(ls, m.Name) {
					errs = append(errs, fmt.Sprintf("%s has no label %q", x.Name, m.Name))
				}
			}
		case *promql.AggregateExpr:
			if x.Without {
				return nil
			}
			promql.Inspect(x.Expr, func(n promql.Node, _ []promql.Node) error {
				vs, ok := n.(*promql.VectorSelector)
				if !ok {
					return nil
				}
				_, ls, ok := lookup(vs.Name)
				if !ok {
					return nil
				}
				for _, g := range x.Grouping {
					if !slices.Contains(ls, g) {
						errs = append(errs, fmt.Sprintf("%s: grouped by %q, which it does not have", vs.Name, g))
					}
				}
				return nil
			})
		}
		return nil
	})
	if selectors == 0 {
		errs = append(errs, "selects no series")
	}
	if len(errs) > 0 {
		return fmt.Errorf("%q: %s", expr, strings.Join(errs, "; "))
	}
	return nil
}

func TestProjectSources(t *testing.T) {
	// The readers above are what the chart's checks trust: make sure they
	// read what they should.
	vars := configVariables(t)
	require.Contains(t, vars, "SUPPRESSD_KAFKA_BROKERS")
	require.Contains(t, vars, "SUPPRESSD_API_KEYS_FILE")
	require.Contains(t, vars, "SUPPRESSD_REDIS_SENTINEL_PASSWORD")
	readme := readmeVariables(t)
	require.Contains(t, readme, "SUPPRESSD_REDIS_WRITE_TIMEOUT") // from "/ `_WRITE_TIMEOUT`"
	require.Contains(t, readme, "SUPPRESSD_KAFKA_TLS_KEY_FILE")  // from "`_TLS_KEY_FILE`"
	// Whether the README and the binary agree is the service's own check
	// (cmd/suppressd/docs_test.go); here, only that the chart agrees with
	// both.
	m := projectMetrics(t)
	require.True(t, m["suppressd_optout_freshness_seconds"].histogram)
	require.Equal(t, []string{"route", "code"}, m["suppressd_api_requests_total"].labels)

	require.NoError(t, checkPromQL(`sum by (result) (rate(suppressd_checks_total{job="x"}[5m]))`, m))
	for _, bad := range []string{
		`rate(suppressd_check_total[5m])`,                                   // misspelled metric
		`sum by (status) (rate(suppressd_checks_total[5m]))`,                // no such label
		`rate(suppressd_api_requests_total{status="500"}[5m])`,              // no such label
		`histogram_quantile(0.99, rate(suppressd_consumer_lag_bucket[5m]))`, // a gauge has no buckets
		`sum(rate(suppressd_checks_total[5m])`,                              // syntax
	} {
		require.Error(t, checkPromQL(bad, m), bad)
	}
}
