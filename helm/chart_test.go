package helm

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
)

// TestScenarios renders every ci/*-values.yaml scenario, decodes every
// manifest strictly and checks the release.
func TestScenarios(t *testing.T) {
	metrics := projectMetrics(t)
	for _, file := range scenarios(t) {
		t.Run(strings.TrimSuffix(filepath.Base(file), "-values.yaml"), func(t *testing.T) {
			r, err := render(chartDir, []string{file})
			require.NoError(t, err)
			require.NoError(t, validate(r, metrics))
			k := r.kinds()
			require.Equal(t, 2, k["Deployment"], "both roles by default")
			require.Equal(t, 2, k["PodDisruptionBudget"])
			require.Equal(t, 1, k["HorizontalPodAutoscaler"])
			require.Equal(t, 2, k["Service"])
			require.NotEmpty(t, r.notes)
		})
	}
}

// TestLint runs `helm lint --strict` (the SDK's pkg/lint, warnings fail)
// with each scenario, values.schema.json in force.
func TestLint(t *testing.T) {
	for _, file := range scenarios(t) {
		t.Run(strings.TrimSuffix(filepath.Base(file), "-values.yaml"), func(t *testing.T) {
			require.Empty(t, lintStrict(t, chartDir, file))
		})
	}
	// The schema is in force: a value it refuses fails the lint.
	failed := lintStrict(t, chartDir, filepath.Join(chartDir, "ci", "minimal-values.yaml"),
		valuesFile(t, "config:\n  logLevel: verbose\n"))
	require.NotEmpty(t, failed)
	require.Contains(t, fmt.Sprint(failed), "at '/config/logLevel'")
}

