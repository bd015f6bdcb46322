package chart

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"unicode"
)

// A reader of PromQL just deep enough to list what an expression selects:
// its vector selectors (metric name and label matchers) and the labels it
// groups or matches by. Prometheus's own parser would pull the whole
// Prometheus module into this one; PromQL's lexical rules are small, and
// TestSelectors pins the cases the chart's expressions use and a few they
// might. Syntax errors are promtool's business (check rules); here an
// expression that cannot be read fails the test too.

// selector is one vector selector: abacus_state{state="RUNNING"}.
type selector struct {
	Name     string // the metric name, or __name__'s value
	Matchers []matcher
}

type matcher struct {
	Label, Op, Value string
}

// promQL is what an expression refers to.
type promQL struct {
	Selectors []selector
	// Grouping are the labels of by, without, on, ignoring, group_left and
	// group_right clauses.
	Grouping []string
}

type tokenKind int

const (
	tIdent  tokenKind = iota // a name: metric, label, function, keyword
	tString                  // "..." '...' `...`, unquoted
	tNumber                  // 1, 0.5, 1e3, 0x1f, 5m, Inf, a Grafana $variable
	tPunct                   // ( ) { } [ ] , and operators
)

type token struct {
	kind tokenKind
	text string
}

// aggregations are PromQL's aggregation operators: a name that is followed
// by by/without before its parenthesis.
var aggregations = map[string]bool{
	"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true, "stdvar": true,
	"count": true, "count_values": true, "bottomk": true, "topk": true, "quantile": true,
	"limitk": true, "limit_ratio": true,
}

// keywords are names that are never metrics.
var keywords = map[string]bool{
	"and": true, "or": true, "unless": true, "bool": true, "offset": true, "atan2": true,
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
}

// lexPromQL splits an expression into tokens. Ranges and subqueries
// ([5m], [$__rate_interval], [1h:5m]) are dropped whole.
func lexPromQL(expr string) ([]token, error) {
	var toks []token
	rs := []rune(expr)
	for i := 0; i < len(rs); {
		c := rs[i]
		switch {
		case unicode.IsSpace(c):
			i++
		case c == '#': // a comment, to the end of the line
			for i < len(rs) && rs[i] != '\n' {
				i++
			}
		case c == '"' || c == '\'' || c == '`':
			j, s, err := lexString(rs, i)
			if err != nil {
				return nil, err
			}
			toks = append(toks, token{tString, s})
			i = j
		case c == '[':
			j := i + 1
			for j < len(rs) && rs[j] != ']' {
				j++
			}
			if j == len(rs) {
				return nil, fmt.Errorf("unclosed [ at %d", i)
			}
			i = j + 1
		case c == '$': // a Grafana variable standing for a value: $x, ${x}, ${x:fmt}
			j := i + 1
			if j < len(rs) && rs[j] == '{' {
				for j < len(rs) && rs[j] != '}' {
					j++
				}
				j++
			} else {
				for j < len(rs) && isIdentRune(rs[j], false) {
					j++
				}
			}
			toks = append(toks, token{tNumber, string(rs[i:min(j, len(rs))])})
			i = j
		case isIdentRune(c, true):
			j := i
			for j < len(rs) && isIdentRune(rs[j], false) {
				j++
			}
			word := string(rs[i:j])
			kind := tIdent
			if l := strings.ToLower(word); l == "inf" || l == "nan" {
				kind = tNumber
			}
			toks = append(toks, token{kind, word})
			i = j
		case c >= '0' && c <= '9' || c == '.' && i+1 < len(rs) && rs[i+1] >= '0' && rs[i+1] <= '9':
			// Numbers and durations: digits, letters, dots, and a sign
			// right after an exponent's e.
			j := i + 1
			for j < len(rs) {
				r := rs[j]
				if unicode.IsLetter(r) || unicode.IsDigit(r) || r == '.' || r == '_' {
					j++
					continue
				}
				if (r == '+' || r == '-') && (rs[j-1] == 'e' || rs[j-1] == 'E') && !strings.HasPrefix(strings.ToLower(string(rs[i:j])), "0x") {
					j++
					continue
				}
				break
			}
			toks = append(toks, token{tNumber, string(rs[i:j])})
			i = j
		default:
			// Two-character operators first.
			if i+1 < len(rs) {
				two := string(rs[i : i+2])
				switch two {
				case "==", "!=", "<=", ">=", "=~", "!~":
					toks = append(toks, token{tPunct, two})
					i += 2
					continue
				}
			}
			if !strings.ContainsRune("(){},+-*/%^<>=@:", c) {
				return nil, fmt.Errorf("unexpected %q at %d", c, i)
			}
			toks = append(toks, token{tPunct, string(c)})
			i++
		}
	}
	return toks, nil
}

