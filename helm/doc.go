// Package helm holds suppressd's Helm chart (suppressd/) and its offline
// checks, as a Go module of its own so the chart's heavy dependencies (the
// Helm SDK, the Kubernetes API types) stay out of the service's module.
//
// The tests render every ci/*-values.yaml scenario with the Helm SDK as
// `helm install --dry-run` would, decode every manifest strictly into the
// Kubernetes API types (an unknown or misspelled field fails), check the
// pods' security, probes and secret handling, lint the chart, and check the
// repository's Dockerfile. No cluster and no network are needed.
package helm
