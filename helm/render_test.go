package helm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/stretchr/testify/require"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	"helm.sh/helm/v3/pkg/releaseutil"
	"helm.sh/helm/v3/pkg/strvals"
	"k8s.io/apimachinery/pkg/runtime"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
)

const (
	// chartDir is the chart, relative to this module.
	chartDir = "suppressd"
	// The release every test renders.
	releaseName = "sd-test"
	namespace   = "suppression"
)

// kubeVersion is the cluster version the chart is rendered for: the one the
// API types in go.mod describe.
var kubeVersion = &chartutil.KubeVersion{Version: "v1.37.0", Major: "1", Minor: "37"}

// scenarios returns the chart's ci/*-values.yaml files.
func scenarios(t testing.TB) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(chartDir, "ci", "*-values.yaml"))
	require.NoError(t, err)
	sort.Strings(files)
	for _, want := range []string{"minimal", "full", "redis-cluster", "sasl-tls"} {
		require.Contains(t, files, filepath.Join(chartDir, "ci", want+"-values.yaml"))
	}
	return files
}

// rendered is one release: its manifests by template, decoded.
type rendered struct {
	objects []object
	notes   string
}

// object is one decoded manifest.
type object struct {
	source string // the template it came from
	raw    string
	obj    runtime.Object
}

func (r rendered) kinds() map[string]int {
	m := map[string]int{}
	for _, o := range r.objects {
		m[o.obj.GetObjectKind().GroupVersionKind().Kind]++
	}
	return m
}

// render renders the chart in dir as `helm install --dry-run` (or `helm
// template`) would, with the values files and --set style overrides, and
// decodes every manifest strictly. A render error (values.schema.json, a
// `fail` or `required` in the chart) and a decoding error are all returned.
//
// It uses the template engine directly rather than action.Install, which
// renders the same way but brings in the Kubernetes client, kubectl and the
// registry client: twice the packages to compile under -race.
func render(dir string, valueFiles []string, set ...string) (rendered, error) {
	return renderWith(renderOptions{}, dir, valueFiles, set...)
}

// renderOptions are the install flags a test may change.
type renderOptions struct {
	// skipSchema is --skip-schema-validation: values.schema.json is not
	// checked, so only the templates' own checks stand.
	skipSchema bool
}

func renderWith(o renderOptions, dir string, valueFiles []string, set ...string) (rendered, error) {
	ch, err := loader.Load(dir)
	if err != nil {
		return rendered{}, fmt.Errorf("load chart: %w", err)
	}
	vals, err := mergeValues(valueFiles, set)
	if err != nil {
		return rendered{}, fmt.Errorf("values: %w", err)
	}
	caps := chartutil.DefaultCapabilities.Copy()
	caps.KubeVersion = *kubeVersion
	if v := ch.Metadata.KubeVersion; v != "" && !chartutil.IsCompatibleRange(v, caps.KubeVersion.String()) {
		return rendered{}, fmt.Errorf("chart requires kubeVersion %s, rendering for %s", v, caps.KubeVersion.String())
	}
	// The same values as an install: defaults, then files, then --set;
	// values.schema.json is checked here.
	top, err := chartutil.ToRenderValuesWithSchemaValidation(ch, vals, chartutil.ReleaseOptions{
		Name: releaseName, Namespace: namespace, Revision: 1, IsInstall: true,
	}, caps, o.skipSchema)
	if err != nil {
		return rendered{}, fmt.Errorf("values: %w", err)
	}
	files, err := engine.Render(ch, top)
	if err != nil {
		return rendered{}, fmt.Errorf("render: %w", err)
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	var r rendered
	var errs []error
	for _, src := range names {
		if strings.HasSuffix(src, "NOTES.txt") {
			r.notes = files[src]
			continue
		}
		if strings.HasPrefix(filepath.Base(src), "_") {
			continue // partials
		}
		manifests := releaseutil.SplitManifests(files[src])
		keys := make([]string, 0, len(manifests))
		for k := range manifests {
			keys = append(keys, k)
		}
		sort.Sort(releaseutil.BySplitManifestsOrder(keys))
		for _, k := range keys {
			doc := manifests[k]
			if onlyComments(doc) {
				continue
			}
			if strings.Contains(doc, "helm.sh/hook") {
				errs = append(errs, fmt.Errorf("%s: a hook; the chart should have none", src))
			}
			obj, err := decodeStrict([]byte(doc))
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", src, err))
				continue
			}
			r.objects = append(r.objects, object{source: src, raw: doc, obj: obj})
		}
	}
	return r, errors.Join(errs...)
}

