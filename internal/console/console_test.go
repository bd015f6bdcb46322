package console_test

import (
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/abacus-streams/abacus/internal/console"
)

func newHandler(t *testing.T, files fs.FS) *console.Handler {
	t.Helper()
	h, err := console.New(console.Config{Files: files})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func get(h http.Handler, target string, header http.Header) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodGet, target, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// A small console of every kind of file, as a build of the real one may
// hold.
var sample = fstest.MapFS{
	"index.html":    {Data: []byte(`<link rel="stylesheet" href="/console/app.css"><script src='/console/app.js' defer></script>`)},
	"app.js":        {Data: []byte(`"use strict";`)},
	"app.css":       {Data: []byte(`body{}`)},
	"img/logo.svg":  {Data: []byte(`<svg xmlns="http://www.w3.org/2000/svg"/>`)},
	"fonts/a.woff2": {Data: []byte("wOF2")},
}

func TestServesEachFileWithItsType(t *testing.T) {
	h := newHandler(t, sample)
	want := map[string]string{
		"/":                      "text/html; charset=utf-8",
		"/console/app.js":        "text/javascript; charset=utf-8",
		"/console/app.css":       "text/css; charset=utf-8",
		"/console/img/logo.svg":  "image/svg+xml",
		"/console/fonts/a.woff2": "font/woff2",
	}
	if got := h.Paths(); len(got) != len(want) || got[0] != "/" {
		t.Errorf("Paths() = %q; want / first, then the %d assets", got, len(want)-1)
	}
	for _, p := range h.Paths() {
		rec := get(h, p, nil)
		if rec.Code != 200 || rec.Header().Get("Content-Type") != want[p] {
			t.Errorf("GET %s: %d %q; want 200 %q", p, rec.Code, rec.Header().Get("Content-Type"), want[p])
		}
		checkSecurityHeaders(t, p, rec)
	}
	if body := get(h, "/console/app.js", nil).Body.String(); body != `"use strict";` {
		t.Errorf("GET /console/app.js: %q; want the file", body)
	}
	for _, p := range []string{"/index.html", "/console/index.html", "/console/", "/console/nope.js", "/app.js"} {
		if rec := get(h, p, nil); rec.Code != 404 {
			t.Errorf("GET %s: %d; want 404 (the page is at / only, assets under /console/)", p, rec.Code)
		}
	}
}

func TestSecurityHeaders(t *testing.T) {
	h := newHandler(t, nil)
	for _, p := range append(h.Paths(), "/console/nope.js") {
		checkSecurityHeaders(t, p, get(h, p, nil))
	}
	csp := console.Policy
	for _, directive := range []string{"default-src 'self'", "script-src 'self'", "style-src 'self'", "img-src 'self' data:",
		"connect-src 'self'", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, directive) {
			t.Errorf("Content-Security-Policy %q lacks %q", csp, directive)
		}
	}
	if strings.Contains(csp, "unsafe-") || strings.Contains(csp, "http") || strings.Contains(csp, "*") {
		t.Errorf("Content-Security-Policy %q allows inline code or another origin", csp)
	}
}

func checkSecurityHeaders(t *testing.T, p string, rec *httptest.ResponseRecorder) {
	t.Helper()
	for k, v := range map[string]string{
		"Content-Security-Policy": console.Policy,
		"X-Content-Type-Options":  "nosniff",
		"Referrer-Policy":         "no-referrer",
	} {
		if got := rec.Header().Get(k); got != v {
			t.Errorf("GET %s: %s %q; want %q", p, k, got, v)
		}
	}
}

var versioned = regexp.MustCompile(`["'](/console/app\.(?:js|css))\?v=([0-9a-f]{16})["']`)

