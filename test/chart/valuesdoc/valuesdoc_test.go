package valuesdoc

import (
	"strings"
	"testing"
)

const testSchema = `{
  "definitions": {"duration": {"type": "string"}},
  "properties": {
    "replicas": {"type": "integer"},
    "grace": {"type": ["integer", "null"]},
    "size": {"oneOf": [{"type": "integer"}, {"type": "string"}]},
    "kafka": {"properties": {"timeout": {"$ref": "#/definitions/duration"}}}
  }
}`

func TestRows(t *testing.T) {
	values := `# The file's own comment.

# Number of pods.
replicas: 3
# Seconds, or null.
grace: null
# Bytes, or a size | with a pipe.
size: 10MiB
kafka:
  # How long to wait.
  timeout: 2m
  # Extra properties.
  properties: {}
# Where the volumes go: Retain or Delete.
retention:
  whenDeleted: Retain
  whenScaled: Retain
# Sources <name> may use.
from: [a, b]
`
	rows, err := Rows([]byte(values), []byte(testSchema))
	if err != nil {
		t.Fatal(err)
	}
	want := []Row{
		{"replicas", "integer", "3", "Number of pods."},
		{"grace", "integer or null", "null", "Seconds, or null."},
		{"size", "integer or string", `"10MiB"`, "Bytes, or a size | with a pipe."},
		{"kafka.timeout", "duration", `"2m"`, "How long to wait."},
		{"kafka.properties", "object", "{}", "Extra properties."},
		{"retention", "object", `{"whenDeleted":"Retain","whenScaled":"Retain"}`, "Where the volumes go: Retain or Delete."},
		{"from", "array", `["a","b"]`, "Sources <name> may use."},
	}
	if len(rows) != len(want) {
		t.Fatalf("rows %+v, want %+v", rows, want)
	}
	for i := range want {
		if rows[i] != want[i] {
			t.Errorf("row %d = %+v, want %+v", i, rows[i], want[i])
		}
	}
	table := Table(rows)
	for _, line := range []string{
		"| `size` | integer or string | `\"10MiB\"` | Bytes, or a size \\| with a pipe. |",
		"| `from` | array | `[\"a\",\"b\"]` | Sources &lt;name&gt; may use. |",
	} {
		if !strings.Contains(table, line+"\n") {
			t.Errorf("table lacks %q:\n%s", line, table)
		}
	}
}

func TestRowsNeedComments(t *testing.T) {
	_, err := Rows([]byte("# Documented.\na: 1\nb: 2\nc:\n  d: 3\n"), []byte(`{}`))
	if err == nil || !strings.Contains(err.Error(), "no comment above b, c") {
		t.Fatalf("want an error naming b and c, got %v", err)
	}
}

func TestSplice(t *testing.T) {
	readme := "# Title\n\nIntro.\n\n" + Start + "\nold table\n" + End + "\n\nAfter.\n"
	out, err := Splice([]byte(readme), "| new |\n")
	if err != nil {
		t.Fatal(err)
	}
	got := string(out)
	if !strings.HasPrefix(got, "# Title\n\nIntro.\n\n"+Start+"\n") || !strings.HasSuffix(got, "| new |\n\n"+End+"\n\nAfter.\n") || strings.Contains(got, "old table") {
		t.Errorf("spliced README:\n%s", got)
	}
	again, err := Splice(out, "| new |\n")
	if err != nil || string(again) != got {
		t.Errorf("splicing twice changed the README:\n%s", again)
	}
	if _, err := Splice([]byte("no markers"), "x"); err == nil {
		t.Error("a README without markers was accepted")
	}
}