// TestFull checks what the full scenario turns on.
func TestFull(t *testing.T) {
	r, err := render(chartDir, []string{filepath.Join(chartDir, "ci", "full-values.yaml")})
	require.NoError(t, err)
	k := r.kinds()
	require.Equal(t, 1, k["ServiceMonitor"])
	require.Equal(t, 1, k["PrometheusRule"])
	require.Equal(t, 2, k["NetworkPolicy"])

	ops, err := os.ReadFile(filepath.Join(repoRoot, "docs", "operations.md"))
	require.NoError(t, err)
	var alerts []string
	for _, o := range r.objects {
		if pr, ok := o.obj.(*monitoringv1.PrometheusRule); ok {
			for _, rule := range pr.Spec.Groups[0].Rules {
				alerts = append(alerts, rule.Alert)
				if url := rule.Annotations["runbook_url"]; url != "" {
					// The runbook section exists: "### SuppressdX" is anchor #suppressdx.
					_, anchor, _ := strings.Cut(url, "#")
					require.Equal(t, strings.ToLower(rule.Alert), anchor)
					require.Contains(t, string(ops), "\n### "+rule.Alert+"\n", "docs/operations.md has no section for %s", rule.Alert)
				}
				switch rule.Alert {
				case "SuppressdOptOutFreshnessSLO":
					require.Contains(t, rule.Expr.String(), "suppressd_optout_freshness_seconds_bucket")
					require.Contains(t, rule.Expr.String(), "> 120", "the SLO comes from prometheusRule.freshnessSLOSeconds")
				case "SuppressdConsumerLagHigh":
					require.Contains(t, rule.Expr.String(), "> 100000", "prometheusRule.lagHighThreshold")
				case "SuppressdDeadLetterAging":
					require.Contains(t, rule.Expr.String(), "> 604800", "prometheusRule.deadLetterMaxAgeHours, in seconds")
				case "SuppressdStoreNotReady":
					require.EqualValues(t, "5m", *rule.For, "prometheusRule.storeNotReadyFor")
				}
			}
		}
	}
	require.Subset(t, alerts, []string{
		"SuppressdConsumerLagGrowing", "SuppressdDeadLetters", "SuppressdOptOutFreshnessSLO",
		"SuppressdCheckErrors", "SuppressdAPIErrors", "SuppressdCheckLatency",
		"SuppressdConsumerLagHigh", "SuppressdConsumerStalled", "SuppressdDeadLetterAging", "SuppressdStoreNotReady",
		"SuppressdPublishFailures", "SuppressdUnsubscribeErrors", "SuppressdWebhookErrors", "SuppressdIndexNotServing",
		"SuppressdFilterMalformed", // prometheusRule.additionalRules
	})

	dash := configMap(t, r, "sd-dashboard")
	require.Equal(t, "1", dash.Labels["grafana_dashboard"], "the Grafana sidecar's label")
	require.Equal(t, "Messaging", dash.Annotations["grafana_folder"])
	require.Contains(t, dash.Data["suppressd.json"], `"value": 120`, "the freshness panel's SLO line")
	require.Contains(t, dash.Data["suppressd.json"], `"value": 100000`, "the lag panel's SuppressdConsumerLagHigh line")
	require.Contains(t, dash.Data["suppressd.json"], `"value": 604800`, "the dead-letter panel's SuppressdDeadLetterAging line")
	require.NotContains(t, dash.Data["suppressd.json"], `"__`, "every placeholder is filled in")
	for _, m := range []string{"suppressd_checks_total", "suppressd_consumer_events_total", "suppressd_consumer_lag",
		"suppressd_optout_freshness_seconds_bucket", "suppressd_consumer_dead_letters_total", "suppressd_api_request_duration_seconds_bucket",
		"suppressd_dead_letter_oldest_seconds", "suppressd_store_ready", "suppressd_unsubscribe_requests_total",
		"suppressd_unsubscribe_request_duration_seconds_bucket", "suppressd_publish_events_total", "suppressd_webhook_requests_total",
		"suppressd_api_stream_aborts_total", "suppressd_index_keys_read_total", "suppressd_index_serving"} {
		require.Contains(t, dash.Data["suppressd.json"], m)
	}

	// Per-role configuration wins over the shared one; numbers stay integers.
	api, consumer := configMap(t, r, "sd-api").Data, configMap(t, r, "sd-consumer").Data
	require.Equal(t, "warn", api["SUPPRESSD_LOG_LEVEL"])
	require.Equal(t, "info", consumer["SUPPRESSD_LOG_LEVEL"])
	require.Equal(t, "1000000", api["SUPPRESSD_API_MAX_BATCH"])
	require.Equal(t, "4000", consumer["SUPPRESSD_CONSUMER_BATCH_SIZE"])
	require.Equal(t, "prod.complaints,prod.bounces", consumer["SUPPRESSD_TOPIC_EXTRA"], "lists become comma-separated")
	require.NotContains(t, consumer, "SUPPRESSD_API_MAX_BATCH", "each role gets its own settings only")
	require.NotContains(t, api, "SUPPRESSD_CONSUMER_BATCH_SIZE")

	// minAvailable given over the default maxUnavailable: only it (the API
	// server refuses a PodDisruptionBudget with both).
	for name, want := range map[string]int{"sd-api": 2, "sd-consumer": 5} {
		pdb := podDisruptionBudget(t, r, name)
		require.Nil(t, pdb.Spec.MaxUnavailable, name)
		require.NotNil(t, pdb.Spec.MinAvailable, name)
		require.Equal(t, want, pdb.Spec.MinAvailable.IntValue(), name)
	}

	d := deployment(t, r, "sd-api")
	require.Equal(t, "registry.example.com/suppressd/suppressd@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", d.Spec.Template.Spec.Containers[0].Image)
	require.Equal(t, ":8081", env(d, "SUPPRESSD_API_ADDR").Value)
	require.Equal(t, ":9191", env(deployment(t, r, "sd-consumer"), "SUPPRESSD_OPS_ADDR").Value)
}

