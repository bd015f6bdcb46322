package chart

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/abacus-streams/abacus/test/chart/valuesdoc"
)

// TestChartReadme: the table of values in charts/abacus/README.md is the
// one values.yaml's comments and values.schema.json's types make, and every
// value has a comment.
func TestChartReadme(t *testing.T) {
	dir := chartDir(t)
	read := func(name string) []byte {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	readme := read("README.md")
	want, err := valuesdoc.Generate(readme, read("values.yaml"), read("values.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readme, want) {
		t.Errorf("charts/abacus/README.md does not match values.yaml: regenerate it with `%s` (from the repository's root); %s",
			valuesdoc.Command, valuesdoc.FirstDifference(readme, want))
	}
}
