package helm

// What the release's NetworkPolicies let through, evaluated as the
// Kubernetes NetworkPolicy API defines it: a pod selected by no policy of
// type Ingress takes any traffic; a pod selected by some takes what any of
// their ingress rules admits (a rule admits when one of its ports and one of
// its peers match; no ports is every port, no peers is every source).

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// source is where traffic comes from: a pod, its labels and its namespace's.
type source struct {
	namespace string
	nsLabels  labels.Set
	podLabels labels.Set
}

func (s source) String() string {
	pods := "any pod"
	if len(s.podLabels) > 0 {
		pods = "pods " + s.podLabels.String()
	}
	return fmt.Sprintf("%s in namespace %s (%s)", pods, s.namespace, s.nsLabels)
}

// sourceFor returns a pod that the peer describes, as a NetworkPolicy peer
// selects it: in the policy's namespace when the peer names none.
func sourceFor(t *testing.T, peer networkingv1.NetworkPolicyPeer, policyNS string) source {
	t.Helper()
	require.Nil(t, peer.IPBlock, "an ipBlock peer names no pod: the test cannot place Prometheus there")
	s := source{namespace: policyNS, nsLabels: labels.Set{}, podLabels: labels.Set{}}
	if ns := peer.NamespaceSelector; ns != nil {
		s.namespace = "peer-namespace"
		if name, ok := ns.MatchLabels["kubernetes.io/metadata.name"]; ok {
			s.namespace = name
		}
		s.nsLabels = satisfy(t, ns)
	}
	s.nsLabels["kubernetes.io/metadata.name"] = s.namespace
	if peer.PodSelector != nil {
		s.podLabels = satisfy(t, peer.PodSelector)
	}
	return s
}

// satisfy returns labels the selector matches.
func satisfy(t *testing.T, ls *metav1.LabelSelector) labels.Set {
	t.Helper()
	out := labels.Set{}
	for k, v := range ls.MatchLabels {
		out[k] = v
	}
	for _, e := range ls.MatchExpressions {
		switch e.Operator {
		case metav1.LabelSelectorOpIn:
			out[e.Key] = e.Values[0]
		case metav1.LabelSelectorOpExists:
			out[e.Key] = "x"
		}
	}
	sel, err := metav1.LabelSelectorAsSelector(ls)
	require.NoError(t, err)
	require.True(t, sel.Matches(out), "cannot build labels for selector %s", sel)
	return out
}

// ingressAllowed says whether traffic from src reaches port of a pod with
// podLabels in namespace ns, and, when it does not, which policies refuse it.
func ingressAllowed(policies []*networkingv1.NetworkPolicy, ns string, podLabels labels.Set, port corev1.ContainerPort, src source) (bool, string) {
	var selecting []string
	for _, np := range policies {
		if np.Namespace != ns || !hasIngressType(np) {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
		if err != nil || !sel.Matches(podLabels) {
			continue
		}
		selecting = append(selecting, np.Name)
		for _, rule := range np.Spec.Ingress {
			if portsMatch(rule.Ports, port) && peersMatch(rule.From, np.Namespace, src) {
				return true, ""
			}
		}
	}
	if len(selecting) == 0 {
		return true, ""
	}
	return false, fmt.Sprintf("NetworkPolicy %s admits no rule for port %s/%d from %s", strings.Join(selecting, ", "), port.Name, port.ContainerPort, src)
}

// hasIngressType: policyTypes empty means Ingress (and Egress when there
// are egress rules).
func hasIngressType(np *networkingv1.NetworkPolicy) bool {
	return len(np.Spec.PolicyTypes) == 0 || slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress)
}

func portsMatch(ports []networkingv1.NetworkPolicyPort, port corev1.ContainerPort) bool {
	if len(ports) == 0 {
		return true
	}
	proto := port.Protocol
	if proto == "" {
		proto = corev1.ProtocolTCP
	}
	for _, p := range ports {
		pp := corev1.ProtocolTCP
		if p.Protocol != nil {
			pp = *p.Protocol
		}
		if pp != proto {
			continue
		}
		switch {
		case p.Port == nil:
			return true
		case p.Port.Type == intstr.String:
			if p.Port.StrVal == port.Name && port.Name != "" {
				return true
			}
		case p.EndPort != nil:
			if port.ContainerPort >= p.Port.IntVal && port.ContainerPort <= *p.EndPort {
				return true
			}
		case p.Port.IntVal == port.ContainerPort:
			return true
		}
	}
	return false
}

