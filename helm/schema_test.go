package helm

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
)

// TestValuesSchema: values.schema.json accepts the chart's own values and
// every ci scenario, and refuses each file of testdata/bad-values (each
// over ci/minimal-values.yaml) at install and at `helm lint --strict`, with
// a message naming the key (the file's "# want:" lines).
func TestValuesSchema(t *testing.T) {
	ch, err := loader.Load(chartDir)
	require.NoError(t, err)
	require.NotNil(t, ch.Schema, "values.schema.json is not loaded with the chart")
	var schema map[string]any
	require.NoError(t, json.Unmarshal(ch.Schema, &schema))
	// Helm's validator asserts "format" (uri, hostname, email) only for
	// drafts before 2019-09: a newer draft would silently ignore them.
	require.Equal(t, "http://json-schema.org/draft-07/schema#", schema["$schema"])

	for _, f := range append([]string{filepath.Join(chartDir, "values.yaml")}, scenarios(t)...) {
		vals, err := chartutil.CoalesceValues(ch, readValues(t, f))
		require.NoError(t, err)
		require.NoError(t, chartutil.ValidateAgainstSchema(ch, vals), f)
	}

	minimal := filepath.Join(chartDir, "ci", "minimal-values.yaml")
	files, err := filepath.Glob(filepath.Join("testdata", "bad-values", "*.yaml"))
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(files), 25)
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".yaml"), func(t *testing.T) {
			b, err := os.ReadFile(f)
			require.NoError(t, err)
			var want []string
			for _, m := range regexp.MustCompile(`(?m)^# want: (.+)$`).FindAllStringSubmatch(string(b), -1) {
				want = append(want, m[1])
			}
			require.NotEmpty(t, want, "%s has no # want: line", f)

			_, err = render(chartDir, []string{minimal, f})
			require.ErrorContains(t, err, "values don't meet the specifications of the schema")
			for _, w := range want {
				require.ErrorContains(t, err, w)
			}

			failed := fmt.Sprint(lintStrict(t, chartDir, minimal, f))
			for _, w := range want {
				require.Contains(t, failed, w, "helm lint --strict")
			}
		})
	}
}

// TestValuesSchemaConfigKeys: the schema's config keys are the chart's
// (templates/_helpers.tpl's suppressd.envNames and values.yaml, which
// TestEveryVariableSettable ties to the binary), each described by its
// variable, and the roles' config overrides take the same keys.
func TestValuesSchemaConfigKeys(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(chartDir, "values.schema.json"))
	require.NoError(t, err)
	var schema struct {
		Properties  map[string]json.RawMessage `json:"properties"`
		Definitions struct {
			Config struct {
				AdditionalProperties *bool `json:"additionalProperties"`
				Properties           map[string]struct {
					Description string `json:"description"`
				} `json:"properties"`
			} `json:"config"`
		} `json:"definitions"`
	}
	require.NoError(t, json.Unmarshal(b, &schema))
	cfg := schema.Definitions.Config
	require.NotNil(t, cfg.AdditionalProperties)
	require.False(t, *cfg.AdditionalProperties, "a misspelled setting must be refused")

	helpers, err := os.ReadFile(filepath.Join(chartDir, "templates", "_helpers.tpl"))
	require.NoError(t, err)
	block := regexp.MustCompile(`(?s)define "suppressd.envNames" -}}\n(.*?)\{\{- end`).FindSubmatch(helpers)
	require.NotNil(t, block, "suppressd.envNames not found")
	envNames := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^(\w+): (SUPPRESSD_\w+)$`).FindAllSubmatch(block[1], -1) {
		envNames[string(m[1])] = string(m[2])
	}
	require.Greater(t, len(envNames), 30)

	defaults := readValues(t, filepath.Join(chartDir, "values.yaml"))["config"].(map[string]any)
	var schemaKeys, envKeys, valuesKeys []string
	for k, p := range cfg.Properties {
		schemaKeys = append(schemaKeys, k)
		require.True(t, strings.HasPrefix(p.Description, envNames[k]+" ") || strings.HasPrefix(p.Description, envNames[k]+":") ||
			strings.HasPrefix(p.Description, envNames[k]+"."), "config.%s: description %q does not start with its variable %s", k, p.Description, envNames[k])
	}
	for k := range envNames {
		envKeys = append(envKeys, k)
	}
	for k := range defaults {
		valuesKeys = append(valuesKeys, k)
	}
	slices.Sort(schemaKeys)
	slices.Sort(envKeys)
	slices.Sort(valuesKeys)
	require.Equal(t, envKeys, schemaKeys, "values.schema.json's config keys and _helpers.tpl's suppressd.envNames differ")
	require.Equal(t, valuesKeys, schemaKeys, "values.schema.json's config keys and values.yaml's differ")

	for _, role := range []string{"api", "consumer"} {
		var r struct {
			Properties map[string]map[string]any `json:"properties"`
		}
		require.NoError(t, json.Unmarshal(schema.Properties[role], &r))
		require.Equal(t, "#/definitions/config", r.Properties["config"]["$ref"], "%s.config", role)
	}
}