// TestConsumerReplicasBoundedByPartitions: a consumer beyond the partition
// count would sit idle, so the chart refuses to render it.
func TestConsumerReplicasBoundedByPartitions(t *testing.T) {
	minimal := filepath.Join(chartDir, "ci", "minimal-values.yaml")
	for _, tc := range []struct {
		replicas, partitions int
		err                  string
	}{
		{6, 6, ""},
		{1, 6, ""},
		{7, 6, "consumer.replicaCount (7) is above consumer.partitions (6)"},
		{1, 0, "at '/consumer/partitions': minimum: got 0, want 1"},
	} {
		t.Run(fmt.Sprintf("%d/%d", tc.replicas, tc.partitions), func(t *testing.T) {
			r, err := render(chartDir, []string{minimal},
				fmt.Sprintf("consumer.replicaCount=%d", tc.replicas), fmt.Sprintf("consumer.partitions=%d", tc.partitions))
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.EqualValues(t, tc.replicas, *deployment(t, r, releaseName+"-suppressd-consumer").Spec.Replicas)
		})
	}
	// The bound only applies to the consumer: it is off, so no bound.
	_, err := render(chartDir, []string{minimal}, "consumer.enabled=false", "consumer.replicaCount=99")
	require.NoError(t, err)
}

// TestRoles: each role is optional; the other one's resources go with it.
func TestRoles(t *testing.T) {
	minimal := filepath.Join(chartDir, "ci", "minimal-values.yaml")
	metrics := projectMetrics(t)
	for _, tc := range []struct {
		name  string
		set   []string
		kinds map[string]int
	}{
		{"api only", []string{"consumer.enabled=false", "serviceMonitor.enabled=true", "prometheusRule.enabled=true"},
			map[string]int{"Deployment": 1, "Service": 1, "HorizontalPodAutoscaler": 1, "PodDisruptionBudget": 1, "ConfigMap": 1}},
		{"consumer only", []string{"api.enabled=false", "serviceMonitor.enabled=true", "prometheusRule.enabled=true"},
			map[string]int{"Deployment": 1, "Service": 1, "HorizontalPodAutoscaler": 0, "PodDisruptionBudget": 1, "ConfigMap": 1}},
		{"semver build metadata in the tag (not a valid label value as is)", []string{"image.tag=v1.2.3+build.5"},
			map[string]int{"Deployment": 2}},
		{"no pdb, no hpa", []string{"api.podDisruptionBudget=null", "consumer.podDisruptionBudget=null", "api.autoscaling.enabled=false"},
			map[string]int{"Deployment": 2, "PodDisruptionBudget": 0, "HorizontalPodAutoscaler": 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := render(chartDir, []string{minimal}, tc.set...)
			require.NoError(t, err)
			require.NoError(t, validate(r, metrics))
			for kind, n := range tc.kinds {
				require.Equal(t, n, r.kinds()[kind], kind)
			}
		})
	}
	_, err := render(chartDir, []string{minimal}, "api.enabled=false", "consumer.enabled=false")
	require.ErrorContains(t, err, "enable at least one role")

	// The consumer-only release needs no API keys; the API needs them.
	_, err = render(chartDir, nil, "config.redisAddrs=r:6379", "config.kafkaBrokers=k:9092", "api.enabled=false")
	require.NoError(t, err)
	_, err = render(chartDir, nil, "config.redisAddrs=r:6379", "config.kafkaBrokers=k:9092")
	require.ErrorContains(t, err, "secrets.apiKeys.existingSecret is required with api.enabled")
}

