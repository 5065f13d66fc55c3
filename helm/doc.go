// Package helm holds suppressd's Helm chart (suppressd/) and its offline
// checks, as a Go module of its own so the chart's heavy dependencies (the
// Helm SDK, the Kubernetes API types) stay out of the service's module.
//
// The tests render every ci/*-values.yaml scenario with the Helm SDK as
// `helm install --dry-run` would, with values.schema.json in force, decode
// every manifest strictly into the Kubernetes API types (an unknown or
// misspelled field fails), check the pods' security, probes and secret
// handling, run `helm lint --strict`, refuse the broken values files of
// testdata/bad-values, evaluate the NetworkPolicies for every ServiceMonitor
// target and Ingress backend, parse every alert and dashboard query, and
// check the repository's Dockerfile. No cluster and no network are needed.
package helm
