// Package chart holds the tests of abacus's Kubernetes packaging: the Helm
// chart in charts/abacus, the Dockerfile and the Makefile's image target;
// `make chart-test` runs them. Its only code outside the tests writes the
// chart README's table of values (package valuesdoc, run by `make
// chart-docs` through cmd/chartdocs), which TestChartReadme holds the
// README to.
//
// It is a module of its own so that the Kubernetes client libraries it
// decodes manifests with stay out of the service's go.mod. It replaces
// github.com/abacus-streams/abacus with the work tree (../..) and imports
// internal/config and internal/api from it, which Go allows because this
// module's path lies under the service's.
//
// The tests run the real tools, never a copy of their logic:
//
//   - helm (lint --strict and template) renders the chart with its defaults,
//     with testdata/all-on.yaml, which switches every option on, and with a
//     few single-option variants. Every rendered object is decoded strictly
//     (unknown or duplicate fields fail) into its k8s.io/api type; the
//     ServiceMonitor, which has no such type, is checked field by field.
//   - The rendered pod is held against the binary: every ABACUS_* variable
//     is a setting config.SettingNames knows, the whole environment passes
//     config.Load, the probes, metrics and the NOTES' curl lines use paths
//     api.ServedPaths lists, and every port agrees with ABACUS_HTTP_ADDR.
//   - values.schema.json rejects a wrong type and an unknown key.
//   - charts/abacus/README.md lists every value with its type, default and
//     the comment values.yaml gives it, and every value has one.
//   - The Dockerfile passes BuildKit's parse-time checks and dockerfilelint,
//     and builds what `make build` builds, the way `make -n image` says.
//
// helm is found at $HELM, at $(go env GOPATH)/bin/helm or on PATH, and
// dockerfilelint at $DOCKERFILELINT or in .tools/; a missing tool fails the
// tests (run make tools), it never skips them.
package chart
