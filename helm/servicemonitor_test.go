package helm

import (
	"path/filepath"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/stretchr/testify/require"
)

func serviceMonitor(t *testing.T, r rendered) *monitoringv1.ServiceMonitor {
	t.Helper()
	var out []*monitoringv1.ServiceMonitor
	for _, o := range r.objects {
		if sm, ok := o.obj.(*monitoringv1.ServiceMonitor); ok {
			out = append(out, sm)
		}
	}
	require.Len(t, out, 1)
	return out[0]
}

// TestServiceMonitorPassThrough: scheme, tlsConfig, relabelings and
// metricRelabelings reach every endpoint as given (strictly decoded into
// prometheus-operator's types, so a field it does not know fails), and none
// is rendered when not given.
func TestServiceMonitorPassThrough(t *testing.T) {
	r, err := render(chartDir, []string{filepath.Join(chartDir, "ci", "full-values.yaml")})
	require.NoError(t, err)
	sm := serviceMonitor(t, r)
	require.NotEmpty(t, sm.Spec.Endpoints)
	for _, ep := range sm.Spec.Endpoints {
		require.NotNil(t, ep.Scheme)
		require.Equal(t, "https", string(*ep.Scheme))
		require.NotNil(t, ep.TLSConfig)
		require.Equal(t, "/etc/prom-certs/root-cert.pem", ep.TLSConfig.CAFile)
		require.Equal(t, "/etc/prom-certs/cert-chain.pem", ep.TLSConfig.CertFile)
		require.Equal(t, "/etc/prom-certs/key.pem", ep.TLSConfig.KeyFile)
		require.NotNil(t, ep.TLSConfig.InsecureSkipVerify)
		require.True(t, *ep.TLSConfig.InsecureSkipVerify)
		require.Len(t, ep.RelabelConfigs, 1)
		require.Equal(t, "node", ep.RelabelConfigs[0].TargetLabel)
		require.Equal(t, []monitoringv1.LabelName{"__meta_kubernetes_pod_node_name"}, ep.RelabelConfigs[0].SourceLabels)
		require.Len(t, ep.MetricRelabelConfigs, 1)
		require.Equal(t, "drop", ep.MetricRelabelConfigs[0].Action)
		require.Equal(t, "go_gc_.*", ep.MetricRelabelConfigs[0].Regex)
		require.Equal(t, "15s", string(ep.Interval))
	}

	r, err = render(chartDir, []string{filepath.Join(chartDir, "ci", "minimal-values.yaml")}, "serviceMonitor.enabled=true")
	require.NoError(t, err)
	for _, ep := range serviceMonitor(t, r).Spec.Endpoints {
		require.Nil(t, ep.Scheme)
		require.Nil(t, ep.TLSConfig)
		require.Empty(t, ep.RelabelConfigs)
		require.Empty(t, ep.MetricRelabelConfigs)
	}

	// A TLS secret reference, as Prometheus reads it from the cluster.
	r, err = render(chartDir, []string{filepath.Join(chartDir, "ci", "minimal-values.yaml"), valuesFile(t, `serviceMonitor:
  enabled: true
  scheme: HTTPS
  tlsConfig:
    serverName: sd-api.suppression.svc
    ca:
      secret:
        name: scrape-ca
        key: ca.crt
    minVersion: TLS13
`)})
	require.NoError(t, err)
	for _, ep := range serviceMonitor(t, r).Spec.Endpoints {
		require.Equal(t, "HTTPS", string(*ep.Scheme))
		require.Equal(t, "sd-api.suppression.svc", *ep.TLSConfig.ServerName)
		require.Equal(t, "scrape-ca", ep.TLSConfig.CA.Secret.Name)
		require.Equal(t, "TLS13", string(*ep.TLSConfig.MinVersion))
	}
}