// TestRequiredAndRefused: what the chart refuses, and that it says why.
func TestRequiredAndRefused(t *testing.T) {
	minimal := filepath.Join(chartDir, "ci", "minimal-values.yaml")
	for _, tc := range []struct {
		set []string
		err string
	}{
		{[]string{"config.redisAddrs="}, "config.redisAddrs is required"},
		{[]string{"config.kafkaBrokers="}, "config.kafkaBrokers is required"},
		{[]string{"config.kafkaBrokers=", "consumer.enabled=false"}, "config.kafkaBrokers is required"}, // the API publishes
		// values.schema.json refuses keys that are no setting, secrets and
		// what the chart sets (TestTemplateChecksWithoutSchema: and so do
		// the templates, with --skip-schema-validation).
		{[]string{"config.kafkaBroker=kafka:9092"}, "at '/config': additional properties 'kafkaBroker' not allowed"},
		{[]string{"consumer.config.consumerBatchSise=10"}, "at '/consumer/config': additional properties 'consumerBatchSise' not allowed"},
		{[]string{"config.redisPassword=hunter2"}, "at '/config': additional properties 'redisPassword' not allowed"},
		{[]string{"config.pepper=c2VjcmV0c2VjcmV0c2VjcmV0"}, "at '/config': additional properties 'pepper' not allowed"},
		{[]string{"api.config.apiKeys=k:check:00"}, "at '/api/config': additional properties 'apiKeys' not allowed"},
		{[]string{"config.kafkaSaslPassword=x"}, "at '/config': additional properties 'kafkaSaslPassword' not allowed"},
		{[]string{"config.role=api"}, "at '/config': additional properties 'role' not allowed"},
		{[]string{"secrets.kafkaTls.existingSecret=tls"}, "config.kafkaTls is not true"},
		{[]string{"secrets.kafkaTls.existingSecret=tls", "config.kafkaTls=true", "config.kafkaTlsCaFile=/ca.pem"}, "set one, not both"},
		{[]string{"secrets.redisTls.existingSecret=tls"}, "config.redisTls is not true"},
		{[]string{"secrets.kafkaSaslPassword.existingSecret=kafka"}, "config.kafkaSaslMechanism is not"},
		{[]string{"api.resources.requests=null"}, "api.autoscaling.enabled needs api.resources.requests.cpu"},
	} {
		t.Run(tc.err, func(t *testing.T) {
			_, err := render(chartDir, []string{minimal}, tc.set...)
			require.ErrorContains(t, err, tc.err)
		})
	}
}

// TestTemplateChecksWithoutSchema: with --skip-schema-validation the
// templates still refuse what the schema would, each saying why and where
// the value belongs instead.
func TestTemplateChecksWithoutSchema(t *testing.T) {
	minimal := filepath.Join(chartDir, "ci", "minimal-values.yaml")
	for _, tc := range []struct {
		set []string
		err string
	}{
		{[]string{"config.kafkaBroker=kafka:9092"}, "config.kafkaBroker is not a suppressd setting"},
		{[]string{"consumer.config.consumerBatchSise=10"}, "config.consumerBatchSise is not a suppressd setting"},
		// Secrets are never values: each has its own refusal.
		{[]string{"config.redisPassword=hunter2"}, "config.redisPassword: a secret: set secrets.redisPassword.existingSecret"},
		{[]string{"config.pepper=c2VjcmV0c2VjcmV0c2VjcmV0"}, "config.pepper: a secret"},
		{[]string{"api.config.apiKeys=k:check:00"}, "config.apiKeys: a secret"},
		{[]string{"config.kafkaSaslPassword=x"}, "config.kafkaSaslPassword: a secret"},
		{[]string{"config.role=api"}, "config.role: set by the chart"},
		{[]string{"consumer.partitions=0"}, "consumer.partitions must be the partition count"},
	} {
		t.Run(tc.err, func(t *testing.T) {
			_, err := renderWith(renderOptions{skipSchema: true}, chartDir, []string{minimal}, tc.set...)
			require.ErrorContains(t, err, tc.err)
		})
	}
}

