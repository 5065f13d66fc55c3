package helm

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// validate checks a rendered release for what the chart promises; every
// violation is reported, each naming its object.
func validate(r rendered, metrics map[string]metricKind) error {
	v := &validator{r: r, metrics: metrics}
	v.index()
	for _, o := range r.objects {
		v.object(o)
	}
	return errors.Join(v.errs...)
}

type validator struct {
	r          rendered
	metrics    map[string]metricKind
	errs       []error
	deploys    []*appsv1.Deployment
	services   []*corev1.Service
	configMaps map[string]*corev1.ConfigMap
	hpaTargets map[string]bool
}

func (v *validator) errorf(o object, format string, a ...any) {
	v.errs = append(v.errs, fmt.Errorf("%s (%s): %s", name(o), o.source, fmt.Sprintf(format, a...)))
}

func name(o object) string {
	m, err := metaOf(o)
	if err != nil {
		return "?"
	}
	return o.obj.GetObjectKind().GroupVersionKind().Kind + "/" + m.GetName()
}

func metaOf(o object) (metav1.Object, error) {
	m, ok := o.obj.(metav1.Object)
	if !ok {
		return nil, fmt.Errorf("%T has no metadata", o.obj)
	}
	return m, nil
}

func (v *validator) index() {
	v.configMaps = map[string]*corev1.ConfigMap{}
	v.hpaTargets = map[string]bool{}
	for _, o := range v.r.objects {
		switch x := o.obj.(type) {
		case *appsv1.Deployment:
			v.deploys = append(v.deploys, x)
		case *corev1.Service:
			v.services = append(v.services, x)
		case *corev1.ConfigMap:
			v.configMaps[x.Name] = x
		case *autoscalingv2.HorizontalPodAutoscaler:
			v.hpaTargets[x.Spec.ScaleTargetRef.Name] = true
		}
	}
}

func (v *validator) object(o object) {
	m, err := metaOf(o)
	if err != nil {
		v.errorf(o, "%v", err)
		return
	}
	for _, msg := range validation.IsDNS1123Subdomain(m.GetName()) {
		v.errorf(o, "name: %s", msg)
	}
	if m.GetNamespace() != namespace {
		v.errorf(o, "namespace %q, want the release's %q", m.GetNamespace(), namespace)
	}
	v.labels(o, m.GetLabels())
	switch x := o.obj.(type) {
	case *appsv1.Deployment:
		v.deployment(o, x)
	case *corev1.Service:
		for _, msg := range validation.IsDNS1035Label(x.Name) {
			v.errorf(o, "service name: %s", msg)
		}
		v.selects(o, "selector", labels.SelectorFromSet(x.Spec.Selector), func(d *appsv1.Deployment) {
			for _, p := range x.Spec.Ports {
				if p.TargetPort.StrVal != "" && !hasPort(d.Spec.Template.Spec.Containers, p.TargetPort.StrVal) {
					v.errorf(o, "targetPort %q is no port of deployment %s", p.TargetPort.StrVal, d.Name)
				}
			}
		})
	case *corev1.ConfigMap:
		v.configMap(o, x)
	case *corev1.Secret:
		v.errorf(o, "the chart must not render Secrets: secrets come from existing ones")
	case *policyv1.PodDisruptionBudget:
		v.selects(o, "selector", mustSelector(v, o, x.Spec.Selector), nil)
	case *networkingv1.NetworkPolicy:
		v.selects(o, "podSelector", mustSelector(v, o, &x.Spec.PodSelector), nil)
	case *networkingv1.Ingress:
		v.ingress(o, x)
	case *autoscalingv2.HorizontalPodAutoscaler:
		v.hpa(o, x)
	case *monitoringv1.ServiceMonitor:
		v.serviceMonitor(o, x)
	case *monitoringv1.PrometheusRule:
		v.prometheusRule(o, x)
	case *corev1.ServiceAccount:
		if x.AutomountServiceAccountToken == nil || *x.AutomountServiceAccountToken {
			v.errorf(o, "automountServiceAccountToken must be false: suppressd never calls the Kubernetes API")
		}
	default:
		v.errorf(o, "kind %T is not one the chart is known to render: add its checks", o.obj)
	}
}

