package window

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// Name limits. A store name becomes part of topic names (its changelog,
// its default output topic) and of HTTP paths, so it keeps to the
// characters Kafka allows in a topic name and leaves room for the rest of
// the topic name within Kafka's 249.
const (
	maxStoreLen = 100
	maxTopicLen = 249
)

// SpecError names the entry of the windows list and the field that is
// wrong. Its message is one line: every value it quotes is escaped.
type SpecError struct {
	Index  int    // position in the list, from 0
	Store  string // the entry's store name as given
	Field  string // the YAML field name; "" when the entry as a whole is malformed
	Reason string // what is wrong, naming the field and its value
}

func (e *SpecError) Error() string {
	switch {
	case validName(e.Store, maxStoreLen):
		return fmt.Sprintf("windows[%d] (%s): %s", e.Index, e.Store, e.Reason)
	case e.Store != "":
		return fmt.Sprintf("windows[%d] (%q): %s", e.Index, e.Store, e.Reason)
	}
	return fmt.Sprintf("windows[%d]: %s", e.Index, e.Reason)
}

// Validate checks every spec after WithDefaults, in order, and returns a
// *SpecError for the first problem found. countStore is the name of the
// plain count store, which no windowed store may take; "" skips that check.
func Validate(specs []Spec, countStore string) error {
	seen := make(map[string]int, len(specs))
	for i, s := range specs {
		s = s.WithDefaults()
		field, reason := s.problem(seen, countStore)
		if reason != "" {
			return &SpecError{Index: i, Store: s.Store, Field: field, Reason: reason}
		}
		seen[s.Store] = i
	}
	return nil
}

// problem returns the field and the reason of the first problem of s, or
// "" and "". seen maps the store names of the entries before s to their
// index.
func (s Spec) problem(seen map[string]int, countStore string) (field, reason string) {
	switch j, dup := seen[s.Store]; {
	case s.Store == "":
		return "store", "store is empty"
	case !validName(s.Store, maxStoreLen):
		return "store", fmt.Sprintf("store %q %s", s.Store, nameRule(maxStoreLen))
	case dup:
		return "store", fmt.Sprintf("store %q is also the name of windows[%d]", s.Store, j)
	case s.Store == countStore:
		return "store", fmt.Sprintf("store %q is the name of the count store", s.Store)
	}
	switch s.Kind {
	case Tumbling, Hopping, Session:
	case "":
		return "type", "type is missing (one of " + join(kinds) + ")"
	default:
		return "type", fmt.Sprintf("type %q is not one of %s", string(s.Kind), join(kinds))
	}
	if s.Size <= 0 {
		return "size", fmt.Sprintf("size %s must be positive", short(s.Size))
	}
	if r := wholeMillis("size", s.Size); r != "" {
		return "size", r
	}
	if r := s.advanceProblem(); r != "" {
		return "advance", r
	}
	if s.Grace < 0 {
		return "grace", fmt.Sprintf("grace %s must not be negative", short(s.Grace))
	}
	if r := wholeMillis("grace", s.Grace); r != "" {
		return "grace", r
	}
	if s.Grace > math.MaxInt64-s.Size {
		return "grace", fmt.Sprintf("size + grace (%s + %s) is longer than the longest duration, about 292 years", short(s.Size), short(s.Grace))
	}
	if s.Retention < s.Size+s.Grace {
		return "retention", fmt.Sprintf("retention %s is shorter than size + grace (%s + %s)", short(s.Retention), short(s.Size), short(s.Grace))
	}
	if r := wholeMillis("retention", s.Retention); r != "" {
		return "retention", r
	}
	switch s.Emit {
	case EmitUpdates, EmitFinal:
	default:
		return "emit", fmt.Sprintf("emit %q is not one of %s", string(s.Emit), join(emits))
	}
	if !validName(s.OutputTopic, maxTopicLen) {
		return "output_topic", fmt.Sprintf("output_topic %q %s", s.OutputTopic, nameRule(maxTopicLen))
	}
	return "", ""
}

// advanceProblem checks the advance, which only hopping windows have.
func (s Spec) advanceProblem() string {
	switch {
	case s.Kind != Hopping && s.Advance != 0:
		return fmt.Sprintf("advance %s is only for hopping windows, not %s", short(s.Advance), s.Kind)
	case s.Kind != Hopping:
		return ""
	case s.Advance == 0:
		return "advance is missing (hopping windows need one)"
	case s.Advance < 0:
		return fmt.Sprintf("advance %s must be positive", short(s.Advance))
	case s.Advance > s.Size:
		return fmt.Sprintf("advance %s is larger than size %s", short(s.Advance), short(s.Size))
	}
	return wholeMillis("advance", s.Advance)
}

// wholeMillis rejects durations finer than event time, which counts
// milliseconds.
func wholeMillis(field string, d time.Duration) string {
	if d%time.Millisecond != 0 {
		return fmt.Sprintf("%s %s is not a whole number of milliseconds", field, short(d))
	}
	return ""
}

// validName reports whether name is a legal Kafka topic name of at most
// maxLen characters. "." and ".." are excluded: Kafka refuses them as
// topics and HTTP clients resolve them as path segments.
func validName(name string, maxLen int) bool {
	if name == "" || len(name) > maxLen || name == "." || name == ".." {
		return false
	}
	for _, c := range []byte(name) {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

func nameRule(maxLen int) string {
	return fmt.Sprintf(`must be 1-%d characters of [a-zA-Z0-9._-], not "." or ".."`, maxLen)
}

func join[T ~string](values []T) string {
	s := make([]string, len(values))
	for i, v := range values {
		s[i] = string(v)
	}
	return strings.Join(s, ", ")
}