// TestEveryVariableSettable: every variable the binary reads (config.go)
// and every one the README documents can be set from values, and the
// secret ones only from Secrets.
func TestEveryVariableSettable(t *testing.T) {
	vars := configVariables(t)
	for _, v := range readmeVariables(t) {
		if !slices.Contains(vars, v) {
			vars = append(vars, v)
		}
	}
	// Set by the chart, or from Secrets only: no config key.
	notConfig := []string{"SUPPRESSD_ROLE", "SUPPRESSD_API_ADDR", "SUPPRESSD_OPS_ADDR",
		"SUPPRESSD_PEPPER", "SUPPRESSD_PEPPER_FILE", "SUPPRESSD_API_KEYS", "SUPPRESSD_API_KEYS_FILE",
		"SUPPRESSD_LINK_KEYS", "SUPPRESSD_LINK_KEYS_FILE", "SUPPRESSD_LINK_BRANDS_FILE",
		"SUPPRESSD_KAFKA_SASL_PASSWORD", "SUPPRESSD_REDIS_PASSWORD", "SUPPRESSD_REDIS_SENTINEL_PASSWORD",
		"SUPPRESSD_HOOKS_MAILGUN_SIGNING_KEY", "SUPPRESSD_HOOKS_POSTMARK_PASSWORD", "SUPPRESSD_HOOKS_POSTMARK_PATH_SECRET"}
	// One render sets every config key to a probe value and the password
	// and file secrets; the other the TLS secrets, whose file variables
	// would conflict with the config keys of the first.
	// values.yaml lists every config key, with its comment, for users to find.
	defaults := readValues(t, filepath.Join(chartDir, "values.yaml"))["config"].(map[string]any)
	var set []string
	for _, v := range vars {
		if !slices.Contains(notConfig, v) {
			require.Contains(t, defaults, valuesKey(v), "values.yaml does not list config.%s (%s)", valuesKey(v), v)
			set = append(set, fmt.Sprintf("config.%s=probe-%s", valuesKey(v), strings.ToLower(v)))
		}
	}
	require.Len(t, defaults, len(set), "values.yaml lists a config key the binary does not read")
	secrets := []string{
		"secrets.pepper.existingSecret=sentinel-pepper",
		"secrets.apiKeys.existingSecret=sentinel-api-keys",
		"secrets.linkKeys.existingSecret=sentinel-link-keys",
		"secrets.kafkaSaslPassword.existingSecret=sentinel-kafka-sasl",
		"secrets.redisPassword.existingSecret=sentinel-redis",
		"secrets.redisSentinelPassword.existingSecret=sentinel-redis-sentinel",
		"secrets.hooksMailgunSigningKey.existingSecret=sentinel-mailgun",
		"secrets.hooksPostmarkPassword.existingSecret=sentinel-postmark-password",
		"secrets.hooksPostmarkPathSecret.existingSecret=sentinel-postmark-path",
		"api.brands.fallback.name=Probe",
	}
	tlsSecrets := []string{
		"config.redisAddrs=r:6379", "config.kafkaBrokers=k:9092", "config.kafkaSaslMechanism=plain",
		"config.kafkaTls=true", "config.redisTls=true",
		"secrets.kafkaTls.existingSecret=sentinel-kafka-tls", "secrets.kafkaTls.certKey=tls.crt", "secrets.kafkaTls.keyKey=tls.key",
		"secrets.redisTls.existingSecret=sentinel-redis-tls",
	}
	reached := map[string]string{} // variable -> how
	secretVars := map[string]bool{}
	probeRender := func(set []string) {
		t.Helper()
		// The probe values are markers, not valid settings: the schema
		// would refuse them, and the wiring is what is tested here.
		r, err := renderWith(renderOptions{skipSchema: true}, chartDir, nil, set...)
		require.NoError(t, err)
		for _, o := range r.objects {
			switch x := o.obj.(type) {
			case *corev1.ConfigMap:
				for k, val := range x.Data {
					if val == "probe-"+strings.ToLower(k) {
						reached[k] = "config." + valuesKey(k)
					}
					// The sentinel Secret names appear only as references.
					require.NotContains(t, val, "sentinel-", "ConfigMap %s key %s", x.Name, k)
				}
			case *appsv1.Deployment:
				c := x.Spec.Template.Spec.Containers[0]
				mounts := map[string]bool{}
				for _, m := range c.VolumeMounts {
					for _, vol := range x.Spec.Template.Spec.Volumes {
						if vol.Name == m.Name && vol.Secret != nil && strings.HasPrefix(vol.Secret.SecretName, "sentinel-") {
							mounts[m.MountPath] = true
						}
					}
				}
				for _, e := range c.Env {
					require.NotContains(t, e.Value, "sentinel-", e.Name)
					switch {
					case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
						require.True(t, strings.HasPrefix(e.ValueFrom.SecretKeyRef.Name, "sentinel-"), e.Name)
						reached[e.Name], secretVars[e.Name] = "secretKeyRef "+e.ValueFrom.SecretKeyRef.Name, true
					case strings.HasSuffix(e.Name, "_FILE") && underAny(e.Value, mounts):
						reached[e.Name], secretVars[e.Name] = "a file in a mounted Secret", true
					case strings.HasPrefix(e.Name, "SUPPRESSD_") && e.Value != "":
						reached[e.Name] = "set by the chart: " + e.Value
					}
				}
			}
		}
	}
	probeRender(append(slices.Clone(set), secrets...))
	probeRender(append(slices.Clone(secrets), tlsSecrets...))

	for _, v := range vars {
		if v == "SUPPRESSD_PEPPER" || v == "SUPPRESSD_API_KEYS" || v == "SUPPRESSD_LINK_KEYS" {
			// The secret itself in the environment: reached through
			// its _FILE form only, checked below.
			continue
		}
		require.Contains(t, reached, v, "%s cannot be set from the chart's values", v)
		t.Logf("%-42s %s", v, reached[v])
	}
	for _, v := range []string{"SUPPRESSD_PEPPER_FILE", "SUPPRESSD_API_KEYS_FILE", "SUPPRESSD_LINK_KEYS_FILE", "SUPPRESSD_KAFKA_SASL_PASSWORD",
		"SUPPRESSD_REDIS_PASSWORD", "SUPPRESSD_REDIS_SENTINEL_PASSWORD"} {
		require.True(t, secretVars[v], "%s must come from a Secret", v)
	}
	// SUPPRESSD_PEPPER, SUPPRESSD_API_KEYS and SUPPRESSD_LINK_KEYS (the
	// secret itself in the environment) are reached through their _FILE
	// forms only.
	for _, v := range []string{"SUPPRESSD_PEPPER", "SUPPRESSD_API_KEYS", "SUPPRESSD_LINK_KEYS"} {
		require.True(t, secretVars[v+"_FILE"])
	}
}

