package window

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// compactKeys are the keys an entry of the compact form carries after its
// <store>=<type>: the YAML field names but those two.
var compactKeys = fieldNames[2:]

// ParseCompact reads the compact form of a windows list, the one
// ABACUS_WINDOWS takes:
//
//	windows = [ entry { ";" entry } ]
//	entry   = store "=" type { "," key "=" value }
//	key     = "size" | "advance" | "grace" | "retention" | "emit" | "output_topic"
//
// for example
//
//	trades-5s=hopping,size=5s,advance=1s,grace=2s;visits=session,size=30m,emit=final
//
// Values mean what the YAML fields of the same names mean; durations are
// Go durations ("500ms", "5s", "1m30s"). Whitespace around every token is
// ignored and so are empty entries: "" (or blanks) gives no specs, and a
// trailing ";" is harmless. A key may be given once and must have a value.
//
// ParseCompact checks the syntax only; Validate checks what the specs
// mean. Its errors are *SpecError, whose index counts the non-empty
// entries, as Validate's index counts the specs returned.
func ParseCompact(s string) ([]Spec, error) {
	var specs []Spec
	for _, entry := range strings.Split(s, ";") {
		if strings.TrimSpace(entry) == "" {
			continue
		}
		spec, err := parseEntry(entry)
		if err != nil {
			err.Index = len(specs)
			return nil, err
		}
		specs = append(specs, spec)
	}
	return specs, nil
}

// parseEntry reads one <store>=<type>{,key=value}; the caller sets the
// index of the error.
func parseEntry(entry string) (Spec, *SpecError) {
	parts := strings.Split(entry, ",")
	store, kind, ok := strings.Cut(parts[0], "=")
	if !ok {
		return Spec{}, &SpecError{Reason: fmt.Sprintf("%q does not start with <store>=<type>", strings.TrimSpace(parts[0]))}
	}
	s := Spec{Store: strings.TrimSpace(store), Kind: Kind(strings.TrimSpace(kind))}
	bad := func(field, format string, args ...any) (Spec, *SpecError) {
		return Spec{}, &SpecError{Store: s.Store, Field: field, Reason: fmt.Sprintf(format, args...)}
	}
	given := make(map[string]bool, len(parts)-1)
	for _, p := range parts[1:] {
		key, value, ok := strings.Cut(p, "=")
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		switch {
		case !ok:
			return bad("", "%q is not key=value", strings.TrimSpace(p))
		case key == "store" || key == "type":
			return bad(key, "%s is given as <store>=<type>, not as a key", key)
		case !slices.Contains(compactKeys, key):
			return bad(key, "%s", unknownKey(key, compactKeys))
		case given[key]:
			return bad(key, "%s is given twice", key)
		case value == "":
			return bad(key, "%s has no value", key)
		}
		given[key] = true
		if err := s.set(key, value); err != nil {
			return bad(key, "%s", err)
		}
	}
	return s, nil
}

// FormatCompact writes specs in the form ParseCompact reads, leaving out
// zero fields: ParseCompact(FormatCompact(specs)) gives specs back for any
// specs ParseCompact can return, which includes every valid spec. Give it
// specs after WithDefaults to show the configuration in force.
func FormatCompact(specs []Spec) string {
	var b strings.Builder
	for i, s := range specs {
		if i > 0 {
			b.WriteByte(';')
		}
		b.WriteString(s.Store + "=" + string(s.Kind))
		for _, f := range []struct {
			key   string
			value string
		}{
			{"size", duration(s.Size)},
			{"advance", duration(s.Advance)},
			{"grace", duration(s.Grace)},
			{"retention", duration(s.Retention)},
			{"emit", string(s.Emit)},
			{"output_topic", s.OutputTopic},
		} {
			if f.value != "" {
				b.WriteString("," + f.key + "=" + f.value)
			}
		}
	}
	return b.String()
}

// duration formats d for the compact form, "" for zero.
func duration(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return short(d)
}

// short is d.String() without its zero tail: "30m", "1h", "1h30m" rather
// than "30m0s", "1h0m0s", "1h30m0s". time.ParseDuration reads both.
func short(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}