func onlyComments(doc string) bool {
	for _, line := range strings.Split(doc, "\n") {
		if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "#") {
			return false
		}
	}
	return true
}

// mergeValues merges values files and --set overrides as `helm -f ... --set
// ...` does: later files win, maps merge key by key, --set last.
func mergeValues(files, set []string) (map[string]any, error) {
	base := map[string]any{}
	for _, f := range files {
		v, err := chartutil.ReadValuesFile(f)
		if err != nil {
			return nil, err
		}
		base = mergeMaps(base, v)
	}
	for _, s := range set {
		if err := strvals.ParseInto(s, base); err != nil {
			return nil, fmt.Errorf("--set %s: %w", s, err)
		}
	}
	return base, nil
}

func mergeMaps(a, b map[string]any) map[string]any {
	out := make(map[string]any, len(a))
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		if bv, ok := v.(map[string]any); ok {
			if av, ok := out[k].(map[string]any); ok {
				out[k] = mergeMaps(av, bv)
				continue
			}
		}
		out[k] = v
	}
	return out
}

// scheme knows the built-in API types and prometheus-operator's.
var scheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		panic(err)
	}
	if err := monitoringv1.AddToScheme(s); err != nil {
		panic(err)
	}
	return s
}()

// strictYAML is the API server's strict decoding (kubectl
// --validate=strict): an unknown field, a field in the wrong case or a
// duplicate field is an error, and so is a kind the scheme does not know.
var strictYAML = kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, scheme, scheme,
	kjson.SerializerOptions{Yaml: true, Strict: true})

func decodeStrict(doc []byte) (runtime.Object, error) {
	obj, _, err := strictYAML.Decode(doc, nil, nil)
	if err != nil {
		return nil, err
	}
	return obj, nil
}

// copyChart copies the chart into a temporary directory, for tests that
// break it.
func copyChart(t *testing.T) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), chartDir)
	require.NoError(t, os.CopyFS(dst, os.DirFS(chartDir)))
	return dst
}

// mutate replaces old with new in one file of a copied chart; old must be there.
func mutate(t *testing.T, dir, file, old, new string) {
	t.Helper()
	path := filepath.Join(dir, file)
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Contains(t, string(b), old, "the mutation's target moved: update the test")
	require.NoError(t, os.WriteFile(path, []byte(strings.Replace(string(b), old, new, 1)), 0o644))
}

// lintStrict is `helm lint --strict --kube-version ... -f files... dir`:
// every linter of the SDK, values.schema.json in force, and a warning counts
// as an error (action.Lint with Strict, without the action package's
// dependencies). It returns the messages that fail the lint.
func lintStrict(t testing.TB, dir string, files ...string) []support.Message {
	t.Helper()
	linter := lint.AllWithKubeVersionAndSchemaValidation(dir, readValues(t, files...), namespace, kubeVersion, false)
	var failed []support.Message
	for _, m := range linter.Messages {
		if m.Severity >= support.WarningSev {
			failed = append(failed, m)
		}
	}
	return failed
}

// valuesFile writes a values file for one test and returns its path.
func valuesFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "values.yaml")
	require.NoError(t, os.WriteFile(path, []byte(content), 0o644))
	return path
}

// readValues merges values files as `helm -f` does.
func readValues(t testing.TB, files ...string) map[string]any {
	t.Helper()
	vals, err := mergeValues(files, nil)
	require.NoError(t, err)
	return vals
}