func TestCaching(t *testing.T) {
	h := newHandler(t, sample)
	page := get(h, "/", nil)
	if cc := page.Header().Get("Cache-Control"); cc != "no-cache" {
		t.Errorf("the page's Cache-Control is %q; want no-cache", cc)
	}
	refs := versioned.FindAllStringSubmatch(page.Body.String(), -1)
	if len(refs) != 2 {
		t.Fatalf("the page %s; want both assets referred to with ?v=<version>", page.Body)
	}
	for _, ref := range refs {
		asset, version := ref[1], ref[2]
		rec := get(h, asset+"?v="+version, nil)
		if cc := rec.Header().Get("Cache-Control"); rec.Code != 200 || !strings.Contains(cc, "immutable") {
			t.Errorf("GET %s?v=<its version>: %d, Cache-Control %q; want 200 immutable", asset, rec.Code, cc)
		}
		if etag := rec.Header().Get("ETag"); etag != `"`+version+`"` {
			t.Errorf("GET %s: ETag %s; want its version %q", asset, etag, version)
		}
		for _, q := range []string{"", "?v=0000000000000000"} {
			if cc := get(h, asset+q, nil).Header().Get("Cache-Control"); cc != "no-cache" {
				t.Errorf("GET %s%s: Cache-Control %q; want no-cache (not the current version)", asset, q, cc)
			}
		}
	}
	for _, p := range h.Paths() {
		etag := get(h, p, nil).Header().Get("ETag")
		rec := get(h, p, http.Header{"If-None-Match": {etag}})
		if etag == "" || rec.Code != http.StatusNotModified || rec.Body.Len() != 0 {
			t.Errorf("GET %s with If-None-Match its ETag %s: %d %q; want 304", p, etag, rec.Code, rec.Body)
		}
		checkSecurityHeaders(t, p+" (304)", rec)
		if rec := get(h, p, http.Header{"If-None-Match": {`"other"`}}); rec.Code != 200 {
			t.Errorf("GET %s with another ETag: %d; want 200", p, rec.Code)
		}
	}
}

func TestEveryFileHasAType(t *testing.T) {
	newHandler(t, nil) // the embedded console: New refuses a file of unknown type
	bad := fstest.MapFS{"index.html": {Data: []byte("<p>")}, "app.exe": {Data: []byte("MZ")}}
	if _, err := console.New(console.Config{Files: bad}); err == nil || !strings.Contains(err.Error(), "app.exe") {
		t.Errorf("New with app.exe: %v; want an error naming the file", err)
	}
	if _, err := console.New(console.Config{Files: fstest.MapFS{"app.js": {Data: []byte("")}}}); err == nil {
		t.Error("New without index.html: no error")
	}
}

// The console is sent to every browser that opens a member: it may not
// grow past MaxBundleBytes unnoticed.
func TestBundleSize(t *testing.T) {
	var total int64
	err := fs.WalkDir(console.Bundle(), ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		total += info.Size()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if total > console.MaxBundleBytes {
		t.Errorf("the embedded console is %d bytes; at most %d are allowed", total, console.MaxBundleBytes)
	}
	t.Logf("the embedded console is %d bytes of %d allowed", total, console.MaxBundleBytes)
}

// outsideRef finds a script, style, image or import loaded from another
// origin: the console makes no outside request (the policy would block
// it, leaving the page broken).
// A link to another site (<a href>) is navigation, not a load, and is
// allowed.
var outsideRef = regexp.MustCompile(`(?i)(src\s*=|<link[^>]*href\s*=|url\(|@import|import\s*\(|from|fetch\(|EventSource\(|WebSocket\()\s*["'\x60]?(https?:|wss?:)?//`)

func TestNoOutsideReference(t *testing.T) {
	for text, outside := range map[string]bool{
		`<script src="https://cdn.example/x.js">`:                     true,
		`<link rel="stylesheet" href="//fonts.example/a.css">`:        true,
		`body { background: url('https://img.example/a.png') }`:       true,
		`import { h } from "https://esm.example/h.js";`:               true,
		`fetch("https://api.example/")`:                               true,
		`<script src="/console/app.js">`:                              false,
		`<a href="https://github.com/abacus-streams/abacus">docs</a>`: false,
		`<svg xmlns="http://www.w3.org/2000/svg">`:                    false,
		`fetch("/api/v1/cluster/status")`:                             false,
	} {
		if got := outsideRef.MatchString(text); got != outside {
			t.Errorf("outsideRef on %s: %v; want %v", text, got, outside)
		}
	}
	err := fs.WalkDir(console.Bundle(), ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := fs.ReadFile(console.Bundle(), name)
		if m := outsideRef.Find(body); m != nil {
			t.Errorf("%s loads from another origin: %q", name, m)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}
