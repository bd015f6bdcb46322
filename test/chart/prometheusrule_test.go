package chart

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// prometheusRule is the part of monitoring.coreos.com/v1 PrometheusRule the
// chart renders, decoded strictly as the ServiceMonitor is.
type prometheusRule struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Groups []ruleGroup `json:"groups"`
	} `json:"spec"`
}

// ruleGroup is a Prometheus rule group, as both the PrometheusRule and a
// rules file for promtool hold it.
type ruleGroup struct {
	Name     string `json:"name"`
	Interval string `json:"interval,omitempty"`
	Rules    []rule `json:"rules"`
}

type rule struct {
	Alert       string            `json:"alert,omitempty"`
	Record      string            `json:"record,omitempty"`
	Expr        string            `json:"expr"`
	For         string            `json:"for,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// alertNames are the alerts the chart ships, each with a section in
// docs/operations.md's runbook and a test in testdata/alerts.test.yaml.
var alertNames = []string{
	"AbacusConsumerLagGrowing",
	"AbacusMemberInError",
	"AbacusMemberNotRunning",
	"AbacusRestoreStalled",
	"AbacusRecordsDeadLettered",
	"AbacusCommitsStale",
	"AbacusNoStandbyCaughtUp",
	"AbacusMembersMissing",
}

// promtoolBin is $PROMTOOL, else promtool on PATH (Debian's prometheus
// package, which scripts/install-test-deps.sh installs).
func promtoolBin(t *testing.T) string {
	t.Helper()
	return findToolOr(t, "promtool", "run make tools (Debian: apt-get install prometheus)", os.Getenv("PROMTOOL"))
}

// renderRule renders the chart with the PrometheusRule on and returns it,
// decoded strictly; it fails unless exactly one is rendered.
func renderRule(t *testing.T, files []string, sets ...string) *prometheusRule {
	t.Helper()
	var found []*prometheusRule
	for _, o := range render(t, files, append([]string{"prometheusRule.enabled=true"}, sets...)...) {
		if o.Kind == "PrometheusRule" {
			found = append(found, decodePrometheusRule(t, o))
		}
	}
	if len(found) != 1 {
		t.Fatalf("want one PrometheusRule, rendered %d", len(found))
	}
	return found[0]
}

func decodePrometheusRule(t *testing.T, o object) *prometheusRule {
	t.Helper()
	js, err := yaml.YAMLToJSONStrict(o.Raw)
	if err != nil {
		t.Fatalf("%s: %v", o.Source, err)
	}
	var pr prometheusRule
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&pr); err != nil {
		t.Fatalf("%s: %s does not decode strictly: %v", o.Source, o.Kind, err)
	}
	return &pr
}

// alerts lists the rule's alerting rules by name.
func (pr *prometheusRule) alerts() map[string]rule {
	out := map[string]rule{}
	for _, g := range pr.Spec.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" {
				out[r.Alert] = r
			}
		}
	}
	return out
}

// writeRulesFile writes the rule's groups as a Prometheus rules file, the
// form promtool reads, and returns its path.
func writeRulesFile(t *testing.T, dir string, pr *prometheusRule) string {
	t.Helper()
	out, err := yaml.Marshal(map[string]any{"groups": pr.Spec.Groups})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// checkRules runs promtool check rules on the rule's groups.
func checkRules(t *testing.T, pr *prometheusRule) {
	t.Helper()
	path := writeRulesFile(t, t.TempDir(), pr)
	if out, err := run(repoRoot(t), promtoolBin(t), "check", "rules", path); err != nil {
		t.Errorf("promtool check rules: %v", err)
	} else if !strings.Contains(out, "SUCCESS") {
		t.Errorf("promtool check rules did not say SUCCESS:\n%s", out)
	}
}

// TestPrometheusRule renders the rule with the chart's defaults, has
// promtool check it, then runs testdata/alerts.test.yaml against it: a
// promtool unit test whose synthetic series make every alert fire (with
// its labels and annotations) and show some of them quiet when the
// members are healthy.
func TestPrometheusRule(t *testing.T) {
	pr := renderRule(t, nil)
	if pr.Namespace != namespace || pr.Labels["app.kubernetes.io/instance"] != release {
		t.Errorf("PrometheusRule %s/%s labels %v", pr.Namespace, pr.Name, pr.Labels)
	}
	alerts := pr.alerts()
	var names []string
	for name := range alerts {
		names = append(names, name)
	}
	sort.Strings(names)
	want := slices.Sorted(slices.Values(alertNames))
	if !slices.Equal(names, want) {
		t.Fatalf("the rule has alerts %v, want %v", names, want)
	}
	checkRuleConventions(t, pr)
	checkRules(t, pr)
	checkRuleScopeMatchesServiceMonitor(t)

	// promtool reads rule_files relative to the test file, so both go to a
	// directory of their own.
	dir := t.TempDir()
	writeRulesFile(t, dir, pr)
	tests, err := os.ReadFile(testdata(t, "alerts.test.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "alerts.test.yaml"), tests, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := run(dir, promtoolBin(t), "test", "rules", "alerts.test.yaml"); err != nil {
		t.Errorf("promtool test rules testdata/alerts.test.yaml:\n%v", err)
	} else {
		t.Logf("promtool test rules: %s", strings.TrimSpace(out))
	}

	// Every alert is shown firing there, not only quiet.
	var unit struct {
		RuleFiles []string `json:"rule_files"`
		Tests     []struct {
			Name          string `json:"name"`
			AlertRuleTest []struct {
				Alertname string `json:"alertname"`
				ExpAlerts []any  `json:"exp_alerts"`
			} `json:"alert_rule_test"`
		} `json:"tests"`
	}
	if err := yaml.Unmarshal(tests, &unit); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(unit.RuleFiles, []string{"rules.yaml"}) {
		t.Errorf("alerts.test.yaml reads rule files %v, want [rules.yaml] (the rendered rule)", unit.RuleFiles)
	}
	fires, quiet := map[string]bool{}, map[string]bool{}
	for _, tc := range unit.Tests {
		for _, a := range tc.AlertRuleTest {
			if _, ok := alerts[a.Alertname]; !ok {
				t.Errorf("test %q expects alert %s, which the rule does not have", tc.Name, a.Alertname)
			}
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			} else {
				quiet[a.Alertname] = true
			}
		}
	}
	for _, name := range alertNames {
		if !fires[name] {
			t.Errorf("alerts.test.yaml never shows %s firing", name)
		}
		if !quiet[name] {
			t.Errorf("alerts.test.yaml never shows %s quiet", name)
		}
	}
}

// checkRuleConventions: each alert has a severity, a summary, a
// description and a runbook_url that lands on its own section of
// docs/operations.md; each selector is scoped to the release.
func checkRuleConventions(t *testing.T, pr *prometheusRule) {
	t.Helper()
	anchors := markdownAnchors(t, filepath.Join(repoRoot(t), "docs", "operations.md"))
	for name, r := range pr.alerts() {
		if r.Labels["severity"] == "" {
			t.Errorf("%s has no severity label", name)
		}
		for _, k := range []string{"summary", "description", "runbook_url"} {
			if r.Annotations[k] == "" {
				t.Errorf("%s has no %s annotation", name, k)
			}
		}
		base, anchor, _ := strings.Cut(r.Annotations["runbook_url"], "#")
		if !strings.HasSuffix(base, "/docs/operations.md") {
			t.Errorf("%s: runbook_url %q is not docs/operations.md", name, r.Annotations["runbook_url"])
		}
		if anchor != strings.ToLower(name) || !anchors[anchor] {
			t.Errorf("%s: runbook_url anchor %q is not a section of docs/operations.md named after the alert", name, anchor)
		}
		for _, sel := range selectors(t, r.Expr) {
			if len(sel.Matchers) == 0 || !hasMatcher(sel, "namespace") {
				t.Errorf("%s: %s is not scoped to the release: %s", name, sel.Name, r.Expr)
			}
		}
	}
}

// checkRuleScopeMatchesServiceMonitor: by default every selector picks
// the series of the chart's ServiceMonitor, the labels the Prometheus
// operator gives its targets: namespace, the one it looks in, and service,
// the Service it selects (the headless one, one per release).
func checkRuleScopeMatchesServiceMonitor(t *testing.T) {
	t.Helper()
	objs := render(t, nil, "prometheusRule.enabled=true", "metrics.serviceMonitor.enabled=true")
	var sm *serviceMonitor
	var pr *prometheusRule
	for _, o := range objs {
		switch o.Kind {
		case "ServiceMonitor":
			sm = decodeServiceMonitor(t, o)
		case "PrometheusRule":
			pr = decodePrometheusRule(t, o)
		}
	}
	if sm == nil || pr == nil {
		t.Fatal("want a ServiceMonitor and a PrometheusRule")
	}
	var services []string
	for _, svc := range all[*corev1.Service](objs) {
		if subset(sm.Spec.Selector.MatchLabels, svc.Labels) {
			services = append(services, svc.Name)
		}
	}
	if len(services) != 1 || len(sm.Spec.NamespaceSelector.MatchNames) != 1 {
		t.Fatalf("the ServiceMonitor selects Services %v in namespaces %v, want one of each", services, sm.Spec.NamespaceSelector.MatchNames)
	}
	want := map[string]string{"namespace": sm.Spec.NamespaceSelector.MatchNames[0], "service": services[0]}
	for name, r := range pr.alerts() {
		for _, sel := range selectors(t, r.Expr) {
			for label, value := range want {
				found := false
				for _, m := range sel.Matchers {
					found = found || (m.Label == label && m.Op == "=" && m.Value == value)
				}
				if !found {
					t.Errorf("%s: %s does not select %s=%q, the ServiceMonitor's: %s", name, sel.Name, label, value, r.Expr)
				}
			}
		}
	}
}

func hasMatcher(sel selector, label string) bool {
	for _, m := range sel.Matchers {
		if m.Label == label {
			return true
		}
	}
	return false
}

// markdownAnchors are the anchors GitHub gives a Markdown file's headings:
// lower case, punctuation other than - and _ dropped, spaces as -.
func markdownAnchors(t *testing.T, path string) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	drop := regexp.MustCompile(`[^\p{L}\p{N} _-]`)
	anchors := map[string]bool{}
	inFence := false
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "```") {
			inFence = !inFence
		}
		if inFence || !strings.HasPrefix(line, "#") {
			continue
		}
		title := strings.TrimSpace(strings.TrimLeft(line, "#"))
		anchors[strings.ReplaceAll(drop.ReplaceAllString(strings.ToLower(title), ""), " ", "-")] = true
	}
	return anchors
}