func isIdentRune(r rune, first bool) bool {
	if r == '_' || r == ':' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' {
		return true
	}
	return !first && r >= '0' && r <= '9'
}

// lexString reads a quoted string starting at rs[i] and returns the index
// after it and its unquoted text (escapes resolved as far as a label value
// needs: \\, \", \', \n, \t).
func lexString(rs []rune, i int) (int, string, error) {
	q := rs[i]
	var b strings.Builder
	for j := i + 1; j < len(rs); j++ {
		switch {
		case rs[j] == q:
			return j + 1, b.String(), nil
		case rs[j] == '\\' && q != '`' && j+1 < len(rs):
			j++
			switch rs[j] {
			case 'n':
				b.WriteRune('\n')
			case 't':
				b.WriteRune('\t')
			default:
				b.WriteRune(rs[j])
			}
		default:
			b.WriteRune(rs[j])
		}
	}
	return 0, "", fmt.Errorf("unclosed string at %d", i)
}

// parsePromQL lists an expression's selectors and grouping labels.
func parsePromQL(expr string) (promQL, error) {
	toks, err := lexPromQL(expr)
	if err != nil {
		return promQL{}, err
	}
	var q promQL
	at := func(i int, kind tokenKind, text string) bool {
		return i < len(toks) && toks[i].kind == kind && toks[i].text == text
	}
	for i := 0; i < len(toks); i++ {
		tk := toks[i]
		switch {
		case tk.kind == tIdent && keywords[tk.text]:
			if at(i+1, tPunct, "(") { // a label list
				j := i + 2
				for ; j < len(toks) && !at(j, tPunct, ")"); j++ {
					switch {
					case toks[j].kind == tIdent || toks[j].kind == tString:
						q.Grouping = append(q.Grouping, toks[j].text)
					case !at(j, tPunct, ","):
						return q, fmt.Errorf("%q in the label list of %s", toks[j].text, tk.text)
					}
				}
				if j == len(toks) {
					return q, fmt.Errorf("unclosed label list of %s", tk.text)
				}
				i = j
			}
		case tk.kind == tIdent && aggregations[tk.text] && (at(i+1, tPunct, "(") || at(i+1, tIdent, "by") || at(i+1, tIdent, "without")):
			// an aggregation; its clause and argument follow
		case tk.kind == tIdent && at(i+1, tPunct, "("):
			// a function call
		case tk.kind == tIdent:
			sel := selector{Name: tk.text}
			if at(i+1, tPunct, "{") {
				ms, j, err := parseMatchers(toks, i+2)
				if err != nil {
					return q, fmt.Errorf("%s: %w", tk.text, err)
				}
				sel.Matchers, i = ms, j
			}
			q.Selectors = append(q.Selectors, sel)
		case tk.kind == tPunct && tk.text == "{":
			ms, j, err := parseMatchers(toks, i+1)
			if err != nil {
				return q, err
			}
			sel := selector{Matchers: ms}
			for _, m := range ms {
				if m.Label == "__name__" && m.Op == "=" {
					sel.Name = m.Value
				}
			}
			if sel.Name == "" {
				return q, fmt.Errorf("a selector without a metric name: %s", expr)
			}
			q.Selectors = append(q.Selectors, sel)
			i = j
		}
	}
	return q, nil
}

// parseMatchers reads label matchers from toks[i] up to the closing brace
// and returns them with the brace's index. A lone string is the metric
// name (Prometheus 3's {"name", label="x"}).
func parseMatchers(toks []token, i int) ([]matcher, int, error) {
	var ms []matcher
	for i < len(toks) {
		if toks[i].kind == tPunct && toks[i].text == "}" {
			return ms, i, nil
		}
		if toks[i].kind == tPunct && toks[i].text == "," {
			i++
			continue
		}
		if toks[i].kind == tString && (i+1 < len(toks) && (toks[i+1].text == "," || toks[i+1].text == "}")) {
			ms = append(ms, matcher{Label: "__name__", Op: "=", Value: toks[i].text})
			i++
			continue
		}
		if i+2 >= len(toks) || (toks[i].kind != tIdent && toks[i].kind != tString) || toks[i+1].kind != tPunct || toks[i+2].kind != tString {
			return nil, i, fmt.Errorf("a label matcher that is not label op \"value\" at token %d", i)
		}
		switch op := toks[i+1].text; op {
		case "=", "!=", "=~", "!~":
			ms = append(ms, matcher{Label: toks[i].text, Op: op, Value: toks[i+2].text})
		default:
			return nil, i, fmt.Errorf("matcher operator %q", op)
		}
		i += 3
	}
	return nil, i, fmt.Errorf("unclosed {")
}

