package window

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func TestYAMLList(t *testing.T) {
	const doc = `
- store: trades-5s
  type: hopping
  size: 5s
  advance: 1s
  grace: 2s
- store: visits
  type: session
  size: 30m
  emit: final
- store: clicks-1m
  type: tumbling
  size: 1m
  grace: 0
  retention: 2h
  output_topic: clicks
  advance: ~
`
	var got []Spec
	if err := yaml.Unmarshal([]byte(doc), &got); err != nil {
		t.Fatal(err)
	}
	c := clicks()
	c.Retention, c.OutputTopic = 2*time.Hour, "clicks"
	if want := []Spec{trades(), visits(), c}; !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	if err := Validate(got, "counts-store"); err != nil {
		t.Error(err)
	}
}

// TestYAMLInConfig reads the windows: list as a config file holds it.
func TestYAMLInConfig(t *testing.T) {
	var cfg struct {
		Store   string `yaml:"store"`
		Windows []Spec `yaml:"windows"`
	}
	doc := "store: counts-store\nwindows:\n  - {store: trades-5s, type: hopping, size: 5s, advance: 1s, grace: 2s}\n"
	if err := yaml.Unmarshal([]byte(doc), &cfg); err != nil {
		t.Fatal(err)
	}
	if len(cfg.Windows) != 1 || cfg.Windows[0] != trades() {
		t.Errorf("windows: %+v", cfg.Windows)
	}
}

func TestYAMLRoundTrip(t *testing.T) {
	in := defaulted([]Spec{trades(), visits(), clicks()})
	text, err := yaml.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out []Spec
	if err := yaml.Unmarshal(text, &out); err != nil {
		t.Fatalf("%v in\n%s", err, text)
	}
	if !reflect.DeepEqual(out, in) {
		t.Errorf("got  %+v\nwant %+v\nfrom\n%s", out, in, text)
	}
}

func TestYAMLErrors(t *testing.T) {
	for _, tc := range []struct {
		doc  string
		want string
	}{
		{"- store: a\n  type: hopping\n  size: 5x\n", `line 3: size "5x" is not a duration (like 500ms, 5s, 1m30s)`},
		{"- store: a\n  size: 5\n", `line 2: size "5" is not a duration (like 500ms, 5s, 1m30s)`},
		{"- store: a\n  advnace: 1s\n", `line 2: unknown key "advnace" (keys: store, type, size, advance, grace, retention, emit, output_topic)`},
		{"- store: a\n  size: 1s\n  size: 2s\n", `line 3: size is given twice`},
		{"- store: a\n  size: [1s]\n", `line 2: size must be a single value`},
		{"- trades-5s\n", `line 1: a window is a mapping of store, type, size, advance, grace, retention, emit, output_topic`},
	} {
		var got []Spec
		err := yaml.Unmarshal([]byte(tc.doc), &got)
		if err == nil {
			t.Errorf("accepted %q as %+v", tc.doc, got)
			continue
		}
		if err.Error() != tc.want {
			t.Errorf("%q:\ngot  %s\nwant %s", tc.doc, err, tc.want)
		}
		if strings.ContainsAny(err.Error(), "\r\n") {
			t.Errorf("%q: error is not one line: %q", tc.doc, err)
		}
	}
}
