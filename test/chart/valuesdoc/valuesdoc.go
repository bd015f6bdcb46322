// Package valuesdoc writes the table of a Helm chart's values, in the
// manner of helm-docs: one row per value of values.yaml, with its type from
// values.schema.json, its default and the comment above it.
//
// A row is a leaf of values.yaml: a scalar, a list, or a mapping none of
// whose keys has a comment of its own (persistence.retention, resources),
// whose default is then shown whole. A mapping with commented keys is a
// group: its keys get the rows, and its own comment, if any, is left to
// values.yaml. Every row must have a comment; Rows fails with the keys that
// have none, so an undocumented value cannot reach the README.
//
// The table goes between the markers Start and End of the README; the text
// around them is written by hand and kept as it is.
package valuesdoc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// The markers around the generated table in the README.
const (
	Start = "<!-- values:start -->"
	End   = "<!-- values:end -->"
)

// Command is how a user regenerates the table, from the repository's root.
const Command = "make chart-docs"

// Row is one documented value.
type Row struct {
	Key         string // config.applicationId
	Type        string // from the schema: string, integer, integer or null, duration, ...
	Default     string // the value in values.yaml, as compact JSON
	Description string // its comment, joined into one line
}

// Rows reads the values file and its JSON schema and returns a row per
// value, in the file's order.
func Rows(values, schema []byte) ([]Row, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(values, &doc); err != nil {
		return nil, fmt.Errorf("values.yaml: %w", err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, errors.New("values.yaml: not a mapping")
	}
	var s jsonSchema
	if err := json.Unmarshal(schema, &s); err != nil {
		return nil, fmt.Errorf("values.schema.json: %w", err)
	}
	w := walker{root: &s}
	w.mapping(doc.Content[0], "", &s)
	if len(w.undocumented) > 0 {
		return nil, fmt.Errorf("values.yaml: no comment above %s", strings.Join(w.undocumented, ", "))
	}
	return w.rows, nil
}

type walker struct {
	root         *jsonSchema
	rows         []Row
	undocumented []string
}

func (w *walker) mapping(n *yaml.Node, prefix string, s *jsonSchema) {
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		key := prefix + k.Value
		sub := s.property(k.Value)
		if v.Kind == yaml.MappingNode && hasCommentedKey(v) {
			w.mapping(v, key+".", w.resolve(sub))
			continue
		}
		desc := comment(k.HeadComment)
		if desc == "" {
			desc = comment(k.LineComment)
		}
		if desc == "" {
			w.undocumented = append(w.undocumented, key)
		}
		w.rows = append(w.rows, Row{Key: key, Type: w.typeName(sub, v), Default: flow(v), Description: desc})
	}
}

// hasCommentedKey reports whether a key of the mapping, at any depth, has
// a comment of its own.
func hasCommentedKey(n *yaml.Node) bool {
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.HeadComment != "" || k.LineComment != "" {
			return true
		}
		if v.Kind == yaml.MappingNode && hasCommentedKey(v) {
			return true
		}
	}
	return false
}

// comment joins a comment's lines, without their "#", into one line.
func comment(c string) string {
	var words []string
	for _, line := range strings.Split(c, "\n") {
		line = strings.TrimSpace(line)
		line = strings.TrimSpace(strings.TrimPrefix(line, "#"))
		if line != "" {
			words = append(words, line)
		}
	}
	return strings.Join(words, " ")
}

// flow renders a node as compact JSON, keeping the order of mapping keys.
func flow(n *yaml.Node) string {
	switch n.Kind {
	case yaml.AliasNode:
		return flow(n.Alias)
	case yaml.MappingNode:
		var parts []string
		for i := 0; i+1 < len(n.Content); i += 2 {
			parts = append(parts, strconv.Quote(n.Content[i].Value)+":"+flow(n.Content[i+1]))
		}
		return "{" + strings.Join(parts, ",") + "}"
	case yaml.SequenceNode:
		var parts []string
		for _, c := range n.Content {
			parts = append(parts, flow(c))
		}
		return "[" + strings.Join(parts, ",") + "]"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return "null"
		case "!!int", "!!float", "!!bool":
			return n.Value
		}
		b, err := json.Marshal(n.Value)
		if err != nil {
			return strconv.Quote(n.Value)
		}
		return string(b)
	}
	return ""
}

// jsonSchema is the part of a JSON schema the table reads.
type jsonSchema struct {
	Ref         string                 `json:"$ref"`
	Type        json.RawMessage        `json:"type"`
	OneOf       []*jsonSchema          `json:"oneOf"`
	Properties  map[string]*jsonSchema `json:"properties"`
	Definitions map[string]*jsonSchema `json:"definitions"`
}

