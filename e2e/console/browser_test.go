package console_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	cdpruntime "github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/abacus-streams/abacus/internal/testkit"
)

// Width and height of the browser's viewport, and so of the screenshots:
// a laptop screen.
const (
	viewWidth  = 1280
	viewHeight = 800
)

// browser is one tab of headless Chromium at viewWidth x viewHeight. It
// logs every request the page makes and every problem the page reports:
// uncaught exceptions, console.error calls, and the browser's own error
// entries (a Content-Security-Policy violation is one), except those of
// the network, which are answers such as a 401 the tests cause on
// purpose.
type browser struct {
	t   *testing.T
	ctx context.Context

	mu        sync.Mutex
	requests  []pageRequest
	responses map[network.RequestID]int64 // status by request
	problems  []string
}

// pageRequest is a request the page made.
type pageRequest struct {
	id     network.RequestID
	method string
	url    string
	kind   network.ResourceType
}

// newBrowser starts Chromium for the test; it ends with the test.
func newBrowser(t *testing.T) *browser {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium is not installed: run make tools, which installs it (apt-get install chromium)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(viewWidth, viewHeight),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancelAlloc)
	t.Cleanup(cancel)
	b := &browser{t: t, ctx: ctx, responses: map[network.RequestID]int64{}}
	// The first action starts the browser and opens the tab; it runs on
	// ctx itself, since the browser lives as long as the context of that
	// first action.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(viewWidth, viewHeight)); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	if err := chromedp.Listen(ctx, b.note); err != nil {
		t.Fatal(err)
	}
	return b
}

// note records an event of the tab; it runs in the tab's event loop.
func (b *browser) note(ev any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch e := ev.(type) {
	case *network.EventRequestWillBeSent:
		b.requests = append(b.requests, pageRequest{id: e.RequestID, method: e.Request.Method, url: e.Request.URL, kind: e.Type})
	case *network.EventResponseReceived:
		b.responses[e.RequestID] = e.Response.Status
	case *cdpruntime.EventExceptionThrown:
		text := e.ExceptionDetails.Text
		if ex := e.ExceptionDetails.Exception; ex != nil {
			text += " " + ex.Description
		}
		b.problems = append(b.problems, "exception: "+text)
	case *cdpruntime.EventConsoleAPICalled:
		if e.Type == cdpruntime.ConsoleAPICalledTypeError {
			var args []string
			for _, a := range e.Args {
				args = append(args, string(a.Value)+a.Description)
			}
			b.problems = append(b.problems, "console.error: "+strings.Join(args, " "))
		}
	case *log.EventEntryAdded:
		if e.Entry.Level == log.EntryLevelError && e.Entry.Source != log.EntrySourceNetwork {
			b.problems = append(b.problems, fmt.Sprintf("%s: %s (%s)", e.Entry.Source, e.Entry.Text, e.Entry.URL))
		}
	}
}

// do runs actions in the tab, failing the test on an error; each call
// has a minute at most.
func (b *browser) do(actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, time.Minute)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.t.Fatalf("browser: %v", err)
	}
}

// open loads the page at rawURL and waits until the console shows a page
// (the view's data-page is set).
func (b *browser) open(rawURL string) {
	b.t.Helper()
	b.do(chromedp.Navigate(rawURL))
	waitJS(b, 20*time.Second, `document.getElementById('view')?.dataset.page ?? ''`, func(page string) error {
		if page == "" {
			return fmt.Errorf("the console shows no page yet")
		}
		return nil
	})
}

// route moves the console to a route ("#/stores?store=s") and waits
// until the page is mounted and has read what it shows (data-loaded).
func (b *browser) route(hash string) {
	b.t.Helper()
	b.do(chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`location.hash = %s`, jsString(hash))))
	page := strings.TrimPrefix(strings.SplitN(hash, "?", 2)[0], "#/")
	waitLoaded(b, page)
}

