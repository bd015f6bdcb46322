package chart

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Reading command lines: make -n's recipes and the Dockerfile's RUN lines are
// split into commands and words here, enough to compare their go build and
// docker build invocations word for word.

// goBuild is one `go build` command line.
type goBuild struct {
	env      map[string]string // VAR=value words before the command
	ldflags  string
	output   string
	packages []string
}

func parseGoBuild(t *testing.T, words []string) goBuild {
	t.Helper()
	b := goBuild{env: map[string]string{}}
	for len(words) > 0 && strings.Contains(words[0], "=") {
		k, v, _ := strings.Cut(words[0], "=")
		b.env[k] = v
		words = words[1:]
	}
	opts, packages := parseFlags(t, words[2:], map[string]bool{
		"-ldflags": true, "-o": true, "-tags": true, "-gcflags": true, "-mod": true, "-p": true,
	})
	b.ldflags, b.output, b.packages = first(opts["-ldflags"]), first(opts["-o"]), packages
	return b
}

// findCommand returns the first simple command in a shell script that starts
// with the given words (after VAR=value words; a path is allowed before the
// first, as in /usr/local/go/bin/go).
func findCommand(t *testing.T, script string, head ...string) []string {
	t.Helper()
	for _, cmd := range shellCommands(t, script) {
		words := cmd
		for len(words) > 0 && strings.Contains(words[0], "=") {
			words = words[1:]
		}
		if len(words) < len(head) || filepath.Base(words[0]) != head[0] || !slices.Equal(words[1:len(head)], head[1:]) {
			continue
		}
		return cmd
	}
	t.Fatalf("no %q command in:\n%s", strings.Join(head, " "), script)
	return nil
}

// shellCommands splits a script into simple commands (at newlines, ;, &&
// and ||) of words, with quotes removed. Enough for recipes and RUN lines;
// it is not a shell.
func shellCommands(t *testing.T, script string) [][]string {
	t.Helper()
	var cmds [][]string
	var words []string
	var word strings.Builder
	inWord := false
	endWord := func() {
		if inWord {
			words = append(words, word.String())
			word.Reset()
			inWord = false
		}
	}
	endCommand := func() {
		endWord()
		if len(words) > 0 {
			cmds = append(cmds, words)
			words = nil
		}
	}
	rs := []rune(script)
	for i := 0; i < len(rs); i++ {
		r := rs[i]
		switch {
		case r == '\\' && i+1 < len(rs) && rs[i+1] == '\n':
			i++ // a continued line
		case r == '\\' && i+1 < len(rs):
			i++
			word.WriteRune(rs[i])
			inWord = true
		case r == '\'' || r == '"':
			j := i + 1
			for j < len(rs) && rs[j] != r {
				if r == '"' && rs[j] == '\\' && j+1 < len(rs) {
					j++
				}
				word.WriteRune(rs[j])
				j++
			}
			if j >= len(rs) {
				t.Fatalf("unterminated quote in %q", script)
			}
			i = j
			inWord = true
		case r == ' ' || r == '\t':
			endWord()
		case r == '\n' || r == ';':
			endCommand()
		case (r == '&' || r == '|') && i+1 < len(rs) && rs[i+1] == r:
			i++
			endCommand()
		default:
			word.WriteRune(r)
			inWord = true
		}
	}
	endCommand()
	return cmds
}

// parseFlags splits command-line words into options (by name, repeatable)
// and operands; withValue names the options that take the next word.
func parseFlags(t *testing.T, words []string, withValue map[string]bool) (map[string][]string, []string) {
	t.Helper()
	opts := map[string][]string{}
	var operands []string
	for i := 0; i < len(words); i++ {
		w := words[i]
		if !strings.HasPrefix(w, "-") || w == "-" {
			operands = append(operands, w)
			continue
		}
		if name, value, ok := strings.Cut(w, "="); ok {
			opts[name] = append(opts[name], value)
			continue
		}
		if withValue[w] {
			if i+1 >= len(words) {
				t.Fatalf("%s takes a value", w)
			}
			opts[w] = append(opts[w], words[i+1])
			i++
			continue
		}
		opts[w] = append(opts[w], "")
	}
	return opts, operands
}

func first(lists ...[]string) string {
	for _, l := range lists {
		if len(l) > 0 {
			return l[len(l)-1]
		}
	}
	return ""
}

func TestShellCommands(t *testing.T) {
	got := shellCommands(t, "CGO_ENABLED=1 go build -ldflags \"-X main.version=${VERSION}\" \\\n  -o /out/abacus ./cmd/server \\\n  && mkdir -p '/out/my data'; echo a\\ b || true")
	want := [][]string{
		{"CGO_ENABLED=1", "go", "build", "-ldflags", "-X main.version=${VERSION}", "-o", "/out/abacus", "./cmd/server"},
		{"mkdir", "-p", "/out/my data"},
		{"echo", "a b"},
		{"true"},
	}
	if !slices.EqualFunc(got, want, slices.Equal[[]string]) {
		t.Errorf("shellCommands = %q, want %q", got, want)
	}
	b := parseGoBuild(t, got[0])
	if b.env["CGO_ENABLED"] != "1" || b.ldflags != "-X main.version=${VERSION}" || b.output != "/out/abacus" || !slices.Equal(b.packages, []string{"./cmd/server"}) {
		t.Errorf("parseGoBuild = %+v", b)
	}
}