func (v *validator) labels(o object, l map[string]string) {
	for k, val := range l {
		for _, msg := range validation.IsQualifiedName(k) {
			v.errorf(o, "label %q: %s", k, msg)
		}
		for _, msg := range validation.IsValidLabelValue(val) {
			v.errorf(o, "label %s=%q: %s", k, val, msg)
		}
	}
	for _, k := range []string{"app.kubernetes.io/name", "app.kubernetes.io/instance", "helm.sh/chart", "app.kubernetes.io/managed-by"} {
		if l[k] == "" {
			v.errorf(o, "label %s missing (shared _helpers.tpl labels)", k)
		}
	}
}

func mustSelector(v *validator, o object, ls *metav1.LabelSelector) labels.Selector {
	s, err := metav1.LabelSelectorAsSelector(ls)
	if err != nil {
		v.errorf(o, "selector: %v", err)
		return labels.Nothing()
	}
	if s.Empty() {
		v.errorf(o, "empty selector: it would select every pod of the namespace")
	}
	return s
}

// selects checks that the selector matches the pods of exactly one of the
// release's Deployments, and calls then with it.
func (v *validator) selects(o object, what string, s labels.Selector, then func(*appsv1.Deployment)) {
	var matched []*appsv1.Deployment
	for _, d := range v.deploys {
		if s.Matches(labels.Set(d.Spec.Template.Labels)) {
			matched = append(matched, d)
		}
	}
	if len(matched) != 1 {
		v.errorf(o, "%s %s matches %d deployments' pods, want 1", what, s, len(matched))
		return
	}
	if then != nil {
		then(matched[0])
	}
}

func hasPort(cs []corev1.Container, name string) bool {
	for _, c := range cs {
		for _, p := range c.Ports {
			if p.Name == name {
				return true
			}
		}
	}
	return false
}

func (v *validator) deployment(o object, d *appsv1.Deployment) {
	sel := mustSelector(v, o, d.Spec.Selector)
	if !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
		v.errorf(o, "selector %s does not match its own pod labels", sel)
	}
	if v.hpaTargets[d.Name] && d.Spec.Replicas != nil {
		v.errorf(o, "replicas set while an HPA scales it: every upgrade would reset the HPA's count")
	}
	if !v.hpaTargets[d.Name] && d.Spec.Replicas == nil {
		v.errorf(o, "no replicas and no HPA")
	}
	for _, err := range checkPod(d.Spec.Template) {
		v.errorf(o, "%v", err)
	}
	for _, c := range d.Spec.Template.Spec.Containers {
		for _, ef := range c.EnvFrom {
			if ef.ConfigMapRef == nil || v.configMaps[ef.ConfigMapRef.Name] == nil {
				v.errorf(o, "envFrom %+v: not a ConfigMap of the release", ef)
			}
		}
	}
}

// secretEnv is a variable that holds, or points at, a secret.
var secretEnv = regexp.MustCompile(`PASSWORD|PEPPER|_KEYS|SECRET|TOKEN|_KEY_FILE|_CERT_FILE|_CA_FILE`)

// looksSecret reports a literal value that looks like key material: a PEM
// block, a URL with credentials, a long hex string, or a long token mixing
// digits, lower and upper case (base64).
func looksSecret(s string) bool {
	if strings.Contains(s, "-----BEGIN") || urlCreds.MatchString(s) || longHex.MatchString(s) {
		return true
	}
	for _, tok := range base64ish.FindAllString(s, -1) {
		if len(tok) >= 24 && strings.ContainsAny(tok, "0123456789") &&
			strings.ToLower(tok) != tok && strings.ToUpper(tok) != tok {
			return true
		}
	}
	return false
}

var (
	urlCreds  = regexp.MustCompile(`://[^/\s@]*:[^/\s@]*@`)
	longHex   = regexp.MustCompile(`[0-9a-fA-F]{32,}`)
	base64ish = regexp.MustCompile(`[A-Za-z0-9+/=_-]+`)
)

