package chart

import (
	"bytes"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/twmb/franz-go/pkg/kgo"
)

// targetLabels are the labels Prometheus gives a target when it scrapes
// it (the chart's ServiceMonitor through the Prometheus operator), not the
// binary: the expressions may select and group by them freely.
var targetLabels = map[string]bool{
	"namespace": true, "service": true, "pod": true, "job": true, "instance": true, "container": true, "endpoint": true,
}

// servedFamily is what a live /metrics shows of a metric family: its type,
// and every label with the values seen.
type servedFamily struct {
	Type   dto.MetricType
	Labels map[string]map[string]bool
}

// servedFamilies is the union of several members' /metrics.
type servedFamilies map[string]*servedFamily

func (s servedFamilies) add(body []byte) error {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		return err
	}
	for name, mf := range fams {
		f := s[name]
		if f == nil {
			f = &servedFamily{Type: mf.GetType(), Labels: map[string]map[string]bool{}}
			s[name] = f
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if f.Labels[lp.GetName()] == nil {
					f.Labels[lp.GetName()] = map[string]bool{}
				}
				f.Labels[lp.GetName()][lp.GetValue()] = true
			}
		}
	}
	return nil
}

// resolve finds the family a selector's metric name belongs to: the name
// itself, or a histogram's (or a summary's) _bucket, _sum or _count
// series. It returns the labels the series has: the family's, and le for
// a bucket.
func (s servedFamilies) resolve(name string) (string, map[string]map[string]bool, bool) {
	if f, ok := s[name]; ok {
		return name, f.Labels, true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, suffix)
		if !ok {
			continue
		}
		f, ok := s[base]
		if !ok {
			continue
		}
		switch {
		case f.Type == dto.MetricType_HISTOGRAM && suffix == "_bucket":
			labels := map[string]map[string]bool{"le": {}}
			for k, v := range f.Labels {
				labels[k] = v
			}
			return base, labels, true
		case f.Type == dto.MetricType_HISTOGRAM || f.Type == dto.MetricType_SUMMARY && suffix != "_bucket":
			return base, f.Labels, true
		}
	}
	return "", nil, false
}

// problems lists what an expression asks of the served metrics that they
// do not have: a metric family, a label it selects or groups by, or a
// label value it selects by equality or a literal regular expression.
func (s servedFamilies) problems(where, expr string) []string {
	q, err := parsePromQL(expr)
	if err != nil {
		return []string{fmt.Sprintf("%s: cannot read %q: %v", where, expr, err)}
	}
	var out []string
	labelsOfExpr := map[string]bool{}
	for _, sel := range q.Selectors {
		family, labels, ok := s.resolve(sel.Name)
		if !ok {
			out = append(out, fmt.Sprintf("%s: %s is not a metric family of /metrics", where, sel.Name))
			continue
		}
		for l := range labels {
			labelsOfExpr[l] = true
		}
		for _, m := range sel.Matchers {
			if targetLabels[m.Label] || m.Label == "__name__" {
				continue
			}
			values, ok := labels[m.Label]
			if !ok {
				out = append(out, fmt.Sprintf("%s: %s selects by label %s, which %s does not have", where, sel.Name, m.Label, family))
				continue
			}
			if strings.Contains(m.Value, "$") || (m.Op != "=" && m.Op != "=~") {
				continue // a variable, or a negative match: any value will do
			}
			re, err := regexp.Compile("^(?:" + m.Value + ")$")
			if m.Op == "=" {
				re, err = regexp.Compile("^" + regexp.QuoteMeta(m.Value) + "$")
			}
			if err != nil {
				out = append(out, fmt.Sprintf("%s: %s%s%q: %v", where, m.Label, m.Op, m.Value, err))
				continue
			}
			found := false
			for v := range values {
				found = found || re.MatchString(v)
			}
			if !found {
				out = append(out, fmt.Sprintf("%s: %s{%s%s%q} matches no series of %s (values %v)", where, sel.Name, m.Label, m.Op, m.Value, family, keys(values)))
			}
		}
	}
	for _, l := range q.Grouping {
		if !targetLabels[l] && !labelsOfExpr[l] {
			out = append(out, fmt.Sprintf("%s: groups by %s, which none of its metrics has: %s", where, l, expr))
		}
	}
	return out
}

