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
// internal/config, internal/api and internal/broker from it, which Go
// allows because this module's path lies under the service's.
//
// The tests run the real tools, never a copy of their logic:
//
//   - helm (lint --strict and template) renders the chart with its defaults,
//     with testdata/all-on.yaml, which switches every option on, and with a
//     few single-option variants. Every rendered object is decoded strictly
//     (unknown or duplicate fields fail) into its k8s.io/api type; the
//     ServiceMonitor and the PrometheusRule, which have no such type, into
//     structs of the fields the chart may render.
//   - The rendered pod is held against the binary: every ABACUS_* variable
//     is a setting config.SettingNames knows, the whole environment passes
//     config.Load, the probes, metrics and the NOTES' curl lines use paths
//     api.ServedPaths lists, and every port agrees with ABACUS_HTTP_ADDR.
//   - values.schema.json rejects a wrong type and an unknown key.
//   - charts/abacus/README.md lists every value with its type, default and
//     the comment values.yaml gives it, and every value has one.
//   - The PrometheusRule's groups pass promtool check rules, and promtool
//     test rules runs testdata/alerts.test.yaml against them: synthetic
//     series that make every alert fire, and some stay quiet. The Grafana
//     dashboard (charts/abacus/dashboards/abacus.json) is valid JSON whose
//     PromQL promtool accepts, shipped unchanged in the ConfigMap. Every
//     metric family, label and label value the alerts and the dashboard
//     select is on the /metrics of real abacus processes (the binary built
//     from the work tree, run against the embedded broker) once they have
//     counted, dead-lettered and dropped records.
//   - The Dockerfile passes BuildKit's parse-time checks and dockerfilelint,
//     and builds what `make build` builds, the way `make -n image` says.
//
// helm is found at $HELM, at $(go env GOPATH)/bin/helm or on PATH,
// dockerfilelint at $DOCKERFILELINT or in .tools/, and promtool at
// $PROMTOOL or on PATH; a missing tool fails the tests (run make tools), it
// never skips them.
package chart