// checkPod checks one pod template: security, probes, resources, the
// config checksum, spreading, and that secrets only come from Secrets.
func checkPod(t corev1.PodTemplateSpec) []error {
	var errs []error
	fail := func(f string, a ...any) { errs = append(errs, fmt.Errorf(f, a...)) }
	ps := t.Spec.SecurityContext
	if ps == nil {
		fail("pod securityContext missing")
		ps = &corev1.PodSecurityContext{}
	}
	if t.Spec.AutomountServiceAccountToken == nil || *t.Spec.AutomountServiceAccountToken {
		fail("automountServiceAccountToken must be false")
	}
	if len(t.Spec.TopologySpreadConstraints) == 0 {
		fail("no topologySpreadConstraints")
	}
	for _, c := range t.Spec.TopologySpreadConstraints {
		s, err := metav1.LabelSelectorAsSelector(c.LabelSelector)
		if err != nil || s.Empty() || !s.Matches(labels.Set(t.Labels)) {
			fail("topologySpreadConstraint %s: labelSelector %v does not select these pods", c.TopologyKey, c.LabelSelector)
		}
	}
	if sum := t.Annotations["checksum/config"]; !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(sum) {
		fail("checksum/config annotation %q is not a sha256", sum)
	}
	secretMounts := map[string]bool{} // mount paths of Secret volumes
	secretVolumes := map[string]bool{}
	for _, vol := range t.Spec.Volumes {
		if vol.Secret != nil {
			secretVolumes[vol.Name] = true
		}
	}
	if len(t.Spec.Containers) != 1 {
		fail("%d containers, want 1", len(t.Spec.Containers))
	}
	for _, c := range t.Spec.Containers {
		at := field.NewPath("containers").Key(c.Name)
		cs := c.SecurityContext
		if cs == nil {
			fail("%s: securityContext missing", at)
			cs = &corev1.SecurityContext{}
		}
		if !isTrue(cs.RunAsNonRoot) && !isTrue(ps.RunAsNonRoot) {
			fail("%s: runAsNonRoot is not true (container or pod)", at)
		}
		if cs.RunAsUser != nil && *cs.RunAsUser == 0 || ps.RunAsUser != nil && *ps.RunAsUser == 0 {
			fail("%s: runAsUser 0", at)
		}
		if cs.AllowPrivilegeEscalation == nil || *cs.AllowPrivilegeEscalation {
			fail("%s: securityContext.allowPrivilegeEscalation must be false", at)
		}
		if !isTrue(cs.ReadOnlyRootFilesystem) {
			fail("%s: securityContext.readOnlyRootFilesystem must be true", at)
		}
		if isTrue(cs.Privileged) {
			fail("%s: privileged", at)
		}
		if cs.Capabilities == nil || !slices.Contains(cs.Capabilities.Drop, "ALL") || len(cs.Capabilities.Add) > 0 {
			fail("%s: securityContext.capabilities must drop ALL and add none", at)
		}
		seccomp := ps.SeccompProfile
		if cs.SeccompProfile != nil {
			seccomp = cs.SeccompProfile
		}
		if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
			fail("%s: seccompProfile must be RuntimeDefault", at)
		}
		if strings.HasSuffix(c.Image, ":latest") || !strings.ContainsAny(c.Image, ":@") {
			fail("%s: image %q has no pinned tag or digest", at, c.Image)
		}
		probe(fail, at.Child("livenessProbe"), c.LivenessProbe, "/healthz", c)
		probe(fail, at.Child("readinessProbe"), c.ReadinessProbe, "/readyz", c)
		if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
			fail("%s: resources.requests cpu and memory must be set", at)
		}
		if c.Resources.Limits.Memory().IsZero() {
			fail("%s: resources.limits.memory must be set", at)
		}
		// GOMEMLIMIT is a soft limit below the hard one, in bytes.
		for _, e := range c.Env {
			if e.Name != "GOMEMLIMIT" {
				continue
			}
			n, err := strconv.ParseInt(e.Value, 10, 64)
			limit := c.Resources.Limits.Memory().Value()
			switch {
			case err != nil || e.ValueFrom != nil:
				fail("%s: GOMEMLIMIT %q is not a number of bytes", at, e.Value)
			case limit == 0 || n <= 0 || n >= limit:
				fail("%s: GOMEMLIMIT %d is not below the memory limit (%d bytes)", at, n, limit)
			}
		}
		for _, m := range c.VolumeMounts {
			if secretVolumes[m.Name] {
				if !m.ReadOnly {
					fail("%s: secret volume %s mounted read-write", at, m.Name)
				}
				secretMounts[m.MountPath] = true
			}
		}
		for _, e := range c.Env {
			errs = append(errs, checkEnv(at.Child("env").Key(e.Name), e, secretMounts)...)
		}
	}
	return errs
}