// waitLoaded waits until page is mounted and has read what it shows.
func waitLoaded(b *browser, page string) {
	b.t.Helper()
	waitJS(b, 20*time.Second, `(() => { const v = document.getElementById('view'); return [v.dataset.page, v.dataset.loaded ?? ''] })()`,
		func(got []string) error {
			if got[0] != page || got[1] != "true" {
				return fmt.Errorf("the console shows page %q (loaded %q), want %q loaded", got[0], got[1], page)
			}
			return nil
		})
}

// eval evaluates a JavaScript expression in the page and decodes its
// value into T.
func eval[T any](b *browser, expr string) (T, error) {
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[[]byte](`JSON.stringify(`+expr+`)`))
	var v T
	if err != nil {
		return v, err
	}
	var text string
	if err := json.Unmarshal(raw, &text); err != nil {
		return v, fmt.Errorf("%s: %w", raw, err)
	}
	err = json.Unmarshal([]byte(text), &v)
	return v, err
}

// waitJS evaluates expr until cond accepts its value, for at most within,
// and returns that value.
func waitJS[T any](b *browser, within time.Duration, expr string, cond func(T) error) T {
	b.t.Helper()
	var v T
	testkit.Eventually(b.t, within, func() error {
		var err error
		if v, err = eval[T](b, expr); err != nil {
			return err
		}
		return cond(v)
	})
	return v
}

// jsString is s as a JavaScript string literal.
func jsString(s string) string {
	q, _ := json.Marshal(s)
	return string(q)
}

// screenshot saves the viewport as <name>.png in the screenshot
// directory: ABACUS_SCREENSHOTS (relative to the repository's root when
// relative), else a temporary directory of the test.
func (b *browser) screenshot(name string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	shot, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	png, err := smallPNG(shot)
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	dir := screenshotDir(b.t)
	file := filepath.Join(dir, name+".png")
	if err := os.WriteFile(file, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot %s (%d KB)", file, len(png)>>10)
}

var (
	shotsOnce sync.Once
	shotsDir  string
)

func screenshotDir(t *testing.T) string {
	dir := os.Getenv("ABACUS_SCREENSHOTS")
	if dir == "" {
		return t.TempDir()
	}
	shotsOnce.Do(func() {
		if !filepath.IsAbs(dir) {
			_, file, _, _ := runtime.Caller(0)
			dir = filepath.Join(filepath.Dir(file), "..", "..", dir)
		}
		shotsDir = filepath.Clean(dir)
	})
	if err := os.MkdirAll(shotsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	return shotsDir
}

// foreignRequests lists the requests the page made to anything other than
// origin (scheme://host:port); data: URLs are no request to a host.
func (b *browser) foreignRequests(origin string) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, r := range b.requests {
		u, err := url.Parse(r.url)
		if err == nil && u.Scheme == "data" {
			continue
		}
		if err != nil || u.Scheme+"://"+u.Host != origin {
			out = append(out, fmt.Sprintf("%s %s (%s)", r.method, r.url, r.kind))
		}
	}
	return out
}

// requestsFrom lists the URLs of the page's requests from the first-th
// on.
func (b *browser) requestsFrom(first int) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, r := range b.requests[first:] {
		out = append(out, r.url)
	}
	return out
}

// requestCount is the number of requests the page made so far.
func (b *browser) requestCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.requests)
}

// statuses lists "<status> <path>" of the page's requests under /api/
// that were answered, from the first-th request on.
func (b *browser) statuses(first int) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, r := range b.requests[first:] {
		u, err := url.Parse(r.url)
		if err != nil || !strings.HasPrefix(u.Path, "/api/") {
			continue
		}
		if code, ok := b.responses[r.id]; ok {
			out = append(out, fmt.Sprintf("%d %s %s", code, r.method, u.Path))
		}
	}
	return out
}

// checkProblems fails the test on any problem the page reported.
func (b *browser) checkProblems() {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, p := range b.problems {
		b.t.Errorf("the page reported %s", p)
	}
}