func peersMatch(peers []networkingv1.NetworkPolicyPeer, policyNS string, src source) bool {
	if len(peers) == 0 {
		return true
	}
	for _, p := range peers {
		if p.IPBlock != nil {
			continue // a CIDR: says nothing about a pod we place by its labels
		}
		nsOK := src.namespace == policyNS
		if p.NamespaceSelector != nil {
			sel, err := metav1.LabelSelectorAsSelector(p.NamespaceSelector)
			nsOK = err == nil && sel.Matches(src.nsLabels)
		}
		podOK := true
		if p.PodSelector != nil {
			sel, err := metav1.LabelSelectorAsSelector(p.PodSelector)
			podOK = err == nil && sel.Matches(src.podLabels)
		}
		if nsOK && podOK {
			return true
		}
	}
	return false
}

// target is a port of the release's pods that something outside them must
// reach: a ServiceMonitor's endpoint or an Ingress backend, resolved through
// its Service to the container port.
type target struct {
	what      string // "ServiceMonitor/x endpoint http of Service/y"
	namespace string
	pod       labels.Set
	port      corev1.ContainerPort
}

// servicePortTargets resolves a Service port (by name or number) to the
// container ports of the Deployments it selects.
func servicePortTargets(t *testing.T, r rendered, what string, svc *corev1.Service, port intstr.IntOrString) []target {
	t.Helper()
	var sp *corev1.ServicePort
	for i, p := range svc.Spec.Ports {
		if port.Type == intstr.String && p.Name == port.StrVal || port.Type == intstr.Int && p.Port == port.IntVal {
			sp = &svc.Spec.Ports[i]
		}
	}
	require.NotNil(t, sp, "%s: Service %s has no port %s", what, svc.Name, port.String())
	var out []target
	for _, o := range r.objects {
		d, ok := o.obj.(*appsv1.Deployment)
		if !ok || d.Namespace != svc.Namespace || !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
			continue
		}
		var cp *corev1.ContainerPort
		for _, c := range d.Spec.Template.Spec.Containers {
			for i, p := range c.Ports {
				if sp.TargetPort.Type == intstr.String && p.Name == sp.TargetPort.StrVal ||
					sp.TargetPort.Type == intstr.Int && sp.TargetPort.IntVal != 0 && p.ContainerPort == sp.TargetPort.IntVal ||
					sp.TargetPort.Type == intstr.Int && sp.TargetPort.IntVal == 0 && p.ContainerPort == sp.Port {
					cp = &c.Ports[i]
				}
			}
		}
		require.NotNil(t, cp, "%s: Service %s port %s targets no port of Deployment %s", what, svc.Name, sp.Name, d.Name)
		out = append(out, target{what: what, namespace: d.Namespace, pod: labels.Set(d.Spec.Template.Labels), port: *cp})
	}
	require.NotEmpty(t, out, "%s: Service %s selects no pods of the release", what, svc.Name)
	return out
}