// checkEnv: a secret variable comes from a secretKeyRef, or is a path
// into a mounted Secret; no literal value looks like key material.
func checkEnv(at *field.Path, e corev1.EnvVar, secretMounts map[string]bool) []error {
	var errs []error
	if looksSecret(e.Value) {
		errs = append(errs, fmt.Errorf("%s: literal value looks like a secret", at))
	}
	if !secretEnv.MatchString(e.Name) {
		return errs
	}
	switch {
	case strings.HasSuffix(e.Name, "_FILE"):
		if e.ValueFrom != nil || !underAny(e.Value, secretMounts) {
			errs = append(errs, fmt.Errorf("%s: %q is not a file in a mounted Secret", at, e.Value))
		}
	case e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil:
		errs = append(errs, fmt.Errorf("%s: a secret must come from a secretKeyRef, not a literal", at))
	}
	return errs
}

func underAny(path string, dirs map[string]bool) bool {
	for d := range dirs {
		if strings.HasPrefix(path, strings.TrimSuffix(d, "/")+"/") {
			return true
		}
	}
	return false
}

func probe(fail func(string, ...any), at *field.Path, p *corev1.Probe, path string, c corev1.Container) {
	switch {
	case p == nil:
		fail("%s missing", at)
	case p.HTTPGet == nil:
		fail("%s: not an httpGet", at)
	case p.HTTPGet.Path != path:
		fail("%s: path %q, want %q", at, p.HTTPGet.Path, path)
	case p.HTTPGet.Port.StrVal == "" || !hasPort([]corev1.Container{c}, p.HTTPGet.Port.StrVal):
		fail("%s: port %q is not a named port of the container", at, p.HTTPGet.Port.String())
	}
}

func isTrue(b *bool) bool { return b != nil && *b }

func (v *validator) configMap(o object, cm *corev1.ConfigMap) {
	if _, ok := cm.Labels["grafana_dashboard"]; ok || strings.HasSuffix(cm.Name, "-dashboard") {
		v.dashboard(o, cm)
		return
	}
	for k, val := range cm.Data {
		if !strings.HasPrefix(k, "SUPPRESSD_") {
			v.errorf(o, "key %s is not a SUPPRESSD_ setting", k)
		}
		if secretEnv.MatchString(k) && !strings.HasSuffix(k, "_FILE") {
			v.errorf(o, "key %s is a secret: it must come from a Secret, never a ConfigMap", k)
		}
		if looksSecret(val) {
			v.errorf(o, "%s=%q looks like a secret", k, val)
		}
	}
}

func (v *validator) hpa(o object, h *autoscalingv2.HorizontalPodAutoscaler) {
	var target *appsv1.Deployment
	for _, d := range v.deploys {
		if d.Name == h.Spec.ScaleTargetRef.Name && h.Spec.ScaleTargetRef.Kind == "Deployment" {
			target = d
		}
	}
	if target == nil {
		v.errorf(o, "scaleTargetRef %s/%s is not a Deployment of the release", h.Spec.ScaleTargetRef.Kind, h.Spec.ScaleTargetRef.Name)
		return
	}
	if len(h.Spec.Metrics) == 0 || h.Spec.Metrics[0].Resource == nil || h.Spec.Metrics[0].Resource.Name != corev1.ResourceCPU {
		v.errorf(o, "want a CPU resource metric")
	}
	for _, c := range target.Spec.Template.Spec.Containers {
		if c.Resources.Requests.Cpu().IsZero() {
			v.errorf(o, "container %s has no CPU request: CPU utilisation is undefined", c.Name)
		}
	}
}

func (v *validator) serviceMonitor(o object, sm *monitoringv1.ServiceMonitor) {
	s := mustSelector(v, o, &sm.Spec.Selector)
	n := 0
	for _, svc := range v.services {
		if !s.Matches(labels.Set(svc.Labels)) {
			continue
		}
		n++
		for _, ep := range sm.Spec.Endpoints {
			if !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == ep.Port }) {
				v.errorf(o, "endpoint port %q is not a port of service %s", ep.Port, svc.Name)
			}
		}
	}
	if n != len(v.services) {
		v.errorf(o, "selects %d of the release's %d services", n, len(v.services))
	}
}

