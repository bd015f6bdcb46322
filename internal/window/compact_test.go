package window

import (
	"errors"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
)

const example = "trades-5s=hopping,size=5s,advance=1s,grace=2s;visits=session,size=30m,emit=final"

func TestParseCompactExample(t *testing.T) {
	got, err := ParseCompact(example)
	if err != nil {
		t.Fatal(err)
	}
	want := []Spec{trades(), visits()}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	if err := Validate(got, "counts-store"); err != nil {
		t.Error(err)
	}
}

func TestParseCompactIgnoresBlanks(t *testing.T) {
	for _, in := range []string{
		"", "   ", ";", " ; ;\t",
	} {
		got, err := ParseCompact(in)
		if err != nil || got != nil {
			t.Errorf("ParseCompact(%q) = %+v, %v; want no specs", in, got, err)
		}
	}
	spaced := " trades-5s = hopping , size = 5s ,advance= 1s,\tgrace =2s ;\n visits=session, size=30m, emit = final ; "
	got, err := ParseCompact(spaced)
	if err != nil {
		t.Fatal(err)
	}
	if want := []Spec{trades(), visits()}; !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

func TestParseCompactEveryKey(t *testing.T) {
	got, err := ParseCompact("c=tumbling,size=1m,grace=1s,retention=2h,emit=updates,output_topic=clicks")
	if err != nil {
		t.Fatal(err)
	}
	want := []Spec{{Store: "c", Kind: Tumbling, Size: time.Minute, Grace: time.Second, Retention: 2 * time.Hour, Emit: EmitUpdates, OutputTopic: "clicks"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

// TestParseCompactLeavesMeaningToValidate: syntax only; what the values
// mean is Validate's.
func TestParseCompactLeavesMeaningToValidate(t *testing.T) {
	got, err := ParseCompact("a b=weird,size=-5s,advance=0s,emit=sometimes;=")
	if err != nil {
		t.Fatal(err)
	}
	want := []Spec{{Store: "a b", Kind: "weird", Size: -5 * time.Second, Emit: "sometimes"}, {}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

func TestParseCompactErrors(t *testing.T) {
	for _, tc := range []struct {
		in    string
		field string
		want  string
	}{
		{"trades", "", `windows[0]: "trades" does not start with <store>=<type>`},
		{"a=tumbling,size=1s; ,size=1s", "", `windows[1]: "" does not start with <store>=<type>`},
		{"a=tumbling,size=1s;b=hopping,sise=5s", "sise",
			`windows[1] (b): unknown key "sise" (keys: size, advance, grace, retention, emit, output_topic)`},
		{"a=hopping,size=5s,size=6s", "size", `windows[0] (a): size is given twice`},
		{"a=hopping,size=5s, size =5s", "size", `windows[0] (a): size is given twice`},
		{"a=hopping,size=5x", "size", `windows[0] (a): size "5x" is not a duration (like 500ms, 5s, 1m30s)`},
		{"a=hopping,size=5", "size", `windows[0] (a): size "5" is not a duration (like 500ms, 5s, 1m30s)`},
		{"a=hopping,grace=soon", "grace", `windows[0] (a): grace "soon" is not a duration (like 500ms, 5s, 1m30s)`},
		{"a=hopping,advance=1 s", "advance", `windows[0] (a): advance "1 s" is not a duration (like 500ms, 5s, 1m30s)`},
		{"a=hopping,retention=1d", "retention", `windows[0] (a): retention "1d" is not a duration (like 500ms, 5s, 1m30s)`},
		{"a=hopping,size", "", `windows[0] (a): "size" is not key=value`},
		{"a=hopping,size=1s,", "", `windows[0] (a): "" is not key=value`},
		{"a=hopping,emit=", "emit", `windows[0] (a): emit has no value`},
		{"a=hopping,output_topic= ", "output_topic", `windows[0] (a): output_topic has no value`},
		{"a=hopping,type=session", "type", `windows[0] (a): type is given as <store>=<type>, not as a key`},
		{"a=hopping,store=b", "store", `windows[0] (a): store is given as <store>=<type>, not as a key`},
		{";;a=tumbling,size=1s;;b=tumbling,size=1s;c=session,gap=5m", "gap",
			`windows[2] (c): unknown key "gap" (keys: size, advance, grace, retention, emit, output_topic)`},
		{"a b=session,size=x", "size", `windows[0] ("a b"): size "x" is not a duration (like 500ms, 5s, 1m30s)`},
	} {
		specs, err := ParseCompact(tc.in)
		if err == nil {
			t.Errorf("ParseCompact(%q) = %+v, want an error", tc.in, specs)
			continue
		}
		if err.Error() != tc.want {
			t.Errorf("ParseCompact(%q):\ngot  %s\nwant %s", tc.in, err, tc.want)
		}
		var se *SpecError
		if !errors.As(err, &se) || se.Field != tc.field {
			t.Errorf("ParseCompact(%q): want a *SpecError for field %q, got %#v", tc.in, tc.field, err)
		}
	}
}

func TestFormatCompact(t *testing.T) {
	if got := FormatCompact([]Spec{trades(), visits()}); got != example {
		t.Errorf("got  %s\nwant %s", got, example)
	}
	if got := FormatCompact(nil); got != "" {
		t.Errorf("no specs: %q", got)
	}
	want := "trades-5s=hopping,size=5s,advance=1s,grace=2s,retention=1h,emit=updates,output_topic=trades-5s-topic"
	if got := FormatCompact([]Spec{trades().WithDefaults()}); got != want {
		t.Errorf("with defaults:\ngot  %s\nwant %s", got, want)
	}
}

// TestCompactRoundTrip: FormatCompact then ParseCompact gives the specs
// back, for random valid specs with defaults and without.
func TestCompactRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 500 {
		specs := randomSpecs(r)
		if err := Validate(specs, ""); err != nil {
			t.Fatalf("randomSpecs made an invalid spec: %v", err)
		}
		for _, in := range [][]Spec{specs, defaulted(specs)} {
			text := FormatCompact(in)
			out, err := ParseCompact(text)
			if err != nil {
				t.Fatalf("ParseCompact(%q): %v", text, err)
			}
			if !reflect.DeepEqual(out, in) && !(len(in) == 0 && out == nil) {
				t.Fatalf("round trip of %q:\ngot  %+v\nwant %+v", text, out, in)
			}
		}
	}
}

// FuzzCompact: whatever ParseCompact accepts, FormatCompact writes back
// to the same specs, and ParseCompact never panics.
func FuzzCompact(f *testing.F) {
	for _, s := range []string{example, "", ";", "a=b=c,emit==x", " x = tumbling , size = 1h2m3.004s ", "a=hopping,size=1s,", "=", "a b=c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		specs, err := ParseCompact(in)
		if err != nil {
			if strings.ContainsAny(err.Error(), "\r\n") {
				t.Errorf("error is not one line: %q", err)
			}
			return
		}
		text := FormatCompact(specs)
		again, err := ParseCompact(text)
		if err != nil {
			t.Fatalf("ParseCompact(FormatCompact(ParseCompact(%q))) = %v (text %q)", in, err, text)
		}
		if !reflect.DeepEqual(again, specs) {
			t.Fatalf("round trip of %q through %q:\ngot  %+v\nwant %+v", in, text, again, specs)
		}
	})
}

// randomSpecs returns up to four valid specs with random fields.
func randomSpecs(r *rand.Rand) []Spec {
	units := []time.Duration{time.Millisecond, time.Second, time.Minute, time.Hour}
	dur := func() time.Duration { return time.Duration(1+r.IntN(90)) * units[r.IntN(len(units))] }
	var specs []Spec
	for i := range r.IntN(5) {
		s := Spec{Store: "s" + strings.Repeat("x", i), Kind: kinds[r.IntN(len(kinds))], Size: dur()}
		if s.Kind == Hopping {
			s.Advance = max(time.Millisecond, s.Size/time.Duration(1+r.IntN(10))).Truncate(time.Millisecond)
		}
		if r.IntN(2) == 0 {
			s.Grace = dur()
		}
		if r.IntN(2) == 0 {
			s.Retention = s.Size + s.Grace + time.Duration(r.IntN(3))*dur()
		}
		if r.IntN(2) == 0 {
			s.Emit = emits[r.IntN(len(emits))]
		}
		if r.IntN(3) == 0 {
			s.OutputTopic = "out.topic_" + s.Store
		}
		specs = append(specs, s)
	}
	return specs
}

func defaulted(specs []Spec) []Spec {
	out := make([]Spec, len(specs))
	for i, s := range specs {
		out[i] = s.WithDefaults()
	}
	return out
}

func TestShortDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		30 * time.Minute:                         "30m",
		time.Hour:                                "1h",
		90 * time.Minute:                         "1h30m",
		time.Hour + 5*time.Second:                "1h0m5s",
		time.Minute + 500*time.Millisecond:       "1m0.5s",
		-time.Hour:                               "-1h",
		500 * time.Millisecond:                   "500ms",
		0:                                        "0s",
		10 * time.Second:                         "10s",
		100*time.Hour + 10*time.Minute:           "100h10m",
		time.Duration(1<<63 - 1):                 "2562047h47m16.854775807s",
		2*time.Hour + 30*time.Second + time.Hour: "3h0m30s",
	} {
		got := short(d)
		if got != want {
			t.Errorf("short(%d) = %q, want %q", d, got, want)
		}
		if back, err := time.ParseDuration(got); err != nil || back != d {
			t.Errorf("ParseDuration(%q) = %v, %v; want %d", got, back, err, d)
		}
	}
}
