package chart

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// dashboard is the part of a Grafana dashboard the tests look at; the
// rest of Grafana's model is left to Grafana.
type dashboard struct {
	UID           string `json:"uid"`
	Title         string `json:"title"`
	SchemaVersion int    `json:"schemaVersion"`
	Templating    struct {
		List []struct {
			Type       string          `json:"type"`
			Name       string          `json:"name"`
			Query      json.RawMessage `json:"query"`
			Datasource *datasourceRef  `json:"datasource"`
			IncludeAll bool            `json:"includeAll"`
			AllValue   string          `json:"allValue"`
		} `json:"list"`
	} `json:"templating"`
	Panels []panel `json:"panels"`
}

type datasourceRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type panel struct {
	ID         int            `json:"id"`
	Type       string         `json:"type"`
	Title      string         `json:"title"`
	Datasource *datasourceRef `json:"datasource"`
	GridPos    struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Targets []struct {
		RefID      string         `json:"refId"`
		Expr       string         `json:"expr"`
		Datasource *datasourceRef `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // a collapsed row's
}

const dashboardFile = "charts/abacus/dashboards/abacus.json"

// readDashboard reads the dashboard file, which must be valid JSON with
// no duplicate key.
func readDashboard(t *testing.T) ([]byte, *dashboard) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(repoRoot(t), dashboardFile))
	if err != nil {
		t.Fatal(err)
	}
	if !json.Valid(raw) {
		t.Fatalf("%s is not valid JSON", dashboardFile)
	}
	// YAMLToJSONStrict rejects duplicate keys, which encoding/json lets
	// the last one win.
	if _, err := yaml.YAMLToJSONStrict(raw); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	var d dashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	return raw, &d
}

// dashboardExprs lists the dashboard's PromQL by where it is: panel
// targets and query variables.
func dashboardExprs(t *testing.T, d *dashboard) map[string]string {
	t.Helper()
	out := map[string]string{}
	var walk func(ps []panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			for _, tg := range p.Targets {
				out[fmt.Sprintf("dashboard panel %d %q target %s", p.ID, p.Title, tg.RefID)] = tg.Expr
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &q); err != nil {
			t.Fatalf("variable %s: query %s: %v", v.Name, v.Query, err)
		}
		// label_values(selector, label) selects what its selector selects.
		sel, ok := strings.CutPrefix(q.Query, "label_values(")
		if !ok {
			t.Fatalf("variable %s: query %q is not label_values(...)", v.Name, q.Query)
		}
		if i := strings.LastIndex(sel, ","); i > 0 {
			sel = sel[:i]
		}
		out[fmt.Sprintf("dashboard variable %s", v.Name)] = sel
	}
	return out
}

// TestGrafanaDashboard: the dashboard is valid JSON whose every panel
// queries the data source variable, scoped to the namespace, release and
// member variables, with PromQL that promtool accepts; it has the panels
// operators look for; and the chart ships it unchanged in a ConfigMap
// Grafana's sidecar loads.
func TestGrafanaDashboard(t *testing.T) {
	raw, d := readDashboard(t)
	if d.UID == "" || d.Title == "" || d.SchemaVersion < 36 {
		t.Errorf("uid %q, title %q, schemaVersion %d: want a uid, a title and a schema of Grafana 9 or later", d.UID, d.Title, d.SchemaVersion)
	}
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Type
		if v.Type == "query" && (v.Datasource == nil || v.Datasource.UID != "${datasource}") {
			t.Errorf("variable %s does not query the data source variable", v.Name)
		}
		if v.IncludeAll && v.AllValue != ".*" {
			// An "All" of the values found would drop series that lack
			// the label (another scrape config's).
			t.Errorf("variable %s: allValue %q, want .*", v.Name, v.AllValue)
		}
	}
	for name, typ := range map[string]string{"datasource": "datasource", "namespace": "query", "service": "query", "pod": "query"} {
		if vars[name] != typ {
			t.Errorf("variable %s is %q, want a %s variable", name, vars[name], typ)
		}
	}

	// Panels: unique ids, on the 24-column grid, not overlapping, each
	// with targets on the data source variable.
	ids := map[int]bool{}
	var boxes []panel
	var walk func(ps []panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if ids[p.ID] {
				t.Errorf("panel id %d is used twice", p.ID)
			}
			ids[p.ID] = true
			g := p.GridPos
			if g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 {
				t.Errorf("panel %q: gridPos %+v is off the 24-column grid", p.Title, g)
			}
			boxes = append(boxes, p)
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			if p.Datasource == nil || p.Datasource.UID != "${datasource}" || len(p.Targets) == 0 {
				t.Errorf("panel %q: want targets on the data source variable, got %+v, %d targets", p.Title, p.Datasource, len(p.Targets))
			}
			refs := map[string]bool{}
			for _, tg := range p.Targets {
				if refs[tg.RefID] || tg.RefID == "" {
					t.Errorf("panel %q: refId %q empty or repeated", p.Title, tg.RefID)
				}
				refs[tg.RefID] = true
				if tg.Datasource != nil && tg.Datasource.UID != "${datasource}" {
					t.Errorf("panel %q target %s: data source %+v", p.Title, tg.RefID, tg.Datasource)
				}
			}
		}
	}
	walk(d.Panels)
	for i, a := range boxes {
		for _, b := range boxes[i+1:] {
			ga, gb := a.GridPos, b.GridPos
			if ga.X < gb.X+gb.W && gb.X < ga.X+ga.W && ga.Y < gb.Y+gb.H && gb.Y < ga.Y+ga.H {
				t.Errorf("panels %q and %q overlap", a.Title, b.Title)
			}
		}
	}

	// Every selector is scoped by the variables, and the dashboard shows
	// what an operator looks for.
	exprs := dashboardExprs(t, d)
	referenced := map[string]bool{}
	for where, expr := range exprs {
		for _, sel := range selectors(t, expr) {
			referenced[sel.Name] = true
			if strings.HasPrefix(where, "dashboard variable") {
				continue
			}
			for label, want := range map[string]string{"namespace": "$namespace", "service": "$service", "pod": "$pod"} {
				found := false
				for _, m := range sel.Matchers {
					found = found || (m.Label == label && m.Value == want)
				}
				if !found {
					t.Errorf("%s: %s is not scoped by %s=%s: %s", where, sel.Name, label, want, expr)
				}
			}
		}
	}
	for _, name := range []string{
		"abacus_records_consumed_total", "abacus_records_processed_total", "abacus_records_produced_total", // throughput
		"abacus_consumer_lag",                   // lag per partition
		"abacus_commit_duration_seconds_bucket", // commit latency
		"abacus_restore_remaining_records",      // restore progress
		"abacus_restored_records_total",         //
		"abacus_standby_lag_records",            // standbys
		"abacus_state", "abacus_tasks",          // members
		"abacus_http_requests_total",                             // HTTP rate
		"abacus_http_request_duration_seconds_bucket",            // HTTP latency
		"abacus_sse_subscribers", "abacus_sse_events_sent_total", // subscriptions
		"abacus_store_disk_bytes",                                                      // store size
		"abacus_records_dead_lettered_total",                                           // DLQ
		"abacus_rebalance_duration_seconds_bucket", "abacus_kafka_broker_errors_total", // Kafka
		"abacus_producer_queue_messages", "abacus_producer_retries_total", "abacus_producer_errors_total",
	} {
		if !referenced[name] {
			t.Errorf("the dashboard shows nothing of %s", name)
		}
	}
	checkDashboardSyntax(t, exprs)

	// The ConfigMap holds the file as it is.
	cm := dashboardConfigMap(t, nil, "grafanaDashboard.enabled=true")
	if cm.Namespace != namespace || cm.Labels["grafana_dashboard"] != "1" || len(cm.Annotations) != 0 {
		t.Errorf("ConfigMap %s/%s labels %v annotations %v: want the release's namespace and grafana_dashboard=1", cm.Namespace, cm.Name, cm.Labels, cm.Annotations)
	}
	if len(cm.Data) != 1 || cm.Data["abacus.json"] != string(raw) {
		t.Errorf("the ConfigMap's abacus.json is not %s as it is (keys %v)", dashboardFile, keys(cm.Data))
	}
	for _, o := range render(t, nil) {
		if o.Kind == "ConfigMap" {
			t.Error("a dashboard ConfigMap is rendered by default")
		}
	}
}

// TestGrafanaDashboardValues: label, namespace, annotations and labels
// reach the ConfigMap.
func TestGrafanaDashboardValues(t *testing.T) {
	cm := dashboardConfigMap(t, []string{testdata(t, "all-on.yaml")})
	if cm.Namespace != "monitoring" || cm.Labels["grafana_dashboard"] != "streams" || cm.Labels["team"] != "streams" ||
		cm.Annotations["grafana_folder"] != "Streams" || cm.Labels["app.kubernetes.io/instance"] != release {
		t.Errorf("ConfigMap %s/%s labels %v annotations %v do not follow all-on.yaml", cm.Namespace, cm.Name, cm.Labels, cm.Annotations)
	}
	cm = dashboardConfigMap(t, nil, "grafanaDashboard.enabled=true", "grafanaDashboard.label=example.com/dashboard", "grafanaDashboard.labelValue=")
	if v, ok := cm.Labels["example.com/dashboard"]; !ok || v != "" {
		t.Errorf("labels %v: want example.com/dashboard with an empty value", cm.Labels)
	}
}

func dashboardConfigMap(t *testing.T, files []string, sets ...string) *corev1.ConfigMap {
	t.Helper()
	cms := all[*corev1.ConfigMap](render(t, files, sets...))
	if len(cms) != 1 {
		t.Fatalf("want one ConfigMap, rendered %d", len(cms))
	}
	return cms[0]
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// grafanaMacros are the interval variables Grafana replaces before it
// sends a query, with a value of the right form for promtool.
var grafanaMacros = strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h")

// checkDashboardSyntax has promtool check the dashboard's PromQL, each
// expression as a recording rule, with Grafana's interval macros given
// values (variables inside label values are valid PromQL as they are).
func checkDashboardSyntax(t *testing.T, exprs map[string]string) {
	t.Helper()
	var group ruleGroup
	group.Name = "dashboard"
	var wheres []string
	for where := range exprs {
		wheres = append(wheres, where)
	}
	sort.Strings(wheres)
	for i, where := range wheres {
		expr := grafanaMacros.Replace(exprs[where])
		if strings.Contains(expr, "$__") {
			t.Errorf("%s: a Grafana macro the test does not know: %s", where, expr)
		}
		group.Rules = append(group.Rules, rule{Record: fmt.Sprintf("dashboard:expr_%d", i), Expr: expr})
	}
	out, err := yaml.Marshal(map[string]any{"groups": []ruleGroup{group}})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "dashboard-rules.yaml")
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := run(repoRoot(t), promtoolBin(t), "check", "rules", path); err != nil {
		// promtool names the rule by its index: say which panel it is.
		var b bytes.Buffer
		for i, where := range wheres {
			fmt.Fprintf(&b, "dashboard:expr_%d = %s\n", i, where)
		}
		t.Errorf("promtool rejects the dashboard's PromQL: %v\n%s", err, b.String())
	}
}