// selectors is parsePromQL's selectors, failing the test on an expression
// it cannot read.
func selectors(t *testing.T, expr string) []selector {
	t.Helper()
	q, err := parsePromQL(expr)
	if err != nil {
		t.Fatalf("cannot read %q: %v", expr, err)
	}
	return q.Selectors
}

func TestSelectors(t *testing.T) {
	for _, tc := range []struct {
		expr     string
		want     []selector
		grouping []string
	}{
		{expr: `abacus_records_processed_total`, want: []selector{{Name: "abacus_records_processed_total"}}},
		{
			expr:     `sum by (namespace, pod) (rate(abacus_records_produced_total{namespace="streams", destination=~"changelog|output"}[$__rate_interval]))`,
			want:     []selector{{Name: "abacus_records_produced_total", Matchers: []matcher{{"namespace", "=", "streams"}, {"destination", "=~", "changelog|output"}}}},
			grouping: []string{"namespace", "pod"},
		},
		{
			expr:     `histogram_quantile(0.99, sum without (instance) (rate(abacus_commit_duration_seconds_bucket{pod=~"$pod"}[5m])))`,
			want:     []selector{{Name: "abacus_commit_duration_seconds_bucket", Matchers: []matcher{{"pod", "=~", "$pod"}}}},
			grouping: []string{"instance"},
		},
		{
			// Keywords, a comparison with bool, a number with an exponent,
			// a vector(), a subquery, offset and on/group_left.
			expr: `(count(max by (pod) (abacus_state{state="RUNNING"}) == bool 1) or vector(0)) < 1e+03
				and on (namespace) group_left (version) max_over_time(abacus_build_info[1h:5m] offset 10m)`,
			want:     []selector{{Name: "abacus_state", Matchers: []matcher{{"state", "=", "RUNNING"}}}, {Name: "abacus_build_info"}},
			grouping: []string{"pod", "namespace", "version"},
		},
		{
			// The name as a matcher; strings with quotes, braces and
			// escapes; label_replace's strings are not names.
			expr: `label_replace({__name__="abacus_tasks", state!="x\"}"}, "dst", "$1", "src", "(.*)") # the tasks`,
			want: []selector{{Name: "abacus_tasks", Matchers: []matcher{{"__name__", "=", "abacus_tasks"}, {"state", "!=", `x"}`}}}},
		},
		{
			expr: "time() - abacus_last_commit_timestamp_seconds{namespace='a'} > Inf or sum(abacus_sse_subscribers) > ${threshold}",
			want: []selector{{Name: "abacus_last_commit_timestamp_seconds", Matchers: []matcher{{"namespace", "=", "a"}}}, {Name: "abacus_sse_subscribers"}},
		},
		{
			// An aggregation whose clause follows its argument.
			expr:     `topk(3, abacus_consumer_lag) by (partition)`,
			want:     []selector{{Name: "abacus_consumer_lag"}},
			grouping: []string{"partition"},
		},
	} {
		q, err := parsePromQL(tc.expr)
		if err != nil {
			t.Errorf("%s: %v", tc.expr, err)
			continue
		}
		if !reflect.DeepEqual(q.Selectors, tc.want) {
			t.Errorf("%s:\nselectors %+v\nwant      %+v", tc.expr, q.Selectors, tc.want)
		}
		if !reflect.DeepEqual(q.Grouping, tc.grouping) {
			t.Errorf("%s: grouping %v, want %v", tc.expr, q.Grouping, tc.grouping)
		}
	}
	for _, bad := range []string{`abacus_state{state="RUNNING"`, `abacus_state{state=RUNNING}`, `rate(x[5m)`, `sum by (pod`, `{job="x"}`, `x{y="z}`} {
		if q, err := parsePromQL(bad); err == nil {
			t.Errorf("%s read as %+v, want an error", bad, q)
		}
	}
}
