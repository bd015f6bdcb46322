package testkit

import (
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Helpers over the files of a store directory, for the tests that damage
// a store while it is closed or open: the store's own damage tests
// (internal/store/damage_test.go) and the e2e chaos tests
// (e2e/chaos_damage_test.go, e2e/chaos_disk_test.go).

// FilesBySize lists the files of dir matching glob, largest first (the
// one a damage hits: it holds the most).
func FilesBySize(dir, glob string) []string {
	matches, _ := filepath.Glob(filepath.Join(dir, glob))
	slices.SortFunc(matches, func(a, b string) int {
		fa, _ := os.Stat(a)
		fb, _ := os.Stat(b)
		return int(fb.Size() - fa.Size())
	})
	return matches
}

// ListDir lists dir's entries with their sizes ("MANIFEST(1234) ..."), for
// a test's failure message.
func ListDir(dir string) string {
	entries, _ := os.ReadDir(dir)
	var out []string
	for _, e := range entries {
		if fi, err := e.Info(); err == nil {
			out = append(out, fmt.Sprintf("%s(%d)", e.Name(), fi.Size()))
		}
	}
	return strings.Join(out, " ")
}

// CopyDir copies the files of a closed store's directory (not its
// subdirectories) to to, creating it.
func CopyDir(t testing.TB, from, to string) {
	t.Helper()
	if err := os.MkdirAll(to, 0o755); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		src, err := os.Open(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		dst, err := os.Create(filepath.Join(to, e.Name()))
		if err != nil {
			src.Close()
			t.Fatal(err)
		}
		_, err = io.Copy(dst, src)
		src.Close()
		if cerr := dst.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// HalveFile truncates a file to half its size.
func HalveFile(t testing.TB, path string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, fi.Size()/2); err != nil {
		t.Fatal(err)
	}
}

// DeleteFile removes a file.
func DeleteFile(t testing.TB, path string) {
	t.Helper()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
}

// ScribbleAt overwrites 4 KiB (a quarter of a file smaller than 16 KiB) at
// where (0 is the start, 1 the end) of the file with random bytes, the same
// for a file of the same size.
func ScribbleAt(t testing.TB, path string, where float64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	n := min(int64(4096), max(fi.Size()/4, 1))
	off := max(min(int64(float64(fi.Size())*where), fi.Size()-n), 0)
	buf := make([]byte, n)
	r := rand.New(rand.NewPCG(uint64(fi.Size()), 3))
	for i := range buf {
		buf[i] = byte(r.Uint32())
	}
	if _, err := f.WriteAt(buf, off); err != nil {
		t.Fatal(err)
	}
}

// Scribble is ScribbleAt as a damage of one path.
func Scribble(where float64) func(t testing.TB, path string) {
	return func(t testing.TB, path string) {
		t.Helper()
		ScribbleAt(t, path, where)
	}
}

// ScribbleAmidData overwrites 64 bytes a third of the way into the data of
// a preallocated file (its part before the trailing zeros), so that valid
// data follows.
func ScribbleAmidData(t testing.TB, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	end := len(data)
	for end > 0 && data[end-1] == 0 {
		end--
	}
	if end < 1024 {
		t.Fatalf("%s holds only %d bytes of data", path, end)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte(strings.Repeat("garbage!", 8)), int64(end/3)); err != nil {
		t.Fatal(err)
	}
}