// valuesKey names a variable's values key: SUPPRESSD_KAFKA_TLS_CA_FILE is
// kafkaTlsCaFile.
func valuesKey(v string) string {
	parts := strings.Split(strings.ToLower(strings.TrimPrefix(v, "SUPPRESSD_")), "_")
	for i := 1; i < len(parts); i++ {
		parts[i] = strings.ToUpper(parts[i][:1]) + parts[i][1:]
	}
	return strings.Join(parts, "")
}

// TestChecksumFollowsConfig: a config change rolls the role's pods, and
// only that role's.
func TestChecksumFollowsConfig(t *testing.T) {
	minimal := filepath.Join(chartDir, "ci", "minimal-values.yaml")
	sums := func(set ...string) (api, consumer string) {
		r, err := render(chartDir, []string{minimal}, set...)
		require.NoError(t, err)
		a := deployment(t, r, releaseName+"-suppressd-api").Spec.Template.Annotations["checksum/config"]
		c := deployment(t, r, releaseName+"-suppressd-consumer").Spec.Template.Annotations["checksum/config"]
		return a, c
	}
	a0, c0 := sums()
	a1, c1 := sums()
	require.Equal(t, a0, a1, "stable across renders")
	require.Equal(t, c0, c1)
	a2, c2 := sums("config.logLevel=debug")
	require.NotEqual(t, a0, a2)
	require.NotEqual(t, c0, c2)
	for _, set := range []string{"consumer.config.consumerBatchSize=500", "config.consumerBatchSize=500"} {
		a, c := sums(set)
		require.Equal(t, a0, a, "%s does not restart the API", set)
		require.NotEqual(t, c0, c, set)
	}
	for _, set := range []string{"api.config.apiMaxBatch=500", "config.apiMaxBatch=500", "config.linkTtl=1000h"} {
		a, c := sums(set)
		require.NotEqual(t, a0, a, set)
		require.Equal(t, c0, c, "%s does not restart the consumers", set)
	}
}

