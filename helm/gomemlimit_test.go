package helm

import (
	"fmt"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/api/resource"
)

// TestGoMemLimit: GOMEMLIMIT is goMemLimitPercent (90 by default) of the
// role's memory limit, in bytes, rounded down, the limit read as
// Kubernetes reads it; and it is absent without a limit.
func TestGoMemLimit(t *testing.T) {
	minimal := filepath.Join(chartDir, "ci", "minimal-values.yaml")
	goMemLimit := func(t *testing.T, role string, files []string, set ...string) (string, bool) {
		t.Helper()
		r, err := render(chartDir, append([]string{minimal}, files...), set...)
		require.NoError(t, err)
		for _, e := range deployment(t, r, releaseName+"-suppressd-"+role).Spec.Template.Spec.Containers[0].Env {
			if e.Name == "GOMEMLIMIT" {
				require.Nil(t, e.ValueFrom)
				return e.Value, true
			}
		}
		return "", false
	}

	// The defaults, worked by hand: 90 % of 512Mi and of 1Gi.
	got, ok := goMemLimit(t, "api", nil)
	require.True(t, ok)
	require.Equal(t, "483183820", got, "90 %% of 512Mi (536870912 bytes)")
	got, ok = goMemLimit(t, "consumer", nil)
	require.True(t, ok)
	require.Equal(t, "966367641", got, "90 %% of 1Gi (1073741824 bytes)")

	for _, tc := range []struct {
		limit string
		pct   int64
	}{
		{"128Mi", 90}, {"768Mi", 90}, {"1.5Gi", 90}, {"1.1Gi", 90}, {"3Gi", 90}, {"1Ti", 90}, {"100Ki", 90},
		{"500M", 90}, {"2G", 90}, {"1k", 90}, {"1e9", 90}, {"123456789", 90},
		{"512Mi", 80}, {"2Gi", 100}, {"1Gi", 10},
	} {
		t.Run(fmt.Sprintf("%s at %d%%", tc.limit, tc.pct), func(t *testing.T) {
			q := resource.MustParse(tc.limit)
			want := q.Value() * tc.pct / 100
			for _, role := range []string{"api", "consumer"} {
				got, ok := goMemLimit(t, role, nil,
					fmt.Sprintf("%s.resources.limits.memory=%s", role, tc.limit), fmt.Sprintf("goMemLimitPercent=%d", tc.pct))
				require.True(t, ok, role)
				require.Equal(t, strconv.FormatInt(want, 10), got, role)
			}
		})
	}
	// A number in a values file is a float to Helm.
	got, ok = goMemLimit(t, "api", []string{valuesFile(t, "api:\n  resources:\n    limits:\n      memory: 1073741824\n")})
	require.True(t, ok)
	require.Equal(t, "966367641", got)

	// Absent without a limit, or when turned off.
	for _, set := range [][]string{
		{"api.resources.limits=null", "consumer.resources.limits=null"},
		{"api.resources.limits.memory=null", "consumer.resources.limits.memory=null", "api.resources.limits.cpu=1", "consumer.resources.limits.cpu=1"},
		{"goMemLimitFromResources=false"},
	} {
		for _, role := range []string{"api", "consumer"} {
			_, ok := goMemLimit(t, role, nil, set...)
			require.False(t, ok, "%s with %v", role, set)
		}
	}

	// A quantity the chart cannot read fails with what to do, rather than
	// a wrong GOMEMLIMIT (the schema refuses it first).
	_, err := renderWith(renderOptions{skipSchema: true}, chartDir, []string{minimal}, "api.resources.limits.memory=512m")
	require.ErrorContains(t, err, `api.resources.limits.memory "512m": GOMEMLIMIT is computed from it`)
	_, err = render(chartDir, []string{minimal}, "api.resources.limits.memory=512m")
	require.ErrorContains(t, err, "at '/api/resources/limits/memory'")
	_, err = render(chartDir, []string{minimal}, "goMemLimitPercent=150")
	require.ErrorContains(t, err, "at '/goMemLimitPercent'")
}
