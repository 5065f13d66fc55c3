package schemas

import (
	"encoding/json"
	"io/fs"
	"path"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

// TestOpenAPIEventSchemas holds the request body of POST /v1/events in
// schemas/openapi.yaml to the event schemas the server validates with: the
// description's CloudEvent components are the envelope (cloudevent.json),
// each data schema (v1/<type>.json) and their shared definitions
// (v1/common.json), with $schema and $id dropped and references rewritten
// to components, and one CloudEvent per type pairs them. When a schema
// file changes, regenerate the components (the recipe is this test: each
// component must equal its file so transformed) or this fails.
func TestOpenAPIEventSchemas(t *testing.T) {
	var doc struct {
		Components struct {
			Schemas map[string]any `yaml:"schemas"`
		} `yaml:"components"`
		Paths map[string]map[string]any `yaml:"paths"`
	}
	require.NoError(t, yaml.Unmarshal(OpenAPI, &doc))
	got := map[string]any{}
	for name, s := range doc.Components.Schemas {
		if name == "CloudEvent" || strings.HasPrefix(name, "event.") {
			got[name] = jsonish(t, s)
		}
	}

	ref := regexp.MustCompile(`^(?:common\.json)?#/\$defs/(\w+)$`)
	var rewrite func(v any) any
	rewrite = func(v any) any {
		switch v := v.(type) {
		case map[string]any:
			out := map[string]any{}
			for k, x := range v {
				switch {
				case k == "$schema" || k == "$id":
				case k == "$ref":
					m := ref.FindStringSubmatch(x.(string))
					require.NotNil(t, m, "an unexpected reference %v", x)
					out[k] = "#/components/schemas/event.common." + m[1]
				default:
					out[k] = rewrite(x)
				}
			}
			return out
		case []any:
			for i := range v {
				v[i] = rewrite(v[i])
			}
		}
		return v
	}
	load := func(p string) map[string]any {
		b, err := fs.ReadFile(Files, p)
		require.NoError(t, err)
		var m map[string]any
		require.NoError(t, json.Unmarshal(b, &m))
		return m
	}
	want := map[string]any{}
	env := load("events/cloudevent.json")
	want["event.envelope"] = rewrite(env)
	var oneOf []any
	for _, typ := range env["properties"].(map[string]any)["type"].(map[string]any)["enum"].([]any) {
		name := strings.Split(typ.(string), ".")[2]
		oneOf = append(oneOf, map[string]any{"$ref": "#/components/schemas/event." + name})
		want["event."+name] = jsonish(t, map[string]any{"allOf": []any{
			map[string]any{"$ref": "#/components/schemas/event.envelope"},
			map[string]any{"type": "object", "required": []any{"type", "data"}, "properties": map[string]any{
				"type": map[string]any{"const": typ},
				"data": map[string]any{"$ref": "#/components/schemas/event.data." + name},
			}},
		}})
	}
	files, err := fs.Glob(Files, "events/"+DataVersion+"/*.json")
	require.NoError(t, err)
	require.Len(t, files, len(oneOf)+1, "a data schema per type, and common.json")
	for _, f := range files {
		name := strings.TrimSuffix(path.Base(f), ".json")
		m := load(f)
		if name == "common" {
			for k, v := range m["$defs"].(map[string]any) {
				want["event.common."+k] = rewrite(v)
			}
			continue
		}
		want["event.data."+name] = rewrite(m)
	}
	ce, ok := got["CloudEvent"].(map[string]any)
	require.True(t, ok, "no CloudEvent component")
	require.Equal(t, jsonish(t, oneOf), ce["oneOf"], "CloudEvent is one of the event of each type")
	delete(got, "CloudEvent")
	require.Equal(t, want, got)

	body := jsonish(t, doc.Paths["/v1/events"]["post"]).(map[string]any)["requestBody"].(map[string]any)["content"].(map[string]any)
	for _, ct := range []string{"application/json", "application/cloudevents+json"} {
		require.Equal(t, map[string]any{"$ref": "#/components/schemas/CloudEvent"}, body[ct].(map[string]any)["schema"], ct)
	}
}

// jsonish returns v as encoding/json would decode it (float64 numbers).
func jsonish(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	var out any
	require.NoError(t, json.Unmarshal(b, &out))
	return out
}
