package chart

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// The values `make -n image` and `make -n build` are run with, so their
// commands can be compared word for word.
const (
	testVersion = "v0.0.0-chart-test"
	testImage   = "registry.example.com/abacus:chart-test"
)

// dockerfile is the parsed Dockerfile: its stages and the BuildKit lint
// warnings found while parsing.
type dockerfile struct {
	stages   []instructions.Stage
	metaArgs []instructions.ArgCommand
	warnings []string
}

func parseDockerfile(t *testing.T) dockerfile {
	t.Helper()
	f, err := os.Open(filepath.Join(repoRoot(t), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res, err := parser.Parse(f)
	if err != nil {
		t.Fatalf("parse Dockerfile: %v", err)
	}
	var df dockerfile
	for _, w := range res.Warnings {
		df.warnings = append(df.warnings, w.Short)
	}
	// BuildKit's rules that run while parsing (stage name and FROM ... AS
	// casing, MAINTAINER, stage descriptions); the rest of `docker build
	// --check` needs the base images, so it cannot run offline.
	lint := linter.New(&linter.Config{Warn: func(rule, _, _, msg string, loc []parser.Range) {
		line := 0
		if len(loc) > 0 {
			line = loc[0].Start.Line
		}
		df.warnings = append(df.warnings, rule+" (line "+strconv.Itoa(line)+"): "+msg)
	}})
	df.stages, df.metaArgs, err = instructions.Parse(res.AST, lint)
	if err != nil {
		t.Fatalf("Dockerfile: %v", err)
	}
	for _, n := range res.AST.Children {
		if word, _, _ := strings.Cut(strings.TrimSpace(n.Original), " "); word != strings.ToUpper(word) {
			df.warnings = append(df.warnings, "ConsistentInstructionCasing (line "+strconv.Itoa(n.StartLine)+"): "+word+" is not upper case")
		}
	}
	return df
}

func (df dockerfile) stage(t *testing.T, name string) instructions.Stage {
	t.Helper()
	for _, s := range df.stages {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("the Dockerfile has no stage %q", name)
	return instructions.Stage{}
}

// TestDockerfileLint: BuildKit's parse-time checks and dockerfilelint both
// pass without a warning.
func TestDockerfileLint(t *testing.T) {
	df := parseDockerfile(t)
	for _, w := range df.warnings {
		t.Errorf("BuildKit: %s", w)
	}
	// Exec form for ENTRYPOINT and CMD (BuildKit's JSONArgsRecommended): the
	// binary is PID 1 and gets SIGTERM itself, so it can commit and
	// checkpoint before the pod goes.
	for _, s := range df.stages {
		for _, c := range s.Commands {
			switch c := c.(type) {
			case *instructions.EntrypointCommand:
				if c.PrependShell {
					t.Errorf("stage %s: ENTRYPOINT in shell form; SIGTERM would not reach abacus", s.Name)
				}
			case *instructions.CmdCommand:
				if c.PrependShell {
					t.Errorf("stage %s: CMD in shell form", s.Name)
				}
			}
		}
	}

	lintBin := findTool(t, "dockerfilelint", os.Getenv("DOCKERFILELINT"),
		filepath.Join(repoRoot(t), "test", "chart", ".tools", "node_modules", ".bin", "dockerfilelint"))
	out, err := run(repoRoot(t), lintBin, "--output", "json", "Dockerfile")
	var report struct {
		Files []struct {
			File   string `json:"file"`
			Issues []struct {
				Line        string `json:"line"`
				Category    string `json:"category"`
				Title       string `json:"title"`
				Description string `json:"description"`
			} `json:"issues"`
		} `json:"files"`
		TotalIssues int `json:"totalIssues"`
	}
	if jerr := json.Unmarshal([]byte(out), &report); jerr != nil {
		t.Fatalf("dockerfilelint: %v (output %q, decoding: %v)", err, out, jerr)
	}
	for _, f := range report.Files {
		for _, i := range f.Issues {
			t.Errorf("dockerfilelint %s:%s [%s] %s: %s", f.File, i.Line, i.Category, i.Title, i.Description)
		}
	}
	if err != nil && report.TotalIssues == 0 {
		t.Errorf("dockerfilelint failed without an issue: %v", err)
	}
}

// TestImageBuild: `make image` runs the build the Dockerfile is written
// for, and the Dockerfile builds what `make build` builds.
func TestImageBuild(t *testing.T) {
	df := parseDockerfile(t)

	// make -n prints the recipe with the variables expanded.
	out, err := run(repoRoot(t), "make", "--no-print-directory", "-n", "image", "VERSION="+testVersion, "IMAGE="+testImage)
	if err != nil {
		t.Fatal(err)
	}
	docker := findCommand(t, out, "docker", "build")
	opts, operands := parseFlags(t, docker[2:], map[string]bool{
		"--build-arg": true, "--file": true, "-f": true, "--tag": true, "-t": true, "--target": true, "--platform": true,
	})
	if !slices.Equal(operands, []string{"."}) {
		t.Errorf("make image builds context %v, want . (the repository root)", operands)
	}
	if file := first(opts["--file"], opts["-f"]); file != "" && file != "Dockerfile" {
		t.Errorf("make image builds %s, not the Dockerfile", file)
	}
	if tag := first(opts["--tag"], opts["-t"]); tag != testImage {
		t.Errorf("make image tags %q, want IMAGE (%q)", tag, testImage)
	}
	final := df.stages[len(df.stages)-1]
	if target := first(opts["--target"]); target != "" {
		final = df.stage(t, target)
	}

	// Every build arg is declared; VERSION is passed, from make's VERSION.
	buildArgs := map[string]string{}
	for _, a := range opts["--build-arg"] {
		k, v, _ := strings.Cut(a, "=")
		buildArgs[k] = v
		if !declaresArg(df, k) {
			t.Errorf("make image passes --build-arg %s, which the Dockerfile does not declare", k)
		}
	}
	if buildArgs["VERSION"] != testVersion {
		t.Errorf("make image passes VERSION=%q, want make's VERSION %q", buildArgs["VERSION"], testVersion)
	}

	// The go build in the Dockerfile and make build's agree on package and
	// linker flags once VERSION is substituted.
	out, err = run(repoRoot(t), "make", "--no-print-directory", "-n", "build", "VERSION="+testVersion)
	if err != nil {
		t.Fatal(err)
	}
	makeBuild := parseGoBuild(t, findCommand(t, out, "go", "build"))
	buildStage, dockerBuild := dockerGoBuild(t, df)
	if !slices.Equal(dockerBuild.packages, makeBuild.packages) {
		t.Errorf("the Dockerfile builds %v, make build %v", dockerBuild.packages, makeBuild.packages)
	}
	if got := os.Expand(dockerBuild.ldflags, func(k string) string { return buildArgs[k] }); got != makeBuild.ldflags {
		t.Errorf("the Dockerfile links with -ldflags %q (%q with make image's build args), make build with %q", dockerBuild.ldflags, got, makeBuild.ldflags)
	}
	if !declaresArg(dockerfile{stages: []instructions.Stage{buildStage}}, "VERSION") {
		t.Errorf("stage %s uses ${VERSION} without ARG VERSION", buildStage.Name)
	}
	if dockerBuild.env["CGO_ENABLED"] != "1" {
		t.Errorf("the Dockerfile builds with CGO_ENABLED=%q; confluent-kafka-go needs cgo", dockerBuild.env["CGO_ENABLED"])
	}

	// The toolchain image is the go.mod's Go release.
	gomod, err := os.ReadFile(filepath.Join(repoRoot(t), "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	if m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(gomod); m == nil ||
		!strings.HasPrefix(buildStage.BaseName, "golang:"+string(m[1])+"-") {
		t.Errorf("build stage FROM %s; go.mod asks for go %s", buildStage.BaseName, m[1])
	}

	// The final stage runs that binary, in exec form.
	entry := commandsOf[*instructions.EntrypointCommand](final)
	if len(entry) != 1 || entry[0].PrependShell || len(entry[0].CmdLine) == 0 {
		t.Fatalf("the final stage needs one exec-form ENTRYPOINT, has %v", entry)
	}
	copied := false
	for _, c := range commandsOf[*instructions.CopyCommand](final) {
		copied = copied || (c.From == buildStage.Name && slices.Equal(c.SourcePaths, []string{dockerBuild.output}) && c.DestPath == entry[0].CmdLine[0])
	}
	if !copied {
		t.Errorf("the final stage does not COPY --from=%s %s %s", buildStage.Name, dockerBuild.output, entry[0].CmdLine[0])
	}
	checkRuntimeAgainstChart(t, final)
	checkDockerignore(t, df)
	checkSourcesCopied(t, df, dockerBuild.packages)
}

// checkSourcesCopied: every directory and embedded file of the main module
// that the built packages need is copied into the build stage, so a new
// top-level package cannot break the image while `make build` works.
func checkSourcesCopied(t *testing.T, df dockerfile, packages []string) {
	t.Helper()
	root := repoRoot(t)
	var copied []string
	for _, s := range df.stages {
		for _, c := range commandsOf[*instructions.CopyCommand](s) {
			if c.From == "" {
				copied = append(copied, c.SourcePaths...)
			}
		}
	}
	out, err := run(root, "go", append([]string{"list", "-deps", "-json=Dir,Module,EmbedFiles"}, packages...)...)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(strings.NewReader(out))
	for dec.More() {
		var pkg struct {
			Dir        string
			Module     *struct{ Main bool }
			EmbedFiles []string
		}
		if err := dec.Decode(&pkg); err != nil {
			t.Fatal(err)
		}
		if pkg.Module == nil || !pkg.Module.Main {
			continue
		}
		files := []string{"."}
		files = append(files, pkg.EmbedFiles...)
		for _, f := range files {
			rel, err := filepath.Rel(root, filepath.Join(pkg.Dir, f))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.ContainsFunc(copied, func(src string) bool { return within(rel, src) }) {
				t.Errorf("the build needs %s, which the Dockerfile does not COPY (it copies %v)", rel, copied)
			}
		}
	}
}

// within reports whether path rel lies at or under the COPY source src.
func within(rel, src string) bool {
	src = filepath.Clean(src)
	return src == "." || rel == src || strings.HasPrefix(rel, src+string(filepath.Separator))
}

// checkRuntimeAgainstChart: the image and the chart's pod agree on the user,
// the state dir and the port.
func checkRuntimeAgainstChart(t *testing.T, final instructions.Stage) {
	t.Helper()
	if !strings.HasPrefix(final.BaseName, "gcr.io/distroless/base-") {
		t.Errorf("runtime image %s: want distroless base (glibc for librdkafka)", final.BaseName)
	}
	env := map[string]string{}
	for _, c := range commandsOf[*instructions.EnvCommand](final) {
		for _, kv := range c.Env {
			env[kv.Key] = kv.Value
		}
	}
	var user string
	for _, c := range commandsOf[*instructions.UserCommand](final) {
		user = c.User
	}
	var volumes, ports []string
	for _, c := range commandsOf[*instructions.VolumeCommand](final) {
		volumes = append(volumes, c.Volumes...)
	}
	for _, c := range commandsOf[*instructions.ExposeCommand](final) {
		ports = append(ports, c.Ports...)
	}

	sts := only[*appsv1.StatefulSet](t, render(t, nil))
	c := container(t, sts)
	stateDir, _ := envValue(c, "ABACUS_STATE_DIR")
	if env["ABACUS_STATE_DIR"] != stateDir || !slices.Contains(volumes, stateDir) {
		t.Errorf("image state dir %q (volumes %v), chart %q", env["ABACUS_STATE_DIR"], volumes, stateDir)
	}
	port, err := containerPort(c, intstr.FromString("http"))
	if err != nil {
		t.Fatal(err)
	}
	if p := strconv.Itoa(int(port)); !slices.Equal(ports, []string{p}) || env["ABACUS_HTTP_ADDR"] != ":"+p {
		t.Errorf("image EXPOSE %v and ABACUS_HTTP_ADDR %q, chart port %s", ports, env["ABACUS_HTTP_ADDR"], p)
	}
	uid := strconv.FormatInt(*sts.Spec.Template.Spec.SecurityContext.RunAsUser, 10)
	if u, _, _ := strings.Cut(user, ":"); u != uid {
		t.Errorf("image USER %q, chart runAsUser %s", user, uid)
	}
}

// checkDockerignore: the context keeps what the Dockerfile copies and drops
// build output, local state and version control.
func checkDockerignore(t *testing.T, df dockerfile) {
	t.Helper()
	f, err := os.Open(filepath.Join(repoRoot(t), ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	patterns, err := ignorefile.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		t.Fatal(err)
	}
	ignored := func(p string) bool {
		m, err := pm.MatchesOrParentMatches(filepath.Clean(p))
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	for _, s := range df.stages {
		for _, c := range commandsOf[*instructions.CopyCommand](s) {
			if c.From != "" {
				continue
			}
			for _, src := range c.SourcePaths {
				if ignored(src) {
					t.Errorf("COPY %s: .dockerignore leaves it out of the context", src)
				}
				if _, err := os.Stat(filepath.Join(repoRoot(t), src)); err != nil {
					t.Errorf("COPY %s: %v", src, err)
				}
			}
		}
	}
	for _, p := range []string{".git", "bin/abacus", "data/counts-app", "test/chart/.tools", "charts/abacus"} {
		if !ignored(p) {
			t.Errorf(".dockerignore sends %s to the builder", p)
		}
	}
}

func declaresArg(df dockerfile, name string) bool {
	for _, a := range df.metaArgs {
		for _, kv := range a.Args {
			if kv.Key == name {
				return true
			}
		}
	}
	for _, s := range df.stages {
		for _, a := range commandsOf[*instructions.ArgCommand](s) {
			for _, kv := range a.Args {
				if kv.Key == name {
					return true
				}
			}
		}
	}
	return false
}

func commandsOf[T instructions.Command](s instructions.Stage) []T {
	var out []T
	for _, c := range s.Commands {
		if v, ok := c.(T); ok {
			out = append(out, v)
		}
	}
	return out
}

// dockerGoBuild finds the stage and RUN that run `go build`.
func dockerGoBuild(t *testing.T, df dockerfile) (instructions.Stage, goBuild) {
	t.Helper()
	for _, s := range df.stages {
		stageEnv := map[string]string{}
		for _, c := range s.Commands {
			if e, ok := c.(*instructions.EnvCommand); ok {
				for _, kv := range e.Env {
					stageEnv[kv.Key] = kv.Value
				}
			}
			run, ok := c.(*instructions.RunCommand)
			if !ok {
				continue
			}
			for _, cmd := range shellCommands(t, strings.Join(run.CmdLine, " ")) {
				i := slices.Index(cmd, "go")
				if i < 0 || i+1 >= len(cmd) || cmd[i+1] != "build" {
					continue
				}
				b := parseGoBuild(t, cmd)
				for k, v := range stageEnv {
					if _, ok := b.env[k]; !ok {
						b.env[k] = v
					}
				}
				return s, b
			}
		}
	}
	t.Fatal("no RUN go build in the Dockerfile")
	return instructions.Stage{}, goBuild{}
}
