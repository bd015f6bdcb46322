package console

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"slices"
	"strings"
	"time"
)

// bundle is the console as built into the binary; read-only.
//
//go:embed static
var bundle embed.FS

// Prefix is the path the console's assets are served under.
const Prefix = "/console/"

// MaxBundleBytes bounds the embedded console, the sum of its files' sizes
// (TestBundleSize): it is served to every browser that opens a member.
const MaxBundleBytes = 300 << 10

// indexFile is the page, served at "/".
const indexFile = "index.html"

// Policy is the Content-Security-Policy of every answer: everything from
// the member's own origin only, no inline script or style, no plugins,
// no framing, forms and <base> pinned.
const Policy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// contentType is the type of a file the console may hold, by its
// extension: a fixed table, so that a type never depends on the host's
// MIME database.
func contentType(ext string) (string, bool) {
	switch strings.ToLower(ext) {
	case ".html":
		return "text/html; charset=utf-8", true
	case ".js", ".mjs":
		return "text/javascript; charset=utf-8", true
	case ".css":
		return "text/css; charset=utf-8", true
	case ".json", ".map":
		return "application/json", true
	case ".svg":
		return "image/svg+xml", true
	case ".png":
		return "image/png", true
	case ".ico":
		return "image/x-icon", true
	case ".webp":
		return "image/webp", true
	case ".woff2":
		return "font/woff2", true
	case ".txt":
		return "text/plain; charset=utf-8", true
	}
	return "", false
}

// Bundle is the embedded console, index.html at its root.
func Bundle() fs.FS {
	sub, err := fs.Sub(bundle, "static")
	if err != nil {
		panic(err) // "static" is a valid path: fs.Sub cannot fail on it
	}
	return sub
}

// Config configures a Handler.
type Config struct {
	// Files are the console's files, index.html at the root; nil serves
	// the embedded Bundle.
	Files fs.FS
}

// Handler serves the console. It is read-only once built: ServeHTTP may
// be called from many goroutines at once.
type Handler struct {
	files map[string]*file // by path served
	paths []string         // "/" first, then the assets in order
}

// file is one served file.
type file struct {
	name        string
	body        []byte
	contentType string
	// version is a hash of body; the ETag is it, quoted.
	version string
	page    bool
}

// New reads the console's files. It fails when index.html is missing or
// a file's extension has no known type.
func New(cfg Config) (*Handler, error) {
	files := cfg.Files
	if files == nil {
		files = Bundle()
	}
	h := &Handler{files: map[string]*file{}}
	var page *file
	err := fs.WalkDir(files, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := fs.ReadFile(files, name)
		if err != nil {
			return err
		}
		f, err := newFile(name, body)
		if err != nil {
			return err
		}
		if name == indexFile {
			f.page, page = true, f
			return nil
		}
		h.files[Prefix+name] = f
		h.paths = append(h.paths, Prefix+name)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the console's files: %w", err)
	}
	if page == nil {
		return nil, errors.New("read the console's files: no " + indexFile)
	}
	slices.Sort(h.paths)
	page.body = versionRefs(page.body, h.files)
	page.version = hash(page.body)
	h.files["/"] = page
	h.paths = append([]string{"/"}, h.paths...)
	return h, nil
}

func newFile(name string, body []byte) (*file, error) {
	ct, ok := contentType(path.Ext(name))
	if !ok {
		return nil, fmt.Errorf("%s: no content type for extension %q (add it to console.contentType)", name, path.Ext(name))
	}
	return &file{name: name, body: body, contentType: ct, version: hash(body)}, nil
}

func hash(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// versionRefs rewrites the page's quoted references to its assets,
// "/console/app.js", into "/console/app.js?v=<version>".
func versionRefs(page []byte, assets map[string]*file) []byte {
	for p, f := range assets {
		for _, q := range []string{`"`, `'`} {
			page = bytes.ReplaceAll(page, []byte(q+p+q), []byte(q+p+"?v="+f.version+q))
		}
	}
	return page
}

// Paths are the paths the handler serves: "/" (the page), then every
// asset under Prefix.
func (h *Handler) Paths() []string { return slices.Clone(h.paths) }

// immutable is the Cache-Control of an asset asked for by its version.
const immutable = "public, max-age=31536000, immutable"

// ServeHTTP serves a file by its path (GET and HEAD); any other path is
// 404.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	header := w.Header()
	header.Set("Content-Security-Policy", Policy)
	header.Set("X-Content-Type-Options", "nosniff")
	header.Set("Referrer-Policy", "no-referrer")
	header.Set("X-Frame-Options", "DENY")
	f, ok := h.files[r.URL.Path]
	if !ok {
		http.NotFound(w, r)
		return
	}
	header.Set("Content-Type", f.contentType)
	header.Set("ETag", `"`+f.version+`"`)
	if !f.page && r.URL.Query().Get("v") == f.version {
		header.Set("Cache-Control", immutable)
	} else {
		header.Set("Cache-Control", "no-cache")
	}
	// ServeContent answers If-None-Match (304), HEAD and ranges; the zero
	// time leaves Last-Modified out, the ETag is the validator.
	http.ServeContent(w, r, f.name, time.Time{}, bytes.NewReader(f.body))
}
