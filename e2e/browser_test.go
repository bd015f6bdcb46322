package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/abacus-streams/abacus/internal/testkit"
)

// ssePageServer serves testdata/sse.html from an origin of its own, holds the
// page's load event until released, and collects what the page reports.
type ssePageServer struct {
	*httptest.Server
	release chan struct{}
	once    sync.Once

	mu      sync.Mutex
	reports []ssePageReport
}

type ssePageReport struct{ kind, value string }

func newSSEPageServer(t *testing.T) *ssePageServer {
	t.Helper()
	page, err := os.ReadFile(filepath.Join("testdata", "sse.html"))
	if err != nil {
		t.Fatal(err)
	}
	ps := &ssePageServer{release: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /sse.html", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write(page)
	})
	mux.HandleFunc("GET /hold", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-ps.release:
		case <-r.Context().Done():
			return
		}
		w.Header().Set("Content-Type", "image/gif")
		// A 1x1 transparent GIF.
		_, _ = w.Write([]byte("GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"))
	})
	mux.HandleFunc("GET /report", func(w http.ResponseWriter, r *http.Request) {
		ps.mu.Lock()
		ps.reports = append(ps.reports, ssePageReport{r.URL.Query().Get("kind"), r.URL.Query().Get("value")})
		ps.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})
	ps.Server = httptest.NewServer(mux)
	t.Cleanup(ps.Close)
	t.Cleanup(ps.releaseLoad) // before Close, which waits for /hold
	return ps
}

func (ps *ssePageServer) releaseLoad() { ps.once.Do(func() { close(ps.release) }) }

// waitReport waits until the page has reported an event of kind with value.
func (ps *ssePageServer) waitReport(t *testing.T, within time.Duration, kind, value string, browserDone <-chan struct{}) {
	t.Helper()
	testkit.Eventually(t, within, func() error {
		ps.mu.Lock()
		defer ps.mu.Unlock()
		for _, r := range ps.reports {
			if r.kind == kind && r.value == value {
				return nil
			}
		}
		select {
		case <-browserDone:
			t.Fatalf("the browser ended before the page reported %s %s; reports: %v", kind, value, ps.reports)
		default:
		}
		return fmt.Errorf("the page has not reported %s %s yet; reports: %v", kind, value, ps.reports[max(0, len(ps.reports)-5):])
	})
}

// Acceptance 4: a page in headless Chromium follows a count with
// EventSource, across origins (CORS), and shows every value it gets; after
// N records it shows N last.
func TestBrowserEventSource(t *testing.T) {
	ps := newSSEPageServer(t)
	b := testkit.StartBroker(t, 4)
	in := testkit.StartInstance(t, testkit.InstanceConfig{Name: "abacus-0", Brokers: b.Addr(), Env: map[string]string{
		"ABACUS_PEER_URL_TEMPLATE": "http://127.0.0.1:1",
		"ABACUS_CORS_ORIGINS":      ps.URL, // http://127.0.0.1:<port>, another origin than abacus
	}})
	in.WaitReady(time.Minute)

	const key = "browser key/ü" // a space, a slash and UTF-8: escaped in the URL
	page := ps.URL + "/sse.html?" + url.Values{"src": {sseURL(in, key, false)}}.Encode()
	br := startBrowser(t, page, 2*time.Minute)
	browserDone := br.done
	// The page is subscribed once it shows the first value: 0.
	ps.waitReport(t, time.Minute, "count", "0", browserDone)
	const n = 120
	for range 3 {
		testkit.Produce(t, b.Addr(), input, "murmur2_random", sseRecords(key, n/3))
	}
	ps.waitReport(t, time.Minute, "count", strconv.Itoa(n), browserDone)
	dom := br.dom(t, ps)

	if !strings.Contains(dom, `<span id="state">open</span>`) || !strings.Contains(dom, `<span id="errors">0</span>`) {
		t.Errorf("the page is not open without errors:\n%s", dom)
	}
	items := regexp.MustCompile(`<li data-key="([^"]*)" data-partition="(\d+)" data-id="([^"]*)">(\d+)</li>`).FindAllStringSubmatch(dom, -1)
	if len(items) < 2 {
		t.Fatalf("the page shows %d values:\n%s", len(items), dom)
	}
	var shown []int64
	for i, it := range items {
		v, _ := strconv.ParseInt(it[4], 10, 64)
		shown = append(shown, v)
		if it[1] != key {
			t.Errorf("value %d of key %q", v, it[1])
		}
		if it[3] != it[4] {
			t.Errorf("event %d has id %q, want its value %s", i, it[3], it[4])
		}
		if i > 0 && v <= shown[i-1] {
			t.Errorf("the page shows %d after %d", v, shown[i-1])
		}
	}
	if shown[0] != 0 || shown[len(shown)-1] != n {
		t.Errorf("the page shows %v; want 0 first and %d last", shown, n)
	}
	t.Logf("the page showed %v", shown)
}

// browser is headless Chromium loading a page and dumping its DOM once the
// page's load event (held by ssePageServer) is released.
type browser struct {
	done           chan struct{}
	err            error // chromium's exit, once done
	stdout, stderr bytes.Buffer
}

// startBrowser opens page in headless Chromium, for at most within.
func startBrowser(t *testing.T, page string, within time.Duration) *browser {
	t.Helper()
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium is not installed: run make test, which installs it (apt-get install chromium)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), within)
	cmd := exec.CommandContext(ctx, chromium,
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--user-data-dir="+t.TempDir(),
		// A safety net: chromium stops loading and dumps what it has after
		// this, should the test never release the load event.
		fmt.Sprintf("--timeout=%d", (within-10*time.Second).Milliseconds()),
		"--dump-dom", page)
	br := &browser{done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = &br.stdout, &br.stderr
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	go func() {
		br.err = cmd.Wait()
		close(br.done)
	}()
	t.Cleanup(func() {
		cancel()
		<-br.done
		if t.Failed() {
			t.Logf("chromium's stderr:\n%s", br.stderr.String())
		}
	})
	return br
}

// dom releases the page's load event and returns the DOM Chromium dumps.
func (br *browser) dom(t *testing.T, ps *ssePageServer) string {
	t.Helper()
	ps.releaseLoad()
	select {
	case <-br.done:
	case <-time.After(time.Minute):
		t.Fatal("chromium did not dump the page within a minute of its load")
	}
	if br.err != nil {
		t.Fatalf("chromium: %v", br.err)
	}
	return br.stdout.String()
}
