package api_test

import (
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/abacus-streams/abacus/internal/api"
	"github.com/abacus-streams/abacus/internal/testkit"
)

// jsonLines decodes the JSON log the server wrote.
func jsonLines(t *testing.T, out *testkit.LogBuffer) []map[string]any {
	all, err := out.JSONLines()
	if err != nil {
		t.Fatal(err)
	}
	return all
}

// keysOf is a line's attributes, sorted.
func keysOf(line map[string]any) []string {
	var ks []string
	for k := range line {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// The access log has one line per request with exactly the documented
// attributes: a forwarded lookup names the member that answered it and
// the request id, and nothing logs the Authorization header or the query.
func TestAccessLogLines(t *testing.T) {
	out := &testkit.LogBuffer{}
	c := healthy()
	c.config = func(cfg *api.Config) {
		cfg.AccessLog = true
		cfg.AuthToken = "s3cret-token"
		cfg.Logger = slog.New(slog.NewJSONHandler(out, nil))
	}
	base := c.start(t)

	get := func(path string, header http.Header) int {
		t.Helper()
		resp, _, err := testkit.Fetch(base+path, header)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode
	}
	auth := http.Header{"Authorization": {"Bearer s3cret-token"}}
	withID := http.Header{"Authorization": {"Bearer s3cret-token"}, api.RequestIDHeader: {"req-42"}}
	if code := get("/api/v1/stores/counts-store/keys/cherry?token=q-secret", withID); code != 200 {
		t.Fatalf("forwarded lookup: %d", code)
	}
	if code := get("/api/v1/stores/counts-store/keys/apple", auth); code != 200 {
		t.Fatalf("local lookup: %d", code)
	}
	if code := get("/api/v1/stores?password=q-secret", nil); code != 401 {
		t.Fatalf("lookup without credentials: %d", code)
	}
	if code := get("/healthz", nil); code != 200 {
		t.Fatalf("healthz: %d", code)
	}
	if code := get("/no/such/route", nil); code != 404 {
		t.Fatalf("unmatched: %d", code)
	}

	// A line is written once the answer is: wait for all five.
	var lines []map[string]any
	testkit.Eventually(t, 5*time.Second, func() error {
		if lines = jsonLines(t, out); len(lines) < 5 {
			return fmt.Errorf("%d access log lines, want 5", len(lines))
		}
		return nil
	})
	attrs := []string{"bytes_out", "duration_ms", "level", "method", "msg", "path", "remote_addr", "route", "status", "time"}
	want := []struct {
		route, path string
		status      float64
		more        map[string]string
	}{
		{api.PathKey, "/api/v1/stores/counts-store/keys/cherry", 200, map[string]string{"forwarded_to": "abacus-1", "request_id": "req-42"}},
		{api.PathKey, "/api/v1/stores/counts-store/keys/apple", 200, nil},
		{api.PathStores, "/api/v1/stores", 401, nil},
		{api.PathHealthz, "/healthz", 200, nil},
		{"unmatched", "/no/such/route", 404, nil},
	}
	byPath := map[string]map[string]any{}
	for _, line := range lines {
		byPath[fmt.Sprint(line["path"])] = line
	}
	for i, w := range want {
		line := byPath[w.path]
		if line == nil {
			t.Errorf("no line of %s among %v", w.path, lines)
			continue
		}
		keys := slices.Clone(attrs)
		for k, v := range w.more {
			keys = append(keys, k)
			if line[k] != v {
				t.Errorf("line %d: %s %v, want %q", i, k, line[k], v)
			}
		}
		slices.Sort(keys)
		if got := keysOf(line); !slices.Equal(got, keys) {
			t.Errorf("line %d: attributes %v, want %v", i, got, keys)
		}
		if line["msg"] != api.AccessLogMessage || line["level"] != "INFO" || line["method"] != "GET" ||
			line["route"] != w.route || line["path"] != w.path || line["status"] != w.status {
			t.Errorf("line %d: %v; want GET %s %s %v at INFO", i, line, w.route, w.path, w.status)
		}
		if d, _ := line["duration_ms"].(float64); d < 0 {
			t.Errorf("line %d: duration_ms %v", i, line["duration_ms"])
		}
		if b, _ := line["bytes_out"].(float64); b <= 0 {
			t.Errorf("line %d: bytes_out %v for an answer with a body", i, line["bytes_out"])
		}
		if addr, _ := line["remote_addr"].(string); !strings.HasPrefix(addr, "127.0.0.1:") {
			t.Errorf("line %d: remote_addr %q", i, addr)
		}
	}
	all := out.String()
	for _, secret := range []string{"s3cret-token", "q-secret", "Bearer"} {
		if strings.Contains(all, secret) {
			t.Errorf("the access log holds %q:\n%s", secret, all)
		}
	}
}