// publicPaths are the API's paths meant for the internet, each a prefix:
// the unsubscribe pages and the inbound webhooks. Nothing else of the
// API's port (/v1/, /metrics, /healthz, /readyz) may be routed from outside.
var publicPaths = []string{"/u/", "/hooks/"}

// ingress checks that the release's Ingress routes only the public paths,
// by a path type whose matching the Ingress API defines, to a port of one
// of the release's Services.
func (v *validator) ingress(o object, ing *networkingv1.Ingress) {
	if ing.Spec.DefaultBackend != nil {
		v.errorf(o, "a defaultBackend routes every path")
	}
	hosts := map[string]bool{}
	for _, rule := range ing.Spec.Rules {
		hosts[rule.Host] = true
		if rule.HTTP == nil || len(rule.HTTP.Paths) == 0 {
			v.errorf(o, "host %q: no paths", rule.Host)
			continue
		}
		for _, p := range rule.HTTP.Paths {
			if p.PathType == nil || *p.PathType == networkingv1.PathTypeImplementationSpecific {
				v.errorf(o, "path %s: pathType must be Prefix or Exact (ImplementationSpecific is whatever the controller makes of it, a regular expression for some)", p.Path)
			}
			if !slices.Contains(publicPaths, p.Path) {
				v.errorf(o, "path %s is not one of the API's public paths %v", p.Path, publicPaths)
			}
			b := p.Backend.Service
			if b == nil {
				v.errorf(o, "path %s: not a Service backend", p.Path)
				continue
			}
			i := slices.IndexFunc(v.services, func(s *corev1.Service) bool { return s.Name == b.Name })
			if i < 0 {
				v.errorf(o, "path %s: Service %s is not the release's", p.Path, b.Name)
				continue
			}
			if !slices.ContainsFunc(v.services[i].Spec.Ports, func(sp corev1.ServicePort) bool {
				return b.Port.Name != "" && sp.Name == b.Port.Name || b.Port.Name == "" && sp.Port == b.Port.Number
			}) {
				v.errorf(o, "path %s: Service %s has no port %+v", p.Path, b.Name, b.Port)
			}
		}
	}
	for _, tls := range ing.Spec.TLS {
		for _, h := range tls.Hosts {
			if !hosts[h] {
				v.errorf(o, "tls host %s is none of the rules' hosts", h)
			}
		}
	}
}

func (v *validator) prometheusRule(o object, pr *monitoringv1.PrometheusRule) {
	for _, g := range pr.Spec.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				v.errorf(o, "rule without alert name in group %s", g.Name)
			}
			if r.Labels["severity"] == "" {
				v.errorf(o, "alert %s has no severity", r.Alert)
			}
			if err := checkPromQL(r.Expr.String(), v.metrics); err != nil {
				v.errorf(o, "alert %s: %v", r.Alert, err)
			}
		}
	}
}

// dashboardJSON is the part of a Grafana dashboard the checks read; other
// fields are allowed (Grafana's model is large).
type dashboardJSON struct {
	UID    string `json:"uid"`
	Title  string `json:"title"`
	Panels []struct {
		Title   string `json:"title"`
		Type    string `json:"type"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
		FieldConfig struct {
			Defaults struct {
				Thresholds *struct {
					Steps []struct {
						Value *float64 `json:"value"`
					} `json:"steps"`
				} `json:"thresholds"`
			} `json:"defaults"`
		} `json:"fieldConfig"`
	} `json:"panels"`
}

func (v *validator) dashboard(o object, cm *corev1.ConfigMap) {
	if len(cm.Data) != 1 {
		v.errorf(o, "want one dashboard, got %d keys", len(cm.Data))
	}
	for k, raw := range cm.Data {
		var d dashboardJSON
		if err := json.Unmarshal([]byte(raw), &d); err != nil {
			v.errorf(o, "%s: %v", k, err)
			continue
		}
		if d.UID == "" || d.Title == "" {
			v.errorf(o, "%s: no uid or title", k)
		}
		exprs := 0
		for _, p := range d.Panels {
			for _, t := range p.Targets {
				exprs++
				if err := checkPromQL(t.Expr, v.metrics); err != nil {
					v.errorf(o, "panel %q: %v", p.Title, err)
				}
			}
		}
		if exprs == 0 {
			v.errorf(o, "%s: no queries", k)
		}
	}
}
