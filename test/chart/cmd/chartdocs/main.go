// Command chartdocs writes the table of the chart's values into
// charts/abacus/README.md, between its markers, from the comments of
// values.yaml and the types of values.schema.json. `make chart-docs` runs
// it; the chart tests fail while the README differs from what it writes.
//
// Usage, from test/chart:
//
//	go run ./cmd/chartdocs [-chart ../../charts/abacus]
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/abacus-streams/abacus/test/chart/valuesdoc"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "chartdocs:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("chartdocs", flag.ContinueOnError)
	chart := fs.String("chart", filepath.Join("..", "..", "charts", "abacus"), "the chart's directory")
	if err := fs.Parse(args); err != nil {
		return err
	}
	read := func(name string) ([]byte, error) { return os.ReadFile(filepath.Join(*chart, name)) }
	values, err := read("values.yaml")
	if err != nil {
		return err
	}
	schema, err := read("values.schema.json")
	if err != nil {
		return err
	}
	readme, err := read("README.md")
	if err != nil {
		return err
	}
	out, err := valuesdoc.Generate(readme, values, schema)
	if err != nil {
		return err
	}
	path := filepath.Join(*chart, "README.md")
	if bytes.Equal(out, readme) {
		fmt.Printf("%s is up to date\n", path)
		return nil
	}
	if err := os.WriteFile(path, out, 0o644); err != nil {
		return err
	}
	fmt.Printf("wrote %s\n", path)
	return nil
}