// scrapeTargets returns every port the release's ServiceMonitors scrape.
func scrapeTargets(t *testing.T, r rendered) []target {
	t.Helper()
	var out []target
	for _, o := range r.objects {
		sm, ok := o.obj.(*monitoringv1.ServiceMonitor)
		if !ok {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(&sm.Spec.Selector)
		require.NoError(t, err)
		for _, o := range r.objects {
			svc, ok := o.obj.(*corev1.Service)
			if !ok || !sel.Matches(labels.Set(svc.Labels)) || !smWatches(sm, svc.Namespace) {
				continue
			}
			for _, ep := range sm.Spec.Endpoints {
				port := intstr.FromString(ep.Port)
				if ep.Port == "" {
					require.NotNil(t, ep.TargetPort, "ServiceMonitor %s: an endpoint with neither port nor targetPort", sm.Name)
					port = *ep.TargetPort
				}
				what := fmt.Sprintf("ServiceMonitor/%s endpoint %s of Service/%s", sm.Name, port.String(), svc.Name)
				out = append(out, servicePortTargets(t, r, what, svc, port)...)
			}
		}
	}
	return out
}

func smWatches(sm *monitoringv1.ServiceMonitor, ns string) bool {
	if sm.Spec.NamespaceSelector.Any {
		return true
	}
	if len(sm.Spec.NamespaceSelector.MatchNames) == 0 {
		return ns == sm.Namespace
	}
	return slices.Contains(sm.Spec.NamespaceSelector.MatchNames, ns)
}

// ingressTargets returns every backend port of the release's Ingresses.
func ingressTargets(t *testing.T, r rendered) []target {
	t.Helper()
	var out []target
	for _, o := range r.objects {
		ing, ok := o.obj.(*networkingv1.Ingress)
		if !ok {
			continue
		}
		for _, rule := range ing.Spec.Rules {
			require.NotNil(t, rule.HTTP)
			for _, p := range rule.HTTP.Paths {
				b := p.Backend.Service
				require.NotNil(t, b, "Ingress %s path %s: not a Service backend", ing.Name, p.Path)
				svc := service(t, r, b.Name)
				port := intstr.FromString(b.Port.Name)
				if b.Port.Name == "" {
					port = intstr.FromInt32(b.Port.Number)
				}
				what := fmt.Sprintf("Ingress/%s %s%s", ing.Name, rule.Host, p.Path)
				out = append(out, servicePortTargets(t, r, what, svc, port)...)
			}
		}
	}
	return out
}

func service(t *testing.T, r rendered, name string) *corev1.Service {
	t.Helper()
	for _, o := range r.objects {
		if s, ok := o.obj.(*corev1.Service); ok && s.Name == name {
			return s
		}
	}
	t.Fatalf("no Service %s", name)
	return nil
}

func networkPolicies(r rendered) []*networkingv1.NetworkPolicy {
	var out []*networkingv1.NetworkPolicy
	for _, o := range r.objects {
		if np, ok := o.obj.(*networkingv1.NetworkPolicy); ok {
			out = append(out, np)
		}
	}
	return out
}

// peersOf returns the sources a values list of NetworkPolicy peers (such as
// networkPolicy.metricsFrom) describes; none when the list is empty.
func peersOf(t *testing.T, vals map[string]any, key string) []source {
	t.Helper()
	np, _ := vals["networkPolicy"].(map[string]any)
	raw, _ := np[key].([]any)
	b, err := yaml.Marshal(raw)
	require.NoError(t, err)
	var peers []networkingv1.NetworkPolicyPeer
	require.NoError(t, yaml.UnmarshalStrict(b, &peers), "networkPolicy.%s", key)
	var out []source
	for _, p := range peers {
		out = append(out, sourceFor(t, p, namespace))
	}
	return out
}

// reachable fails unless every target is admitted from every source.
func reachable(t *testing.T, r rendered, targets []target, sources []source) error {
	t.Helper()
	var errs []string
	for _, tg := range targets {
		for _, src := range sources {
			if ok, why := ingressAllowed(networkPolicies(r), tg.namespace, tg.pod, tg.port, src); !ok {
				errs = append(errs, tg.what+": "+why)
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "\n"))
	}
	return nil
}

// prometheusSources are the namespaces (and pods) the chart's values say
// Prometheus runs in: networkPolicy.metricsFrom, or, when that is empty
// (every source may scrape), a namespace of its own.
func prometheusSources(t *testing.T, vals map[string]any) []source {
	t.Helper()
	if s := peersOf(t, vals, "metricsFrom"); len(s) > 0 {
		return s
	}
	return []source{{namespace: "monitoring", nsLabels: labels.Set{"kubernetes.io/metadata.name": "monitoring"}, podLabels: labels.Set{"app.kubernetes.io/name": "prometheus"}}}
}

// chartValues are the values a release is rendered with: the chart's
// defaults, then the files, then --set.
func chartValues(t *testing.T, files []string, set ...string) map[string]any {
	t.Helper()
	vals, err := mergeValues(append([]string{filepath.Join(chartDir, "values.yaml")}, files...), set)
	require.NoError(t, err)
	return vals
}

// TestScrapeTargetsReachable: every port a ServiceMonitor scrapes is
// admitted, by the NetworkPolicy that selects its pods, from where the
// chart says Prometheus runs. Otherwise the scrape fails and the *Down
// alerts fire for a healthy service (SuppressdAPIDown did, with the API's
// policy admitting only networkPolicy.apiFrom).
func TestScrapeTargetsReachable(t *testing.T) {
	full := filepath.Join(chartDir, "ci", "full-values.yaml")
	minimal := filepath.Join(chartDir, "ci", "minimal-values.yaml")
	on := []string{"networkPolicy.enabled=true", "serviceMonitor.enabled=true"}
	type scenario struct {
		name  string
		files []string
		set   []string
	}
	var cases []scenario
	for _, f := range scenarios(t) {
		cases = append(cases, scenario{strings.TrimSuffix(filepath.Base(f), "-values.yaml"), []string{f}, on})
	}
	cases = append(cases,
		scenario{"full, api only", []string{full}, []string{"consumer.enabled=false"}},
		scenario{"full, consumer only", []string{full}, []string{"api.enabled=false", "ingress.enabled=false"}},
		scenario{"Prometheus pods selected by label", []string{full}, []string{
			"networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.kubernetes\\.io/metadata\\.name=monitoring",
			"networkPolicy.metricsFrom[0].podSelector.matchLabels.app\\.kubernetes\\.io/name=prometheus"}},
		scenario{"Prometheus in the release's namespace", []string{full, valuesFile(t,
			"networkPolicy:\n  metricsFrom:\n    - podSelector:\n        matchLabels:\n          app: prometheus\n")}, nil},
		scenario{"API open to every source", []string{minimal}, append(slices.Clone(on),
			"networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.team=observability")},
	)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, err := render(chartDir, tc.files, tc.set...)
			require.NoError(t, err)
			targets := scrapeTargets(t, r)
			require.NotEmpty(t, targets, "no ServiceMonitor target")
			require.NotEmpty(t, networkPolicies(r))
			require.NoError(t, reachable(t, r, targets, prometheusSources(t, chartValues(t, tc.files, tc.set...))))
		})
	}

	// The API's port serves the API too: when apiFrom restricts it, "every
	// source may scrape" cannot hold there, so the chart asks where
	// Prometheus is instead of rendering a policy that blocks it.
	_, err := render(chartDir, []string{full}, "networkPolicy.metricsFrom=null")
	require.ErrorContains(t, err, "networkPolicy.metricsFrom")

	// And the check bites: the API's policy without its metrics rule.
	dir := copyChart(t)
	mutate(t, dir, "templates/networkpolicy.yaml", "{{- with $np.metricsFrom }}", "{{- with list }}")
	r, err := render(dir, []string{full})
	require.NoError(t, err)
	err = reachable(t, r, scrapeTargets(t, r), prometheusSources(t, chartValues(t, []string{full})))
	require.ErrorContains(t, err, "ServiceMonitor/sd endpoint http of Service/sd-api: NetworkPolicy sd-api admits no rule")
}

