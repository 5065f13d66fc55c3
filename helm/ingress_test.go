package helm

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	networkingv1 "k8s.io/api/networking/v1"
)

// ingressMatches says whether a request path matches an Ingress path as the
// Ingress API defines it: Exact is the same string; Prefix compares path
// elements split by "/", a trailing slash aside (/u/ matches /u and /u/x,
// not /uploads).
func ingressMatches(p networkingv1.HTTPIngressPath, req string) bool {
	elems := func(s string) []string {
		s = strings.Trim(s, "/")
		if s == "" {
			return nil
		}
		return strings.Split(s, "/")
	}
	switch *p.PathType {
	case networkingv1.PathTypeExact:
		return req == p.Path
	case networkingv1.PathTypePrefix:
		pe, re := elems(p.Path), elems(req)
		return len(pe) <= len(re) && slices.Equal(pe, re[:len(pe)])
	}
	return true // ImplementationSpecific: assume the worst
}

func ingresses(r rendered) []*networkingv1.Ingress {
	var out []*networkingv1.Ingress
	for _, o := range r.objects {
		if i, ok := o.obj.(*networkingv1.Ingress); ok {
			out = append(out, i)
		}
	}
	return out
}

// TestIngress: off by default; on, it routes the unsubscribe pages and the
// webhooks of every host to the API's Service, and nothing else of the API
// (checked by request path, as the Ingress API matches them), with the
// class, annotations and TLS given.
func TestIngress(t *testing.T) {
	minimal := filepath.Join(chartDir, "ci", "minimal-values.yaml")
	full := filepath.Join(chartDir, "ci", "full-values.yaml")
	r, err := render(chartDir, []string{minimal})
	require.NoError(t, err)
	require.Empty(t, ingresses(r), "off by default")

	r, err = render(chartDir, []string{full})
	require.NoError(t, err)
	require.NoError(t, validate(r, projectMetrics(t)))
	ings := ingresses(r)
	require.Len(t, ings, 1)
	ing := ings[0]
	require.Equal(t, "nginx", *ing.Spec.IngressClassName)
	require.Equal(t, "letsencrypt", ing.Annotations["cert-manager.io/cluster-issuer"])
	require.Equal(t, []networkingv1.IngressTLS{{SecretName: "sd-unsubscribe-tls", Hosts: []string{"unsubscribe.example.org"}}}, ing.Spec.TLS)
	require.Nil(t, ing.Spec.DefaultBackend)
	require.Len(t, ing.Spec.Rules, 1)
	require.Equal(t, "unsubscribe.example.org", ing.Spec.Rules[0].Host)

	routed := func(req string) []string {
		var to []string
		for _, rule := range ing.Spec.Rules {
			for _, p := range rule.HTTP.Paths {
				if ingressMatches(p, req) {
					to = append(to, p.Backend.Service.Name+":"+p.Backend.Service.Port.Name)
				}
			}
		}
		return to
	}
	for _, req := range []string{"/u/eyJ0b2tlbiI", "/u/eyJ0b2tlbiI/preferences", "/hooks/ses", "/hooks/sendgrid/events"} {
		require.Equal(t, []string{"sd-api:http"}, routed(req), "%s must reach the API", req)
	}
	for _, req := range []string{"/v1/check", "/v1/filter", "/v1/events", "/v1/import", "/v1/subjects/lookup", "/v1",
		"/metrics", "/healthz", "/readyz", "/", "/uploads", "/hooksx", "/U/x"} {
		require.Empty(t, routed(req), "%s must not be routed from outside", req)
	}
	// And from where the ingress controller runs, the NetworkPolicy lets
	// those requests reach the API's pods.
	require.NoError(t, reachable(t, r, ingressTargets(t, r), peersOf(t, chartValues(t, []string{full}), "ingressControllerFrom")))

	// Several hosts, wildcard, no class, no TLS.
	r, err = render(chartDir, []string{minimal}, "ingress.enabled=true", "ingress.hosts={a.example.org,*.example.net}")
	require.NoError(t, err)
	require.NoError(t, validate(r, projectMetrics(t)))
	ing = ingresses(r)[0]
	require.Nil(t, ing.Spec.IngressClassName)
	require.Empty(t, ing.Spec.TLS)
	require.Len(t, ing.Spec.Rules, 2)

	for _, tc := range []struct {
		files []string
		set   []string
		err   string
	}{
		{[]string{minimal}, []string{"ingress.enabled=true"}, "at '/ingress/hosts'"},
		{[]string{minimal}, []string{"ingress.enabled=true", "ingress.hosts={https://x.example.org}"}, "at '/ingress/hosts/0'"},
		{[]string{minimal}, []string{"ingress.enabled=true", "ingress.hosts={x.example.org}", "api.enabled=false"}, "ingress.enabled needs api.enabled"},
		// Unsubscribe links must point where the Ingress routes.
		{[]string{full}, []string{"config.linkBaseUrl=https://mail.example.org"}, "its host mail.example.org is not among ingress.hosts"},
		{[]string{full}, []string{"api.config.linkBaseUrl=https://unsubscribe.example.org/suppressd"}, "has a path"},
		// The ingress controller must be let through the API's policy.
		{[]string{full}, []string{"networkPolicy.ingressControllerFrom=null"}, "networkPolicy.ingressControllerFrom is empty"},
	} {
		t.Run(tc.err, func(t *testing.T) {
			_, err := render(chartDir, tc.files, tc.set...)
			require.ErrorContains(t, err, tc.err)
		})
	}
	_, err = render(chartDir, []string{full}, "config.linkBaseUrl=https://unsubscribe.example.org/")
	require.NoError(t, err, "a trailing slash is the root")
	_, err = render(chartDir, []string{minimal}, "ingress.enabled=true", "ingress.hosts={*.example.org}", "config.linkBaseUrl=https://mail.example.org")
	require.NoError(t, err, "a wildcard host serves the link's host")

	// The checks bite: a catch-all path, a /v1 route, a regex path type.
	for _, tc := range []struct{ name, old, new, err string }{
		{"root path", `list "/u/" "/hooks/"`, `list "/u/" "/hooks/" "/"`, "path / is not one of the API's public paths"},
		{"v1 path", `list "/u/" "/hooks/"`, `list "/u/" "/v1/"`, "path /v1/ is not one of the API's public paths"},
		{"implementation specific", "pathType: Prefix", "pathType: ImplementationSpecific", "pathType must be Prefix or Exact"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyChart(t)
			mutate(t, dir, "templates/ingress.yaml", tc.old, tc.new)
			r, err := render(dir, []string{full})
			require.NoError(t, err)
			require.ErrorContains(t, validate(r, projectMetrics(t)), tc.err)
		})
	}
}
