package window

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// fieldNames are the YAML keys of a Spec, in the order messages list them.
var fieldNames = []string{"store", "type", "size", "advance", "grace", "retention", "emit", "output_topic"}

// UnmarshalYAML reads one entry of the windows: list. Durations are
// strings such as "5s" or "1m30s" (Go's time.ParseDuration); an unknown
// or repeated key is an error, so a misspelt field is not silently left
// at its default. Errors name the line.
func (s *Spec) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: a window is a mapping of %s", n.Line, strings.Join(fieldNames, ", "))
	}
	var out Spec
	given := make(map[string]bool, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if !slices.Contains(fieldNames, k.Value) {
			return fmt.Errorf("line %d: %w", k.Line, unknownKey(k.Value, fieldNames))
		}
		if given[k.Value] {
			return fmt.Errorf("line %d: %s is given twice", k.Line, k.Value)
		}
		given[k.Value] = true
		if v.Kind != yaml.ScalarNode {
			return fmt.Errorf("line %d: %s must be a single value", v.Line, k.Value)
		}
		if v.Tag == "!!null" {
			continue
		}
		if err := out.set(k.Value, v.Value); err != nil {
			return fmt.Errorf("line %d: %w", v.Line, err)
		}
	}
	*s = out
	return nil
}

// set assigns one field by its YAML name; the compact form uses it too.
func (s *Spec) set(key, value string) error {
	var d *time.Duration
	switch key {
	case "store":
		s.Store = value
	case "type":
		s.Kind = Kind(value)
	case "emit":
		s.Emit = Emit(value)
	case "output_topic":
		s.OutputTopic = value
	case "size":
		d = &s.Size
	case "advance":
		d = &s.Advance
	case "grace":
		d = &s.Grace
	case "retention":
		d = &s.Retention
	default:
		return unknownKey(key, fieldNames)
	}
	if d == nil {
		return nil
	}
	v, err := time.ParseDuration(value)
	if err != nil {
		return fmt.Errorf("%s %q is not a duration (like 500ms, 5s, 1m30s)", key, value)
	}
	*d = v
	return nil
}

func unknownKey(key string, keys []string) error {
	return fmt.Errorf("unknown key %q (keys: %s)", key, strings.Join(keys, ", "))
}
