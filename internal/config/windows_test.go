package config

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/abacus-streams/abacus/internal/window"
)

// writeConfig writes a YAML config file and returns its path.
func writeConfig(t *testing.T, text string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "abacus.yaml")
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

func loadWindows(t *testing.T, args, env []string) []window.Spec {
	t.Helper()
	c, err := Load(args, env, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	return c.Windows
}

func TestDefaultHasNoWindows(t *testing.T) {
	c, err := Load(nil, nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Windows != nil || Default().Windows != nil {
		t.Errorf("windows: %+v", c.Windows)
	}
	if got := c.Masked()["windows"]; got != "" {
		t.Errorf(`Masked()["windows"] = %#v, want ""`, got)
	}
	if _, ok := c.WindowSpec("counts-store"); ok {
		t.Error("WindowSpec found the count store")
	}
}

// TestWindowsYAMLList reads every field of the YAML list, fills the
// defaults of the fields left out and shows the list in the compact form.
func TestWindowsYAMLList(t *testing.T) {
	file := writeConfig(t, `application_id: shop
windows:
  - store: trades-5s
    type: hopping
    size: 5s
    advance: 1s
    grace: 2s
    retention: 1h
    emit: updates
    output_topic: trades-out
  - store: visits
    type: session
    size: 30m
    emit: final
  - store: clicks-1m
    type: tumbling
    size: 1m
    grace: 90s
`)
	c, err := Load([]string{"--config", file}, nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := []window.Spec{
		{Store: "trades-5s", Kind: window.Hopping, Size: 5 * time.Second, Advance: time.Second, Grace: 2 * time.Second,
			Retention: time.Hour, Emit: window.EmitUpdates, OutputTopic: "trades-out"},
		{Store: "visits", Kind: window.Session, Size: 30 * time.Minute,
			Retention: time.Hour, Emit: window.EmitFinal, OutputTopic: "visits-topic"},
		{Store: "clicks-1m", Kind: window.Tumbling, Size: time.Minute, Grace: 90 * time.Second,
			Retention: time.Hour, Emit: window.EmitUpdates, OutputTopic: "clicks-1m-topic"},
	}
	if !reflect.DeepEqual(c.Windows, want) {
		t.Errorf("windows:\ngot  %+v\nwant %+v", c.Windows, want)
	}
	const shown = "trades-5s=hopping,size=5s,advance=1s,grace=2s,retention=1h,emit=updates,output_topic=trades-out;" +
		"visits=session,size=30m,retention=1h,emit=final,output_topic=visits-topic;" +
		"clicks-1m=tumbling,size=1m,grace=1m30s,retention=1h,emit=updates,output_topic=clicks-1m-topic"
	if got := c.Masked()["windows"]; got != shown {
		t.Errorf("Masked()[\"windows\"]:\ngot  %v\nwant %v", got, shown)
	}
	if got, ok := c.WindowSpec("visits"); !ok || got != want[1] {
		t.Errorf("WindowSpec(visits) = %+v, %v", got, ok)
	}
	if got := c.WindowChangelogTopic("visits"); got != "shop-visits-changelog" {
		t.Errorf("WindowChangelogTopic(visits) = %q", got)
	}
}

// TestWindowsDefaults fills emit, output_topic and retention, and leaves
// grace at 0; a retention longer than an hour comes from size + grace.
func TestWindowsDefaults(t *testing.T) {
	got := loadWindows(t, nil, []string{"ABACUS_WINDOWS=long=tumbling,size=50m,grace=20m;short=hopping,size=10s,advance=5s"})
	want := []window.Spec{
		{Store: "long", Kind: window.Tumbling, Size: 50 * time.Minute, Grace: 20 * time.Minute,
			Retention: 70 * time.Minute, Emit: window.EmitUpdates, OutputTopic: "long-topic"},
		{Store: "short", Kind: window.Hopping, Size: 10 * time.Second, Advance: 5 * time.Second,
			Retention: time.Hour, Emit: window.EmitUpdates, OutputTopic: "short-topic"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

func TestWindowsYAMLString(t *testing.T) {
	file := writeConfig(t, "windows: trades-5s=hopping,size=5s,advance=1s;visits=session,size=30m,emit=final\n")
	got := loadWindows(t, []string{"--config", file}, nil)
	want := []window.Spec{
		{Store: "trades-5s", Kind: window.Hopping, Size: 5 * time.Second, Advance: time.Second,
			Retention: time.Hour, Emit: window.EmitUpdates, OutputTopic: "trades-5s-topic"},
		{Store: "visits", Kind: window.Session, Size: 30 * time.Minute,
			Retention: time.Hour, Emit: window.EmitFinal, OutputTopic: "visits-topic"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

// TestWindowsYAMLNothing: windows: with no value, or an empty list, is no
// windowed store.
func TestWindowsYAMLNothing(t *testing.T) {
	for _, doc := range []string{"windows:\n", "windows: []\n", "windows: \"\"\n"} {
		if got := loadWindows(t, []string{"--config", writeConfig(t, doc)}, nil); len(got) != 0 {
			t.Errorf("%q: windows %+v", doc, got)
		}
	}
}

// TestWindowsEnvCompact reads one window of each type from ABACUS_WINDOWS.
func TestWindowsEnvCompact(t *testing.T) {
	got := loadWindows(t, nil, []string{"ABACUS_WINDOWS=clicks-1m=tumbling,size=1m ; trades-5s=hopping,size=5s,advance=1s,grace=2s;" +
		"visits=session,size=30m,grace=5m,retention=2h,emit=final,output_topic=visit-counts;"})
	want := []window.Spec{
		{Store: "clicks-1m", Kind: window.Tumbling, Size: time.Minute,
			Retention: time.Hour, Emit: window.EmitUpdates, OutputTopic: "clicks-1m-topic"},
		{Store: "trades-5s", Kind: window.Hopping, Size: 5 * time.Second, Advance: time.Second, Grace: 2 * time.Second,
			Retention: time.Hour, Emit: window.EmitUpdates, OutputTopic: "trades-5s-topic"},
		{Store: "visits", Kind: window.Session, Size: 30 * time.Minute, Grace: 5 * time.Minute,
			Retention: 2 * time.Hour, Emit: window.EmitFinal, OutputTopic: "visit-counts"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

// TestWindowsLaterSourceReplacesTheList: the environment replaces the
// file's whole list, a flag the environment's, and an empty value removes
// every windowed store.
func TestWindowsLaterSourceReplacesTheList(t *testing.T) {
	file := writeConfig(t, "windows:\n  - {store: a, type: tumbling, size: 1m}\n  - {store: b, type: tumbling, size: 2m}\n")
	stores := func(specs []window.Spec) string {
		names := make([]string, len(specs))
		for i, s := range specs {
			names[i] = s.Store
		}
		return strings.Join(names, ",")
	}
	for _, tc := range []struct {
		name string
		args []string
		env  []string
		want string
	}{
		{"file", nil, nil, "a,b"},
		{"env replaces file", nil, []string{"ABACUS_WINDOWS=c=tumbling,size=1m"}, "c"},
		{"flag replaces env", []string{"--windows=d=session,size=1m;e=tumbling,size=1m"}, []string{"ABACUS_WINDOWS=c=tumbling,size=1m"}, "d,e"},
		{"flag as two arguments", []string{"--windows", "f=tumbling,size=1m"}, nil, "f"},
		{"empty env removes all", nil, []string{"ABACUS_WINDOWS="}, ""},
		{"empty flag removes all", []string{"--windows="}, []string{"ABACUS_WINDOWS=c=tumbling,size=1m"}, ""},
	} {
		got := loadWindows(t, tc.args, append([]string{"ABACUS_CONFIG=" + file}, tc.env...))
		if stores(got) != tc.want {
			t.Errorf("%s: stores %q, want %q", tc.name, stores(got), tc.want)
		}
	}
}

// TestWindowsReadErrors pins the errors of a windows value that cannot be
// read: a FieldError naming the source for the compact form, the file and
// the line for the YAML list.
func TestWindowsReadErrors(t *testing.T) {
	file := func(text string) string { return writeConfig(t, text) }
	badField := file("store: counts-store\nwindows:\n  - store: trades-5s\n    type: hopping\n    size: 5s\n    advance: 1s\n  - store: visits\n    type: session\n    size: 30x\n")
	unknownKey := file("windows:\n  - store: trades-5s\n    type: hopping\n    advnace: 1s\n")
	notAMapping := file("windows:\n  - trades-5s\n")
	mapping := file("windows:\n  store: trades-5s\n")
	badString := file("windows: trades-5s=hopping,size=5s,advance=1s;visits\n")
	for _, tc := range []struct {
		name string
		args []string
		env  []string
		want string
	}{
		{"bad field in the list", []string{"--config", badField}, nil,
			"config file " + badField + `: windows[1]: line 9: size "30x" is not a duration (like 500ms, 5s, 1m30s)`},
		{"unknown key in the list", []string{"--config", unknownKey}, nil,
			"config file " + unknownKey + `: windows[0]: line 4: unknown key "advnace" (keys: store, type, size, advance, grace, retention, emit, output_topic)`},
		{"entry not a mapping", []string{"--config", notAMapping}, nil,
			"config file " + notAMapping + `: windows[0]: line 2: a window is a mapping of store, type, size, advance, grace, retention, emit, output_topic`},
		{"a mapping, not a list", []string{"--config", mapping}, nil,
			"config file " + mapping + `: windows: line 2: must be a list of windows or their compact form (a string)`},
		{"compact form in the file", []string{"--config", badString}, nil,
			`invalid ` + badString + `: windows="trades-5s=hopping,size=5s,advance=1s;visits": windows[1]: "visits" does not start with <store>=<type>`},
		{"env", nil, []string{"ABACUS_WINDOWS=trades-5s=hopping,size=5s,advnace=1s"},
			`invalid ABACUS_WINDOWS="trades-5s=hopping,size=5s,advnace=1s": windows[0] (trades-5s): unknown key "advnace" (keys: size, advance, grace, retention, emit, output_topic)`},
		{"flag", []string{"--windows=trades-5s=hopping,size=5"}, nil,
			`invalid --windows="trades-5s=hopping,size=5": windows[0] (trades-5s): size "5" is not a duration (like 500ms, 5s, 1m30s)`},
	} {
		_, err := Load(tc.args, tc.env, io.Discard)
		if err == nil || err.Error() != tc.want {
			t.Errorf("%s:\ngot  %v\nwant %s", tc.name, err, tc.want)
		}
	}
	var fe *FieldError
	if _, err := Load(nil, []string{"ABACUS_WINDOWS=x"}, io.Discard); !errors.As(err, &fe) || fe.Setting != "ABACUS_WINDOWS" || fe.Value != "x" {
		t.Errorf("want a *FieldError naming ABACUS_WINDOWS, got %#v", err)
	}
}

// TestWindowsBadSpecs: each bad spec stops Load with one line that names
// the entry and the field, as window.Validate gives it.
func TestWindowsBadSpecs(t *testing.T) {
	yamlFile := writeConfig(t, "windows:\n  - {store: clicks-1m, type: tumbling, size: 1m}\n  - {store: trades-5s, type: hopping, size: 5s, advance: 6s}\n")
	for _, tc := range []struct {
		name  string
		args  []string
		env   []string
		field string
		want  string
	}{
		{"advance larger than size", nil, []string{"ABACUS_WINDOWS=trades-5s=hopping,size=5s,advance=6s"}, "advance",
			`windows[0] (trades-5s): advance 6s is larger than size 5s`},
		{"advance larger than size in the YAML list", []string{"--config", yamlFile}, nil, "advance",
			`windows[1] (trades-5s): advance 6s is larger than size 5s`},
		{"advance on a tumbling window", nil, []string{"ABACUS_WINDOWS=clicks-1m=tumbling,size=1m,advance=10s"}, "advance",
			`windows[0] (clicks-1m): advance 10s is only for hopping windows, not tumbling`},
		{"negative grace", nil, []string{"ABACUS_WINDOWS=visits=session,size=30m,grace=-1s"}, "grace",
			`windows[0] (visits): grace -1s must not be negative`},
		{"unknown type", nil, []string{"ABACUS_WINDOWS=clicks-1m=sliding,size=1m"}, "type",
			`windows[0] (clicks-1m): type "sliding" is not one of tumbling, hopping, session`},
		{"duplicate store name", []string{"--windows=clicks=tumbling,size=1m;visits=session,size=30m;clicks=tumbling,size=5m"}, nil, "store",
			`windows[2] (clicks): store "clicks" is also the name of windows[0]`},
		{"the count store's name", nil, []string{"ABACUS_STORE=clicks", "ABACUS_WINDOWS=clicks=tumbling,size=1m"}, "store",
			`windows[0] (clicks): store "clicks" is the name of the count store`},
	} {
		_, err := Load(tc.args, tc.env, io.Discard)
		if err == nil || err.Error() != tc.want {
			t.Errorf("%s:\ngot  %v\nwant %s", tc.name, err, tc.want)
			continue
		}
		var se *window.SpecError
		if !errors.As(err, &se) || se.Field != tc.field {
			t.Errorf("%s: want a *window.SpecError naming %s, got %#v", tc.name, tc.field, err)
		}
	}
}

// TestWindowOutputTopicCollisions: a windowed store's output topic may not
// be a topic abacus already reads or writes.
func TestWindowOutputTopicCollisions(t *testing.T) {
	for _, tc := range []struct {
		name    string
		windows string
		env     []string
		want    string
	}{
		{"input topic", "a=tumbling,size=1m,output_topic=input-topic", nil,
			`windows[0] (a): output_topic "input-topic" is the input topic`},
		{"count store's output topic", "a=tumbling,size=1m;b=tumbling,size=1m,output_topic=counts-topic", nil,
			`windows[1] (b): output_topic "counts-topic" is the output topic of the count store`},
		{"DLQ topic", "a=tumbling,size=1m,output_topic=shop-dlq", []string{"ABACUS_APPLICATION_ID=shop"},
			`windows[0] (a): output_topic "shop-dlq" is the DLQ topic`},
		{"count store's changelog", "a=tumbling,size=1m,output_topic=counts-app-counts-store-changelog", nil,
			`windows[0] (a): output_topic "counts-app-counts-store-changelog" is the changelog topic of the count store`},
		{"events topic", "a=tumbling,size=1m,output_topic=events", []string{"ABACUS_EVENTS_TOPIC=events"},
			`windows[0] (a): output_topic "events" is the events topic`},
		{"another store's output topic", "a=tumbling,size=1m,output_topic=shared;b=session,size=1m;c=tumbling,size=5m,output_topic=shared", nil,
			`windows[2] (c): output_topic "shared" is also the output topic of windows[0] (a)`},
		{"another store's default output topic", "a=tumbling,size=1m,output_topic=b-topic;b=tumbling,size=5m", nil,
			`windows[1] (b): output_topic "b-topic" is also the output topic of windows[0] (a)`},
		{"a later store's changelog", "a=tumbling,size=1m,output_topic=counts-app-b-changelog;b=tumbling,size=5m", nil,
			`windows[0] (a): output_topic "counts-app-b-changelog" is the changelog topic of windows[1] (b)`},
		{"an earlier store's changelog", "a=tumbling,size=1m;b=tumbling,size=5m,output_topic=counts-app-a-changelog", nil,
			`windows[1] (b): output_topic "counts-app-a-changelog" is the changelog topic of windows[0] (a)`},
		{"its own changelog", "a=tumbling,size=1m,output_topic=counts-app-a-changelog", nil,
			`windows[0] (a): output_topic "counts-app-a-changelog" is the store's own changelog topic`},
	} {
		_, err := Load(nil, append([]string{"ABACUS_WINDOWS=" + tc.windows}, tc.env...), io.Discard)
		if err == nil || err.Error() != tc.want {
			t.Errorf("%s:\ngot  %v\nwant %s", tc.name, err, tc.want)
			continue
		}
		var se *window.SpecError
		if !errors.As(err, &se) || se.Field != "output_topic" {
			t.Errorf("%s: want a *window.SpecError naming output_topic, got %#v", tc.name, err)
		}
	}
	// Distinct topics pass, and the events topic is only taken when set.
	if _, err := Load(nil, []string{"ABACUS_WINDOWS=a=tumbling,size=1m;b=tumbling,size=1m,output_topic=b-out"}, io.Discard); err != nil {
		t.Errorf("distinct topics: %v", err)
	}
}

// TestValidateWithoutLoad: Validate checks a Config built in code, whose
// windows have not had their defaults filled, as Load would.
func TestValidateWithoutLoad(t *testing.T) {
	c := Default()
	c.Windows = []window.Spec{{Store: "a", Kind: window.Tumbling, Size: time.Minute}, {Store: "b", Kind: window.Tumbling, Size: time.Minute, OutputTopic: "a-topic"}}
	const want = `windows[1] (b): output_topic "a-topic" is also the output topic of windows[0] (a)`
	if err := c.Validate(); err == nil || err.Error() != want {
		t.Errorf("got  %v\nwant %s", err, want)
	}
	c.Windows[1].OutputTopic = ""
	if err := c.Validate(); err != nil {
		t.Error(err)
	}
	got, ok := c.WindowSpec("b")
	want2 := window.Spec{Store: "b", Kind: window.Tumbling, Size: time.Minute, Retention: time.Hour, Emit: window.EmitUpdates, OutputTopic: "b-topic"}
	if !ok || got != want2 {
		t.Errorf("WindowSpec(b) = %+v, %v; want %+v", got, ok, want2)
	}
	if got := c.WindowChangelogTopic("b"); got != "counts-app-b-changelog" {
		t.Errorf("WindowChangelogTopic(b) = %q", got)
	}
}