// TestValidationCatchesBrokenCharts proves the checks bite: each case
// breaks a copy of the chart the way a careless edit would, and the
// strict decoding or the release checks must fail.
func TestValidationCatchesBrokenCharts(t *testing.T) {
	metrics := projectMetrics(t)
	full := filepath.Join(chartDir, "ci", "full-values.yaml")
	for _, tc := range []struct {
		name, file, old, new string
		set                  []string
		err                  string
	}{
		{name: "misspelled pod field", file: "templates/_helpers.tpl",
			old: "      readinessProbe:\n", new: "      readinesProbe:\n",
			err: `unknown field "spec.template.spec.containers[0].readinesProbe"`},
		{name: "field in the wrong case", file: "templates/_helpers.tpl",
			old: "  terminationGracePeriodSeconds:", new: "  terminationgracePeriodSeconds:",
			err: `unknown field "spec.template.spec.terminationgracePeriodSeconds"`},
		{name: "misspelled CRD field", file: "templates/servicemonitor.yaml",
			old: "      scrapeTimeout:", new: "      scrapeTimout:",
			err: `unknown field "spec.endpoints[0].scrapeTimout"`},
		{name: "duplicate field", file: "templates/service.yaml",
			old: "  type: {{ .Values.api.service.type }}\n", new: "  type: {{ .Values.api.service.type }}\n  type: NodePort\n",
			err: `key "type" already set in map`},
		{name: "missing container securityContext", file: "templates/_helpers.tpl",
			old: "      securityContext:\n        {{- required \"securityContext is required\" $root.Values.securityContext | toYaml | nindent 8 }}\n", new: "",
			err: "containers[suppressd]: securityContext missing"},
		{name: "missing pod securityContext", file: "templates/_helpers.tpl",
			old: "  securityContext:\n    {{- required \"podSecurityContext is required\" $root.Values.podSecurityContext | toYaml | nindent 4 }}\n", new: "",
			err: "pod securityContext missing"},
		{name: "secret as a literal env", file: "templates/_helpers.tpl",
			old: "        - name: SUPPRESSD_ROLE\n", new: "        - name: SUPPRESSD_REDIS_PASSWORD\n          value: s3cret\n        - name: SUPPRESSD_ROLE\n",
			err: "SUPPRESSD_REDIS_PASSWORD]: a secret must come from a secretKeyRef"},
		{name: "liveness on the wrong path", set: []string{"api.livenessProbe.httpGet.path=/readyz"},
			err: `livenessProbe: path "/readyz", want "/healthz"`},
		{name: "writable root filesystem", set: []string{"securityContext.readOnlyRootFilesystem=false"},
			err: "readOnlyRootFilesystem must be true"},
		{name: "capabilities kept", set: []string{"securityContext.capabilities=null"},
			err: "capabilities must drop ALL"},
		{name: "alert on a misspelled metric", file: "templates/prometheusrule.yaml",
			old: "suppressd_consumer_dead_letters_total", new: "suppressd_consumer_deadletters_total",
			err: "unknown metric suppressd_consumer_deadletters_total"},
		{name: "service selecting nothing", file: "templates/service.yaml",
			old: "  selector:\n    {{- include \"suppressd.roleSelectorLabels\" $ctx | nindent 4 }}\n  ports:\n    - name: http\n      port: {{ .Values.api.service.port }}",
			new: "  selector:\n    app: suppressd\n  ports:\n    - name: http\n      port: {{ .Values.api.service.port }}",
			err: "matches 0 deployments' pods"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := chartDir
			if tc.file != "" {
				dir = copyChart(t)
				mutate(t, dir, tc.file, tc.old, tc.new)
			}
			r, err := render(dir, []string{full}, tc.set...)
			if err == nil {
				err = validate(r, metrics)
			}
			require.ErrorContains(t, err, tc.err)
		})
	}
	// And the unbroken chart passes the same checks.
	r, err := render(chartDir, []string{full})
	require.NoError(t, err)
	require.NoError(t, validate(r, metrics))
}

func configMap(t *testing.T, r rendered, name string) *corev1.ConfigMap {
	t.Helper()
	for _, o := range r.objects {
		if cm, ok := o.obj.(*corev1.ConfigMap); ok && cm.Name == name {
			return cm
		}
	}
	t.Fatalf("no ConfigMap %s", name)
	return nil
}

func podDisruptionBudget(t *testing.T, r rendered, name string) *policyv1.PodDisruptionBudget {
	t.Helper()
	for _, o := range r.objects {
		if p, ok := o.obj.(*policyv1.PodDisruptionBudget); ok && p.Name == name {
			return p
		}
	}
	t.Fatalf("no PodDisruptionBudget %s", name)
	return nil
}