// TestExpressionsNameServedMetrics: every metric family the Grafana
// dashboard and the PrometheusRule query is on the /metrics of real abacus
// processes, with the labels and label values they select and group by.
// Two members with a standby copy of each task count records, one of them
// with a null key (dead-lettered), and a member of another application,
// with ABACUS_ON_ERROR=drop, drops it, so that the families born of those
// events are there too; the check runs until the union of their /metrics
// has everything or two minutes have passed.
func TestExpressionsNameServedMetrics(t *testing.T) {
	_, d := readDashboard(t)
	exprs := dashboardExprs(t, d)
	for name, r := range renderRule(t, nil).alerts() {
		exprs["alert "+name] = r.Expr
	}
	var wheres []string
	for where := range exprs {
		wheres = append(wheres, where)
	}
	sort.Strings(wheres)

	brokers := startBroker(t)
	port := freePort(t)
	members := map[string]string{
		"ABACUS_NUM_STANDBY_REPLICAS": "1",
		// Members on 127.0.0.1 and 127.0.0.2, one port, as pods by their
		// DNS names.
		"ABACUS_PEER_URL_TEMPLATE": fmt.Sprintf("http://127.0.0.{{add .Ordinal 1}}:%d", port),
	}
	procs := []*abacusProc{
		startAbacus(t, "abacus-0", fmt.Sprintf("127.0.0.1:%d", port), brokers, members),
		startAbacus(t, "abacus-1", fmt.Sprintf("127.0.0.2:%d", port), brokers, members),
		startAbacus(t, "drop-0", fmt.Sprintf("127.0.0.1:%d", freePort(t)), brokers, map[string]string{
			"ABACUS_APPLICATION_ID": "drop-app", "ABACUS_ON_ERROR": "drop",
		}),
	}
	for _, p := range procs {
		p.waitReady(t, 2*time.Minute)
	}

	var records []*kgo.Record
	for i := range 200 {
		records = append(records, &kgo.Record{Key: []byte(fmt.Sprintf("key-%d", i%50)), Value: []byte("x")})
	}
	records = append(records, &kgo.Record{Key: nil, Value: []byte("no key")})
	produce(t, brokers, "input-topic", records)

	var problems []string
	deadline := time.Now().Add(2 * time.Minute)
	for {
		served := servedFamilies{}
		problems = nil
		for _, p := range procs {
			// A lookup, so that the API's routes have series too.
			if _, _, err := p.get("/api/v1/stores/counts-store/keys/key-1"); err != nil {
				problems = append(problems, err.Error())
			}
			code, body, err := p.get("/metrics")
			if err == nil && code != 200 {
				err = fmt.Errorf("%s: /metrics answers %d", p.name, code)
			}
			if err == nil {
				err = served.add(body)
			}
			if err != nil {
				problems = append(problems, err.Error())
			}
		}
		for _, where := range wheres {
			problems = append(problems, served.problems(where, exprs[where])...)
		}
		if len(problems) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	for _, p := range problems {
		t.Error(p)
	}
	t.Logf("%d expressions checked against the metrics of %d processes", len(wheres), len(procs))
}

func TestServedFamiliesProblems(t *testing.T) {
	served := servedFamilies{}
	err := served.add([]byte(`# TYPE abacus_state gauge
abacus_state{state="RUNNING"} 1
abacus_state{state="ERROR"} 0
# TYPE abacus_commit_duration_seconds histogram
abacus_commit_duration_seconds_bucket{le="0.1"} 1
abacus_commit_duration_seconds_bucket{le="+Inf"} 1
abacus_commit_duration_seconds_sum 0.05
abacus_commit_duration_seconds_count 1
# TYPE abacus_records_produced_total counter
abacus_records_produced_total{destination="dlq"} 0
`))
	if err != nil {
		t.Fatal(err)
	}
	for expr, want := range map[string]int{
		`abacus_state{namespace="x", pod=~"$pod", state="RUNNING"}`:                                     0,
		`histogram_quantile(0.9, sum by (pod, le) (rate(abacus_commit_duration_seconds_bucket[5m])))`:   0,
		`rate(abacus_commit_duration_seconds_sum[5m]) / rate(abacus_commit_duration_seconds_count[5m])`: 0,
		`sum by (destination) (rate(abacus_records_produced_total{destination=~"dl.|output"}[5m]))`:     0,
		`abacus_state{state="STARTING"}`:                  1, // no such value
		`abacus_state{phase="RUNNING"}`:                   1, // no such label
		`abacus_commit_seconds`:                           1, // no such family
		`sum by (le) (abacus_state)`:                      1, // le of a gauge
		`sum by (reason) (abacus_records_produced_total)`: 1, // no such label
		`abacus_records_produced_total_bucket`:            1, // a counter has no buckets
		`abacus_records_dead_lettered_total or abacus_records_produced_total{destination="changelog"}`: 2,
	} {
		if got := served.problems("test", expr); len(got) != want {
			t.Errorf("%s: %d problems %v, want %d", expr, len(got), got, want)
		}
	}
}