// TestPrometheusRuleValues: the values reach the rule, each variant passes
// promtool check rules, and alerts that cannot mean anything are left out.
func TestPrometheusRuleValues(t *testing.T) {
	t.Run("all-on", func(t *testing.T) {
		pr := renderRule(t, []string{testdata(t, "all-on.yaml")})
		checkRules(t, pr)
		if pr.Labels["release"] != "prometheus" {
			t.Errorf("rule labels %v lack prometheusRule.labels", pr.Labels)
		}
		alerts := pr.alerts()
		if len(alerts) != len(alertNames) {
			t.Errorf("all-on renders %d alerts, want %d", len(alerts), len(alertNames))
		}
		lag := alerts["AbacusConsumerLagGrowing"]
		if lag.For != "20m" || lag.Labels["severity"] != "page" || lag.Labels["team"] != "streams" ||
			!strings.Contains(lag.Expr, "[15m]") || !strings.Contains(lag.Expr, "> 5000") {
			t.Errorf("AbacusConsumerLagGrowing does not follow the values: %+v", lag)
		}
		for name, r := range alerts {
			if !strings.HasPrefix(r.Annotations["runbook_url"], "https://docs.example.com/abacus/operations.md#") {
				t.Errorf("%s: runbook_url %q does not start with runbookBaseUrl", name, r.Annotations["runbook_url"])
			}
			for _, sel := range selectors(t, r.Expr) {
				if !hasMatcher(sel, "job") || hasMatcher(sel, "service") {
					t.Errorf("%s: %s does not use prometheusRule.selector: %s", name, sel.Name, r.Expr)
				}
			}
		}
		if r := alerts["AbacusMembersMissing"]; !strings.Contains(r.Expr, "< 5") {
			t.Errorf("AbacusMembersMissing does not compare with replicaCount 5: %s", r.Expr)
		}
		if r := alerts["AbacusCommitsStale"]; !strings.Contains(r.Expr, "> 600") {
			t.Errorf("AbacusCommitsStale does not use maxAgeSeconds 600: %s", r.Expr)
		}
	})
	for _, tc := range []struct {
		name    string
		sets    []string
		without []string
	}{
		{name: "no-standbys", sets: []string{"standbyReplicas=0"}, without: []string{"AbacusNoStandbyCaughtUp"}},
		{name: "one-replica", sets: []string{"replicaCount=1"}, without: []string{"AbacusNoStandbyCaughtUp"}},
		{name: "no-replicas", sets: []string{"replicaCount=0"}, without: []string{"AbacusNoStandbyCaughtUp", "AbacusMembersMissing"}},
		{name: "switched-off", sets: []string{"prometheusRule.alerts.memberNotRunning.enabled=false", "prometheusRule.alerts.recordsDeadLettered.enabled=false"},
			without: []string{"AbacusMemberNotRunning", "AbacusRecordsDeadLettered"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pr := renderRule(t, nil, tc.sets...)
			checkRules(t, pr)
			var got []string
			for name := range pr.alerts() {
				got = append(got, name)
			}
			var want []string
			for _, name := range alertNames {
				if !slices.Contains(tc.without, name) {
					want = append(want, name)
				}
			}
			sort.Strings(got)
			sort.Strings(want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("alerts %v, want %v", got, want)
			}
		})
	}
	t.Run("nothing-by-default", func(t *testing.T) {
		for _, o := range render(t, nil) {
			if o.Kind == "PrometheusRule" {
				t.Error("a PrometheusRule is rendered by default")
			}
		}
	})
}
