package window

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// trades is a valid hopping spec the validation cases start from.
func trades() Spec {
	return Spec{Store: "trades-5s", Kind: Hopping, Size: 5 * time.Second, Advance: time.Second, Grace: 2 * time.Second}
}

func visits() Spec {
	return Spec{Store: "visits", Kind: Session, Size: 30 * time.Minute, Emit: EmitFinal}
}

func clicks() Spec {
	return Spec{Store: "clicks-1m", Kind: Tumbling, Size: time.Minute}
}

// with returns trades() changed by f.
func with(f func(*Spec)) Spec {
	s := trades()
	f(&s)
	return s
}

func TestValidateAcceptsValidSpecs(t *testing.T) {
	for name, specs := range map[string][]Spec{
		"none":                 nil,
		"one of each kind":     {trades(), visits(), clicks()},
		"advance equal size":   {with(func(s *Spec) { s.Advance = s.Size })},
		"retention size+grace": {with(func(s *Spec) { s.Retention = 7 * time.Second })},
		"session retention":    {{Store: "v", Kind: Session, Size: 2 * time.Hour, Grace: time.Hour, Retention: 3 * time.Hour}},
		"every field":          {{Store: "a.b_c-D9", Kind: Tumbling, Size: time.Second, Grace: time.Millisecond, Retention: 2 * time.Hour, Emit: EmitFinal, OutputTopic: strings.Repeat("t", 249)}},
		"longest store name":   {with(func(s *Spec) { s.Store = strings.Repeat("s", 100) })},
		"huge durations":       {{Store: "h", Kind: Tumbling, Size: 100 * 365 * 24 * time.Hour, Grace: 100 * 365 * 24 * time.Hour}},
	} {
		if err := Validate(specs, "counts-store"); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestValidateNamesEntryAndField pins every message Validate gives.
func TestValidateNamesEntryAndField(t *testing.T) {
	long := strings.Repeat("s", 101)
	for _, tc := range []struct {
		name  string
		specs []Spec
		field string
		want  string
	}{
		{"empty store", []Spec{with(func(s *Spec) { s.Store = "" })}, "store",
			`windows[0]: store is empty`},
		{"store with a space", []Spec{with(func(s *Spec) { s.Store = "a b" })}, "store",
			`windows[0] ("a b"): store "a b" must be 1-100 characters of [a-zA-Z0-9._-], not "." or ".."`},
		{"store with a newline stays one line", []Spec{with(func(s *Spec) { s.Store = "a\nb" })}, "store",
			`windows[0] ("a\nb"): store "a\nb" must be 1-100 characters of [a-zA-Z0-9._-], not "." or ".."`},
		{"store too long", []Spec{with(func(s *Spec) { s.Store = long })}, "store",
			`windows[0] ("` + long + `"): store "` + long + `" must be 1-100 characters of [a-zA-Z0-9._-], not "." or ".."`},
		{"store ..", []Spec{with(func(s *Spec) { s.Store = ".." })}, "store",
			`windows[0] (".."): store ".." must be 1-100 characters of [a-zA-Z0-9._-], not "." or ".."`},
		{"duplicate store", []Spec{trades(), visits(), trades()}, "store",
			`windows[2] (trades-5s): store "trades-5s" is also the name of windows[0]`},
		{"the count store", []Spec{visits(), with(func(s *Spec) { s.Store = "counts-store" })}, "store",
			`windows[1] (counts-store): store "counts-store" is the name of the count store`},
		{"type missing", []Spec{with(func(s *Spec) { s.Kind = "" })}, "type",
			`windows[0] (trades-5s): type is missing (one of tumbling, hopping, session)`},
		{"type unknown", []Spec{with(func(s *Spec) { s.Kind = "Tumbling" })}, "type",
			`windows[0] (trades-5s): type "Tumbling" is not one of tumbling, hopping, session`},
		{"size zero", []Spec{with(func(s *Spec) { s.Size = 0 })}, "size",
			`windows[0] (trades-5s): size 0s must be positive`},
		{"size negative", []Spec{{Store: "v", Kind: Session, Size: -time.Second}}, "size",
			`windows[0] (v): size -1s must be positive`},
		{"size below a millisecond", []Spec{{Store: "c", Kind: Tumbling, Size: 1500 * time.Microsecond}}, "size",
			`windows[0] (c): size 1.5ms is not a whole number of milliseconds`},
		{"advance on tumbling", []Spec{{Store: "c", Kind: Tumbling, Size: time.Minute, Advance: time.Second}}, "advance",
			`windows[0] (c): advance 1s is only for hopping windows, not tumbling`},
		{"advance on session", []Spec{{Store: "v", Kind: Session, Size: time.Minute, Advance: time.Second}}, "advance",
			`windows[0] (v): advance 1s is only for hopping windows, not session`},
		{"hopping without advance", []Spec{with(func(s *Spec) { s.Advance = 0 })}, "advance",
			`windows[0] (trades-5s): advance is missing (hopping windows need one)`},
		{"advance negative", []Spec{with(func(s *Spec) { s.Advance = -time.Second })}, "advance",
			`windows[0] (trades-5s): advance -1s must be positive`},
		{"advance larger than size", []Spec{visits(), with(func(s *Spec) { s.Advance = 6 * time.Second })}, "advance",
			`windows[1] (trades-5s): advance 6s is larger than size 5s`},
		{"advance below a millisecond", []Spec{with(func(s *Spec) { s.Advance = time.Second + time.Microsecond })}, "advance",
			`windows[0] (trades-5s): advance 1.000001s is not a whole number of milliseconds`},
		{"grace negative", []Spec{with(func(s *Spec) { s.Grace = -time.Second })}, "grace",
			`windows[0] (trades-5s): grace -1s must not be negative`},
		{"grace below a millisecond", []Spec{with(func(s *Spec) { s.Grace = time.Nanosecond })}, "grace",
			`windows[0] (trades-5s): grace 1ns is not a whole number of milliseconds`},
		{"retention shorter than size + grace", []Spec{with(func(s *Spec) { s.Retention = 6 * time.Second })}, "retention",
			`windows[0] (trades-5s): retention 6s is shorter than size + grace (5s + 2s)`},
		{"session retention shorter than gap + grace", []Spec{{Store: "v", Kind: Session, Size: 2 * time.Hour, Grace: time.Hour, Retention: 2 * time.Hour}}, "retention",
			`windows[0] (v): retention 2h is shorter than size + grace (2h + 1h)`},
		{"retention negative", []Spec{with(func(s *Spec) { s.Retention = -time.Hour })}, "retention",
			`windows[0] (trades-5s): retention -1h is shorter than size + grace (5s + 2s)`},
		{"size + grace beyond any retention", []Spec{{Store: "h", Kind: Tumbling, Size: 200 * 365 * 24 * time.Hour, Grace: 200 * 365 * 24 * time.Hour}}, "grace",
			`windows[0] (h): size + grace (1752000h + 1752000h) is longer than the longest duration, about 292 years`},
		{"retention below a millisecond", []Spec{with(func(s *Spec) { s.Retention = time.Hour + time.Microsecond })}, "retention",
			`windows[0] (trades-5s): retention 1h0m0.000001s is not a whole number of milliseconds`},
		{"emit unknown", []Spec{with(func(s *Spec) { s.Emit = "last" })}, "emit",
			`windows[0] (trades-5s): emit "last" is not one of updates, final`},
		{"output topic with a slash", []Spec{with(func(s *Spec) { s.OutputTopic = "out/put" })}, "output_topic",
			`windows[0] (trades-5s): output_topic "out/put" must be 1-249 characters of [a-zA-Z0-9._-], not "." or ".."`},
		{"output topic .", []Spec{with(func(s *Spec) { s.OutputTopic = "." })}, "output_topic",
			`windows[0] (trades-5s): output_topic "." must be 1-249 characters of [a-zA-Z0-9._-], not "." or ".."`},
		{"output topic too long", []Spec{with(func(s *Spec) { s.OutputTopic = strings.Repeat("t", 250) })}, "output_topic",
			`windows[0] (trades-5s): output_topic "` + strings.Repeat("t", 250) + `" must be 1-249 characters of [a-zA-Z0-9._-], not "." or ".."`},
		{"first entry first", []Spec{with(func(s *Spec) { s.Emit = "x" }), with(func(s *Spec) { s.Store = "" })}, "emit",
			`windows[0] (trades-5s): emit "x" is not one of updates, final`},
		{"first field first", []Spec{with(func(s *Spec) { s.Emit = "x"; s.Grace = -1 })}, "grace",
			`windows[0] (trades-5s): grace -1ns must not be negative`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Validate(tc.specs, "counts-store")
			if err == nil {
				t.Fatalf("accepted %+v", tc.specs)
			}
			if err.Error() != tc.want {
				t.Errorf("got  %s\nwant %s", err, tc.want)
			}
			if strings.ContainsAny(err.Error(), "\r\n") {
				t.Errorf("message is not one line: %q", err)
			}
			var se *SpecError
			if !errors.As(err, &se) || se.Field != tc.field {
				t.Errorf("want a *SpecError for field %q, got %#v", tc.field, err)
			}
		})
	}
}

func TestValidateWithoutCountStore(t *testing.T) {
	if err := Validate([]Spec{with(func(s *Spec) { s.Store = "counts-store" })}, ""); err != nil {
		t.Error(err)
	}
}

func TestValidateLeavesSpecsAlone(t *testing.T) {
	specs := []Spec{trades(), visits()}
	if err := Validate(specs, ""); err != nil {
		t.Fatal(err)
	}
	if specs[0] != trades() || specs[1] != visits() {
		t.Errorf("Validate changed its input: %+v", specs)
	}
}

func TestWithDefaults(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   Spec
		want Spec
	}{
		{"short window keeps an hour", clicks(),
			Spec{Store: "clicks-1m", Kind: Tumbling, Size: time.Minute, Retention: time.Hour, Emit: EmitUpdates, OutputTopic: "clicks-1m-topic"}},
		{"retention size + grace past an hour",
			Spec{Store: "h", Kind: Hopping, Size: 50 * time.Minute, Advance: time.Minute, Grace: 20 * time.Minute},
			Spec{Store: "h", Kind: Hopping, Size: 50 * time.Minute, Advance: time.Minute, Grace: 20 * time.Minute, Retention: 70 * time.Minute, Emit: EmitUpdates, OutputTopic: "h-topic"}},
		{"session retention gap + grace",
			Spec{Store: "v", Kind: Session, Size: 30 * time.Minute, Grace: 45 * time.Minute, Emit: EmitFinal},
			Spec{Store: "v", Kind: Session, Size: 30 * time.Minute, Grace: 45 * time.Minute, Retention: 75 * time.Minute, Emit: EmitFinal, OutputTopic: "v-topic"}},
		{"set fields stay",
			Spec{Store: "s", Kind: Tumbling, Size: time.Second, Retention: 2 * time.Second, Emit: EmitFinal, OutputTopic: "out"},
			Spec{Store: "s", Kind: Tumbling, Size: time.Second, Retention: 2 * time.Second, Emit: EmitFinal, OutputTopic: "out"}},
		{"negative retention stays for Validate",
			Spec{Store: "s", Kind: Tumbling, Size: time.Second, Retention: -time.Second},
			Spec{Store: "s", Kind: Tumbling, Size: time.Second, Retention: -time.Second, Emit: EmitUpdates, OutputTopic: "s-topic"}},
		{"grace defaults to zero", trades(),
			Spec{Store: "trades-5s", Kind: Hopping, Size: 5 * time.Second, Advance: time.Second, Grace: 2 * time.Second, Retention: time.Hour, Emit: EmitUpdates, OutputTopic: "trades-5s-topic"}},
	} {
		if got := tc.in.WithDefaults(); got != tc.want {
			t.Errorf("%s:\ngot  %+v\nwant %+v", tc.name, got, tc.want)
		}
	}
	if g := clicks().WithDefaults().Grace; g != 0 {
		t.Errorf("default grace %s, want 0", g)
	}
}