func (s *jsonSchema) property(name string) *jsonSchema {
	if s == nil {
		return nil
	}
	return s.Properties[name]
}

// resolve follows a local $ref ("#/definitions/duration").
func (w *walker) resolve(s *jsonSchema) *jsonSchema {
	if s == nil || s.Ref == "" {
		return s
	}
	name, ok := strings.CutPrefix(s.Ref, "#/definitions/")
	if !ok || w.root.Definitions[name] == nil {
		return s
	}
	return w.root.Definitions[name]
}

// typeName is the type the schema gives a value: a definition's name
// (duration, quantity), the type or types it allows, or, without a
// schema, the YAML node's kind.
func (w *walker) typeName(s *jsonSchema, n *yaml.Node) string {
	if s != nil {
		if names := w.schemaTypes(s); len(names) > 0 {
			return strings.Join(names, " or ")
		}
	}
	switch n.Kind {
	case yaml.MappingNode:
		return "object"
	case yaml.SequenceNode:
		return "array"
	}
	switch n.ShortTag() {
	case "!!int":
		return "integer"
	case "!!float":
		return "number"
	case "!!bool":
		return "boolean"
	case "!!null":
		return "null"
	}
	return "string"
}

func (w *walker) schemaTypes(s *jsonSchema) []string {
	if name, ok := strings.CutPrefix(s.Ref, "#/definitions/"); ok {
		return []string{name}
	}
	var names []string
	add := func(n string) {
		for _, have := range names {
			if have == n {
				return
			}
		}
		names = append(names, n)
	}
	if len(s.Type) > 0 {
		var one string
		var many []string
		if json.Unmarshal(s.Type, &one) == nil {
			add(one)
		} else if json.Unmarshal(s.Type, &many) == nil {
			for _, n := range many {
				add(n)
			}
		}
	}
	for _, alt := range s.OneOf {
		for _, n := range w.schemaTypes(alt) {
			add(n)
		}
	}
	return names
}

// Table renders the rows as a Markdown table.
func Table(rows []Row) string {
	var b strings.Builder
	b.WriteString("| key | type | default | description |\n")
	b.WriteString("| --- | --- | --- | --- |\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| `%s` | %s | `%s` | %s |\n", cell(r.Key), cell(r.Type), cell(r.Default), text(r.Description))
	}
	return b.String()
}

// cell escapes what would end a table cell.
func cell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

// text escapes prose for a table cell: pipes everywhere, and outside code
// spans the angle brackets that Markdown would read as HTML tags.
func text(s string) string {
	var b strings.Builder
	inCode := false
	for _, r := range s {
		switch {
		case r == '`':
			inCode = !inCode
			b.WriteRune(r)
		case r == '|':
			b.WriteString(`\|`)
		case r == '<' && !inCode:
			b.WriteString("&lt;")
		case r == '>' && !inCode:
			b.WriteString("&gt;")
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// Splice puts the table between the markers of the README, replacing
// what was there.
func Splice(readme []byte, table string) ([]byte, error) {
	start := bytes.Index(readme, []byte(Start))
	end := bytes.Index(readme, []byte(End))
	if start < 0 || end < 0 || end < start {
		return nil, fmt.Errorf("the README needs the markers %s and %s, in that order", Start, End)
	}
	var b bytes.Buffer
	b.Write(readme[:start+len(Start)])
	b.WriteString("\n<!-- Generated from values.yaml by `" + Command + "`; edit the comments there, not this table. -->\n\n")
	b.WriteString(table)
	b.WriteString("\n")
	b.Write(readme[end:])
	return b.Bytes(), nil
}

// Generate returns the README with a fresh table of the values.
func Generate(readme, values, schema []byte) ([]byte, error) {
	rows, err := Rows(values, schema)
	if err != nil {
		return nil, err
	}
	return Splice(readme, Table(rows))
}

// FirstDifference describes where two texts first differ, by line, for an
// error message.
func FirstDifference(have, want []byte) string {
	h, w := strings.Split(string(have), "\n"), strings.Split(string(want), "\n")
	for i := 0; i < len(h) || i < len(w); i++ {
		var hl, wl string
		if i < len(h) {
			hl = h[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if hl != wl || i >= len(h) || i >= len(w) {
			return fmt.Sprintf("line %d is\n\t%s\nand should be\n\t%s", i+1, hl, wl)
		}
	}
	return "no difference"
}