func deployment(t *testing.T, r rendered, name string) *appsv1.Deployment {
	t.Helper()
	for _, o := range r.objects {
		if d, ok := o.obj.(*appsv1.Deployment); ok && d.Name == name {
			return d
		}
	}
	t.Fatalf("no Deployment %s", name)
	return nil
}

func env(d *appsv1.Deployment, name string) corev1.EnvVar {
	for _, e := range d.Spec.Template.Spec.Containers[0].Env {
		if e.Name == name {
			return e
		}
	}
	return corev1.EnvVar{}
}

// TestBrands: api.brands reaches the api role as the file the binary reads
// (a ConfigMap mounted where SUPPRESSD_LINK_BRANDS_FILE says, holding the
// values as JSON), a change of brand rolls the api pods only, the
// consumer gets none of it, and the schema refuses a brand the binary
// would refuse.
func TestBrands(t *testing.T) {
	minimal := filepath.Join(chartDir, "ci", "minimal-values.yaml")
	brands := valuesFile(t, `
api:
  brands:
    fallback: {name: Example Group, privacy_url: "https://example.com/privacy"}
    namespaces:
      acme: {name: ACME Outdoor, accent_color: "#e4572e", support_email: support@acme.example}
`)
	r, err := render(chartDir, []string{minimal, brands})
	require.NoError(t, err)
	cm := configMap(t, r, releaseName+"-suppressd-api-brands")
	var got map[string]any
	require.NoError(t, json.Unmarshal([]byte(cm.Data["brands.json"]), &got))
	require.Equal(t, map[string]any{
		"fallback":   map[string]any{"name": "Example Group", "privacy_url": "https://example.com/privacy"},
		"namespaces": map[string]any{"acme": map[string]any{"name": "ACME Outdoor", "accent_color": "#e4572e", "support_email": "support@acme.example"}},
	}, got)
	api := deployment(t, r, releaseName+"-suppressd-api")
	path := env(api, "SUPPRESSD_LINK_BRANDS_FILE").Value
	require.Equal(t, "/etc/suppressd/brands/brands.json", path)
	var mounted, volume bool
	for _, m := range api.Spec.Template.Spec.Containers[0].VolumeMounts {
		mounted = mounted || (m.Name == "brands" && m.MountPath == filepath.Dir(path))
	}
	for _, v := range api.Spec.Template.Spec.Volumes {
		volume = volume || (v.Name == "brands" && v.ConfigMap != nil && v.ConfigMap.Name == cm.Name)
	}
	require.True(t, mounted && volume, "the ConfigMap is mounted where the variable points")
	consumer := deployment(t, r, releaseName+"-suppressd-consumer")
	require.Empty(t, env(consumer, "SUPPRESSD_LINK_BRANDS_FILE").Name)

	plain, err := render(chartDir, []string{minimal})
	require.NoError(t, err)
	require.Empty(t, env(deployment(t, plain, releaseName+"-suppressd-api"), "SUPPRESSD_LINK_BRANDS_FILE").Name, "no brands, no file")
	other, err := render(chartDir, []string{minimal, brands}, "api.brands.namespaces.acme.accent_color=#112233")
	require.NoError(t, err)
	sum := func(r rendered, role string) string {
		return deployment(t, r, releaseName+"-suppressd-"+role).Spec.Template.Annotations["checksum/brands"]
	}
	require.NotEmpty(t, sum(r, "api"))
	require.NotEqual(t, sum(r, "api"), sum(other, "api"), "a new brand rolls the api pods")
	require.Equal(t, deployment(t, r, releaseName+"-suppressd-consumer").Spec.Template.Annotations,
		deployment(t, other, releaseName+"-suppressd-consumer").Spec.Template.Annotations, "and not the consumers")

	for _, bad := range []string{"api.brands.namespaces.acme.logo_url=http://cdn.example/logo.svg", "api.brands.namespaces.acme.accent_color=orange", "api.brands.namespaces.Acme Inc.name=x"} {
		_, err := render(chartDir, []string{minimal, brands}, bad)
		require.Error(t, err, bad)
	}
}
