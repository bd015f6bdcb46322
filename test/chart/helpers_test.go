package chart

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"
)

const (
	// release and namespace every render uses, so names are predictable.
	release   = "abacus"
	namespace = "streams"
	// installHint is how to get the tools the tests need.
	installHint = "run make tools"
)

// repoRoot is the work tree: this module sits at test/chart.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "charts", "abacus", "Chart.yaml")); err != nil {
		t.Fatalf("repository root not found at %s: %v", root, err)
	}
	return root
}

func chartDir(t *testing.T) string {
	t.Helper()
	return filepath.Join(repoRoot(t), "charts", "abacus")
}

// findTool returns the first candidate that is an executable file, or fails
// the test: a missing tool is an error, never a reason to skip.
func findTool(t *testing.T, name string, candidates ...string) string {
	t.Helper()
	return findToolOr(t, name, installHint, candidates...)
}

// findToolOr is findTool with its own hint of how to install the tool.
func findToolOr(t *testing.T, name, hint string, candidates ...string) string {
	t.Helper()
	for _, c := range candidates {
		if c == "" {
			continue
		}
		if fi, err := os.Stat(c); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return c
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	t.Fatalf("%s not found (looked at %s and on PATH): %s", name, strings.Join(nonEmpty(candidates), ", "), hint)
	return ""
}

func nonEmpty(ss []string) []string {
	var out []string
	for _, s := range ss {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// helmBin is $HELM, else $(go env GOPATH)/bin/helm (where the install script
// puts it, often not on PATH), else helm on PATH.
func helmBin(t *testing.T) string {
	t.Helper()
	var gopathBin string
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		first, _, _ := strings.Cut(strings.TrimSpace(string(out)), string(os.PathListSeparator))
		if first != "" {
			gopathBin = filepath.Join(first, "bin", "helm")
		}
	}
	return findTool(t, "helm", os.Getenv("HELM"), gopathBin)
}

// run executes a command with a time limit and returns its standard output;
// the error carries standard error.
func run(dir string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %w\n%s%s", name, strings.Join(args, " "), err, stderr.String(), stdout.String())
	}
	return stdout.String(), nil
}

// helmTemplate renders a chart directory with the given values files and
// --set pairs (as "key=value"), returning helm's output or its error.
func helmTemplate(t *testing.T, chart string, files []string, sets []string) (string, error) {
	t.Helper()
	args := []string{"template", release, chart, "--namespace", namespace}
	for _, f := range files {
		args = append(args, "--values", f)
	}
	for _, s := range sets {
		args = append(args, "--set", s)
	}
	return run(repoRoot(t), helmBin(t), args...)
}

// object is one rendered manifest: its source template, its raw YAML and,
// for kinds k8s.io/api knows, the strictly decoded object.
type object struct {
	Source string // "abacus/templates/statefulset.yaml"
	Kind   string
	Name   string
	Raw    []byte
	// Obj is the strictly decoded object, or an *unstructured.Unstructured
	// for kinds without a Go type (ServiceMonitor, PrometheusRule).
	Obj runtime.Object
}

// strictDecoder rejects unknown and duplicate fields.
var strictDecoder = serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()

// kindsWithoutGoType are decoded as unstructured and checked by hand:
// monitoring.coreos.com has no k8s.io/api package.
var kindsWithoutGoType = map[string]bool{
	"monitoring.coreos.com/v1/ServiceMonitor": true,
	"monitoring.coreos.com/v1/PrometheusRule": true,
}

// decodeManifests splits helm's output into documents and decodes each one.
func decodeManifests(out string) ([]object, error) {
	reader := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(out)))
	var objs []object
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("split manifests: %w", err)
		}
		source := ""
		if _, rest, ok := strings.Cut(string(doc), "# Source: "); ok {
			source, _, _ = strings.Cut(rest, "\n")
		}
		var head struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal(doc, &head); err != nil {
			return nil, fmt.Errorf("%s: %w", source, err)
		}
		if head.Kind == "" && head.APIVersion == "" {
			continue // an empty document: only comments or whitespace
		}
		o := object{Source: source, Kind: head.Kind, Name: head.Metadata.Name, Raw: doc}
		if kindsWithoutGoType[head.APIVersion+"/"+head.Kind] {
			js, err := yaml.YAMLToJSONStrict(doc)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", source, err)
			}
			u := &unstructured.Unstructured{}
			if err := u.UnmarshalJSON(js); err != nil {
				return nil, fmt.Errorf("%s: %s %q: %w", source, head.Kind, head.Metadata.Name, err)
			}
			o.Obj = u
		} else {
			obj, _, err := strictDecoder.Decode(doc, nil, nil)
			if err != nil {
				return nil, fmt.Errorf("%s: %s %q does not decode strictly: %w", source, head.Kind, head.Metadata.Name, err)
			}
			o.Obj = obj
		}
		objs = append(objs, o)
	}
}

// render renders the chart and decodes every object, failing the test on
// any error.
func render(t *testing.T, files []string, sets ...string) []object {
	t.Helper()
	out, err := helmTemplate(t, chartDir(t), files, sets)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := decodeManifests(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) == 0 {
		t.Fatal("helm template rendered no objects")
	}
	return objs
}

// only returns the single rendered object of a Go type, failing unless there
// is exactly one.
func only[T runtime.Object](t *testing.T, objs []object) T {
	t.Helper()
	var found []T
	for _, o := range objs {
		if v, ok := o.Obj.(T); ok {
			found = append(found, v)
		}
	}
	if len(found) != 1 {
		var zero T
		t.Fatalf("want exactly one %T, rendered %d", zero, len(found))
	}
	return found[0]
}

// all returns every rendered object of a Go type.
func all[T runtime.Object](objs []object) []T {
	var found []T
	for _, o := range objs {
		if v, ok := o.Obj.(T); ok {
			found = append(found, v)
		}
	}
	return found
}

// testdata is the absolute path of a file under testdata/.
func testdata(t *testing.T, name string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return p
}