// TestNetworkPolicySemantics holds the evaluator above to the API's rules,
// so the reachability tests can be trusted.
func TestNetworkPolicySemantics(t *testing.T) {
	tcp, udp := corev1.ProtocolTCP, corev1.ProtocolUDP
	named := func(s string) *intstr.IntOrString { v := intstr.FromString(s); return &v }
	num := func(n int32) *intstr.IntOrString { v := intstr.FromInt32(n); return &v }
	end := func(n int32) *int32 { return &n }
	pod := labels.Set{"app": "api"}
	http := corev1.ContainerPort{Name: "http", ContainerPort: 8080, Protocol: tcp}
	mon := source{namespace: "monitoring", nsLabels: labels.Set{"kubernetes.io/metadata.name": "monitoring"}, podLabels: labels.Set{"app": "prometheus"}}
	same := source{namespace: "suppression", nsLabels: labels.Set{"kubernetes.io/metadata.name": "suppression"}, podLabels: labels.Set{"app": "prometheus"}}
	nsSel := &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "monitoring"}}
	podSel := &metav1.LabelSelector{MatchLabels: map[string]string{"app": "prometheus"}}
	policy := func(types []networkingv1.PolicyType, rules ...networkingv1.NetworkPolicyIngressRule) *networkingv1.NetworkPolicy {
		return &networkingv1.NetworkPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "suppression"},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "api"}},
				PolicyTypes: types, Ingress: rules,
			},
		}
	}
	rule := func(ports []networkingv1.NetworkPolicyPort, from ...networkingv1.NetworkPolicyPeer) networkingv1.NetworkPolicyIngressRule {
		return networkingv1.NetworkPolicyIngressRule{Ports: ports, From: from}
	}
	ingress := []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
	for _, tc := range []struct {
		name     string
		policies []*networkingv1.NetworkPolicy
		src      source
		want     bool
	}{
		{"no policy", nil, mon, true},
		{"egress-only policy", []*networkingv1.NetworkPolicy{policy([]networkingv1.PolicyType{networkingv1.PolicyTypeEgress})}, mon, true},
		{"ingress with no rules denies", []*networkingv1.NetworkPolicy{policy(ingress)}, mon, false},
		{"policyTypes empty means Ingress", []*networkingv1.NetworkPolicy{policy(nil)}, mon, false},
		{"rule with no ports and no peers", []*networkingv1.NetworkPolicy{policy(ingress, rule(nil))}, mon, true},
		{"named port", []*networkingv1.NetworkPolicy{policy(ingress, rule([]networkingv1.NetworkPolicyPort{{Port: named("http")}}))}, mon, true},
		{"other named port", []*networkingv1.NetworkPolicy{policy(ingress, rule([]networkingv1.NetworkPolicyPort{{Port: named("metrics")}}))}, mon, false},
		{"numeric port", []*networkingv1.NetworkPolicy{policy(ingress, rule([]networkingv1.NetworkPolicyPort{{Port: num(8080)}}))}, mon, true},
		{"port range", []*networkingv1.NetworkPolicy{policy(ingress, rule([]networkingv1.NetworkPolicyPort{{Port: num(8000), EndPort: end(8100)}}))}, mon, true},
		{"other protocol", []*networkingv1.NetworkPolicy{policy(ingress, rule([]networkingv1.NetworkPolicyPort{{Protocol: &udp, Port: named("http")}}))}, mon, false},
		{"namespace selected", []*networkingv1.NetworkPolicy{policy(ingress, rule(nil, networkingv1.NetworkPolicyPeer{NamespaceSelector: nsSel}))}, mon, true},
		{"other namespace", []*networkingv1.NetworkPolicy{policy(ingress, rule(nil, networkingv1.NetworkPolicyPeer{NamespaceSelector: nsSel}))}, same, false},
		{"pod selector alone is the policy's namespace", []*networkingv1.NetworkPolicy{policy(ingress, rule(nil, networkingv1.NetworkPolicyPeer{PodSelector: podSel}))}, mon, false},
		{"pod selector alone, same namespace", []*networkingv1.NetworkPolicy{policy(ingress, rule(nil, networkingv1.NetworkPolicyPeer{PodSelector: podSel}))}, same, true},
		{"namespace and pod selectors both", []*networkingv1.NetworkPolicy{policy(ingress, rule(nil, networkingv1.NetworkPolicyPeer{NamespaceSelector: nsSel, PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "grafana"}}}))}, mon, false},
		{"empty namespace selector is every namespace", []*networkingv1.NetworkPolicy{policy(ingress, rule(nil, networkingv1.NetworkPolicyPeer{NamespaceSelector: &metav1.LabelSelector{}}))}, mon, true},
		{"ipBlock names no pod", []*networkingv1.NetworkPolicy{policy(ingress, rule(nil, networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/8"}}))}, mon, false},
		{"rules are ORed", []*networkingv1.NetworkPolicy{policy(ingress,
			rule(nil, networkingv1.NetworkPolicyPeer{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "senders"}}}),
			rule([]networkingv1.NetworkPolicyPort{{Port: named("http")}}, networkingv1.NetworkPolicyPeer{NamespaceSelector: nsSel}))}, mon, true},
		{"policies are ORed", []*networkingv1.NetworkPolicy{policy(ingress), policy(ingress, rule(nil, networkingv1.NetworkPolicyPeer{NamespaceSelector: nsSel}))}, mon, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, why := ingressAllowed(tc.policies, "suppression", pod, http, tc.src)
			require.Equal(t, tc.want, got, why)
		})
	}
	// A policy of another namespace, or selecting other pods, says nothing here.
	other := policy(ingress)
	other.Namespace = "elsewhere"
	got, _ := ingressAllowed([]*networkingv1.NetworkPolicy{other}, "suppression", pod, http, mon)
	require.True(t, got)
	got, _ = ingressAllowed([]*networkingv1.NetworkPolicy{policy(ingress)}, "suppression", labels.Set{"app": "consumer"}, http, mon)
	require.True(t, got)
}
