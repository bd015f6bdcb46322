package lookup

import (
	"bufio"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// The load generator's reader understands what net/http servers send:
// Content-Length bodies, chunked bodies and Connection: close.
func TestReadResponse(t *testing.T) {
	for _, tc := range []struct {
		raw, body string
		status    int
		keep      bool
	}{
		{"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 5\r\n\r\nhello", "hello", 200, true},
		{"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\ncontent-length: 2\r\nConnection: close\r\n\r\n{}", "{}", 503, false},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nTrailer: z\r\n\r\n", "abcde", 200, true},
		{"HTTP/1.0 200 OK\r\n\r\nto the end", "to the end", 200, false},
	} {
		status, body, keep, err := readResponse(bufio.NewReader(strings.NewReader(tc.raw)), nil)
		if err != nil || status != tc.status || string(body) != tc.body || keep != tc.keep {
			t.Errorf("%q: %d %q keep=%v %v; want %d %q keep=%v", tc.raw, status, body, keep, err, tc.status, tc.body, tc.keep)
		}
	}
}

func TestRunLoadAgainstServer(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/bad" {
			http.Error(w, "no", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"key":"` + r.URL.Path[1:] + `"}`))
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	reqs := []request{newRequest(host, "/a", []byte(`"key":"a"`)), newRequest(host, "/b", []byte(`"key":"b"`)), newRequest(host, "/bad", nil)}
	// Bounded by count, not time: each connection cycles through the three
	// requests 10 times, however slow the machine is.
	res, err := runLoad(loadSpec{addr: host, reqs: reqs, conns: 4, duration: time.Minute, maxPerConn: 30})
	if err != nil {
		t.Fatal(err)
	}
	if res.requests != 120 || res.ok != 80 || res.non200[503] != 40 || res.wrongBody != 0 || res.ioErrors != 0 {
		t.Fatalf("%d requests, %d ok, non-200 %v, wrong body %d, I/O errors %d (%s); want 120, 80, 40 x 503", res.requests, res.ok, res.non200, res.wrongBody, res.ioErrors, res.sample)
	}
	if res.pct(50) <= 0 || res.pct(50) > res.pct(99) || res.pct(99) > res.pct(100) {
		t.Errorf("percentiles out of order: %v %v %v", res.pct(50), res.pct(99), res.pct(100))
	}
}
